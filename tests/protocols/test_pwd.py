"""The password service (PWD) through StringTransport: pipelined commands
answered in order, and the shared connection limits."""

from __future__ import annotations

import base64
import hashlib
import hmac

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from communigate.protocols.access import LoginService
from communigate.protocols.pwd import PWDFactory, PWDServer
from communigate.store.files import FileDirectory
from tests.conftest import Exchange, login_service


class Session(Exchange):
    """A PWD server on a StringTransport."""

    def __init__(self, directory: FileDirectory, service: LoginService | None = None) -> None:
        if service is None:
            service = login_service(directory)
        self.clock = Clock()
        server = PWDFactory(service, self.clock).buildProtocol(IPv4Address("TCP", "127.0.0.9", 1))
        assert isinstance(server, PWDServer)
        self.server = server
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 106),
            peerAddress=IPv4Address("TCP", "127.0.0.9", 4000),
        )
        self.server.makeConnection(self.transport)


class SlowLogin(LoginService):
    """A login service whose answers the test releases by hand."""

    pending: list[Deferred[object]]

    def login(self, credentials: object, interface: object) -> Deferred[object]:
        self.pending.append(Deferred())
        return self.pending[-1]


def test_pipelined_commands_are_answered_in_order(directory: FileDirectory) -> None:
    """USER, PASS and QUIT sent at once: QUIT waits for the login and is answered."""
    session = Session(directory)
    assert session.take().startswith(b"200 ")
    out = session.send(b"USER info\r\nPASS pw-company.com\r\nQUIT\r\n")
    assert out == b"300 please send the PASS\r\n200 login OK\r\n200 bye\r\n"
    assert session.transport.disconnecting


def test_commands_wait_while_the_login_is_checked(directory: FileDirectory) -> None:
    """A command pipelined behind PASS is held, not refused, until the portal answers."""
    plain = Session(directory).server.factory.service
    service = SlowLogin(plain.portal, plain.resolver, scram_key=b"k" * 32, hostname="h")
    service.pending = []
    session = Session(directory, service)
    session.take()
    out = session.send(b"USER info\r\nPASS wrong\r\nQUIT\r\n")
    assert out == b"300 please send the PASS\r\n"
    assert not session.transport.disconnecting
    service.pending[0].callback(("iface", object(), lambda: None))
    assert session.take() == b"200 login OK\r\n200 bye\r\n"


def test_login_deadline_and_line_length(directory: FileDirectory) -> None:
    """A long line is refused without ending the session; bytes do not extend the deadline."""
    session = Session(directory)
    session.take()
    assert session.send(b"USER " + b"x" * 5000 + b"\r\n") == b"500 line too long\r\n"
    for _ in range(11):
        session.clock.advance(5)
        session.send(b"U")
    assert not session.transport.disconnecting
    session.clock.advance(5)
    assert session.take() == b"500 login time-out\r\n"
    assert session.transport.disconnecting


def test_greeting_carries_a_timestamp_and_apop_logs_in(directory: FileDirectory) -> None:
    """``APOP name digest`` with the greeting's timestamp logs in; a wrong
    digest is refused with the login failure text."""
    session = Session(directory)
    greeting = session.take()
    stamp = greeting[greeting.index(b"<") : greeting.index(b">") + 1]
    assert stamp.endswith(b">") and b"@" in stamp
    wrong = hashlib.md5(stamp + b"nope", usedforsecurity=False).hexdigest().encode()
    assert session.send(b"APOP info " + wrong + b"\r\n").startswith(b"500 ")
    right = hashlib.md5(stamp + b"pw-company.com", usedforsecurity=False).hexdigest().encode()
    assert session.send(b"APOP info " + right + b"\r\n") == b"200 login OK\r\n"
    assert session.send(b"APOP x\r\n").startswith(b"500 ")


def test_auth_plain_with_initial_response(directory: FileDirectory) -> None:
    """``AUTH PLAIN <base64>`` logs in through the shared SASL layer."""
    session = Session(directory)
    session.take()
    initial = base64.b64encode(b"\0info\0pw-company.com")
    assert session.send(b"AUTH PLAIN " + initial + b"\r\n") == b"200 login OK\r\n"


def test_auth_cram_md5_challenge_lines(directory: FileDirectory) -> None:
    """A challenge is a ``300`` line of base64; the answer completes the login,
    and a command pipelined behind it waits for the verdict."""
    session = Session(directory)
    session.take()
    line = session.send(b"AUTH CRAM-MD5\r\n")
    assert line.startswith(b"300 ")
    challenge = base64.b64decode(line[4:].strip())
    digest = hmac.new(b"pw-company.com", challenge, "md5").hexdigest().encode()
    answer = base64.b64encode(b"info " + digest)
    out = session.send(answer + b"\r\nQUIT\r\n")
    assert out == b"200 login OK\r\n200 bye\r\n"


def test_auth_refusals(directory: FileDirectory) -> None:
    """Unknown mechanisms, bad base64, ``*`` and wrong passwords get 500s;
    the session goes on."""
    session = Session(directory)
    session.take()
    assert session.send(b"AUTH NOSUCH\r\n").startswith(b"500 ")
    assert session.send(b"AUTH PLAIN !!!\r\n").startswith(b"500 ")
    assert session.send(b"AUTH LOGIN\r\n").startswith(b"300 ")
    assert session.send(b"*\r\n").startswith(b"500 ")
    wrong = base64.b64encode(b"\0info\0wrong")
    assert session.send(b"AUTH PLAIN " + wrong + b"\r\n").startswith(b"500 ")
    listed = session.send(b"AUTH\r\n")
    assert listed.startswith(b"200 ") and b"PLAIN" in listed
    assert session.send(b"QUIT\r\n") == b"200 bye\r\n"
