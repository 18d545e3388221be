"""The POP3 server driven through StringTransport and a Clock."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from communigate.protocols.pop3.server import MAX_ERRORS, POP3Factory, POP3Server
from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox
from tests.conftest import Exchange, bcrypt_password, login_service


class Session(Exchange):
    """A POP3 server on a StringTransport."""

    def __init__(
        self,
        directory: FileDirectory,
        local: str = "127.0.0.1",
        peer: str = "127.0.0.9",
        transport_class: type[StringTransport] = StringTransport,
        tls: object = None,
    ) -> None:
        self.clock = Clock()
        self.service = login_service(directory)
        self.factory = POP3Factory(self.service, self.clock, timeout=600, tls=tls)
        self.server = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.9", 4000))
        assert isinstance(self.server, POP3Server)
        self.transport = transport_class(
            hostAddress=IPv4Address("TCP", local, 110),
            peerAddress=IPv4Address("TCP", peer, 4000),
        )
        self.server.makeConnection(self.transport)

    def take(self) -> bytes:
        while self.transport.producer is not None:
            self.transport.producer.resumeProducing()
        out = self.transport.value()
        self.transport.clear()
        return out

    def login(self, user: bytes, password: bytes) -> bytes:
        return self.send(b"USER " + user + b"\r\nPASS " + password + b"\r\n")


def inbox(directory: FileDirectory, domain: str, name: str) -> Mailbox:
    return Mailbox.of_account(directory.account_path(domain, name))


@pytest.fixture
def filled(directory: FileDirectory) -> FileDirectory:
    box = inbox(directory, "client1.com", "info")
    box.deliver(b"Subject: one\r\n\r\n.dot first\r\nbody\r\n")
    box.deliver(b"Subject: two\r\n\r\nsecond\r\n")
    return directory


def test_greeting_names_domain_of_local_address(directory: FileDirectory) -> None:
    """The greeting names the domain owning the address the client reached."""
    assert Session(directory, "127.0.0.2").take() == b"+OK client1.com POP3 server ready\r\n"
    directory.update_domain_settings("client1.com", {"LoginMethods": ["APOP"]})
    greeting = Session(directory, "127.0.0.2").take()
    assert greeting.startswith(b"+OK client1.com POP3 server ready <")
    assert greeting.endswith(b"@test.host>\r\n")


def test_session(filled: FileDirectory) -> None:
    """Login, STAT, LIST, UIDL, RETR with dot-stuffing, TOP."""
    session = Session(filled, "127.0.0.2")
    session.take()
    assert session.login(b"info", b"pw-client1.com").endswith(b"+OK 2 messages (58 octets)\r\n")
    assert session.send(b"STAT\r\n") == b"+OK 2 58\r\n"
    assert session.send(b"LIST\r\n") == b"+OK\r\n1 34\r\n2 24\r\n.\r\n"
    uidl = session.send(b"UIDL 2\r\n")
    assert uidl.startswith(b"+OK 2 ") and uidl.endswith(b".2\r\n")
    assert session.send(b"RETR 1\r\n") == (
        b"+OK 34 octets\r\nSubject: one\r\n\r\n..dot first\r\nbody\r\n.\r\n"
    )
    assert session.send(b"TOP 2 0\r\n") == b"+OK\r\nSubject: two\r\n\r\n.\r\n"


def test_dele_applies_only_on_quit(filled: FileDirectory) -> None:
    """DELE then a dropped connection keeps the message; DELE then QUIT removes it."""
    session = Session(filled, "127.0.0.2")
    session.login(b"info", b"pw-client1.com")
    assert session.send(b"DELE 1\r\n") == b"+OK message 1 deleted\r\n"
    assert session.send(b"RETR 1\r\n").startswith(b"-ERR message 1 is deleted")
    assert session.send(b"STAT\r\n") == b"+OK 1 24\r\n"
    session.server.connectionLost(None)
    assert len(inbox(filled, "client1.com", "info").messages()) == 2

    session = Session(filled, "127.0.0.2")
    session.login(b"info", b"pw-client1.com")
    session.send(b"DELE 1\r\n")
    assert session.send(b"RSET\r\n").startswith(b"+OK")
    session.send(b"DELE 2\r\n")
    assert session.send(b"QUIT\r\n") == b"+OK bye\r\n"
    remaining = inbox(filled, "client1.com", "info").messages()
    assert [info.uid for info in remaining] == [1]


def test_wrong_password_and_unknown(directory: FileDirectory) -> None:
    """Failures get -ERR [AUTH]; three of them close the connection."""
    session = Session(directory)
    session.take()
    assert session.login(b"info", b"bad").endswith(
        b"-ERR [AUTH] incorrect password or account name\r\n"
    )
    assert session.login(b"nobody", b"bad").endswith(b"-ERR [AUTH] unknown user account\r\n")
    assert not session.transport.disconnecting
    session.login(b"info", b"bad")
    assert session.transport.disconnecting


def test_pipelined_commands_run_in_order(filled: FileDirectory) -> None:
    """Commands sent in one packet are answered in order."""
    session = Session(filled, "127.0.0.2")
    session.take()
    out = session.send(b"USER info\r\nPASS pw-client1.com\r\nSTAT\r\nNOOP\r\nQUIT\r\n")
    assert out.split(b"\r\n")[:5] == [
        b"+OK please send the PASS",
        b"+OK 2 messages (58 octets)",
        b"+OK 2 58",
        b"+OK",
        b"+OK bye",
    ]


def test_bad_input(directory: FileDirectory) -> None:
    """Overlong lines, garbage and misplaced commands get -ERR, no traceback."""
    session = Session(directory)
    session.take()
    assert session.send(b"A" * 100_000 + b"\r\n").startswith(b"-ERR line too long")
    assert session.send(b"\x00\xff\xfe garbage\r\n") == b"-ERR unknown command\r\n"
    assert session.send(b"STAT\r\n").startswith(b"-ERR STAT is not allowed")
    assert session.send(b"PASS x\r\n") == b"-ERR send USER first\r\n"
    assert session.send(b"CAPA\r\n").startswith(b"+OK capability list follows\r\n")
    out = session.send(b"XX\r\n" * MAX_ERRORS)
    assert b"Traceback" not in out and session.transport.disconnecting


def test_idle_timeout(directory: FileDirectory) -> None:
    """A logged-in session idle for the timeout is closed."""
    session = Session(directory)
    session.take()
    assert b"+OK" in session.login(b"info", b"pw-company.com")
    session.clock.advance(599)
    assert not session.transport.disconnecting
    session.clock.advance(2)
    assert session.take().startswith(b"-ERR idle timeout")
    assert session.transport.disconnecting


def test_login_deadline_is_not_extended_by_bytes(directory: FileDirectory) -> None:
    """A byte every 5 s does not keep a session that has not logged in past 60 s."""
    session = Session(directory)
    session.take()
    for _ in range(11):
        session.clock.advance(5)
        session.send(b"C")
    assert not session.transport.disconnecting
    session.clock.advance(6)
    assert session.take().startswith(b"-ERR no login in time")
    assert session.transport.disconnecting


def test_limits_come_from_the_server_settings(directory: FileDirectory) -> None:
    """LoginTimeout and MaxLineLength from the Limits setting apply to new connections."""
    directory.update_server_settings(
        {"Limits": {"LoginTimeout": "5s", "pop3": {"MaxLineLength": 600}}}
    )
    session = Session(directory)
    session.take()
    assert session.send(b"CAPA" + b" " * 700 + b"\r\n").startswith(b"-ERR line too long")
    session.clock.advance(4)
    assert not session.transport.disconnecting
    session.clock.advance(1)
    assert session.transport.disconnecting


def test_message_removed_by_other_session(filled: FileDirectory) -> None:
    """RETR of a message another session expunged is an error, not a crash."""
    session = Session(filled, "127.0.0.2")
    session.login(b"info", b"pw-client1.com")
    box = inbox(filled, "client1.com", "info")
    box.remove(box.messages()[:1])
    assert session.send(b"RETR 1\r\n").startswith(b"-ERR message was removed")
    assert session.send(b"NOOP\r\n") == b"+OK\r\n"


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_auth_plain_with_initial_response(filled: FileDirectory) -> None:
    """AUTH PLAIN with an initial response logs in."""
    session = Session(filled, "127.0.0.2")
    session.take()
    reply = session.send(b"AUTH PLAIN " + b64(b"\0info\0pw-client1.com") + b"\r\n")
    assert reply == b"+OK 2 messages (58 octets)\r\n"


def test_auth_login_and_cram(filled: FileDirectory) -> None:
    """AUTH LOGIN asks twice; AUTH CRAM-MD5 checks the digest."""
    session = Session(filled, "127.0.0.2")
    session.take()
    assert session.send(b"AUTH LOGIN\r\n") == b"+ " + b64(b"Username:") + b"\r\n"
    assert session.send(b64(b"info") + b"\r\n") == b"+ " + b64(b"Password:") + b"\r\n"
    assert session.send(b64(b"pw-client1.com") + b"\r\n").startswith(b"+OK 2 messages")

    session = Session(filled, "127.0.0.2")
    session.take()
    challenge = base64.b64decode(session.send(b"AUTH CRAM-MD5\r\n")[2:])
    digest = hmac.new(b"pw-client1.com", challenge, "md5").hexdigest().encode()
    assert session.send(b64(b"info " + digest) + b"\r\n").startswith(b"+OK 2 messages")


def test_auth_abort_and_unknown_mechanism(directory: FileDirectory) -> None:
    """'*' aborts the exchange; unknown mechanisms are refused; the session goes on."""
    session = Session(directory)
    session.take()
    session.send(b"AUTH LOGIN\r\n")
    assert session.send(b"*\r\n").startswith(b"-ERR [AUTH] authentication aborted")
    assert session.send(b"AUTH X-UNKNOWN\r\n").startswith(b"-ERR unsupported")
    assert session.send(b"CAPA\r\n").startswith(b"+OK")


ALL_METHODS = ["PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "APOP"]


def test_auth_list_and_capa(directory: FileDirectory) -> None:
    """AUTH without arguments and CAPA list the advertised mechanisms."""
    assert b"SASL LOGIN PLAIN\r\n" in Session(directory).send(b"CAPA\r\n")
    directory.update_domain_settings("company.com", {"LoginMethods": ALL_METHODS})
    session = Session(directory)
    session.take()
    listing = session.send(b"AUTH\r\n")
    assert b"SCRAM-SHA-256\r\n" in listing and b"PLAIN\r\n" in listing
    capa = session.send(b"CAPA\r\n")
    assert b"SASL SCRAM-SHA-256 SCRAM-SHA-1 DIGEST-MD5 CRAM-MD5 LOGIN PLAIN\r\n" in capa
    assert b"\r\nUSER\r\n" in capa and b"STLS" not in capa


def test_apop(filled: FileDirectory) -> None:
    """APOP with the banner's timestamp logs in; a wrong digest is refused."""
    assert b"<" not in Session(filled, "127.0.0.2").take()
    filled.update_domain_settings("client1.com", {"LoginMethods": ALL_METHODS})
    session = Session(filled, "127.0.0.2")
    timestamp = session.take().split(b" ")[-1].strip()
    wrong = hashlib.md5(timestamp + b"wrong").hexdigest().encode()
    assert session.send(b"APOP info " + wrong + b"\r\n").startswith(b"-ERR [AUTH]")
    right = hashlib.md5(timestamp + b"pw-client1.com").hexdigest().encode()
    assert session.send(b"APOP info " + right + b"\r\n").startswith(b"+OK 2 messages")


def test_apop_refuses_one_way_password(directory: FileDirectory) -> None:
    """A bcrypt password cannot serve APOP (it needs the clear secret)."""
    directory.update_account_settings("company.com", "info", {"Password": bcrypt_password("p")})
    directory.update_domain_settings("company.com", {"LoginMethods": ALL_METHODS})
    session = Session(directory)
    timestamp = session.take().split(b" ")[-1].strip()
    digest = hashlib.md5(timestamp + b"p").hexdigest().encode()
    assert session.send(b"APOP info " + digest + b"\r\n").startswith(b"-ERR [AUTH]")


def test_clear_text_refused_on_insecure_remote_link(directory: FileDirectory) -> None:
    """From a non-local address without TLS, USER and PLAIN are refused and
    not advertised; ClearTextLogin=Always allows them."""
    session = Session(directory, peer="192.0.2.7")
    session.take()
    assert session.send(b"USER info\r\n").startswith(b"-ERR [AUTH] clear-text")
    assert session.send(b"AUTH PLAIN\r\n").startswith(b"-ERR [AUTH] clear-text")
    capa = session.send(b"CAPA\r\n")
    assert b"\r\nUSER\r\n" not in capa and b"PLAIN" not in capa
    directory.update_domain_settings("company.com", {"ClearTextLogin": "Always"})
    session = Session(directory, peer="192.0.2.7")
    session.take()
    assert session.send(b"USER info\r\n").startswith(b"+OK")


def test_secure_method_required(directory: FileDirectory) -> None:
    """RequireAPOP refuses clear text without TLS even from loopback, but
    allows a secure method."""
    directory.update_account_settings("company.com", "info", {"RequireAPOP": "YES"})
    session = Session(directory)
    session.take()
    assert session.login(b"info", b"pw-company.com").endswith(
        b"-ERR [AUTH] clear-text passwords are not allowed on this link; use TLS or a secure "
        b"method\r\n"
    )
    challenge = base64.b64decode(session.send(b"AUTH CRAM-MD5\r\n")[2:])
    digest = hmac.new(b"pw-company.com", challenge, "md5").hexdigest().encode()
    assert session.send(b64(b"info " + digest) + b"\r\n").startswith(b"+OK")


def test_impersonation_needs_right(filled: FileDirectory) -> None:
    """PLAIN with an authzid opens the target only with CanImpersonate."""
    response = b64(b"info@client1.com\0info@company.com\0pw-company.com")
    session = Session(filled)
    session.take()
    assert session.send(b"AUTH PLAIN " + response + b"\r\n").startswith(
        b"-ERR [AUTH] not authorized"
    )
    filled.update_access_rights("client1.com", "info@company.com", lambda old: ["CanImpersonate"])
    session = Session(filled)
    session.take()
    assert session.send(b"AUTH PLAIN " + response + b"\r\n").startswith(b"+OK 2 messages")


class TLSRecordingTransport(StringTransport):
    """A StringTransport that records a STARTTLS switch."""

    tls_started = False

    def startTLS(self, context: object) -> None:
        self.tls_started = True


def test_stls_discards_pipelined_plaintext(directory: FileDirectory) -> None:
    """Commands pipelined after STLS in clear text are never executed."""
    session = Session(directory, transport_class=TLSRecordingTransport, tls=object())
    session.take()
    assert b"STLS" in session.send(b"CAPA\r\n")
    out = session.send(b"STLS\r\nUSER info\r\nPASS pw-company.com\r\n")
    assert out == b"+OK begin TLS negotiation\r\n"
    assert session.transport.tls_started  # type: ignore[attr-defined]
    assert session.server.state.value == "authorization" and session.server.user is None
    assert session.send(b"STLS\r\n").startswith(b"-ERR STLS is not available")
