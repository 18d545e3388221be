"""What a verified TLS client certificate tells about its holder.

A client certificate that a domain's trusted CA verified during the TLS
handshake proves an e-mail address: the first ``rfc822Name`` of its
subjectAltName (RFC 5280 §4.2.1.6), else the ``emailAddress`` attribute of
its subject (PKCS #9, the older practice).  SASL EXTERNAL (RFC 4422
Appendix A) logs that address in, but only inside the domain whose CA did
the verifying.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class VerifiedCertificate:
    """A client certificate verified with a domain's trusted CA.

    ``address`` is the e-mail address it names (None if it names none),
    ``domain`` the domain whose CA verified it, ``subject`` its subject
    (RFC 4514 text, for the log).
    """

    address: str | None
    domain: str
    subject: str


def certificate_address(certificate: x509.Certificate) -> str | None:
    """The e-mail address a certificate names: its first subjectAltName
    rfc822Name, else its subject's emailAddress; None if neither."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        found: list[str] = []
    else:
        found = names.value.get_values_for_type(x509.RFC822Name)
    if not found:
        found = [
            str(attribute.value)
            for attribute in certificate.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
        ]
    address = found[0].strip() if found else ""
    return address or None


def verified(certificate: x509.Certificate, domain: str) -> VerifiedCertificate:
    """The facts of ``certificate``, which ``domain``'s CA verified."""
    return VerifiedCertificate(
        certificate_address(certificate), domain, certificate.subject.rfc4514_string()
    )
