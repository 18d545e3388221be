"""TLS certificates kept in a domain's ``Settings/`` folder.

``certificate.pem`` (the chain, leaf first) and ``key.pem`` (mode 0600).
``communigate init`` makes a self-signed pair for the Main Domain;
``communigate domain certificate`` installs a checked pair.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from communigate.store.atomic import write_atomic

CERTIFICATE = "certificate.pem"
KEY = "key.pem"


class CertificateError(ValueError):
    """A certificate or key that cannot be used."""


def self_signed(domain: str, days: int = 3650) -> tuple[bytes, bytes]:
    """A new self-signed certificate and key (PEM) for ``domain``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(domain), x509.DNSName(f"*.{domain}")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def check_pair(certificate_pem: bytes, key_pem: bytes) -> None:
    """Raise CertificateError unless the PEM texts are a matching pair."""
    try:
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.use_certificate(x509.load_pem_x509_certificate(certificate_pem))
        context.use_privatekey(serialization.load_pem_private_key(key_pem, password=None))  # type: ignore[arg-type]
        context.check_privatekey()
    except (SSL.Error, ValueError, TypeError) as error:
        raise CertificateError(f"unusable certificate or key: {error}") from None


def install(folder: Path, certificate_pem: bytes, key_pem: bytes) -> None:
    """Store a checked pair in a domain's ``Settings`` folder."""
    check_pair(certificate_pem, key_pem)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / KEY, key_pem, 0o600)
    write_atomic(folder / CERTIFICATE, certificate_pem, 0o644)
