"""A domain's trusted CA for client certificates, in its ``Settings/`` folder.

``trusted-ca.pem`` holds one or more PEM CA certificates (BasicConstraints
``CA:TRUE``); ``trusted-crl.pem`` optionally holds a PEM certificate
revocation list signed by one of them.  TLS connections of a domain with a
trusted CA ask for an optional client certificate and verify it with these
(:mod:`communigate.protocols.tls`); SASL EXTERNAL then logs the verified
certificate's address in.  Both files are checked before anything is
written, and written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from communigate.store.atomic import fsync_directory, write_atomic

TRUSTED_CA = "trusted-ca.pem"
TRUSTED_CRL = "trusted-crl.pem"


class TrustedCAError(ValueError):
    """A file that is not a usable PEM CA certificate or CRL."""


@dataclass(frozen=True)
class TrustedCA:
    """The CA certificates of a domain and the revocation list, if any."""

    authorities: tuple[x509.Certificate, ...]
    revocations: x509.CertificateRevocationList | None = None


def parse_authorities(pem: bytes) -> tuple[x509.Certificate, ...]:
    """The CA certificates of a PEM text; TrustedCAError unless it holds at
    least one certificate and each is a CA's (RFC 5280 §4.2.1.9)."""
    try:
        found = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TrustedCAError("not a PEM CA certificate") from None
    for certificate in found:
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.value.ca:
            subject = certificate.subject.rfc4514_string()
            raise TrustedCAError(f"not a CA certificate (no BasicConstraints CA:TRUE): {subject}")
    return tuple(found)


def parse_revocations(
    pem: bytes, authorities: tuple[x509.Certificate, ...]
) -> x509.CertificateRevocationList:
    """The CRL of a PEM text; TrustedCAError unless it is one, signed by one
    of ``authorities`` (a CRL of another CA would refuse every client)."""
    try:
        revocations = x509.load_pem_x509_crl(pem)
    except ValueError:
        raise TrustedCAError("not a PEM certificate revocation list") from None
    for authority in authorities:
        if authority.subject == revocations.issuer:
            try:
                if revocations.is_signature_valid(authority.public_key()):  # type: ignore[arg-type]
                    return revocations
            except TypeError:
                continue
    raise TrustedCAError("the revocation list is not signed by the trusted CA")


def install(folder: Path, ca_pem: bytes, crl_pem: bytes | None = None) -> TrustedCA:
    """Store a checked CA (and CRL) in a domain's ``Settings`` folder.  A
    CRL kept from before is removed when none is given: it belonged to the
    CA being replaced."""
    authorities = parse_authorities(ca_pem)
    revocations = parse_revocations(crl_pem, authorities) if crl_pem is not None else None
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / TRUSTED_CA, ca_pem, 0o644)
    if crl_pem is not None:
        write_atomic(folder / TRUSTED_CRL, crl_pem, 0o644)
    elif (folder / TRUSTED_CRL).exists():
        (folder / TRUSTED_CRL).unlink()
        fsync_directory(folder)
    return TrustedCA(authorities, revocations)


def clear(folder: Path) -> bool:
    """Remove a domain's trusted CA and CRL; whether there was one."""
    removed = False
    for name in (TRUSTED_CA, TRUSTED_CRL):
        try:
            (folder / name).unlink()
        except FileNotFoundError:
            continue
        removed = True
    if removed:
        fsync_directory(folder)
    return removed


def read(folder: Path) -> TrustedCA | None:
    """The trusted CA of a domain's ``Settings`` folder, None if it has
    none; TrustedCAError (naming the file) for a file that is not usable."""
    try:
        ca_pem = (folder / TRUSTED_CA).read_bytes()
    except FileNotFoundError:
        return None
    try:
        authorities = parse_authorities(ca_pem)
    except TrustedCAError as error:
        raise TrustedCAError(f"{TRUSTED_CA}: {error}") from None
    try:
        crl_pem = (folder / TRUSTED_CRL).read_bytes()
    except FileNotFoundError:
        return TrustedCA(authorities)
    try:
        return TrustedCA(authorities, parse_revocations(crl_pem, authorities))
    except TrustedCAError as error:
        raise TrustedCAError(f"{TRUSTED_CRL}: {error}") from None


def problems(folder: Path) -> list[str]:
    """What is wrong with the trusted CA files of a ``Settings`` folder
    (for ``communigate check``); empty when they are fine or absent."""
    if not (folder / TRUSTED_CA).exists():
        if (folder / TRUSTED_CRL).exists():
            return [f"{TRUSTED_CRL}: a revocation list without {TRUSTED_CA}"]
        return []
    try:
        read(folder)
    except TrustedCAError as error:
        return [str(error)]
    except OSError as error:
        return [f"{Path(error.filename or TRUSTED_CA).name}: {error.strerror or error}"]
    return []
