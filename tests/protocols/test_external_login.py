"""EXTERNAL in the IMAP and POP3 sessions: the client certificate is read
once the TLS handshake is over (after STARTTLS/STLS), then advertised and
used (StringTransport; the TLS layer stands in)."""

from __future__ import annotations

import base64
from typing import Any

from communigate.cred.clientcert import VerifiedCertificate
from communigate.store.files import FileDirectory
from tests.protocols.imap4.test_server import Session as IMAPSession
from tests.protocols.imap4.test_server import TLSRecordingTransport
from tests.protocols.pop3.test_server import Session as POP3Session
from tests.protocols.pop3.test_server import TLSRecordingTransport as POP3Transport

CERTIFICATE = VerifiedCertificate("info@company.com", "company.com", "CN=info")


class FakeContexts:
    """Gives the certificate once the transport's handshake has finished."""

    def client_certificate(self, transport: Any) -> VerifiedCertificate | None:
        return CERTIFICATE if getattr(transport, "handshake_done", False) else None


def allow(directory: FileDirectory) -> None:
    directory.update_account_settings("company.com", "info", {"UseCertificateAuth": "YES"})


def test_imap_starttls_then_external(directory: FileDirectory) -> None:
    """After STARTTLS, CAPABILITY lists AUTH=EXTERNAL and AUTHENTICATE
    EXTERNAL logs the certificate's account in."""
    allow(directory)
    session = IMAPSession(directory, tls=object())
    session.server.service.tls = FakeContexts()
    assert b"AUTH=EXTERNAL" not in session.send(b"a CAPABILITY\r\n")
    assert b"b OK" in session.send(b"b STARTTLS\r\n")
    assert isinstance(session.transport, TLSRecordingTransport)
    # The handshake ends after the answer, before the client's next command.
    session.transport.handshake_done = True  # type: ignore[attr-defined]
    assert b"AUTH=EXTERNAL" in session.send(b"c CAPABILITY\r\n")
    assert b"d OK" in session.send(b"d AUTHENTICATE EXTERNAL =\r\n")


def test_imap_external_without_certificate(directory: FileDirectory) -> None:
    """Without a certificate AUTHENTICATE EXTERNAL fails."""
    allow(directory)
    session = IMAPSession(directory, tls=object())
    session.server.service.tls = FakeContexts()
    assert b"a NO" in session.send(b"a AUTHENTICATE EXTERNAL =\r\n")


def test_pop3_stls_then_external(directory: FileDirectory) -> None:
    """After STLS, CAPA lists EXTERNAL and AUTH EXTERNAL logs in."""
    allow(directory)
    session = POP3Session(directory, transport_class=POP3Transport, tls=object())
    session.service.tls = FakeContexts()
    session.take()
    assert b"EXTERNAL" not in session.send(b"CAPA\r\n")
    assert session.send(b"STLS\r\n").startswith(b"+OK")
    session.transport.handshake_done = True  # type: ignore[attr-defined]
    assert b"EXTERNAL" in session.send(b"CAPA\r\n")
    authzid = base64.b64encode(b"info@company.com")
    assert session.send(b"AUTH EXTERNAL " + authzid + b"\r\n").startswith(b"+OK")
