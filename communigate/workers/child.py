"""A worker process: serves the IMAP and POP3 connections the server hands it.

The server (:class:`~communigate.workers.pool.WorkerPool`) starts it as
``python -m communigate.workers OPTIONS`` (:mod:`communigate.workers.__main__`) (the options of
``twistd communigate`` its login core needs) with its end of the channel on
descriptor 3.  It builds the same login core and mail factories as the
server (:mod:`communigate.serving`), says ``ready``, and then serves every
connection that comes with an ``accept`` message from its first byte (TLS
included for ``imaps`` and ``pop3s``).  It tells the server when each
connection closes, each login failure or success it counts, and each
logged-in session and its end; it takes the failures other processes
counted, and ``kick`` requests.  Its log events go to standard output as
JSON lines, which the server logs.

It ends when the server says ``stop`` or closes the channel (the server
is gone).  SIGINT and SIGTERM, which a terminal or a supervisor may send
the whole process group, are left to the server, which stops its workers
itself (a SIGKILL still ends one at once; the server starts it again).
"""

from __future__ import annotations

import gc
import itertools
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, BinaryIO, TypeGuard, cast

from twisted.application.service import MultiService
from twisted.internet.main import CONNECTION_DONE
from twisted.logger import ILogObserver, Logger, eventAsJSON, globalLogBeginner
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from communigate.control.sessions import LiveSessions, SessionEntry
from communigate.observe.events import (
    EventLog,
    Fanout,
    IActivityObserver,
    LockoutEvent,
    LoginEvent,
    LogoutEvent,
)
from communigate.observe.logs import message
from communigate.observe.traffic import CountingFactory
from communigate.portal.policy import LoginThrottle
from communigate.protocols.http.sessions import SessionCopies
from communigate.workers.channel import Channel, Message
from communigate.workers.pool import CHANNEL_FD, throttle_fields

_DONE = Failure(CONNECTION_DONE)
#: Characters of a text field of a login event sent to the server.
MAX_TEXT = 256
#: Bytes of one log line sent to the server (a longer one is cut).
MAX_LOG_LINE = 64 * 1024
#: What a cut log line keeps besides its message.
_LOG_KEYS = ("log_level", "log_namespace", "log_time", "log_system")


class ReportedSessions(LiveSessions):
    """The sessions of this worker, each also reported to the server."""

    def __init__(self, clock: Callable[[], float], channel: Channel) -> None:
        super().__init__(clock)
        self.channel = channel
        self._reported = itertools.count(1)

    def add(self, entry: SessionEntry) -> Callable[[], None]:
        """Add ``entry`` here and at the server."""
        forget_here = super().add(entry)
        key = next(self._reported)
        self.channel.send({"op": "session", "key": key, "entry": asdict(entry)})
        done = False

        def forget() -> None:
            nonlocal done
            if done:
                return
            done = True
            forget_here()
            self.channel.send({"op": "session-end", "key": key})

        return forget


class _Reported(ProtocolWrapper):
    """A connection the server handed over; its end is reported."""

    ident = -1

    factory: _ReportingFactory

    def connectionLost(self, reason: Failure = _DONE) -> None:
        self.factory.worker.closed(self.ident)
        super().connectionLost(reason)


class _ReportingFactory(WrappingFactory["_Reported"]):
    protocol = _Reported
    noisy = False

    def __init__(self, wrapped: Any, worker: Worker) -> None:
        super().__init__(wrapped)
        self.worker = worker
        #: The server's id of the connection being adopted, and whether
        #: a protocol was made for it.
        self.ident = -1
        self.built = False

    def buildProtocol(self, addr: Any) -> Any:
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        protocol = self.protocol(self, wrapped)
        protocol.ident = self.ident
        self.built = True
        return protocol


class Worker:
    """This process's side of the channel."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        factories: dict[str, Any],
        throttle: LoginThrottle,
        registry: Any,
    ) -> None:
        self.reactor = reactor
        self.serve(factories, throttle, registry)
        self.channel: Channel | None = None
        #: Copies of the server's web sessions (SESSIONID).
        self.web: SessionCopies | None = None
        self.stopping = False

    def serve(self, factories: dict[str, Any], throttle: LoginThrottle, registry: Any) -> None:
        """Serve handed connections with ``factories`` (by listener name),
        count failures in ``throttle`` (shared with the server) and end
        sessions in ``registry`` when asked."""
        self.factories = {name: _ReportingFactory(f, self) for name, f in factories.items()}
        self.throttle = throttle
        self.throttle.share = self.share
        self.registry = registry

    def send(self, message: Message) -> None:
        """Tell the server."""
        if self.channel is not None:
            self.channel.send(message)

    def share(self, kind: str, account: str | None, address: str | None) -> None:
        """A login failure or success counted here."""
        self.send({"op": "throttle", "kind": kind, "account": account, "address": address})

    def closed(self, ident: int) -> None:
        """A connection the server handed over has closed."""
        self.send({"op": "closed", "id": ident})

    def received(self, message: Message, descriptors: list[int]) -> None:
        """A message from the server."""
        op = message["op"]
        if op == "accept":
            self.adopt(message, descriptors)
            return
        for descriptor in descriptors:
            os.close(descriptor)
        if op == "throttle":
            self.throttle.take(*throttle_fields(message))
        elif op == "throttle-windows":
            for item in message.get("windows") or ():
                if isinstance(item, list) and len(item) == 3:
                    kind, key, times = item
                    if isinstance(kind, str) and isinstance(key, str) and isinstance(times, list):
                        self.throttle.merge(kind, key, [t for t in times if _number(t)])
        elif op == "web-session":
            session, account, ends = (message.get(key) for key in ("id", "account", "ends"))
            if self.web is not None and isinstance(session, str) and isinstance(account, str):
                self.web.opened(session, account, ends if _number(ends) else 0.0)
        elif op == "web-session-end":
            if self.web is not None and isinstance(message.get("id"), str):
                self.web.closed(message["id"])
        elif op == "stop":
            self.lost()
        elif op == "kick":
            domain, name, reason = (message.get(key) for key in ("domain", "name", "reason"))
            if isinstance(domain, str) and isinstance(name, str):
                self.registry.end(domain, name, str(reason or ""))

    def adopt(self, message: Message, descriptors: list[int]) -> None:
        """Serve the connection that came with ``message``."""
        ident = message.get("id")
        ident = ident if isinstance(ident, int) else -1
        factory = self.factories.get(str(message.get("listener")))
        if len(descriptors) != 1 or factory is None:
            for descriptor in descriptors:
                os.close(descriptor)
            self.closed(ident)
            return
        descriptor = descriptors[0]
        factory.built = False
        try:
            family = socket.socket(fileno=os.dup(descriptor))
            try:
                address_family = family.family
            finally:
                family.close()
            factory.ident = ident
            self.reactor.adoptStreamConnection(descriptor, address_family, factory)
        except OSError:
            # The client left before it could be served (no peer name).
            pass
        except Exception:
            self.log.failure("a connection could not be served")
        finally:
            factory.ident = -1
            os.close(descriptor)
            if not factory.built:
                self.closed(ident)

    def lost(self) -> None:
        """The server is gone, or says stop: stop (once)."""
        if self.stopping or not self.reactor.running:
            return
        self.stopping = True
        self.reactor.stop()


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(event: Any) -> dict[str, Any]:
    """An event's fields, each text cut to :data:`MAX_TEXT` characters (a
    login name is what the client typed; the metrics need none of it)."""
    return {
        key: value[:MAX_TEXT] if isinstance(value, str) else value
        for key, value in asdict(event).items()
    }


@implementer(IActivityObserver)
class ForwardedActivity:
    """Tells the server of each login, session and lockout, for its
    metrics (the log lines go their own way)."""

    def __init__(self, send: Callable[[Message], None]) -> None:
        self.send = send

    def login(self, event: LoginEvent) -> None:
        """A login attempt was decided."""
        self.send({"op": "activity", "kind": "login", "event": _short(event)})

    def opened(self, protocol: str) -> None:
        """A logged-in session began."""
        self.send({"op": "activity", "kind": "opened", "protocol": protocol})

    def logout(self, event: LogoutEvent) -> None:
        """A logged-in session ended."""
        self.send({"op": "activity", "kind": "logout", "event": _short(event)})

    def lockout(self, event: LockoutEvent) -> None:
        """An account was locked."""
        self.send({"op": "activity", "kind": "lockout", "event": _short(event)})

    def handshake(self, protocol: str) -> Callable[[str], None]:
        """What counts a TLS handshake of ``protocol``'s connections."""

        def count(kind: str) -> None:
            self.send({"op": "activity", "kind": "handshake", "protocol": protocol, "tls": kind})

        return count


def json_lines(stream: BinaryIO) -> ILogObserver:
    """A log observer writing each event as one JSON line to ``stream``,
    its message already made (the server's log shows what this process
    would have: Twisted's JSON keeps no format specs such as ``:.3f``,
    and no exception of a failure, whose traceback is therefore made part
    of the message).  A line longer than :data:`MAX_LOG_LINE` is cut."""
    lock = threading.Lock()

    def observe(event: dict[str, Any]) -> None:
        try:
            made = dict(event)
            made.pop("log_flattened", None)
            text = message(event)
            failure = made.pop("log_failure", None)
            if isinstance(failure, Failure):
                text = f"{text}\n{failure.getTraceback()}"
            made["log_format"] = _braces(text)
            line = eventAsJSON(made).encode("utf-8")
            if len(line) > MAX_LOG_LINE:
                cut = {key: made.get(key) for key in _LOG_KEYS}
                cut["log_format"] = _braces(text[: MAX_LOG_LINE // 8] + " [cut]")
                line = eventAsJSON(cut).encode("utf-8")
        except Exception:
            return
        with lock:
            try:
                stream.write(line + b"\n")
                stream.flush()
            except (OSError, ValueError):
                pass

    return cast(ILogObserver, observe)


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def main(argv: list[str] | None = None) -> None:
    """Build the worker and run it until the server says stop or is gone."""
    from twisted.internet import reactor

    from communigate.options import Options, open_directory
    from communigate.serving import login_core, mail_factories, mailbox_changes

    options = Options()
    options.parseOptions(sys.argv[1:] if argv is None else argv)
    globalLogBeginner.beginLoggingTo(
        [json_lines(sys.stdout.buffer)], discardBuffer=True, redirectStandardIO=False
    )
    worker = Worker(reactor, {}, LoginThrottle(), None)
    channel = Channel(
        socket.socket(fileno=CHANNEL_FD), reactor, worker.received, worker.lost, name="server"
    )
    worker.channel = channel
    top = MultiService()
    directory, _ = open_directory(options)
    sessions = ReportedSessions(reactor.seconds, channel)
    activity = ForwardedActivity(worker.send)
    core = login_core(options, reactor, top, directory, Fanout([EventLog(), activity]), sessions)

    def resolve(login: str, connection: Any) -> str:
        return str(core.service.resolver.resolve(login, connection).full_name)

    worker.web = core.service.web_sessions = SessionCopies(reactor.seconds, resolve)
    changes = mailbox_changes(reactor, top)
    made = mail_factories(options, core, reactor, changes)
    factories: dict[str, Any] = {}
    for name, factory in made.items():
        counted: Any = CountingFactory(factory, activity.handshake(name))
        factories[name] = (
            TLSMemoryBIOFactory(core.tls, False, counted) if name.endswith("s") else counted
        )
    worker.serve(factories, core.checker.throttle, core.realm.sessions)
    for factory in worker.factories.values():
        factory.doStart()

    def stop() -> Any:
        for factory in worker.factories.values():
            factory.doStop()
        return top.stopService()

    reactor.addSystemEventTrigger("before", "shutdown", stop)
    # Signals meant for the whole group (a terminal's ^C, a supervisor's
    # SIGTERM to every process) are left to the server, which then says
    # "stop" here; Twisted installs its SIGTERM handler as it starts.

    def running() -> None:
        # Twisted has installed its SIGTERM handler by now: put the server's
        # rule back before saying ready (a stop sent after "ready" must find
        # SIGTERM ignored).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        channel.start()
        channel.send({"op": "ready"})

    reactor.callWhenRunning(running)
    # As in the server: what start-up built stays out of the collector's way.
    reactor.callWhenRunning(gc.freeze)
    top.startService()
    reactor.run()


if __name__ == "__main__":
    main()
