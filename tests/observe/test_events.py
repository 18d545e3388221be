"""One structured event per login attempt, one per logout, through the
login service as every protocol uses it (StringTransport and Clock)."""

from __future__ import annotations

import base64
import re
from dataclasses import fields
from typing import Any

import pytest
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from communigate.cred.credentials import ConnectionInfo
from communigate.cred.errors import LoginFailure, UnknownAccount
from communigate.observe.events import (
    EventLog,
    Fanout,
    IActivityObserver,
    ISessionMind,
    LoginEvent,
    SessionMind,
)
from communigate.portal.checker import plain_reason
from communigate.store.files import FileDirectory
from tests.observe.helpers import Recorder, imap, observed_service, pop3

LOGIN_FIELDS = {
    "session",
    "protocol",
    "remote_host",
    "remote_port",
    "local_host",
    "local_port",
    "tls",
    "server_name",
    "login",
    "account",
    "domain",
    "mechanism",
    "result",
}


@pytest.fixture
def logged() -> Any:
    """Every log event published during the test."""
    events: list[LogEvent] = []
    observer: Any = events.append
    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)


def by_kind(events: list[LogEvent], kind: str) -> list[LogEvent]:
    """The session events of one kind (``login``, ``logout``, ``lockout``)."""
    return [event for event in events if event.get("event") == kind]


def test_observers_provide_the_interface() -> None:
    """EventLog, Fanout and the session mind provide their interfaces."""
    assert verifyObject(IActivityObserver, EventLog())
    assert verifyObject(IActivityObserver, Fanout([]))
    assert verifyObject(ISessionMind, SessionMind(ConnectionInfo("imap4")))


def test_imap_login_is_one_event_with_every_field(
    directory: FileDirectory, logged: list[LogEvent]
) -> None:
    """A successful IMAP LOGIN logs one event with every field, no password."""
    recorder = Recorder()
    service, reactor = observed_service(directory, recorder)
    wire = imap(service, reactor)
    assert b"a OK" in wire.send(b"a LOGIN info pw-company.com\r\n")
    [event] = by_kind(logged, "login")
    assert LOGIN_FIELDS <= set(event)
    assert event["protocol"] == "imap4"
    assert (event["remote_host"], event["remote_port"]) == ("127.0.0.9", 40001)
    assert (event["local_host"], event["local_port"]) == ("127.0.0.1", 143)
    assert event["tls"] is False and event["server_name"] is None
    assert event["login"] == "info" and event["account"] == "info@company.com"
    assert event["domain"] == "company.com" and event["mechanism"] == "LOGIN"
    assert event["result"] == "ok" and event["ok"] is True
    assert re.fullmatch(r"[0-9a-f]{12}", event["session"])
    assert event["session"] == wire.wrapper.session_id
    assert event["latency"] == 0.0
    assert "pw-company.com" not in repr(logged)
    assert recorder.logins[0].session == event["session"] and recorder.open == ["imap4"]


def test_failed_login_reason_and_no_password(
    directory: FileDirectory, logged: list[LogEvent]
) -> None:
    """A wrong password is one event: account known, result wrong-password,
    the password nowhere."""
    recorder = Recorder()
    service, reactor = observed_service(directory, recorder)
    wire = imap(service, reactor)
    wire.send(b"a LOGIN info SeCrEt-wrong\r\n")
    reactor.advance(10)
    assert b"a NO" in wire.take()
    [event] = by_kind(logged, "login")
    assert event["result"] == "wrong-password" and event["ok"] is False
    assert event["account"] == "info@company.com"
    assert "SeCrEt-wrong" not in repr(logged)
    assert recorder.open == []


def test_unknown_name_is_plain_text(directory: FileDirectory, logged: list[LogEvent]) -> None:
    """An unknown name is logged in words, never as a Router repr; its
    domain, unknown here, is no field value."""
    service, reactor = observed_service(directory, Recorder())
    wire = imap(service, reactor)
    wire.send(b"a LOGIN ghost@nowhere.example x\r\n")
    wire.send(b"b LOGIN ghost x\r\n")
    reactor.advance(10)
    first, second = by_kind(logged, "login")
    assert first["result"] == second["result"] == "unknown-account"
    assert first["domain"] is None and second["domain"] == "company.com"
    assert first["account"] is None
    for event in (first, second):
        assert "(" not in event["detail"] and "FullName" not in event["detail"]
    assert "Unknown(" not in repr([e.get("detail") for e in logged])


def test_plain_reason_words_the_router() -> None:
    """A Router answer in a failure reason becomes words."""
    failure = UnknownAccount("x@y.com routes to Unknown(address=FullName(name='x'))")
    assert plain_reason(failure) == "x@y.com: no such account"
    assert plain_reason(LoginFailure("something else")) == "something else"


def test_sasl_plain_mechanism_and_no_payload(
    directory: FileDirectory, logged: list[LogEvent]
) -> None:
    """AUTHENTICATE PLAIN is logged as mechanism PLAIN, without the payload."""
    service, reactor = observed_service(directory, Recorder())
    wire = imap(service, reactor)
    payload = base64.b64encode(b"\0info\0pw-company.com")
    wire.send(b"a AUTHENTICATE PLAIN\r\n")
    assert b"a OK" in wire.send(payload + b"\r\n")
    [event] = by_kind(logged, "login")
    assert event["mechanism"] == "PLAIN" and event["result"] == "ok"
    assert payload.decode() not in repr(logged)


def test_pop3_user_pass(directory: FileDirectory, logged: list[LogEvent]) -> None:
    """POP3 USER/PASS is one login event with protocol pop3, mechanism USER."""
    service, reactor = observed_service(directory, Recorder())
    wire = pop3(service, reactor)
    wire.send(b"USER info\r\n")
    assert wire.send(b"PASS pw-company.com\r\n").startswith(b"+OK")
    [event] = by_kind(logged, "login")
    assert (event["protocol"], event["mechanism"], event["local_port"]) == ("pop3", "USER", 110)


def test_logout_event_has_duration_and_bytes(
    directory: FileDirectory, logged: list[LogEvent]
) -> None:
    """LOGOUT logs one event with the session id, account, duration and bytes."""
    recorder = Recorder()
    service, reactor = observed_service(directory, recorder)
    wire = imap(service, reactor)
    wire.send(b"a LOGIN info pw-company.com\r\n")
    reactor.advance(42)
    wire.send(b"b NOOP\r\n")
    wire.send(b"c LOGOUT\r\n")
    wire.server.connectionLost(Failure(Exception("closed")))
    [login] = by_kind(logged, "login")
    [event] = by_kind(logged, "logout")
    assert event["session"] == login["session"]
    assert event["account"] == "info@company.com" and event["protocol"] == "imap4"
    assert event["duration"] == 42.0
    assert event["bytes_in"] == wire.wrapper.bytes_in > 0
    assert 0 < event["bytes_out"] <= wire.wrapper.bytes_out
    assert len(recorder.logouts) == 1


def test_two_connections_two_sessions(directory: FileDirectory, logged: list[LogEvent]) -> None:
    """Each connection has its own session id; logins on one share it."""
    service, reactor = observed_service(directory, Recorder())
    one, two = imap(service, reactor), imap(service, reactor)
    one.send(b"a LOGIN info wrong\r\n")
    reactor.advance(10)
    one.send(b"b LOGIN info pw-company.com\r\n")
    two.send(b"a LOGIN info pw-company.com\r\n")
    first, second, third = by_kind(logged, "login")
    assert first["session"] == second["session"] != third["session"]


def test_session_id_without_a_counting_listener(directory: FileDirectory) -> None:
    """A bare transport gets a session id of its own, the same each time."""
    from twisted.internet.testing import StringTransport

    service, _ = observed_service(directory, Recorder())
    transport = StringTransport()
    first = service.connection(transport, "imap4", False)
    again = service.connection(transport, "imap4", False)
    other = service.connection(StringTransport(), "imap4", False)
    assert first.session == again.session != other.session


def test_lockout_is_reported_once(directory: FileDirectory, logged: list[LogEvent]) -> None:
    """The failure that exhausts FailedLoginFlow reports one lockout; the
    attempts after it are refused as locked."""
    directory.update_account_settings("company.com", "info", {"FailedLoginFlow": ["2", "10m"]})
    recorder = Recorder()
    service, reactor = observed_service(directory, recorder)
    wire = imap(service, reactor)
    for tag in (b"a", b"b", b"c"):
        wire.send(tag + b" LOGIN info wrong\r\n")
        reactor.advance(10)
    results = [event["result"] for event in by_kind(logged, "login")]
    assert results == ["wrong-password", "wrong-password", "locked"]
    [lockout] = by_kind(logged, "lockout")
    assert lockout["account"] == "info@company.com" and lockout["domain"] == "company.com"
    assert len(recorder.lockouts) == 1


def test_login_event_fields_are_plain_values() -> None:
    """Every field of a login event is a string, number, boolean or None."""
    event = LoginEvent.of(
        ConnectionInfo("imap4", "127.0.0.1", "127.0.0.9", True, "a.com", 143, 4000, "ab"),
        login="x",
        account=None,
        domain=None,
        mechanism="LOGIN",
        result="ok",
    )
    for field in fields(event):
        assert isinstance(getattr(event, field.name), (str, int, float, bool, type(None)))


def test_a_long_login_name_is_cut_in_the_event() -> None:
    """A client-chosen login name of any length is kept to 256 characters
    (and marked cut) in the login event."""
    from communigate.observe.events import MAX_LOGGED_NAME, LoginEvent

    connection = ConnectionInfo("imap4", "127.0.0.1", "127.0.0.9", False)
    event = LoginEvent.of(
        connection,
        login="x" * 10_000,
        account=None,
        domain=None,
        mechanism="LOGIN",
        result="unknown-account",
        detail=None,
        authorized=None,
        latency=None,
    )
    assert event.login == "x" * MAX_LOGGED_NAME + "…"
    short = LoginEvent.of(
        connection,
        login="info",
        account=None,
        domain=None,
        mechanism="LOGIN",
        result="ok",
        detail=None,
        authorized=None,
        latency=None,
    )
    assert short.login == "info"


def test_malformed_sasl_exchange_is_one_event_without_payload(
    directory: FileDirectory, logged: list[LogEvent]
) -> None:
    """A SCRAM exchange that breaks the syntax, and one the client cancels,
    are each logged as one event naming the mechanism, never the data."""
    recorder = Recorder()
    service, reactor = observed_service(directory, recorder)
    wire = imap(service, reactor)
    payload = base64.b64encode(b"x,,n=SeCrEtName,r=abc")
    assert b"a NO" in wire.send(b"a AUTHENTICATE SCRAM-SHA-256 " + payload + b"\r\n")
    assert wire.send(b"b AUTHENTICATE CRAM-MD5\r\n").startswith(b"+ ")
    assert b"b NO" in wire.send(b"*\r\n")
    events = by_kind(logged, "login")
    assert [(event["mechanism"], event["result"]) for event in events] == [
        ("SCRAM-SHA-256", "malformed"),
        ("CRAM-MD5", "aborted"),
    ]
    assert "SeCrEtName" not in repr(logged)
    assert [event.result for event in recorder.logins] == ["malformed", "aborted"]
