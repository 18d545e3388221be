"""The POP3 server driven through StringTransport and a Clock."""

from __future__ import annotations

import pytest
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from communigate.cred.checkers.internal import InternalPassword
from communigate.portal.accounts import AccountResolver
from communigate.portal.checker import AccountChecker
from communigate.portal.realm import AccountRealm
from communigate.protocols.pop3.server import MAX_ERRORS, POP3Factory, POP3Server
from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox
from tests.conftest import SyncReactor, SyncThreadPool


class Session:
    """A POP3 server on a StringTransport."""

    def __init__(self, directory: FileDirectory, local: str = "127.0.0.1") -> None:
        resolver = AccountResolver(directory)
        source = InternalPassword(SyncReactor(), SyncThreadPool())  # type: ignore[arg-type]
        portal = Portal(AccountRealm(directory), [AccountChecker(resolver, [source])])
        self.clock = Clock()
        self.factory = POP3Factory(portal, resolver, self.clock, timeout=600)
        self.server = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.9", 4000))
        assert isinstance(self.server, POP3Server)
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", local, 110),
            peerAddress=IPv4Address("TCP", "127.0.0.9", 4000),
        )
        self.server.makeConnection(self.transport)

    def take(self) -> bytes:
        while self.transport.producer is not None:
            self.transport.producer.resumeProducing()
        out = self.transport.value()
        self.transport.clear()
        return out

    def send(self, data: bytes) -> bytes:
        self.server.dataReceived(data)
        return self.take()

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
    """An idle session is closed after the timeout."""
    session = Session(directory)
    session.take()
    session.clock.advance(599)
    assert not session.transport.disconnecting
    session.clock.advance(2)
    assert session.take().startswith(b"-ERR idle timeout")
    assert session.transport.disconnecting


def test_message_removed_by_other_session(filled: FileDirectory) -> None:
    """RETR of a message another session expunged is an error, not a crash."""
    session = Session(filled, "127.0.0.2")
    session.login(b"info", b"pw-client1.com")
    box = inbox(filled, "client1.com", "info")
    box.remove(box.messages()[:1])
    assert session.send(b"RETR 1\r\n").startswith(b"-ERR message was removed")
    assert session.send(b"NOOP\r\n") == b"+OK\r\n"
