"""The listeners of ``Settings/Listeners.settings``, kept in step with the
file while the server runs.

:class:`ConfiguredListeners` is one service holding one listening service
per listener of the file (:mod:`communigate.store.listeners`).  At start it
listens on the file's listeners; :meth:`ConfiguredListeners.reload` reads
the file again, listens on the new ones and stops listening on the removed
ones (connections they accepted stay open, as with any closed port); a
file with a problem changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.application import internet, strports
from twisted.application.service import IService, MultiService
from twisted.internet.defer import gatherResults, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from communigate.protocols.guard import GuardedFactory
from communigate.store import listeners as listenersfile
from communigate.store.directory import IDirectory
from communigate.store.listeners import Listener, ListenersError
from communigate.workers.handoff import handed_off

_log = Logger()


@dataclass
class Changes:
    """What applying Listeners.settings did: listeners started and stopped
    (service names), and a line per listener or file problem."""

    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: New listeners wait for stopped ones to close (the log tells).
    pending: bool = False

    def __str__(self) -> str:
        """One line for the administrator (the answer of ``reload``)."""
        parts = [f"listening on {name}" for name in self.started]
        parts += [f"stopped listening on {name}" for name in self.stopped]
        parts += [f"could not apply {problem}" for problem in self.failed]
        if self.pending:
            parts.append("new listeners start once the stopped ones have closed (see the log)")
        return f"{listenersfile.RELATIVE_PATH}: {'; '.join(parts) or 'no change'}"


class ConfiguredListeners(MultiService):
    """The listening services of Listeners.settings; its children are named
    ``NAME:DESCRIPTION@ADDRESS`` (see :func:`service_name`)."""

    def __init__(self, reactor: Any, directory: IDirectory, base: Path) -> None:
        super().__init__()
        self.reactor = reactor
        self.directory = directory
        self.base = Path(base)
        self._streams: dict[str, IProtocolFactory] = {}
        self._handoffs: dict[str, tuple[IProtocolFactory, Any]] = {}
        self._datagrams: dict[str, Callable[[str], DatagramProtocol]] = {}
        self.setName(str(listenersfile.RELATIVE_PATH))

    def serve_stream(
        self,
        name: str,
        factory: IProtocolFactory,
        tls: Any = None,
        handoff: tuple[IProtocolFactory, Any] | None = None,
    ) -> None:
        """Use ``factory`` for the listeners called ``name`` (``imaps``);
        with a ``tls`` context factory, TLS from the first byte.  Guarded
        by the server setting ``Listeners`` like the command-line ones.
        ``handoff``: the factory and reactor of its TCP listeners when
        worker processes serve them (:mod:`communigate.workers.handoff`)."""
        if tls is not None:
            factory = TLSMemoryBIOFactory(tls, False, factory)
        guard = self._streams[name] = GuardedFactory(factory, name, self.directory)
        if handoff is not None:
            guarded = GuardedFactory(handoff[0], name, self.directory, guard.counts)
            self._handoffs[name] = (guarded, handoff[1])

    def serve_datagrams(self, name: str, make: Callable[[str], DatagramProtocol]) -> None:
        """Use ``make(interface)`` for the UDP listeners called ``name``."""
        self._datagrams[name] = make

    def read(self) -> list[Listener]:
        """The listeners the file asks for now (raises ListenersError/OSError)."""
        return listenersfile.read(self.base)

    def _service(self, listener: Listener) -> IService:
        name = listener.name()
        if name in self._datagrams:
            server = self._datagrams[name](listener.address)
            service: IService = internet.UDPServer(
                listener.port, server, interface=listener.address, reactor=self.reactor
            )
        elif name in self._streams:
            factory, reactor = self._streams[name], self.reactor
            if name in self._handoffs and handed_off(listener.description()):
                factory, reactor = self._handoffs[name]
            service = strports.service(listener.description(), factory, reactor=reactor)
        else:
            raise ListenersError(f"{name} listeners are not served by this server")
        service.setName(service_name(listener))
        return service

    def add(self, listeners: Iterable[Listener]) -> None:
        """Add (before start) a listening service per listener."""
        for listener in listeners:
            self._service(listener).setServiceParent(self)

    def apply(self, listeners: Iterable[Listener]) -> Changes:
        """Listen on ``listeners`` and on no other of the file's: stop those
        no longer wanted, then start the new ones (a listener that cannot be
        started is reported; the others are started all the same).

        A stopped port closes one reactor turn later, so the new listeners
        start once every stopped one has closed: a listener whose options
        changed but whose port did not is listening again at once after.
        When that takes a turn, the answer says so and the log tells the
        outcome."""
        wanted = {service_name(listener): listener for listener in listeners}
        changes = Changes()
        stopping = []
        for service in list(self):
            if service.name not in wanted:
                # stopListening: accepted connections are left alone.
                stopping.append(maybeDeferred(service.disownServiceParent))
                changes.stopped.append(str(service.name))
                _log.info("stopped listening: {name}", name=service.name)
        closed = gatherResults(stopping, consumeErrors=True) if stopping else succeed(None)
        closed.addBoth(lambda _: self._start(wanted, changes))
        changes.pending = not closed.called
        return changes

    def _start(self, wanted: dict[str, Listener], changes: Changes) -> None:
        """Start the wanted listeners not running yet."""
        for name, listener in wanted.items():
            if name in self.namedServices:
                continue
            try:
                service = self._service(listener)
                service.setServiceParent(self)
            except (CannotListenError, ListenersError) as error:
                if name in self.namedServices:
                    self.removeService(self.namedServices[name])
                changes.failed.append(f"{listener.protocol} {listener.where()}: {error}")
                _log.warn("could not listen: {name}: {error}", name=name, error=error)
                continue
            changes.started.append(name)
            _log.info("listening: {name}", name=name)

    def reload(self) -> Changes:
        """Read Listeners.settings and :meth:`apply` it; a file that cannot
        be read or has a problem changes nothing (and is reported)."""
        try:
            listeners = self.read()
        except (ListenersError, OSError) as error:
            return Changes(failed=[str(error)])
        return self.apply(listeners)


def service_name(listener: Listener) -> str:
    """The service name of ``listener``: its name, description and address
    (a TFTP description does not hold the address)."""
    return f"{listener.name()}:{listener.description()}@{listener.address or '*'}"
