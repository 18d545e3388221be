"""The password service (PWD) through StringTransport: pipelined commands
answered in order, and the shared connection limits."""

from __future__ import annotations

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
