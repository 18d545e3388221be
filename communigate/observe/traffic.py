"""Per-connection session ids and byte counts, wrapped around a listener.

:class:`CountingFactory` wraps a protocol factory; each connection's
protocol then sees a :class:`CountingProtocol` as its transport, which
names the connection (``session_id``, picked up by the login service) and
counts the application bytes read and written (``bytes_in``,
``bytes_out``: clear text, also on TLS listeners, where the wrapper sits
inside the TLS layer).  It also tells the observer when a TLS handshake
has completed: on an implicit-TLS listener Twisted's TLS layer calls
``handshakeCompleted``; after ``STARTTLS`` the first bytes that arrive
prove the handshake done (TLS hands over no application data before).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.interfaces import IHandshakeListener
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from zope.interface import implementer

from communigate.observe.events import new_session_id
from communigate.protocols.tls import start_tls


@implementer(IHandshakeListener)
class CountingProtocol(ProtocolWrapper):
    """A connection's transport as its protocol sees it: passes everything
    on, counting bytes and naming the session."""

    factory: CountingFactory

    def __init__(self, factory: CountingFactory, wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)
        self.session_id = new_session_id()
        self.bytes_in = 0
        self.bytes_out = 0
        self._starttls = False

    def dataReceived(self, data: bytes) -> None:
        """Count, then pass on."""
        self.bytes_in += len(data)
        if self._starttls:
            self._starttls = False
            self.factory.handshake("starttls")
        super().dataReceived(data)

    def write(self, data: bytes) -> None:
        """Count, then send."""
        self.bytes_out += len(data)
        super().write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        """Count, then send."""
        chunks = list(data)
        self.bytes_out += sum(len(chunk) for chunk in chunks)
        super().writeSequence(chunks)

    def startTLS(self, contexts: Any, normal: bool = True) -> None:
        """Start TLS below; the next bytes received complete the handshake."""
        self._starttls = True
        start_tls(self.transport, contexts, normal)

    def handshakeCompleted(self) -> None:
        """Implicit TLS: the TLS layer below finished its handshake."""
        self.factory.handshake("implicit")
        if IHandshakeListener.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.handshakeCompleted()


class CountingFactory(WrappingFactory["CountingProtocol"]):
    """Wraps each connection of ``wrapped`` in a :class:`CountingProtocol`."""

    protocol = CountingProtocol
    noisy = False

    def __init__(self, wrapped: Any, on_handshake: Callable[[str], None] | None = None) -> None:
        super().__init__(wrapped)
        self._on_handshake = on_handshake

    def handshake(self, kind: str) -> None:
        """A TLS handshake completed (``implicit`` or ``starttls``)."""
        if self._on_handshake is not None:
            self._on_handshake(kind)
