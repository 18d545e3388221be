"""A worker process: serves the IMAP and POP3 connections the server hands it.

The server (:class:`~communigate.workers.pool.WorkerPool`) starts it as
``python -m communigate.workers.child OPTIONS`` (the options of
``twistd communigate`` its login core needs) with its end of the channel on
descriptor 3.  It builds the same login core and mail factories as the
server (:mod:`communigate.serving`), says ``ready``, and then serves every
connection that comes with an ``accept`` message from its first byte (TLS
included for ``imaps`` and ``pop3s``).  It tells the server when each
connection closes, each login failure or success it counts, and each
logged-in session and its end; it takes the failures other processes
counted, and ``kick`` requests.  Its log events go to standard output as
JSON lines, which the server logs.

It ends when the server closes the channel (the server is gone) or on
SIGTERM; SIGINT, which a terminal sends the whole process group, is left
to the server, which stops its workers itself.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, BinaryIO, cast

from twisted.application.service import MultiService
from twisted.internet.main import CONNECTION_DONE
from twisted.logger import ILogObserver, eventAsJSON, globalLogBeginner
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from communigate.control.sessions import LiveSessions, SessionEntry
from communigate.observe.events import EventLog
from communigate.observe.logs import message
from communigate.observe.traffic import CountingFactory
from communigate.portal.policy import LoginThrottle
from communigate.workers.channel import Channel, Message
from communigate.workers.pool import CHANNEL_FD

_DONE = Failure(CONNECTION_DONE)


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
        #: The server's id of the connection being adopted.
        self.ident = -1

    def buildProtocol(self, addr: Any) -> Any:
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        protocol = self.protocol(self, wrapped)
        protocol.ident = self.ident
        return protocol


class Worker:
    """This process's side of the channel."""

    def __init__(
        self,
        reactor: Any,
        factories: dict[str, Any],
        throttle: LoginThrottle,
        registry: Any,
    ) -> None:
        self.reactor = reactor
        self.factories = {name: _ReportingFactory(f, self) for name, f in factories.items()}
        self.throttle = throttle
        self.registry = registry
        self.channel: Channel | None = None

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
            kind, account, address = (message.get(name) for name in ("kind", "account", "address"))
            self.throttle.take(
                str(kind),
                account if isinstance(account, str) else None,
                address if isinstance(address, str) else None,
            )
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
        adopted = None
        try:
            family = socket.socket(fileno=os.dup(descriptor))
            try:
                address_family = family.family
            finally:
                family.close()
            factory.ident = ident
            adopted = self.reactor.adoptStreamConnection(descriptor, address_family, factory)
        except OSError:
            # The client left before it could be served (no peer name).
            pass
        finally:
            factory.ident = -1
            os.close(descriptor)
        if adopted is None:
            self.closed(ident)

    def lost(self) -> None:
        """The server is gone: stop."""
        if self.reactor.running:
            self.reactor.stop()


def json_lines(stream: BinaryIO) -> ILogObserver:
    """A log observer writing each event as one JSON line to ``stream``,
    its message already made (the server's log shows what this process
    would have: Twisted's JSON keeps no format specs such as ``:.3f``)."""
    lock = threading.Lock()

    def observe(event: dict[str, Any]) -> None:
        try:
            made = dict(event)
            made.pop("log_flattened", None)
            made["log_format"] = message(event).replace("{", "{{").replace("}", "}}")
            line = eventAsJSON(made).encode("utf-8") + b"\n"
        except Exception:
            return
        with lock:
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError):
                pass

    return cast(ILogObserver, observe)


def main(argv: list[str] | None = None) -> None:
    """Build the worker and run it until the server is gone or SIGTERM."""
    # A terminal's ^C reaches the whole group; the server stops us itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from twisted.internet import reactor

    from communigate.serving import login_core, mail_factories, mailbox_changes
    from communigate.tap import Options, open_directory

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
    core = login_core(options, reactor, top, directory, EventLog(), sessions)
    changes = mailbox_changes(reactor, top)
    made = mail_factories(options, core, reactor, changes)
    factories: dict[str, Any] = {}
    for name, factory in made.items():
        counted: Any = CountingFactory(factory, None)
        factories[name] = (
            TLSMemoryBIOFactory(core.tls, False, counted) if name.endswith("s") else counted
        )
    worker.factories = {name: _ReportingFactory(f, worker) for name, f in factories.items()}
    worker.throttle = core.checker.throttle
    worker.throttle.share = worker.share
    worker.registry = core.realm.sessions
    for factory in worker.factories.values():
        factory.doStart()

    def stop() -> Any:
        for factory in worker.factories.values():
            factory.doStop()
        return top.stopService()

    reactor.addSystemEventTrigger("before", "shutdown", stop)
    top.startService()
    channel.start()
    channel.send({"op": "ready"})
    reactor.run()


if __name__ == "__main__":
    main()
