"""The worker processes of the server, seen from the server.

:class:`WorkerPool` starts ``--workers`` processes
(:mod:`communigate.workers.child`), each with a :class:`~communigate.
workers.channel.Channel` on its descriptor 3, and starts one again when
it ends.  It gives every connection a TCP listener of IMAP or POP3 accepts
(:mod:`communigate.workers.handoff`) to the ready worker serving the fewest,
and keeps what must be one for all processes:

* **connections per address**: the guard here counts a connection until
  its worker says it closed (or the worker is gone);
* **failed logins** (account lockout, per-address slowing): a failure or
  success counted by one process is passed to every other
  (:attr:`~communigate.portal.policy.LoginThrottle.share`);
* **the sessions listing**: a worker reports each logged-in session and its
  end, so ``communigate sessions`` and ``status`` show them all, and
  ``communigate kick`` reaches them (:meth:`WorkerPool.end`);
* **the log**: a worker writes its events as JSON lines on its standard
  output, and they are logged here as if made here (with ``worker``, its
  number); what it writes on standard error is logged line by line;
* **the metrics**: a worker's logins, sessions, lockouts and TLS
  handshakes are counted by ``--metrics`` here (:attr:`WorkerPool.activity`);
* **web sessions** (for SESSIONID): each worker is told of every session
  the HTTP module opens and closes (:meth:`WorkerPool.web_session`).

Mailbox changes need nothing more: every process learns of the others'
through inotify, as it does of the command line's.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

from twisted.application.service import IServiceCollection, Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from communigate.control.sessions import LiveSessions, SessionEntry
from communigate.observe.events import IActivityObserver, LockoutEvent, LoginEvent, LogoutEvent
from communigate.portal.policy import LoginThrottle
from communigate.protocols.http.sessions import WebSession, WebSessions
from communigate.workers.channel import Channel, Message, socket_pair
from communigate.workers.handoff import Accepted, IHandoff

#: Seconds before a worker that ended is started again; doubled (up to
#: :data:`MAX_RESTART_DELAY`) while workers end within :data:`QUICK_END`.
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
QUICK_END = 10.0
#: Seconds a stopping worker has to finish before it is killed.
STOP_GRACE = 10.0
#: Seconds a worker whose channel closed has to end before it is killed.
CHANNEL_GRACE = 2.0
#: Connections held while no worker is ready (more are closed), and how
#: long one is held.
MAX_WAITING = 1024
WAITING_SECONDS = 30.0
#: Longest line a worker may write on its standard output or error.
MAX_LINE = 256 * 1024
#: Messages a worker's channel may hold unsent before it is given no more
#: connections (each holds a client's descriptor here).
MAX_QUEUED = 256
#: Failure times of one window, and characters of its key, a starting
#: worker is given; and the bytes of them one packet carries at most.
MAX_TIMES = 128
MAX_KEY = 1024
PACKET_BUDGET = 48 * 1024
#: The module a worker process runs (``python -m``).
CHILD_MODULE = "communigate.workers"
#: The descriptor a worker finds its channel on.
CHANNEL_FD = 3


class _Lines:
    """Lines of a byte stream, each at most :data:`MAX_LINE` long."""

    def __init__(self, line: Callable[[bytes], None]) -> None:
        self.line = line
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        if len(self._buffer) > MAX_LINE:
            lines.append(self._buffer)
            self._buffer = b""
        for line in lines:
            if line.strip():
                self.line(line)


class WorkerProcess(ProcessProtocol):
    """One worker: its process, its channel, and the connections and
    sessions it serves."""

    def __init__(self, pool: WorkerPool, number: int, started: float) -> None:
        self.pool = pool
        self.number = number
        self.started = started
        self.channel: Channel | None = None
        #: The worker takes connections now; it said so once.
        self.ready = False
        self.said_ready = False
        self.connections: dict[int, Accepted] = {}
        #: Its logged-in sessions: the worker's key → (account, forget).
        self.sessions: dict[int, tuple[str, Callable[[], None]]] = {}
        #: Its sessions open per protocol, as the metrics counted them.
        self.counted: Counter[str] = Counter()
        self.ended: Deferred[None] = Deferred()
        self._out = _Lines(partial(pool.logged, self))
        self._err = _Lines(partial(pool.complained, self))

    def outReceived(self, data: bytes) -> None:
        """Log events, one JSON object a line."""
        self._out.feed(data)

    def errReceived(self, data: bytes) -> None:
        """Whatever the worker could not log."""
        self._err.feed(data)

    def processEnded(self, reason: Failure) -> None:
        """The process is gone."""
        self.pool.gone(self, reason)


@implementer(IHandoff)
class WorkerPool(Service):
    """``count`` worker processes serving the connections handed to them."""

    log = Logger()

    def __init__(
        self,
        count: int,
        reactor: Any,
        arguments: list[str],
        throttle: LoginThrottle,
        sessions: LiveSessions,
        executable: str = sys.executable,
        environment: Mapping[str, str] | None = None,
        publish: Callable[[dict[str, Any]], None] = globalLogPublisher,
    ) -> None:
        self.count = count
        self.reactor = reactor
        self.arguments = arguments
        self.throttle = throttle
        self.sessions = sessions
        self.executable = executable
        self.environment = dict(os.environ if environment is None else environment)
        self.publish = publish
        self.workers: dict[int, WorkerProcess] = {}
        self.waiting: deque[tuple[float, str, Accepted]] = deque()
        self._ids = itertools.count(1)
        self._delay = RESTART_DELAY
        self._restarts: dict[int, Any] = {}
        self._expiry: Any = None
        #: Where the workers' logins, sessions and lockouts are counted
        #: (the metrics), and the TLS handshakes of a protocol.
        self.activity: IActivityObserver | None = None
        self.handshake: Callable[[str], Callable[[str], None]] | None = None
        #: The HTTP module's web sessions, copied to every worker.
        self.web: WebSessions | None = None

    # -- processes

    def startService(self) -> None:
        """Start every worker."""
        super().startService()
        for number in range(1, self.count + 1):
            self.spawn(number)

    def spawn(self, number: int) -> WorkerProcess | None:
        """Start worker ``number``; if that fails (no descriptors, no
        memory for a process), try again later."""
        self._restarts.pop(number, None)
        try:
            return self._spawn(number)
        except Exception as error:
            self._delay = min(self._delay * 2, MAX_RESTART_DELAY)
            self.log.error(
                "worker {number} could not be started ({error}); trying again in {delay:.1f}s",
                number=number,
                error=error,
                delay=self._delay,
            )
            if self.running:
                self._restarts[number] = self.reactor.callLater(self._delay, self.spawn, number)
            return None

    def _spawn(self, number: int) -> WorkerProcess:
        ours, theirs = socket_pair()
        worker = WorkerProcess(self, number, self.reactor.seconds())
        worker.channel = Channel(
            ours,
            self.reactor,
            partial(self.received, worker),
            partial(self.channel_lost, worker),
            name=f"worker {number}",
        )
        worker.channel.drained = self._drained
        try:
            self.reactor.spawnProcess(
                worker,
                self.executable,
                [self.executable, "-m", CHILD_MODULE, *self.arguments],
                env=self.environment,
                childFDs={0: "w", 1: "r", 2: "r", CHANNEL_FD: theirs.fileno()},
            )
        except BaseException:
            worker.channel.close()
            raise
        finally:
            theirs.close()
        worker.channel.start()
        self.workers[number] = worker
        return worker

    def gone(self, worker: WorkerProcess, reason: Failure) -> None:
        """Worker ``worker`` ended: its connections and sessions end here
        too; while the server runs, it is started again."""
        if worker.channel is not None:
            worker.channel.close()
        for accepted in worker.connections.values():
            accepted.finish()
        worker.connections.clear()
        for _, forget in worker.sessions.values():
            forget()
        worker.sessions.clear()
        if self.activity is not None:
            for protocol, count in worker.counted.items():
                for _ in range(count):
                    self.activity.logout(LogoutEvent(None, protocol, None, None))
        worker.counted.clear()
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        worker.ended.callback(None)
        if not self.running:
            return
        code = reason.value.exitCode if isinstance(reason.value, ProcessTerminated) else 0
        signal = getattr(reason.value, "signal", None)
        if self.reactor.seconds() - worker.started < QUICK_END:
            self._delay = min(self._delay * 2, MAX_RESTART_DELAY)
        else:
            self._delay = RESTART_DELAY
        self.log.error(
            "worker {number} ended ({how}); starting it again in {delay:.1f}s",
            number=worker.number,
            how=f"signal {signal}" if signal else f"exit status {code}",
            delay=self._delay,
        )
        self._restarts[worker.number] = self.reactor.callLater(
            self._delay, self.spawn, worker.number
        )

    def channel_lost(self, worker: WorkerProcess) -> None:
        """The channel broke while the process lives on: end the process
        (it is started again when it is gone)."""
        worker.ready = False
        if worker.ended.called or not self.running:
            # It is ending (a stop closes the channels first).
            return
        # A process that exits closes its channel first: give it a moment.
        self.reactor.callLater(CHANNEL_GRACE, self._without_channel, worker)

    def _without_channel(self, worker: WorkerProcess) -> None:
        if worker.ended.called or not self.running:
            return
        self.log.error("worker {number}: its channel closed", number=worker.number)
        self._signal(worker, "KILL")

    def stopService(self) -> Deferred[Any]:
        """Tell every worker to finish its sessions' work and end; kill the
        ones still running after :data:`STOP_GRACE` seconds."""
        super().stopService()
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        while self.waiting:
            self.waiting.popleft()[2].loseConnection()
        workers = list(self.workers.values())
        for worker in workers:
            # Told over its channel: a worker ignores the signals a whole
            # process group may get.
            if worker.channel is None or not worker.channel.send({"op": "stop"}):
                self._signal(worker, "KILL")

        def kill_all() -> None:
            for worker in workers:
                self._signal(worker, "KILL")

        kill = self.reactor.callLater(STOP_GRACE, kill_all)
        done: Deferred[Any] = DeferredList([worker.ended for worker in workers])
        done.addBoth(lambda result: kill.cancel() if kill.active() else None)
        return done

    def _signal(self, worker: WorkerProcess, name: str) -> None:
        transport = worker.transport
        if transport is None or worker.ended.called:
            return
        with contextlib.suppress(ProcessExitedAlready, OSError):
            transport.signalProcess(name)

    # -- connections

    def hand(self, listener: str, accepted: Accepted) -> None:
        """Pass ``accepted`` to the ready worker serving the fewest
        connections; without one, hold it a while."""
        ready = [worker for worker in self.workers.values() if self._takes(worker)]
        if not ready:
            self._expire_waiting()
            if len(self.waiting) >= MAX_WAITING:
                self.log.warn("{listener} connection closed: no worker is ready", listener=listener)
                accepted.loseConnection()
                return
            self.waiting.append((self.reactor.seconds(), listener, accepted))
            if self._expiry is None or not self._expiry.active():
                self._expiry = self.reactor.callLater(WAITING_SECONDS, self._hand_waiting)
            return
        worker = min(ready, key=lambda worker: len(worker.connections))
        ident = next(self._ids)
        worker.connections[ident] = accepted
        assert worker.channel is not None
        worker.channel.send(
            {"op": "accept", "id": ident, "listener": listener}, [accepted.detach()]
        )

    def _drained(self) -> None:
        """A worker took what was queued for it: give it what waits (from
        the reactor, not from inside the channel's write)."""
        if self.waiting:
            self.reactor.callLater(0, self._hand_waiting)

    @staticmethod
    def _takes(worker: WorkerProcess) -> bool:
        """Whether ``worker`` may be given a connection now: ready, and not
        behind with what it was sent."""
        channel = worker.channel
        return worker.ready and channel is not None and channel.waiting < MAX_QUEUED

    def _expire_waiting(self) -> None:
        limit = self.reactor.seconds() - WAITING_SECONDS
        while self.waiting and self.waiting[0][0] <= limit:
            self.waiting.popleft()[2].loseConnection()

    def _hand_waiting(self) -> None:
        self._expire_waiting()
        while self.waiting and any(self._takes(worker) for worker in self.workers.values()):
            _, listener, accepted = self.waiting.popleft()
            self.hand(listener, accepted)
        if self.waiting and (self._expiry is None or not self._expiry.active()):
            left = self.waiting[0][0] + WAITING_SECONDS - self.reactor.seconds()
            self._expiry = self.reactor.callLater(max(0.1, left), self._hand_waiting)

    # -- messages

    def received(self, worker: WorkerProcess, message: Message, descriptors: list[int]) -> None:
        """A message from ``worker`` (which never sends descriptors)."""
        for descriptor in descriptors:
            os.close(descriptor)
        handler = _HANDLERS.get(message["op"])
        if handler is None:
            self.log.warn(
                "worker {number}: unknown message {op}", number=worker.number, op=message["op"]
            )
            return
        handler(self, worker, message)

    def _ready(self, worker: WorkerProcess, message: Message) -> None:
        if worker.ready or worker.said_ready:
            return
        worker.ready = worker.said_ready = True
        if worker.channel is not None:
            # What it must know before its first login: the failures
            # counted so far, and the web sessions open.
            for windows in _in_packets(self.throttle.windows()):
                worker.channel.send({"op": "throttle-windows", "windows": windows})
            for session in self.web or ():
                worker.channel.send(_web_session(session.id, session))
        pid = getattr(worker.transport, "pid", None)
        self.log.info("worker {number} (pid {pid}) is serving", number=worker.number, pid=pid)
        self._hand_waiting()

    def _closed(self, worker: WorkerProcess, message: Message) -> None:
        accepted = worker.connections.pop(_int(message.get("id")), None)
        if accepted is not None:
            accepted.finish()

    def _throttle(self, worker: WorkerProcess, message: Message) -> None:
        kind, account, address = throttle_fields(message)
        self.throttle.take(kind, account, address)
        self._tell_workers(kind, account, address, but=worker)

    def _session(self, worker: WorkerProcess, message: Message) -> None:
        fields = message.get("entry")
        key = _int(message.get("key"))
        if not isinstance(fields, dict):
            return
        try:
            entry = SessionEntry(**fields)
        except TypeError:
            return
        if not _well_formed(entry):
            return
        if key not in worker.sessions and len(worker.sessions) > len(worker.connections):
            # A session for every connection it serves, no more.
            return
        earlier = worker.sessions.pop(key, None)
        if earlier is not None:
            earlier[1]()
        worker.sessions[key] = (entry.account, self.sessions.add(entry))

    def _session_end(self, worker: WorkerProcess, message: Message) -> None:
        found = worker.sessions.pop(_int(message.get("key")), None)
        if found is not None:
            found[1]()

    def _activity(self, worker: WorkerProcess, message: Message) -> None:
        observer, kind = self.activity, message.get("kind")
        protocol = str(message.get("protocol") or "")
        if kind in ("handshake", "opened") and protocol not in MAIL_PROTOCOLS:
            # Label values are this server's own names, never a worker's.
            return
        if kind == "handshake":
            tls = message.get("tls")
            if self.handshake is not None and tls in _TLS_KINDS:
                self.handshake(protocol)(str(tls))
            return
        if observer is None:
            return
        if kind == "opened":
            worker.counted[protocol] += 1
            observer.opened(protocol)
            return
        fields = message.get("event")
        made = _EVENTS.get(str(kind))
        if made is None or not isinstance(fields, dict):
            return
        try:
            event = made(**fields)
        except TypeError:
            return
        if not _labels_known(event):
            return
        if isinstance(event, LogoutEvent):
            if worker.counted[event.protocol] <= 0:
                return
            worker.counted[event.protocol] -= 1
            observer.logout(event)
        elif isinstance(event, LoginEvent):
            observer.login(event)
        elif isinstance(event, LockoutEvent):
            observer.lockout(event)

    def web_session(self, session_id: str, session: WebSession | None) -> None:
        """A web session opened (``session``) or closed (None): tell every
        worker (:attr:`WebSessions.watch`)."""
        message = _web_session(session_id, session)
        for worker in self.workers.values():
            if worker.ready and worker.channel is not None:
                worker.channel.send(message)

    def share(self, kind: str, account: str | None, address: str | None) -> None:
        """A failure or success this process counted: tell every worker."""
        self._tell_workers(kind, account, address)

    def _tell_workers(
        self, kind: str, account: str | None, address: str | None, but: Any = None
    ) -> None:
        message = {"op": "throttle", "kind": kind, "account": account, "address": address}
        for worker in self.workers.values():
            # One not ready yet gets every window when it is.
            if worker is not but and worker.ready and worker.channel is not None:
                worker.channel.send(message)

    def end(self, domain: str, name: str, reason: str) -> int:
        """End the sessions of ``name@domain`` in every worker; how many
        the workers have."""
        account = f"{name}@{domain}".lower()
        ended = 0
        for worker in self.workers.values():
            count = sum(1 for owner, _ in worker.sessions.values() if owner.lower() == account)
            if count and worker.channel is not None:
                worker.channel.send(
                    {"op": "kick", "domain": domain, "name": name, "reason": reason}
                )
                ended += count
        return ended

    def describe(self) -> list[dict[str, object]]:
        """Each worker as ``communigate status`` shows it: its number and
        pid, whether it takes connections, how many it serves and how many
        of them are logged in, and since when it runs."""
        return [
            {
                "number": worker.number,
                "pid": getattr(worker.transport, "pid", None),
                "ready": worker.ready,
                # Said ready once, takes no more: its channel broke.
                "ending": worker.said_ready and not worker.ready,
                "connections": len(worker.connections),
                "sessions": len(worker.sessions),
                "started": worker.started,
            }
            for _, worker in sorted(self.workers.items())
        ]

    # -- log

    def logged(self, worker: WorkerProcess, line: bytes) -> None:
        """One event the worker logged."""
        try:
            event = eventFromJSON(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            self.complained(worker, line)
            return
        if not isinstance(event, dict):
            return
        event["worker"] = worker.number
        self.publish(event)

    def complained(self, worker: WorkerProcess, line: bytes) -> None:
        """A line the worker wrote on its standard error."""
        self.log.error(
            "worker {number}: {line}",
            number=worker.number,
            line=line.decode("utf-8", "replace").rstrip(),
        )


_HANDLERS: dict[str, Callable[[WorkerPool, WorkerProcess, Message], None]] = {
    "ready": WorkerPool._ready,
    "closed": WorkerPool._closed,
    "throttle": WorkerPool._throttle,
    "session": WorkerPool._session,
    "session-end": WorkerPool._session_end,
    "activity": WorkerPool._activity,
}
_EVENTS: dict[str, Callable[..., Any]] = {
    "login": LoginEvent,
    "logout": LogoutEvent,
    "lockout": LockoutEvent,
}


def _in_packets(
    windows: Iterable[tuple[str, str, list[float]]],
) -> Iterator[list[tuple[str, str, list[float]]]]:
    """Failure windows in groups that each fit a packet (the newest
    :data:`MAX_TIMES` times of each)."""
    group: list[tuple[str, str, list[float]]] = []
    size = 0
    for kind, key, times in windows:
        item = (kind, key[:MAX_KEY], times[-MAX_TIMES:])
        cost = len(json.dumps(item[1])) + 24 * len(item[2]) + 32
        if group and size + cost > PACKET_BUDGET:
            yield group
            group, size = [], 0
        group.append(item)
        size += cost
    if group:
        yield group


def _web_session(session_id: str, session: WebSession | None) -> Message:
    if session is None:
        return {"op": "web-session-end", "id": session_id}
    ends = session.started + session.lifetime
    return {"op": "web-session", "id": session_id, "account": session.account, "ends": ends}


#: The protocols of the sessions workers serve (and TLS handshakes).
MAIL_PROTOCOLS = frozenset({"imap4", "imaps", "pop3", "pop3s"})
#: What a forwarded event's metric labels may say.
_TLS_KINDS = frozenset({"implicit", "starttls"})
_SESSION_TYPES: dict[str, tuple[type, ...]] = {
    "session": (str, type(None)),
    "account": (str,),
    "protocol": (str,),
    "remote_host": (str, type(None)),
    "remote_port": (int, type(None)),
    "local_host": (str, type(None)),
    "local_port": (int, type(None)),
    "tls": (bool,),
    "mechanism": (str,),
    "since": (int, float),
}


def _well_formed(entry: SessionEntry) -> bool:
    """Whether each field of a reported session has its type."""
    return all(isinstance(getattr(entry, name), kinds) for name, kinds in _SESSION_TYPES.items())


def _labels_known(event: Any) -> bool:
    """Whether an event's protocol is one workers serve, and its other
    label values are short texts (the metrics make a series of each)."""
    if getattr(event, "protocol", None) not in MAIL_PROTOCOLS:
        return False
    for name in ("domain", "mechanism", "result"):
        value = getattr(event, name, None)
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            return False
    return True


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def throttle_fields(message: Message) -> tuple[str, str | None, str | None]:
    """The kind, account and address of a ``throttle`` message (each
    None, or an empty kind, when it is not text)."""

    def text(name: str) -> str | None:
        value = message.get(name)
        return value if isinstance(value, str) else None

    return text("kind") or "", text("account"), text("address")


class EveryProcess:
    """Ends an account's sessions here and in every worker (what
    ``communigate kick`` asks)."""

    def __init__(self, registry: Any, pool: WorkerPool) -> None:
        self.registry = registry
        self.pool = pool

    def end(self, domain: str, name: str, reason: str) -> int:
        """End them; how many there were."""
        return int(self.registry.end(domain, name, reason)) + self.pool.end(domain, name, reason)


def child_arguments(options: Mapping[str, Any], base: str, width: int) -> list[str]:
    """The options a worker is started with: those of ``options`` its
    login core needs, the base directory ``base``, and ``width`` password
    checks at once."""
    arguments = [
        f"--base={os.path.abspath(base)}",
        f"--threads={options['threads']}",
        f"--hashing-threads={width}",
        f"--pop3-timeout={options['pop3-timeout']}",
        f"--max-message={options['max-message']}",
        f"--directory-stale-after={options['directory-stale-after']}",
    ]
    for name in ("directory", "directory-bind-dn", "directory-password-file"):
        if options.get(name):
            arguments.append(f"--{name}={options[name]}")
    if options.get("directory-starttls"):
        arguments.append("--directory-starttls")
    return arguments


def add_worker_pool(
    options: Mapping[str, Any],
    reactor: Any,
    parent: IServiceCollection,
    base: str,
    throttle: LoginThrottle,
    sessions: LiveSessions,
    width: int,
) -> WorkerPool | None:
    """The pool ``--workers`` asks for (None for 0), under ``parent``; this
    process's login failures are shared with it."""
    count = int(options.get("workers") or 0)
    if count <= 0:
        return None
    pool = WorkerPool(count, reactor, child_arguments(options, base, width), throttle, sessions)
    pool.setName("workers")
    pool.setServiceParent(parent)
    throttle.share = pool.share
    return pool
