"""The worker pool seen from the server: starting and restarting workers,
handing connections to them, and the messages they send."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest
from twisted.application.service import MultiService
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, eventAsJSON, formatEvent
from twisted.python.failure import Failure
from zope.interface import implementer

from communigate.control.sessions import LiveSessions
from communigate.observe.events import IActivityObserver, LockoutEvent, LoginEvent, LogoutEvent
from communigate.portal.policy import LoginThrottle
from communigate.protocols.http.sessions import WebSession
from communigate.store.settingsformat import Value
from communigate.workers.channel import MAX_PACKET, encode
from communigate.workers.pool import (
    CHANNEL_FD,
    CHANNEL_GRACE,
    CHILD_MODULE,
    MAX_LINE,
    MAX_QUEUED,
    MAX_RESTART_DELAY,
    QUICK_END,
    RESTART_DELAY,
    STOP_GRACE,
    WAITING_SECONDS,
    EveryProcess,
    WorkerPool,
    WorkerProcess,
    _Lines,
    add_worker_pool,
)
from tests.workers.helpers import closed, entry

FLOW: dict[str, Value] = {"FailedLoginFlow": ["3", "10s"]}


class FakeProcess:
    """A process transport that records the signals sent to it."""

    def __init__(self) -> None:
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class PoolReactor(MemoryReactorClock):
    """MemoryReactorClock that records spawnProcess calls."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[dict[str, Any]] = []

    def spawnProcess(
        self,
        protocol: Any,
        executable: str,
        args: list[str],
        env: dict[str, str],
        childFDs: dict[int, Any],
    ) -> FakeProcess:
        transport = FakeProcess()
        protocol.makeConnection(transport)
        self.spawned.append(
            {
                "protocol": protocol,
                "executable": executable,
                "args": args,
                "env": env,
                "childFDs": childFDs,
                "transport": transport,
            }
        )
        return transport


class FakeChannel:
    """A channel that keeps what is sent on it."""

    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], list[int]]] = []
        self.closed = False
        #: Messages the peer has not taken yet.
        self.waiting = 0

    def send(self, message: dict[str, Any], descriptors: list[int] | None = None) -> bool:
        self.sent.append((dict(message), list(descriptors or ())))
        return True

    def close(self) -> None:
        self.closed = True

    def messages(self) -> list[dict[str, Any]]:
        return [message for message, _ in self.sent]


class FakeAccepted:
    """An accepted connection: detach gives a made-up descriptor."""

    numbers = iter(range(5000, 6000))

    def __init__(self) -> None:
        self.descriptor = next(self.numbers)
        self.detached = 0
        self.finished = 0
        self.lost = 0

    def detach(self) -> int:
        self.detached += 1
        return self.descriptor

    def finish(self, reason: Any = None) -> None:
        self.finished += 1

    def loseConnection(self) -> None:
        self.lost += 1


class Setup:
    """A pool of two workers on a fake reactor."""

    def __init__(self, count: int = 2) -> None:
        self.reactor = PoolReactor()
        self.throttle = LoginThrottle(self.reactor.seconds)
        self.sessions = LiveSessions(self.reactor.seconds)
        self.published: list[dict[str, Any]] = []
        self.pool = WorkerPool(
            count,
            self.reactor,
            ["--base=/b", "--threads=2"],
            self.throttle,
            self.sessions,
            executable="/usr/bin/python3",
            environment={"PATH": "/bin"},
            publish=self.published.append,
        )

    def start(self) -> None:
        self.pool.startService()
        for worker in self.pool.workers.values():
            fake(worker)

    def worker(self, number: int, connections: int = 0) -> WorkerProcess:
        """Worker ``number``, serving at least ``connections`` (a worker
        reports no more sessions than it has connections)."""
        worker = self.pool.workers[number]
        while len(worker.connections) < connections:
            worker.connections[-len(worker.connections) - 1] = FakeAccepted()  # type: ignore[assignment]
        return worker

    def channel(self, number: int) -> FakeChannel:
        channel = self.worker(number).channel
        assert isinstance(channel, FakeChannel)
        return channel

    def ready(self, *numbers: int) -> None:
        for number in numbers:
            self.pool.received(self.worker(number), {"op": "ready"}, [])

    def close(self) -> None:
        for spawned in self.reactor.spawned:
            channel = spawned["protocol"].channel
            if channel is not None and not isinstance(channel, FakeChannel):
                channel.close()


def fake(worker: WorkerProcess) -> FakeChannel:
    """Put a FakeChannel in place of the worker's real one."""
    real = worker.channel
    if real is not None and not isinstance(real, FakeChannel):
        real.close()
    channel = FakeChannel()
    worker.channel = channel  # type: ignore[assignment]
    return channel


@pytest.fixture
def setup() -> Iterator[Setup]:
    made = Setup()
    yield made
    made.close()


def zero() -> float:
    return 0.0


# -- processes


def test_start_spawns_each_worker(setup: Setup) -> None:
    """startService spawns count child workers with the channel on fd 3."""
    setup.pool.startService()
    assert len(setup.reactor.spawned) == 2
    for spawned in setup.reactor.spawned:
        assert spawned["executable"] == "/usr/bin/python3"
        assert spawned["args"] == [
            "/usr/bin/python3",
            "-m",
            CHILD_MODULE,
            "--base=/b",
            "--threads=2",
        ]
        assert spawned["env"] == {"PATH": "/bin"}
        fds = spawned["childFDs"]
        assert set(fds) == {0, 1, 2, CHANNEL_FD}
        assert isinstance(fds[CHANNEL_FD], int)
    assert sorted(setup.pool.workers) == [1, 2]
    assert {w.number for w in setup.pool.workers.values()} == {1, 2}
    for worker in setup.pool.workers.values():
        assert worker.channel in setup.reactor.readers
        assert not worker.ready


# -- connections


def test_connection_waits_for_a_ready_worker(setup: Setup) -> None:
    """A connection waits until a worker says ready, then goes to it."""
    setup.start()
    accepted = FakeAccepted()
    setup.pool.hand("imap4", accepted)  # type: ignore[arg-type]
    assert len(setup.pool.waiting) == 1
    assert setup.channel(1).sent == [] and setup.channel(2).sent == []
    setup.ready(2)
    assert len(setup.pool.waiting) == 0
    assert setup.channel(1).sent == []
    [(message, descriptors)] = setup.channel(2).sent
    assert message["op"] == "accept" and message["listener"] == "imap4"
    assert descriptors == [accepted.descriptor]
    assert setup.worker(2).connections == {message["id"]: accepted}


def test_waiting_connection_expires(setup: Setup) -> None:
    """A connection held longer than WAITING_SECONDS is closed."""
    setup.start()
    old, new = FakeAccepted(), FakeAccepted()
    setup.pool.hand("imap4", old)  # type: ignore[arg-type]
    setup.reactor.advance(WAITING_SECONDS + 1)
    setup.pool.hand("imap4", new)  # type: ignore[arg-type]
    assert old.lost == 1
    assert new.lost == 0
    assert [a for _, _, a in setup.pool.waiting] == [new]


def test_connection_goes_to_least_busy_worker(setup: Setup) -> None:
    """With two ready workers, the one serving fewer connections gets the next."""
    setup.start()
    setup.ready(1, 2)
    first, second, third = FakeAccepted(), FakeAccepted(), FakeAccepted()
    setup.pool.hand("imap4", first)  # type: ignore[arg-type]
    setup.pool.hand("pop3", second)  # type: ignore[arg-type]
    assert len(setup.worker(1).connections) == 1
    assert len(setup.worker(2).connections) == 1
    busy = 1 if second in setup.worker(1).connections.values() else 2
    idle = 3 - busy
    setup.worker(busy).connections[999] = FakeAccepted()  # type: ignore[assignment]
    setup.pool.hand("imap4", third)  # type: ignore[arg-type]
    assert third in setup.worker(idle).connections.values()


def test_accept_message_format(setup: Setup) -> None:
    """The accept message carries op, id and listener, with one descriptor."""
    setup.start()
    setup.ready(1)
    accepted = FakeAccepted()
    setup.pool.hand("pop3", accepted)  # type: ignore[arg-type]
    [(message, descriptors)] = setup.channel(1).sent
    assert set(message) == {"op", "id", "listener"}
    assert message["op"] == "accept"
    assert isinstance(message["id"], int)
    assert message["listener"] == "pop3"
    assert descriptors == [accepted.descriptor]
    assert accepted.detached == 1


def test_closed_message_finishes_connection(setup: Setup) -> None:
    """{"op": "closed", "id": n} finishes that connection, once."""
    setup.start()
    setup.ready(1)
    accepted, other = FakeAccepted(), FakeAccepted()
    setup.pool.hand("imap4", accepted)  # type: ignore[arg-type]
    setup.pool.hand("imap4", other)  # type: ignore[arg-type]
    ident = setup.channel(1).messages()[0]["id"]
    worker = setup.worker(1)
    setup.pool.received(worker, {"op": "closed", "id": ident}, [])
    setup.pool.received(worker, {"op": "closed", "id": ident}, [])
    setup.pool.received(worker, {"op": "closed", "id": "x"}, [])
    assert accepted.finished == 1
    assert other.finished == 0
    assert list(worker.connections.values()) == [other]


# -- throttle


def test_throttle_message_applied_and_forwarded(setup: Setup) -> None:
    """A throttle message counts here and goes to the other workers only."""
    setup.start()
    setup.ready(1, 2)
    setup.channel(1).sent.clear()
    setup.channel(2).sent.clear()
    message = {"op": "throttle", "kind": "failed", "account": "a@b", "address": "192.0.2.9"}
    assert not setup.throttle.locked("a@b", FLOW)
    for _ in range(3):
        setup.pool.received(setup.worker(1), dict(message), [])
    assert setup.throttle.locked("a@b", FLOW)
    assert setup.throttle.delay("192.0.2.9", {"FailedLoginsPerAddress": ["1", "60s"]}) > 0
    assert setup.channel(1).sent == []
    assert setup.channel(2).messages() == [message] * 3


def test_share_tells_every_worker(setup: Setup) -> None:
    """share sends the throttle message to every ready worker; one not
    ready yet gets the windows when it is instead."""
    setup.start()
    setup.ready(1)
    setup.pool.share("succeeded", "a@b", None)
    expected = {"op": "throttle", "kind": "succeeded", "account": "a@b", "address": None}
    assert setup.channel(1).messages() == [expected]
    assert setup.channel(2).messages() == []


def test_add_worker_pool_shares_throttle() -> None:
    """add_worker_pool makes the throttle share with the pool; 0 workers makes none."""
    reactor = PoolReactor()
    throttle = LoginThrottle()
    options = {
        "workers": 2,
        "threads": 4,
        "pop3-timeout": 600,
        "max-message": 1000,
        "directory-stale-after": 5,
    }
    assert (
        add_worker_pool(
            {**options, "workers": 0},
            reactor,
            MultiService(),
            "/b",
            throttle,
            LiveSessions(zero),
            1,
        )
        is None
    )
    assert throttle.share is None
    pool = add_worker_pool(options, reactor, MultiService(), "/b", throttle, LiveSessions(zero), 1)
    assert pool is not None
    assert throttle.share == pool.share
    assert pool.count == 2
    assert pool.arguments[:2] == ["--base=/b", "--threads=4"]


# -- sessions


def test_session_messages_add_and_remove_entries(setup: Setup) -> None:
    """session adds an entry to the live sessions; session-end removes it."""
    setup.start()
    worker = setup.worker(1, 8)
    setup.pool.received(worker, {"op": "session", "key": 1, "entry": asdict(entry())}, [])
    setup.pool.received(
        worker, {"op": "session", "key": 2, "entry": asdict(entry(session="s2"))}, []
    )
    assert list(setup.sessions) == [entry(), entry(session="s2")]
    setup.pool.received(worker, {"op": "session-end", "key": 1}, [])
    assert list(setup.sessions) == [entry(session="s2")]
    setup.pool.received(worker, {"op": "session-end", "key": 1}, [])
    assert len(setup.sessions) == 1


@pytest.mark.parametrize(
    "message",
    [
        {"op": "session", "key": 1},
        {"op": "session", "key": 1, "entry": "not a dict"},
        {"op": "session", "key": 1, "entry": {"account": "a@b"}},
        {"op": "session", "key": 1, "entry": {**asdict(entry()), "extra": 1}},
    ],
)
def test_malformed_session_ignored(setup: Setup, message: dict[str, Any]) -> None:
    """A session message without a usable entry adds nothing."""
    setup.start()
    setup.pool.received(setup.worker(1), message, [])
    assert len(setup.sessions) == 0
    assert setup.worker(1).sessions == {}


def test_session_with_non_text_account_ignored(setup: Setup) -> None:
    """A session entry whose account is not text is ignored, and end() still works."""
    setup.start()
    bad = {**asdict(entry()), "account": None}
    setup.pool.received(setup.worker(1, 8), {"op": "session", "key": 1, "entry": bad}, [])
    assert setup.pool.end("company.com", "info", "bye") == 0
    assert len(setup.sessions) == 0


def test_end_counts_sessions_and_kicks_only_their_workers(setup: Setup) -> None:
    """end counts sessions without case and kicks only workers having some."""
    setup.start()
    one, two = setup.worker(1, 8), setup.worker(2, 8)
    setup.pool.received(one, {"op": "session", "key": 1, "entry": asdict(entry())}, [])
    setup.pool.received(
        one, {"op": "session", "key": 2, "entry": asdict(entry("Info@Company.COM", "s2"))}, []
    )
    setup.pool.received(
        two, {"op": "session", "key": 1, "entry": asdict(entry("other@company.com"))}, []
    )
    assert setup.pool.end("company.com", "INFO", "bye") == 2
    assert setup.channel(1).messages() == [
        {"op": "kick", "domain": "company.com", "name": "INFO", "reason": "bye"}
    ]
    assert setup.channel(2).messages() == []
    assert setup.pool.end("company.com", "nobody", "bye") == 0


def test_every_process_adds_both_counts(setup: Setup) -> None:
    """EveryProcess.end ends here and in the workers and sums the counts."""

    class Registry:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str, str]] = []

        def end(self, domain: str, name: str, reason: str) -> int:
            self.calls.append((domain, name, reason))
            return 3

    setup.start()
    setup.pool.received(
        setup.worker(1, 8), {"op": "session", "key": 1, "entry": asdict(entry())}, []
    )
    registry = Registry()
    assert EveryProcess(registry, setup.pool).end("company.com", "info", "bye") == 4
    assert registry.calls == [("company.com", "info", "bye")]


# -- ends and restarts


def test_gone_finishes_forgets_and_restarts(setup: Setup) -> None:
    """An ended worker's connections finish, sessions go; it is respawned."""
    setup.start()
    setup.ready(1)
    setup.reactor.advance(QUICK_END + 1)
    worker = setup.worker(1, 8)
    channel = setup.channel(1)
    accepted = FakeAccepted()
    setup.pool.hand("imap4", accepted)  # type: ignore[arg-type]
    setup.pool.received(worker, {"op": "session", "key": 1, "entry": asdict(entry())}, [])
    worker.processEnded(Failure(ProcessTerminated(exitCode=1)))
    assert accepted.finished == 1
    assert len(setup.sessions) == 0
    assert channel.closed
    assert worker.ended.called
    assert 1 not in setup.pool.workers
    assert len(setup.reactor.spawned) == 2
    setup.reactor.advance(RESTART_DELAY - 0.01)
    assert len(setup.reactor.spawned) == 2
    setup.reactor.advance(0.01)
    assert len(setup.reactor.spawned) == 3
    assert setup.pool.workers[1] is not worker
    assert setup.reactor.spawned[-1]["protocol"] is setup.pool.workers[1]


def test_gone_while_stopped_does_not_restart(setup: Setup) -> None:
    """A worker ending after the pool stopped is not spawned again."""
    setup.start()
    setup.pool.stopService()
    for worker in list(setup.pool.workers.values()):
        worker.processEnded(Failure(ProcessDone(0)))
    setup.reactor.advance(100)
    assert len(setup.reactor.spawned) == 2
    assert setup.pool.workers == {}


def test_quick_ends_double_the_delay(setup: Setup) -> None:
    """A worker ending soon after it started twice waits twice as long the second time."""
    setup.start()
    setup.pool.workers[1].processEnded(Failure(ProcessTerminated(exitCode=1)))
    first = [call.getTime() for call in setup.reactor.getDelayedCalls()]
    assert first == [RESTART_DELAY * 2]
    setup.reactor.advance(RESTART_DELAY * 2)
    assert len(setup.reactor.spawned) == 3
    fake(setup.pool.workers[1])
    setup.pool.workers[1].processEnded(Failure(ProcessTerminated(exitCode=1)))
    setup.reactor.advance(RESTART_DELAY * 4 - 0.01)
    assert len(setup.reactor.spawned) == 3
    setup.reactor.advance(0.01)
    assert len(setup.reactor.spawned) == 4


def test_channel_lost_kills_live_worker(setup: Setup) -> None:
    """A worker whose channel broke is killed unless it ends within
    CHANNEL_GRACE; one that ended already is not signalled."""
    setup.start()
    one, two = setup.worker(1), setup.worker(2)
    two.processEnded(Failure(ProcessDone(0)))
    setup.pool.channel_lost(one)
    setup.pool.channel_lost(two)
    transports = [s["transport"] for s in setup.reactor.spawned]
    assert transports[0].signals == []
    setup.reactor.advance(CHANNEL_GRACE)
    assert transports[0].signals == ["KILL"]
    assert transports[1].signals == []


def test_stop_tells_each_worker_and_fires_when_all_ended(setup: Setup) -> None:
    """stopService says stop on each worker's channel (no signal: workers
    ignore those a process group gets) and fires when all ended, no KILL."""
    setup.start()
    transports = [s["transport"] for s in setup.reactor.spawned]
    done = setup.pool.stopService()
    assert setup.channel(1).messages()[-1] == {"op": "stop"}
    assert setup.channel(2).messages()[-1] == {"op": "stop"}
    setup.worker(1).processEnded(Failure(ProcessDone(0)))
    assert not done.called
    setup.worker(2).processEnded(Failure(ProcessDone(0)))
    assert done.called
    setup.reactor.advance(STOP_GRACE + 1)
    assert [t.signals for t in transports] == [[], []]


def test_stop_kills_after_grace(setup: Setup) -> None:
    """Workers still running STOP_GRACE seconds after stopService are killed."""
    setup.start()
    transports = [s["transport"] for s in setup.reactor.spawned]
    done = setup.pool.stopService()
    setup.worker(1).processEnded(Failure(ProcessDone(0)))
    setup.reactor.advance(STOP_GRACE - 0.01)
    assert transports[1].signals == []
    setup.reactor.advance(0.01)
    assert transports[0].signals == []
    assert transports[1].signals == ["KILL"]
    assert not done.called
    setup.worker(2).processEnded(Failure(ProcessTerminated(signal=9)))
    assert done.called


def test_stop_kills_a_worker_it_cannot_tell(setup: Setup) -> None:
    """A worker whose channel is closed is killed at stop, not waited for."""
    setup.start()
    setup.worker(1).channel = None
    setup.pool.stopService()
    assert setup.reactor.spawned[0]["transport"].signals == ["KILL"]
    assert setup.reactor.spawned[1]["transport"].signals == []


def test_stop_closes_waiting_connections(setup: Setup) -> None:
    """stopService closes the connections no worker took yet."""
    setup.start()
    accepted = FakeAccepted()
    setup.pool.hand("imap4", accepted)  # type: ignore[arg-type]
    setup.pool.stopService()
    assert accepted.lost == 1
    assert not setup.pool.waiting


# -- log


def test_logged_publishes_event_with_worker_number(setup: Setup) -> None:
    """A JSON line on a worker's output is published with its worker number."""
    setup.start()
    line = eventAsJSON({"log_format": "hello {who}", "who": "world", "log_level": None})
    worker = setup.worker(2)
    worker.outReceived(line[:10].encode())
    assert setup.published == []
    worker.outReceived(line[10:].encode() + b"\n")
    [event] = setup.published
    assert event["worker"] == 2
    assert event["who"] == "world"
    assert event["log_format"] == "hello {who}"


def test_non_json_line_is_complained(setup: Setup) -> None:
    """A line on the output that is not JSON is logged as the worker's complaint."""
    setup.start()
    with capturedLogs() as events:
        setup.worker(1).outReceived(b"not json at all\n")
    assert setup.published == []
    assert any(e.get("line") == "not json at all" and e.get("number") == 1 for e in events), events


def test_error_output_logged_line_by_line(setup: Setup) -> None:
    """What a worker writes on standard error is logged one line at a time."""
    setup.start()
    with capturedLogs() as events:
        setup.worker(1).errReceived(b"Traceback\n  line two\npartial")
    assert [e["line"] for e in events if "line" in e] == ["Traceback", "  line two"]


def test_lines_split_across_feeds_and_flush_long_lines() -> None:
    """_Lines joins feeds, skips blank lines, flushes lines past MAX_LINE."""
    got: list[bytes] = []
    lines = _Lines(got.append)
    lines.feed(b"ab")
    lines.feed(b"c\n\n  \nde")
    assert got == [b"abc"]
    lines.feed(b"f\ng")
    assert got == [b"abc", b"def"]
    lines.feed(b"x" * MAX_LINE)
    assert got[-1] == b"g" + b"x" * MAX_LINE
    lines.feed(b"y\n")
    assert got[-1] == b"y"


# -- messages


def test_received_closes_descriptors(setup: Setup) -> None:
    """Descriptors a worker sends are closed."""
    setup.start()
    read_end, write_end = os.pipe()
    setup.pool.received(setup.worker(1), {"op": "ready"}, [read_end, write_end])
    assert closed(read_end) and closed(write_end)
    assert setup.worker(1).ready


def test_unknown_op_logged_and_ignored(setup: Setup) -> None:
    """An unknown op is logged and changes nothing."""
    setup.start()
    with capturedLogs() as events:
        setup.pool.received(setup.worker(1), {"op": "bogus"}, [])
    assert any(e.get("op") == "bogus" for e in events)
    assert not setup.worker(1).ready
    assert setup.channel(1).sent == [] and setup.channel(2).sent == []


def test_too_many_waiting_closed(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond MAX_WAITING held connections, a new one is closed at once."""
    monkeypatch.setattr("communigate.workers.pool.MAX_WAITING", 1)
    setup.start()
    held, refused = FakeAccepted(), FakeAccepted()
    setup.pool.hand("imap4", held)  # type: ignore[arg-type]
    setup.pool.hand("imap4", refused)  # type: ignore[arg-type]
    assert refused.lost == 1 and held.lost == 0
    assert len(setup.pool.waiting) == 1


def test_long_running_worker_resets_delay(setup: Setup) -> None:
    """A worker that ran past QUICK_END restarts after RESTART_DELAY again."""
    setup.start()
    setup.pool.workers[1].processEnded(Failure(ProcessTerminated(exitCode=1)))
    setup.reactor.advance(RESTART_DELAY * 2)
    fake(setup.pool.workers[1])
    setup.reactor.advance(QUICK_END + 1)
    setup.pool.workers[1].processEnded(Failure(ProcessTerminated(exitCode=1)))
    assert [c.getTime() - setup.reactor.seconds() for c in setup.reactor.getDelayedCalls()] == [
        RESTART_DELAY
    ]


def test_channel_lost_worker_gets_no_more_connections(setup: Setup) -> None:
    """A worker whose channel broke is no longer handed connections."""
    setup.start()
    setup.ready(1, 2)
    setup.pool.channel_lost(setup.worker(1))
    for _ in range(3):
        setup.pool.hand("imap4", FakeAccepted())  # type: ignore[arg-type]
    assert setup.channel(1).sent == []
    assert len(setup.channel(2).sent) == 3


@implementer(IActivityObserver)
class Counted:
    """An activity observer keeping what it is told (as the metrics)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def login(self, event: LoginEvent) -> None:
        self.seen.append(("login", event))

    def opened(self, protocol: str) -> None:
        self.seen.append(("opened", protocol))

    def logout(self, event: LogoutEvent) -> None:
        self.seen.append(("logout", event))

    def lockout(self, event: LockoutEvent) -> None:
        self.seen.append(("lockout", event))


def login_event() -> LoginEvent:
    return LoginEvent(
        "s1", "imap4", "192.0.2.1", 1000, "127.0.0.1", 143, False, None,
        "info", "info@company.com", "company.com", "LOGIN", "ok",
    )  # fmt: skip


def test_worker_activity_reaches_the_metrics(setup: Setup) -> None:
    """A worker's logins, sessions, logouts, lockouts and handshakes are
    counted here as the server's own."""
    counted, handshakes = Counted(), []
    setup.pool.activity = counted
    setup.pool.handshake = lambda protocol: lambda kind: handshakes.append((protocol, kind))
    setup.start()
    one = setup.worker(1)
    login = login_event()
    logout = LogoutEvent("s1", "imap4", "info@company.com", 1.5, 10, 20)
    lockout = LockoutEvent("s1", "imap4", "info@company.com", "company.com", "192.0.2.1")
    for message in (
        {"op": "activity", "kind": "login", "event": asdict(login)},
        {"op": "activity", "kind": "opened", "protocol": "imap4"},
        {"op": "activity", "kind": "logout", "event": asdict(logout)},
        {"op": "activity", "kind": "lockout", "event": asdict(lockout)},
        {"op": "activity", "kind": "handshake", "protocol": "imaps", "tls": "implicit"},
    ):
        setup.pool.received(one, message, [])
    assert counted.seen == [
        ("login", login),
        ("opened", "imap4"),
        ("logout", logout),
        ("lockout", lockout),
    ]
    assert handshakes == [("imaps", "implicit")]


def test_worker_activity_malformed_or_unmatched_is_ignored(setup: Setup) -> None:
    """An event with wrong fields, or a logout without a session opened by
    that worker, counts nothing."""
    counted = Counted()
    setup.pool.activity = counted
    setup.start()
    one = setup.worker(1)
    logout = asdict(LogoutEvent("s1", "imap4", "a@b", 1.0))
    setup.pool.received(one, {"op": "activity", "kind": "logout", "event": logout}, [])
    setup.pool.received(one, {"op": "activity", "kind": "login", "event": {"x": 1}}, [])
    setup.pool.received(one, {"op": "activity", "kind": "login", "event": "no"}, [])
    setup.pool.received(one, {"op": "activity", "kind": "other", "event": logout}, [])
    assert counted.seen == []


def test_ended_worker_sessions_leave_the_metrics(setup: Setup) -> None:
    """A worker that ends takes its open sessions out of the metrics' count."""
    counted = Counted()
    setup.pool.activity = counted
    setup.start()
    one = setup.worker(1)
    for _ in range(2):
        setup.pool.received(one, {"op": "activity", "kind": "opened", "protocol": "pop3"}, [])
    one.processEnded(Failure(ProcessTerminated(signal=9)))
    logouts = [event for kind, event in counted.seen if kind == "logout"]
    assert [event.protocol for event in logouts] == ["pop3", "pop3"]
    setup.close()


class Web:
    """Web sessions as the HTTP module's registry lists them."""

    def __init__(self, *sessions: WebSession) -> None:
        self.sessions = list(sessions)

    def __iter__(self) -> Iterator[WebSession]:
        return iter(self.sessions)


def web_session(session_id: str, account: str = "info@company.com") -> WebSession:
    return WebSession(session_id, account, None, lambda: None, 1000.0, 1000.0, lifetime=60.0)


def test_web_sessions_reach_ready_workers(setup: Setup) -> None:
    """A worker gets the web sessions open when it becomes ready, then each
    one opened or closed; a worker not ready yet gets none."""
    setup.pool.web = Web(web_session("1-a"))  # type: ignore[assignment]
    setup.start()
    setup.ready(1)
    setup.pool.web_session("2-b", web_session("2-b", "other@company.com"))
    setup.pool.web_session("1-a", None)
    assert setup.channel(1).messages() == [
        {"op": "web-session", "id": "1-a", "account": "info@company.com", "ends": 1060.0},
        {"op": "web-session", "id": "2-b", "account": "other@company.com", "ends": 1060.0},
        {"op": "web-session-end", "id": "1-a"},
    ]
    assert setup.channel(2).messages() == []


def test_a_worker_behind_gets_no_connections(setup: Setup) -> None:
    """A worker whose channel holds MAX_QUEUED unsent messages is given no
    more connections while another can take them."""
    setup.start()
    setup.ready(1, 2)
    setup.channel(1).waiting = MAX_QUEUED
    for _ in range(3):
        setup.pool.hand("imap4", FakeAccepted())  # type: ignore[arg-type]
    assert setup.channel(1).messages() == []
    assert len(setup.channel(2).messages()) == 3


def test_held_connections_expire_without_new_ones(setup: Setup) -> None:
    """A connection held while no worker is ready is closed after
    WAITING_SECONDS even when nothing else happens."""
    setup.start()
    held = FakeAccepted()
    setup.pool.hand("imap4", held)  # type: ignore[arg-type]
    setup.reactor.advance(WAITING_SECONDS - 1)
    assert held.lost == 0
    setup.reactor.advance(2)
    assert held.lost == 1
    assert not setup.pool.waiting


def test_a_starting_worker_learns_the_failures_counted_so_far(setup: Setup) -> None:
    """A worker that becomes ready is given every failure window held
    here, so a restart does not lift a lockout."""
    for _ in range(3):
        setup.throttle.failed("locked@company.com", "192.0.2.9")
    setup.start()
    setup.ready(1)
    [message] = [m for m in setup.channel(1).messages() if m["op"] == "throttle-windows"]
    copy = LoginThrottle(setup.reactor.seconds)
    for kind, key, times in message["windows"]:
        copy.merge(kind, key, times)
    assert copy.locked("locked@company.com", FLOW)
    assert copy.delay("192.0.2.9", {"FailedLoginsPerAddress": ["2", "1m"]}) > 0


def test_failure_windows_are_split_into_packets(setup: Setup) -> None:
    """Many failure windows go in several messages, each within a packet."""
    for number in range(3000):
        setup.throttle.failed(f"user{number}@company.com", None)
    setup.start()
    setup.ready(1)
    sent = [m for m in setup.channel(1).messages() if m["op"] == "throttle-windows"]
    assert len(sent) > 1
    assert sum(len(m["windows"]) for m in sent) == 3000
    assert all(len(encode(m)) <= MAX_PACKET for m in sent)


def test_channel_closing_at_stop_is_no_error(setup: Setup) -> None:
    """Workers closing their channels while the server stops are neither
    logged as errors nor killed."""
    setup.start()
    setup.pool.stopService()
    with capturedLogs() as events:
        setup.pool.channel_lost(setup.worker(1))
    assert setup.reactor.spawned[0]["transport"].signals == []
    assert not events


def test_a_session_key_given_twice_replaces_the_entry(setup: Setup) -> None:
    """A session reported again under the same key replaces the listed entry."""
    setup.start()
    one = setup.worker(1, 8)
    setup.pool.received(one, {"op": "session", "key": 1, "entry": asdict(entry())}, [])
    again = asdict(entry("other@company.com", "s9"))
    setup.pool.received(one, {"op": "session", "key": 1, "entry": again}, [])
    assert [e.account for e in setup.sessions] == ["other@company.com"]


def test_a_worker_ending_after_its_channel_is_not_killed_or_blamed(setup: Setup) -> None:
    """A worker whose channel closes as it exits is neither killed nor
    logged as having lost its channel."""
    setup.start()
    one = setup.worker(1)
    with capturedLogs() as events:
        setup.pool.channel_lost(one)
        one.processEnded(Failure(ProcessTerminated(signal=9)))
        setup.reactor.advance(CHANNEL_GRACE)
    assert setup.reactor.spawned[0]["transport"].signals == []
    assert not any("channel closed" in formatEvent(e) for e in events)
    setup.close()


def test_a_worker_reports_no_more_sessions_than_connections(setup: Setup) -> None:
    """Session reports past the connections a worker serves are ignored,
    so a broken worker cannot fill the sessions listing."""
    setup.start()
    one = setup.worker(1, 2)
    for key in range(10):
        fields = asdict(entry(session=f"s{key}"))
        setup.pool.received(one, {"op": "session", "key": key, "entry": fields}, [])
    assert len(setup.sessions) == 3


def test_forwarded_labels_are_the_servers_own(setup: Setup) -> None:
    """Activity with a protocol or label value this server does not use
    counts nothing (each value would make a metric series)."""
    counted, handshakes = Counted(), []
    setup.pool.activity = counted
    setup.pool.handshake = lambda protocol: lambda kind: handshakes.append((protocol, kind))
    setup.start()
    one = setup.worker(1)
    odd = asdict(login_event())
    odd["mechanism"] = "X" * 1000
    for message in (
        {"op": "activity", "kind": "opened", "protocol": "made-up"},
        {"op": "activity", "kind": "handshake", "protocol": "imaps", "tls": "made-up"},
        {"op": "activity", "kind": "login", "event": {**asdict(login_event()), "protocol": "x"}},
        {"op": "activity", "kind": "login", "event": odd},
    ):
        setup.pool.received(one, message, [])
    assert counted.seen == [] and handshakes == []


def test_a_second_ready_is_ignored(setup: Setup) -> None:
    """A worker saying ready twice is not given the failure windows twice."""
    setup.throttle.failed("a@company.com", None)
    setup.start()
    setup.ready(1)
    setup.ready(1)
    sent = [m for m in setup.channel(1).messages() if m["op"] == "throttle-windows"]
    assert len(sent) == 1


def test_a_worker_that_cannot_be_started_is_tried_again(setup: Setup) -> None:
    """A failed start (no descriptors, no process) is logged and tried
    again later, the slot never lost."""
    calls = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise OSError(24, "Too many open files")

    setup.start()
    real = setup.reactor.spawnProcess
    setup.reactor.spawnProcess = failing  # type: ignore[method-assign]
    with capturedLogs() as events:
        setup.worker(1).processEnded(Failure(ProcessTerminated(signal=9)))
        setup.reactor.advance(MAX_RESTART_DELAY)
    assert calls and 1 not in setup.pool.workers
    assert any("could not be started" in formatEvent(e) for e in events)
    setup.reactor.spawnProcess = real  # type: ignore[method-assign]
    setup.reactor.advance(MAX_RESTART_DELAY)
    assert 1 in setup.pool.workers
    setup.close()


def test_held_connections_go_as_soon_as_a_backlog_drains(setup: Setup) -> None:
    """Connections held because every worker was behind are handed over
    when a worker's backlog has been sent, not at the expiry."""
    setup.start()
    setup.ready(1)
    setup.channel(1).waiting = MAX_QUEUED
    held = FakeAccepted()
    setup.pool.hand("imap4", held)  # type: ignore[arg-type]
    assert setup.pool.waiting
    setup.channel(1).waiting = 0
    setup.pool._drained()
    setup.reactor.advance(0)
    assert not setup.pool.waiting and held.detached == 1


def test_describe_says_what_status_shows(setup: Setup) -> None:
    """describe gives each worker's number, pid, state and counts."""
    setup.start()
    setup.ready(2)
    setup.worker(2, 3)
    described = setup.pool.describe()
    assert [(d["number"], d["ready"], d["connections"]) for d in described] == [
        (1, False, 0),
        (2, True, 3),
    ]
    setup.pool.channel_lost(setup.worker(2))
    assert [d["ending"] for d in setup.pool.describe()] == [False, True]
    assert all(d["started"] == 0.0 for d in described)
