"""Connections accepted here and served by a worker process.

With ``--workers N`` the server still binds every listener itself, so the
port, its backlog and the ``Listeners`` Grant/Deny lists and MaxPerAddress
(:class:`~communigate.protocols.guard.GuardedFactory`, wrapped around
:class:`HandoffFactory`) stay the business of one process.  What changes
is what its TCP listeners of IMAP and POP3 do with a connection they
accept: :class:`HandoffPort` makes no transport for it but an
:class:`Accepted`, whose socket :meth:`IHandoff.hand` passes to a worker
before the first byte is read.  The :class:`Accepted` stays here until the
worker says the connection closed, so the per-address count holds every
connection whichever process serves it.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from twisted.application.service import IServiceCollection
from twisted.internet import tcp
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.main import CONNECTION_DONE
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from communigate.protocols.listeners import add_listeners
from communigate.store.directory import IDirectory

#: Endpoint types whose connections can be passed to a worker.
_TCP = re.compile(r"\s*tcp6?:", re.IGNORECASE)


def handed_off(description: str) -> bool:
    """Whether a listener of ``description`` passes its connections on (a
    plain ``tcp:`` or ``tcp6:`` endpoint; others are served here)."""
    return _TCP.match(description) is not None


class IHandoff(Interface):
    """Where accepted connections go (the worker pool)."""

    def hand(listener: str, accepted: Accepted) -> None:
        """Pass ``accepted`` (of the listener called ``listener``) to a
        worker; :meth:`Accepted.finish` once it has closed there."""


class Accepted:
    """A connection accepted by a :class:`HandoffPort`: its socket until it
    is passed on, and the protocol (the guard's wrapper) to tell when it
    ends.  It stands where Twisted's transport would."""

    def __init__(
        self, skt: Any, protocol: Any, addr: Any, port: Any, sessionno: int, reactor: Any
    ) -> None:
        self.socket = skt
        self.protocol = protocol
        self.peer = addr
        self.ended = False

    def getHandle(self) -> Accepted:
        """The accepted connection itself (what :class:`HandoffProtocol`
        passes on)."""
        return self

    def detach(self) -> int:
        """The socket's descriptor, which the caller owns from now on."""
        return int(self.socket.detach())

    def loseConnection(self) -> None:
        """Close it here (it was not passed on) and end it."""
        self.socket.close()
        self.finish()

    abortConnection = loseConnection

    def finish(self, reason: Failure | None = None) -> None:
        """The connection ended (the worker closed it, or the worker is
        gone): the guard counts it no more."""
        if self.ended:
            return
        self.ended = True
        self.protocol.connectionLost(reason or Failure(CONNECTION_DONE))


class HandoffPort(tcp.Port):
    """A TCP port whose accepted connections become :class:`Accepted`."""

    transport = Accepted  # type: ignore[assignment]


class HandoffReactor:
    """What a TCP endpoint listens with to make a :class:`HandoffPort`."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def listenTCP(
        self, port: int, factory: IProtocolFactory, backlog: int = 50, interface: str = ""
    ) -> HandoffPort:
        """Listen like ``reactor.listenTCP``."""
        listening = HandoffPort(port, factory, backlog, interface, self.reactor)
        listening.startListening()
        return listening


class HandoffProtocol(Protocol):
    """Passes its connection on as soon as it is made."""

    factory: HandoffFactory

    def connectionMade(self) -> None:
        """Hand the accepted connection to the pool."""
        transport: Any = self.transport
        self.factory.pool.hand(self.factory.listener, transport.getHandle())


@implementer(IProtocolFactory)
class HandoffFactory(Factory):
    """Makes :class:`HandoffProtocol` for the listeners called ``listener``."""

    protocol = HandoffProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(self, listener: str, pool: IHandoff) -> None:
        self.listener = listener
        self.pool = pool


def add_mail_listeners(
    parent: IServiceCollection,
    name: str,
    descriptions: list[str],
    factory: IProtocolFactory,
    reactor: Any,
    tls: Any,
    directory: IDirectory,
    pool: IHandoff | None,
) -> None:
    """The listeners called ``name`` (``imaps``: TLS from the first byte
    with ``tls``): with a worker ``pool``, its TCP ones hand their
    connections to it; the others serve them here with ``factory``."""
    here = [d for d in descriptions if pool is None or not handed_off(d)]
    there = [d for d in descriptions if d not in here]
    context = tls if name.endswith("s") else None
    # One count of connections per address, whoever serves them.
    counts: Counter[str] = Counter()
    add_listeners(parent, name, here, factory, reactor, context, directory, counts)
    if pool is not None and there:
        handoff = HandoffFactory(name, pool)
        reactor = HandoffReactor(reactor)
        add_listeners(parent, name, there, handoff, reactor, None, directory, counts)
