"""EXTERNAL (RFC 4422 Appendix A): the TLS client certificate logs in.

The client's only message is the authorization identity it asks for
(empty: the identity the certificate proves).  The proof itself came
before the exchange: a client certificate verified with a domain's trusted
CA during the TLS handshake (:class:`~communigate.cred.clientcert.
VerifiedCertificate` in the connection's ``client_certificate``).  The
result is a :class:`~communigate.cred.credentials.VerifiedIdentity`: the
checker then requires the account to live in the verifying domain and to
allow ``UseCertificateAuth``, and applies the impersonation rule to an
authorization identity naming another account.
"""

from __future__ import annotations

from zope.interface import implementer

from communigate.cred.clientcert import VerifiedCertificate
from communigate.cred.credentials import ConnectionInfo, VerifiedIdentity
from communigate.cred.sasl.mechanism import Challenge, Failure, ISASLMechanism, Step, Success

#: The account setting that must be YES for a certificate to log in.
SETTING = "UseCertificateAuth"
_MAX_AUTHZID = 1024


@implementer(ISASLMechanism)
class External:
    """One EXTERNAL exchange on a connection."""

    name = "EXTERNAL"

    def __init__(self, connection: ConnectionInfo) -> None:
        self.connection = connection

    def start(self, initial: bytes | None) -> Step:
        """An empty challenge unless the client sent its authzid already
        (RFC 4422 Appendix A.1)."""
        if initial is None:
            return Challenge(b"")
        return self.respond(initial)

    def respond(self, data: bytes) -> Step:
        """The authorization identity: hand the certificate's identity to
        the portal, or fail without a verified certificate."""
        certificate = self.connection.client_certificate
        if not isinstance(certificate, VerifiedCertificate):
            return Failure("no verified client certificate on this connection")
        if certificate.address is None:
            return Failure(f"the client certificate {certificate.subject} names no address")
        if len(data) > _MAX_AUTHZID or b"\0" in data:
            return Failure("malformed EXTERNAL authorization identity")
        return Success(
            VerifiedIdentity(
                username=certificate.address.encode("utf-8"),
                domain=certificate.domain,
                setting=SETTING,
                connection=self.connection,
                mechanism=self.name,
                authzid=data or None,
            )
        )
