"""The login service feeds the session table, and a kick through the
control handlers ends a real IMAP session (StringTransport and Clock)."""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from communigate.control.commands import ControlCommands
from communigate.control.sessions import LiveSessions
from communigate.store.files import FileDirectory
from tests.observe.helpers import Recorder, imap, observed_service, pop3


def test_imap_login_is_listed_until_logout(directory: FileDirectory) -> None:
    """An IMAP LOGIN adds a session with account, mechanism and addresses;
    the end of the connection after LOGOUT removes it."""
    service, reactor = observed_service(directory, Recorder())
    service.sessions = table = LiveSessions(reactor.seconds)
    wire = imap(service, reactor)
    assert b"a OK" in wire.send(b"a LOGIN info pw-company.com\r\n")
    [entry] = table.matching("info@company.com")
    assert (entry.protocol, entry.remote_host, entry.remote_port) == ("imap4", "127.0.0.9", 40001)
    assert (entry.local_port, entry.tls, entry.mechanism) == (143, False, "LOGIN")
    assert entry.session is not None and len(entry.session) == 12
    wire.send(b"b LOGOUT\r\n")
    wire.server.connectionLost(Failure(ConnectionDone()))
    assert list(table) == []


def test_pop3_session_is_forgotten_when_the_client_goes(directory: FileDirectory) -> None:
    """A POP3 session is listed with USER, and forgotten when the
    connection drops without QUIT."""
    service, reactor = observed_service(directory, Recorder())
    service.sessions = table = LiveSessions(reactor.seconds)
    wire = pop3(service, reactor)
    wire.send(b"USER info\r\n")
    assert b"+OK" in wire.send(b"PASS pw-company.com\r\n")
    [entry] = table
    assert (entry.protocol, entry.mechanism, entry.account) == ("pop3", "USER", "info@company.com")
    wire.server.connectionLost(Failure(ConnectionDone()))
    assert list(table) == []


def test_kick_says_bye_to_the_imap_client(directory: FileDirectory) -> None:
    """kick through the control handlers ends the IMAP session with BYE,
    and the table no longer lists it."""
    service, reactor = observed_service(directory, Recorder())
    service.sessions = table = LiveSessions(reactor.seconds)
    registry = service.portal.realm.sessions  # type: ignore[attr-defined]
    control = ControlCommands(table, registry, reactor.seconds)
    wire = imap(service, reactor)
    wire.send(b"a LOGIN info pw-company.com\r\n")
    assert control.answer("status", {})["sessions"]["imap4"] == 1  # type: ignore[index]
    answer = control.answer("kick", {"account": "info@company.com"})
    assert answer["ended"] == 1
    assert b"* BYE the administrator ended the session" in wire.take()
    assert wire.transport.disconnecting
    wire.server.connectionLost(Failure(ConnectionDone()))
    assert control.answer("status", {})["sessions"]["imap4"] == 0  # type: ignore[index]
