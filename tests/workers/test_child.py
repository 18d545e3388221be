"""The worker process's side: messages from the server, adopting handed
connections, reporting sessions, and its log as JSON lines."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.main import CONNECTION_DONE
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, eventFromJSON, formatEvent
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from communigate.cred.credentials import ConnectionInfo
from communigate.observe.events import IActivityObserver, LockoutEvent, LoginEvent, LogoutEvent
from communigate.portal.policy import LoginThrottle
from communigate.protocols.http.sessions import SessionCopies
from communigate.workers.channel import MAX_PACKET, decode, encode, socket_pair
from communigate.workers.child import (
    MAX_LOG_LINE,
    MAX_TEXT,
    ForwardedActivity,
    ReportedSessions,
    Worker,
    _Reported,
    _ReportingFactory,
    json_lines,
)
from communigate.workers.pool import CHANNEL_FD, CHILD_MODULE
from tests.workers.helpers import closed, entry


class FakeChannel:
    """A channel that keeps what is sent on it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any], descriptors: list[int] | None = None) -> bool:
        self.sent.append(dict(message))
        return True


class RecordingThrottle(LoginThrottle):
    """A LoginThrottle that records take() calls."""

    def __init__(self) -> None:
        super().__init__(lambda: 0.0)
        self.taken: list[tuple[str, str | None, str | None]] = []

    def take(self, kind: str, account: str | None, address: str | None) -> None:
        self.taken.append((kind, account, address))
        super().take(kind, account, address)


class Registry:
    """A session registry that records end() calls."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, str, str]] = []

    def end(self, domain: str, name: str, reason: str) -> int:
        self.ended.append((domain, name, reason))
        return 1


class AdoptingReactor:
    """Records adoptStreamConnection calls, with the factory's ident at the
    time; builds a protocol as Twisted's reactors do unless ``result`` is
    None (the factory refused)."""

    def __init__(self, result: Any = "adopted", error: Exception | None = None) -> None:
        self.result = result
        self.error = error
        self.adopted: list[tuple[int, int, Any, int]] = []
        self.running = True
        self.stopped = 0

    def adoptStreamConnection(self, descriptor: int, family: int, factory: Any) -> Any:
        self.adopted.append((descriptor, family, factory, factory.ident))
        os.fstat(descriptor)  # still open during the call
        if self.error is not None:
            raise self.error
        if self.result is not None:
            factory.buildProtocol(None)
        return self.result

    def stop(self) -> None:
        self.stopped += 1


class Setup:
    """A Worker with an imap4 factory, a fake channel and recording helpers."""

    def __init__(self, reactor: Any = None) -> None:
        self.reactor = reactor if reactor is not None else AdoptingReactor()
        self.throttle = RecordingThrottle()
        self.registry = Registry()
        self.wrapped = Factory.forProtocol(Protocol)
        self.worker = Worker(self.reactor, {"imap4": self.wrapped}, self.throttle, self.registry)
        self.channel = FakeChannel()
        self.worker.channel = self.channel  # type: ignore[assignment]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield left, right
    left.close()
    right.close()


# -- messages from the server


def test_throttle_message_taken() -> None:
    """A throttle message is given to throttle.take, not shared back."""
    setup = Setup()
    shared: list[Any] = []
    setup.throttle.share = lambda *args: shared.append(args)
    message = {"op": "throttle", "kind": "failed", "account": "a@b", "address": "192.0.2.1"}
    setup.worker.received(message, [])
    assert setup.throttle.taken == [("failed", "a@b", "192.0.2.1")]
    assert shared == []
    assert setup.channel.sent == []


def test_throttle_message_with_odd_fields() -> None:
    """Non-text account and address are passed as None."""
    setup = Setup()
    setup.worker.received({"op": "throttle", "kind": "failed", "account": 5, "address": []}, [])
    assert setup.throttle.taken == [("failed", None, None)]


def test_kick_message_ends_sessions() -> None:
    """A kick message calls registry.end(domain, name, reason)."""
    setup = Setup()
    setup.worker.received(
        {"op": "kick", "domain": "company.com", "name": "info", "reason": "bye"}, []
    )
    setup.worker.received({"op": "kick", "domain": "company.com"}, [])
    assert setup.registry.ended == [("company.com", "info", "bye")]


def test_other_messages_close_descriptors() -> None:
    """Descriptors that come with anything but accept are closed."""
    setup = Setup()
    read_end, write_end = os.pipe()
    setup.worker.received({"op": "kick", "domain": "d", "name": "n"}, [read_end, write_end])
    assert closed(read_end) and closed(write_end)


def test_share_sends_throttle() -> None:
    """Worker.share tells the server a throttle message."""
    setup = Setup()
    setup.worker.share("succeeded", "a@b", None)
    assert setup.channel.sent == [
        {"op": "throttle", "kind": "succeeded", "account": "a@b", "address": None}
    ]


def test_lost_stops_reactor() -> None:
    """The server gone, the worker stops its reactor (once it runs)."""
    setup = Setup()
    setup.worker.lost()
    assert setup.reactor.stopped == 1
    setup.reactor.running = False
    setup.worker.lost()
    assert setup.reactor.stopped == 1


# -- adopting connections


def test_accept_for_unknown_listener_closed() -> None:
    """accept for a listener the worker lacks reports closed and closes the descriptor."""
    setup = Setup()
    read_end, write_end = os.pipe()
    setup.worker.received({"op": "accept", "id": 4, "listener": "pop3"}, [write_end])
    assert setup.channel.sent == [{"op": "closed", "id": 4}]
    assert closed(write_end)
    assert setup.reactor.adopted == []
    os.close(read_end)


def test_accept_without_descriptor_closed() -> None:
    """accept with no descriptor (or two) reports closed and closes what came."""
    setup = Setup()
    setup.worker.received({"op": "accept", "id": 5, "listener": "imap4"}, [])
    read_end, write_end = os.pipe()
    setup.worker.received({"op": "accept", "id": 6, "listener": "imap4"}, [read_end, write_end])
    assert setup.channel.sent == [{"op": "closed", "id": 5}, {"op": "closed", "id": 6}]
    assert closed(read_end) and closed(write_end)
    assert setup.reactor.adopted == []


def test_accept_adopts_connection(pair: tuple[socket.socket, socket.socket]) -> None:
    """accept adopts the descriptor with the ident set only during the call."""
    setup = Setup()
    descriptor = os.dup(pair[0].fileno())
    setup.worker.received({"op": "accept", "id": 9, "listener": "imap4"}, [descriptor])
    [(given, family, factory, ident)] = setup.reactor.adopted
    assert given == descriptor
    assert family == socket.AF_UNIX
    assert factory is setup.worker.factories["imap4"]
    assert ident == 9
    assert factory.ident == -1
    assert closed(descriptor)
    assert setup.channel.sent == []


def test_adoption_refused_reports_closed(pair: tuple[socket.socket, socket.socket]) -> None:
    """adoptStreamConnection giving None (the factory refused) reports closed."""
    setup = Setup(AdoptingReactor(result=None))
    descriptor = os.dup(pair[0].fileno())
    setup.worker.received({"op": "accept", "id": 2, "listener": "imap4"}, [descriptor])
    assert setup.channel.sent == [{"op": "closed", "id": 2}]
    assert closed(descriptor)


def test_adoption_error_reports_closed(pair: tuple[socket.socket, socket.socket]) -> None:
    """adoptStreamConnection raising OSError reports closed and closes the descriptor."""
    setup = Setup(AdoptingReactor(error=OSError("gone")))
    descriptor = os.dup(pair[0].fileno())
    setup.worker.received({"op": "accept", "id": 3, "listener": "imap4"}, [descriptor])
    assert setup.channel.sent == [{"op": "closed", "id": 3}]
    assert closed(descriptor)
    assert setup.worker.factories["imap4"].ident == -1


def test_reporting_factory_wraps_and_reports_close() -> None:
    """Wrapped protocols carry the ident and report closed when lost."""
    setup = Setup()
    factory = setup.worker.factories["imap4"]
    factory.ident = 12
    protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1000))
    factory.ident = -1
    assert isinstance(protocol, _Reported)
    assert protocol.ident == 12
    assert isinstance(protocol.wrappedProtocol, Protocol)
    protocol.makeConnection(StringTransport())
    assert setup.channel.sent == []
    protocol.connectionLost(Failure(CONNECTION_DONE))
    assert setup.channel.sent == [{"op": "closed", "id": 12}]


def test_reporting_factory_passes_refusal() -> None:
    """A wrapped factory refusing (None) makes buildProtocol give None."""

    class Refusing(Factory):
        def buildProtocol(self, addr: Any) -> None:
            return None

    factory = _ReportingFactory(Refusing(), Setup().worker)
    assert factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1)) is None


# -- sessions


def test_reported_sessions_add_and_forget_once() -> None:
    """add lists and reports an entry; forget reports its end only once."""
    channel = FakeChannel()
    sessions = ReportedSessions(lambda: 5.0, channel)  # type: ignore[arg-type]
    forget = sessions.add(entry(tls=True, since=5.0))
    assert list(sessions) == [entry(tls=True, since=5.0)]
    [message] = channel.sent
    assert message["op"] == "session"
    assert message["entry"] == asdict(entry(tls=True, since=5.0))
    key = message["key"]
    forget()
    forget()
    assert list(sessions) == []
    assert channel.sent[1:] == [{"op": "session-end", "key": key}]


def test_reported_sessions_keys_differ() -> None:
    """Each reported session has its own key, and forgetting one keeps the other."""
    channel = FakeChannel()
    sessions = ReportedSessions(lambda: 5.0, channel)  # type: ignore[arg-type]
    first = sessions.add(entry(tls=True, since=5.0))
    sessions.add(entry(tls=True, since=5.0))
    assert channel.sent[0]["key"] != channel.sent[1]["key"]
    first()
    assert len(sessions) == 1
    assert channel.sent[2] == {"op": "session-end", "key": channel.sent[0]["key"]}


def test_reported_sessions_opened_reports() -> None:
    """opened (the login service's call) goes through add and reports the session."""
    channel = FakeChannel()
    sessions = ReportedSessions(lambda: 5.0, channel)  # type: ignore[arg-type]
    connection = ConnectionInfo(
        protocol="imap4",
        local_host="192.0.2.10",
        remote_host="192.0.2.1",
        secure=True,
        local_port=143,
        remote_port=40000,
        session="s1",
    )
    forget = sessions.opened(connection, "info@company.com", "PLAIN")
    assert channel.sent[0]["entry"] == asdict(entry(tls=True, since=5.0))
    forget()
    assert channel.sent[-1]["op"] == "session-end"


# -- log


def revived(stream: io.BytesIO) -> list[dict[str, Any]]:
    """The events written as JSON lines."""
    return [eventFromJSON(line.decode()) for line in stream.getvalue().splitlines()]


def event(format: str, **fields: Any) -> dict[str, Any]:
    return {
        "log_format": format,
        "log_level": LogLevel.info,
        "log_namespace": "test",
        "log_time": 1.0,
        **fields,
    }


def test_json_lines_one_line_per_event() -> None:
    """Each event becomes one JSON line."""
    stream = io.BytesIO()
    observe = json_lines(stream)
    observe(event("one"))
    observe(event("two {n}", n=2))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert [formatEvent(e) for e in revived(stream)] == ["one", "two 2"]


def test_json_lines_keeps_format_specs() -> None:
    """The message is made before writing, so format specs such as :.3f survive."""
    stream = io.BytesIO()
    json_lines(stream)(event("took {d:.3f}s", d=1.23456))
    [made] = revived(stream)
    assert made["log_format"] == "took 1.235s"
    assert formatEvent(made) == "took 1.235s"
    assert made["d"] == 1.23456


def test_json_lines_escapes_braces_in_values() -> None:
    """Braces in a value come back literally when the revived event is formatted."""
    stream = io.BytesIO()
    json_lines(stream)(event("got {x}", x="{a} and }{"))
    [made] = revived(stream)
    assert formatEvent(made) == "got {a} and }{"


def test_json_lines_drops_old_flattening() -> None:
    """An event flattened before still formats to its message."""
    from twisted.logger._flatten import flattenEvent

    stream = io.BytesIO()
    original = event("n is {n!r}", n="x")
    flattenEvent(original)
    json_lines(stream)(original)
    [made] = revived(stream)
    assert formatEvent(made) == "n is 'x'"


def test_json_lines_survives_failing_stream() -> None:
    """A failing stream never makes the observer raise; each event is tried."""

    class Broken(io.BytesIO):
        def __init__(self) -> None:
            super().__init__()
            self.tries = 0

        def write(self, data: Any) -> int:
            self.tries += 1
            raise BrokenPipeError("gone")

    stream = Broken()
    observe = json_lines(stream)
    observe(event("lost"))
    observe(event("lost again"))
    assert stream.tries == 2


def test_web_session_messages_keep_copies() -> None:
    """web-session and web-session-end keep the worker's copies of the
    server's web sessions; malformed ones change nothing."""
    setup = Setup()
    copies = SessionCopies(lambda: 1000.0, lambda login, connection: f"{login}@company.com")
    setup.worker.web = copies
    setup.worker.received(
        {"op": "web-session", "id": "1-a", "account": "john@company.com", "ends": 2000.0}, []
    )
    setup.worker.received({"op": "web-session", "id": 7, "account": "x@company.com"}, [])
    connection = ConnectionInfo("imap4", "127.0.0.1", "127.0.0.1")
    assert copies.owner("john", "1-a", connection) == "john@company.com"
    assert len(copies) == 1
    setup.worker.received({"op": "web-session-end", "id": "1-a"}, [])
    assert copies.owner("john", "1-a", connection) is None


def test_a_web_session_without_an_end_is_over_already() -> None:
    """A web-session message without a usable end time gives a copy that
    never answers (the safe side)."""
    setup = Setup()
    copies = SessionCopies(lambda: 1000.0, lambda login, connection: f"{login}@company.com")
    setup.worker.web = copies
    setup.worker.received({"op": "web-session", "id": "1-a", "account": "j@company.com"}, [])
    connection = ConnectionInfo("imap4", "127.0.0.1", "127.0.0.1")
    assert copies.owner("j", "1-a", connection) is None


def test_forwarded_activity_sends_each_event() -> None:
    """Logins, sessions, logouts, lockouts and handshakes go to the server
    as activity messages whose events rebuild equal."""
    sent: list[dict[str, Any]] = []
    activity = ForwardedActivity(sent.append)
    assert verifyObject(IActivityObserver, activity)
    logout = LogoutEvent("s1", "pop3", "a@company.com", 2.0, 5, 6)
    lockout = LockoutEvent("s1", "pop3", "a@company.com", "company.com", "192.0.2.1")
    activity.opened("pop3")
    activity.logout(logout)
    activity.lockout(lockout)
    activity.handshake("pop3s")("implicit")
    assert sent[0] == {"op": "activity", "kind": "opened", "protocol": "pop3"}
    assert LogoutEvent(**json.loads(json.dumps(sent[1]))["event"]) == logout
    assert LockoutEvent(**sent[2]["event"]) == lockout
    handshake = {"op": "activity", "kind": "handshake", "protocol": "pop3s", "tls": "implicit"}
    assert sent[3] == handshake


def test_json_lines_keep_a_failure_whole() -> None:
    """A failure's exception and traceback reach the server's log as text
    (Twisted's JSON would keep neither the exception nor its message)."""
    stream = io.BytesIO()
    try:
        raise ValueError("the real reason")
    except ValueError:
        failure = Failure()
    json_lines(stream)(event("it broke", log_failure=failure))
    [made] = revived(stream)
    text = formatEvent(made)
    assert text.startswith("it broke\n")
    assert "ValueError: the real reason" in text and "Traceback" in text
    assert "log_failure" not in made


def test_json_lines_cut_an_overlong_line() -> None:
    """An event whose line would pass MAX_LOG_LINE is written cut, as one
    line that still reads as JSON."""
    stream = io.BytesIO()
    json_lines(stream)(event("login {name}", name="é" * MAX_LOG_LINE))
    [line] = stream.getvalue().splitlines()
    assert len(line) <= MAX_LOG_LINE
    [made] = revived(stream)
    assert formatEvent(made).startswith("login éé") and formatEvent(made).endswith("[cut]")


def test_adoption_that_raises_is_reported_closed() -> None:
    """A protocol that cannot be built is reported closed (so the server's
    count of the address drops) and logged, and the descriptor closed."""

    class Failing(Factory):
        def buildProtocol(self, addr: Any) -> Protocol:
            raise RuntimeError("boom")

    class Adopting(AdoptingReactor):
        def adoptStreamConnection(self, descriptor: int, family: int, factory: Any) -> Any:
            super().adoptStreamConnection(descriptor, family, factory)
            return factory.buildProtocol(None)

    setup = Setup(Adopting(result=None))
    setup.worker.factories["imap4"].wrappedFactory = Failing()
    left, right = socket.socketpair()
    descriptor = os.dup(left.fileno())
    try:
        with capturedLogs() as events:
            setup.worker.received({"op": "accept", "id": 5, "listener": "imap4"}, [descriptor])
        assert setup.channel.sent == [{"op": "closed", "id": 5}]
        assert closed(descriptor)
        assert any("could not be served" in formatEvent(e) for e in events)
    finally:
        left.close()
        right.close()


def test_failure_windows_from_the_server_are_merged() -> None:
    """throttle-windows messages give the worker the failures the server
    counted before it started; malformed items are skipped."""
    setup = Setup()
    windows = [["account", "a@company.com", [0.0, 0.0, 0.0]], ["address", "192.0.2.1", ["x"]]]
    setup.worker.received(
        {"op": "throttle-windows", "windows": [*windows, ["bad"], "bad", [1, 2, 3]]}, []
    )
    assert setup.throttle.locked("a@company.com", {"FailedLoginFlow": ["3", "1m"]})
    assert setup.throttle.taken == []


def test_forwarded_login_cuts_long_texts() -> None:
    """A login event with a huge login name is sent cut, so the message fits a packet."""
    sent: list[dict[str, Any]] = []
    activity = ForwardedActivity(sent.append)
    login = LoginEvent(
        "s1", "imap4", "192.0.2.1", 1000, "127.0.0.1", 143, False, None,
        "é" * 40000, None, None, "LOGIN", "wrong-password",
    )  # fmt: skip
    activity.login(login)
    [message] = sent
    assert len(message["event"]["login"]) == MAX_TEXT
    assert len(encode(message)) < MAX_PACKET
    assert LoginEvent(**message["event"]).result == "wrong-password"


def test_stop_message_stops_the_worker() -> None:
    """The server's stop message stops the worker's reactor."""
    setup = Setup()
    setup.worker.received({"op": "stop"}, [])
    assert setup.reactor.stopped == 1


def test_stop_twice_stops_the_reactor_once() -> None:
    """A stop message and then the server's channel closing stop the
    reactor once (a second stop would raise ReactorNotRunning)."""
    setup = Setup()
    setup.worker.received({"op": "stop"}, [])
    setup.worker.lost()
    assert setup.reactor.stopped == 1


def test_a_starting_worker_leaves_group_signals_to_the_server(tmp_path: Path) -> None:
    """SIGTERM and SIGINT sent to a worker process still starting up (as a
    supervisor or terminal sends them to the whole group) do not end it;
    the server closing its channel does."""
    base = tmp_path / "base"
    subprocess.run(
        [sys.executable, "-m", "communigate.cli.main", "--base", str(base), "init",
         "--main-domain", "company.com", "--postmaster-password", "pm"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    ours, theirs = socket_pair()
    process = subprocess.Popen(
        [sys.executable, "-m", CHILD_MODULE, f"--base={base}"],
        close_fds=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.dup2(theirs.fileno(), CHANNEL_FD),
    )
    theirs.close()
    try:
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGINT)
        ours.settimeout(30)
        assert decode(ours.recv(MAX_PACKET)) == {"op": "ready"}
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert process.poll() is None
    finally:
        ours.close()
        process.wait(timeout=30)
    assert process.returncode == 0, process.stderr.read() if process.stderr else b""
