"""TLS for FTP data connections, on the standard library's ``ssl`` module.

Why not Twisted's TLS (pyOpenSSL) as on control connections: a TLS 1.3
server sends session tickets right after the handshake.  On an upload the
client never reads its data connection, so the tickets are still unread
when it closes the socket — and a close with unread data is a TCP reset,
which makes the server's kernel discard whatever upload bytes it had not
yet handed to the server (seen with lftp: 2 MB uploads cut at 208 KiB).
``ssl.SSLContext.num_tickets = 0`` turns the tickets off; pyOpenSSL has no
way to.  Data connections never resume sessions, so nothing is lost.

:class:`DataTLSProtocol` is a small TLS server over memory BIOs: it feeds
the wrapped protocol decrypted bytes, tells it when the handshake is over
(``handshakeCompleted``) and whether the stream ended with ``close_notify``
or a clean FIN (``clean_fin``).  Written for this project.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from twisted.internet import error as net_error
from twisted.internet.interfaces import IHandshakeListener
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

from communigate.store.certificates import CERTIFICATE, KEY
from communigate.store.directory import IDirectory

_DONE = Failure(net_error.ConnectionDone())
_READ = 256 * 1024


class DataContexts:
    """Server contexts per domain for data connections (certificate files
    re-read when they change), without session tickets."""

    def __init__(self, directory: IDirectory) -> None:
        self.directory = directory
        self._cache: dict[str, tuple[tuple[int, int, int], ssl.SSLContext]] = {}

    def context_for(self, domain: str) -> ssl.SSLContext:
        """The domain's context, else the Main Domain's."""
        for name in (domain, self.directory.main_domain()):
            folder = Path(self.directory.domain_folder(name)) / "Settings"
            try:
                cert, key = (folder / CERTIFICATE).stat(), (folder / KEY).stat()
            except FileNotFoundError:
                continue
            identity = (cert.st_mtime_ns, cert.st_ino, key.st_mtime_ns)
            cached = self._cache.get(name)
            if cached is not None and cached[0] == identity:
                return cached[1]
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.num_tickets = 0
            context.load_cert_chain(folder / CERTIFICATE, folder / KEY)
            self._cache[name] = (identity, context)
            return context
        raise ssl.SSLError("the Main Domain has no certificate")


class DataTLSProtocol(ProtocolWrapper):
    """The server side of TLS on one data connection."""

    def __init__(self, factory: Any, wrapped: Any, context: ssl.SSLContext) -> None:
        super().__init__(factory, wrapped)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._handshaken = False
        self._early: list[bytes] = []
        self._notified = False
        self._failed: Failure | None = None

    def getHandle(self) -> ssl.SSLObject:
        """The TLS object (cipher, version)."""
        return self._tls

    # -- from the network ------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Decrypt; finish the handshake first."""
        self._incoming.write(data)
        if not self._handshaken and not self._handshake():
            return
        while True:
            try:
                chunk = self._tls.read(_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._notified = True
                self._close_notify()
                break
            except ssl.SSLError:
                self._fail()
                return
            if not chunk:
                break
            self.wrappedProtocol.dataReceived(chunk)
        self._flush()

    def _handshake(self) -> bool:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except ssl.SSLError:
            self._fail()
            return False
        self._handshaken = True
        self._flush()
        if IHandshakeListener.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.handshakeCompleted()
        early, self._early = self._early, []
        for data in early:
            self.write(data)
        return True

    def _fail(self) -> None:
        self._failed = Failure(net_error.ConnectionLost("TLS error on the data connection"))
        self._flush()
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _close_notify(self) -> None:
        """Send close_notify (or answer the peer's), then close TCP."""
        if self._handshaken:
            try:
                self._tls.unwrap()
            except ssl.SSLError:
                pass
            self._flush()
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = _DONE) -> None:
        """Tell the wrapped protocol whether the stream ended cleanly."""
        clean = self._failed is None and (
            self._notified or bool(reason.check(net_error.ConnectionDone))
        )
        if hasattr(self.wrappedProtocol, "clean_fin"):
            self.wrappedProtocol.clean_fin = clean
        super().connectionLost(self._failed or reason)

    # -- to the network ------------------------------------------------------------

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and self.transport is not None:
            self.transport.write(data)

    def write(self, data: bytes) -> None:
        """Encrypt and send (held until the handshake is over)."""
        if not self._handshaken:
            self._early.append(data)
            return
        self._tls.write(data)
        self._flush()

    def writeSequence(self, data: Any) -> None:
        """Encrypt and send each piece."""
        for piece in data:
            self.write(piece)

    def loseConnection(self) -> None:
        """Send close_notify, then close the TCP connection (a download is
        over: nothing more is needed from the client)."""
        if self.disconnecting:
            return
        self.disconnecting = True
        self._close_notify()


class DataTLSFactory(WrappingFactory):
    """Wraps a data connection factory in :class:`DataTLSProtocol`."""

    protocol = DataTLSProtocol
    noisy = False

    def __init__(self, context: ssl.SSLContext, wrapped: Any) -> None:
        super().__init__(wrapped)
        self.context = context

    def buildProtocol(self, addr: Any) -> Any:
        """None when the wrapped factory refuses the address."""
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        return DataTLSProtocol(self, inner, self.context)
