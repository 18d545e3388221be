"""FTP data connections: passive ports, active connections, TLS, moving bytes.

Written for this project, with the properties the FTP issue asks for:

* a passive port listens on the control connection's address, accepts only
  the client's own address (a foreign connection is closed and the port
  keeps waiting for the real client), and closes after one connection;
* active connections go only to the client's own address (checked by the
  control connection) and leave from the control connection's address;
* with ``PROT P`` the data connection is TLS (:mod:`.datatls`), the server
  being the TLS server (RFC 4217 §7); nothing is sent or closed before the
  handshake is over (an empty listing must still be a valid TLS session);
* :attr:`DataProtocol.lost` tells whether the peer ended the stream
  cleanly: a FIN, or a TLS ``close_notify`` — a reset or a TLS error is not
  clean, and an upload that was not ended cleanly is never committed;
* downloads on plain connections use ``sendfile(2)``: while the file is
  sent the socket is driven by :class:`Sendfile`, a reactor write
  descriptor of its own; TLS downloads are produced in 256 KiB chunks.
"""

from __future__ import annotations

import os
import random
import ssl
from collections.abc import Callable
from typing import Any, BinaryIO

from twisted.internet import error as net_error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener, IPullProducer, IWriteDescriptor
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from communigate.protocols.ftp.datatls import DataTLSFactory

#: Seconds a data connection may take to be made (vsftpd's default).
CONNECT_TIMEOUT = 60
#: Seconds a data connection may go without moving a byte.
STALL_TIMEOUT = 300
SENDFILE_CHUNK = 16 * 1024 * 1024
TLS_CHUNK = 256 * 1024

log = Logger()
_DONE = Failure(net_error.ConnectionDone())


def plain_host(host: str) -> str:
    """An address without the IPv4-mapped IPv6 prefix."""
    return host[7:] if host.startswith("::ffff:") and "." in host else host


class DataConnectionFailed(Exception):
    """No data connection could be made, or it broke."""


class _Event:
    """A one-time event any number of parties may wait for."""

    def __init__(self) -> None:
        self.outcome: Any = None
        self.happened = False
        self._waiting: list[Deferred[Any]] = []

    def wait(self) -> Deferred[Any]:
        """A Deferred firing with the outcome (at once if known)."""
        result: Deferred[Any] = Deferred()
        if self.happened:
            self._fire(result)
        else:
            self._waiting.append(result)
        return result

    def happen(self, outcome: Any) -> None:
        """Fire every waiter (once)."""
        if self.happened:
            return
        self.happened = True
        self.outcome = outcome
        waiting, self._waiting = self._waiting, []
        for result in waiting:
            self._fire(result)

    def _fire(self, result: Deferred[Any]) -> None:
        if isinstance(self.outcome, Exception):
            result.errback(self.outcome)
        else:
            result.callback(self.outcome)


@implementer(IHandshakeListener)
class DataProtocol(Protocol):
    """One data connection, in either direction.

    :meth:`wait_opened` fires when the TCP connection exists (time for the
    150 reply), :meth:`wait_ready` when bytes may flow (after the TLS
    handshake, if any), :meth:`wait_lost` with True for a clean end of
    stream, False otherwise.  Bytes that arrive before a sink is attached
    are held (reading paused).
    """

    def __init__(self, tls: bool, clock: Any) -> None:
        self.tls = tls
        self.clock = clock
        self._opened = _Event()
        self._ready = _Event()
        self._lost = _Event()
        self.clean_fin = False
        self._held: list[bytes] = []
        self._sink: Callable[[bytes], None] | None = None
        self._ended: bool | None = None
        self.moved = 0
        self._watch: Any = None
        #: The file sender driving the connection now, if any.
        self.sender: Sendfile | ChunkSender | None = None

    def wait_opened(self) -> Deferred[DataProtocol]:
        """Fires when the TCP connection is made."""
        return self._opened.wait()

    def wait_ready(self) -> Deferred[DataProtocol]:
        """Fires when bytes may flow; fails if the connection broke first."""
        return self._ready.wait()

    def wait_lost(self) -> Deferred[bool]:
        """Fires when the connection is gone: True for a clean end."""
        return self._lost.wait()

    # -- connection events ------------------------------------------------------

    def connectionMade(self) -> None:
        """TCP is up: 150 may be sent; without TLS bytes may flow."""
        self._watch = self.clock.callLater(STALL_TIMEOUT, self._check_stall, 0)
        self._opened.happen(self)
        if not self.tls:
            self._ready.happen(self)

    def handshakeCompleted(self) -> None:
        """The TLS handshake is over: bytes may flow."""
        self._ready.happen(self)

    def dataReceived(self, data: bytes) -> None:
        """Upload bytes: to the sink, or held until there is one."""
        self.moved += len(data)
        if self._sink is not None:
            self._sink(data)
            return
        self._held.append(data)
        if self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = _DONE) -> None:
        """Work out whether the stream ended cleanly."""
        if self._watch is not None and self._watch.active():
            self._watch.cancel()
        self._watch = None
        clean = bool(self.clean_fin or reason.check(net_error.ConnectionDone))
        failure = DataConnectionFailed(f"data connection closed: {reason.getErrorMessage()}")
        self._opened.happen(failure)
        if not self._ready.happened:
            clean = False
        self._ready.happen(failure)
        self._ended = clean
        if self._sink is not None:
            self._lost.happen(clean)

    # -- use ---------------------------------------------------------------------

    def attach(self, sink: Callable[[bytes], None]) -> None:
        """Deliver received bytes (held ones first) to ``sink``."""
        self._sink = sink
        held, self._held = self._held, []
        for data in held:
            sink(data)
        if self._ended is not None:
            self._lost.happen(self._ended)
        elif self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def finish(self) -> None:
        """Nothing more to send: close (for TLS after ``close_notify``)."""
        if self._sink is None:
            self.attach(_ignore)
        if self.transport is not None:
            self.transport.loseConnection()

    def abort(self) -> None:
        """Drop the connection at once (ABOR, quota, errors)."""
        if self.sender is not None:
            # Sendfile must give the socket back before the transport closes it.
            self.sender.stop()
        if self._sink is None:
            self.attach(_ignore)
        if self.transport is not None and self._ended is None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _check_stall(self, seen: int) -> None:
        if self.moved == seen:
            log.info("FTP data connection stalled for {seconds} s", seconds=STALL_TIMEOUT)
            self._watch = None
            self.abort()
            return
        self._watch = self.clock.callLater(STALL_TIMEOUT, self._check_stall, self.moved)


def _ignore(data: bytes) -> None:
    return None


class DataFactory(ClientFactory):
    """Builds the data connection of one transfer; accepts one connection,
    and only from ``client``."""

    noisy = False

    def __init__(self, client: str, tls: ssl.SSLContext | None, clock: Any) -> None:
        self.client = plain_host(client)
        self.tls = tls
        self.clock = clock
        self.connection: DataProtocol | None = None
        self.failed = _Event()

    def buildProtocol(self, addr: Any) -> Any:
        """Only the client's address, and only once."""
        host = plain_host(str(getattr(addr, "host", "")))
        if host != self.client:
            log.info("FTP data connection from {host} refused (not the client)", host=host)
            return None
        if self.connection is not None:
            return None
        self.connection = DataProtocol(self.tls is not None, self.clock)
        self.connection.factory = self
        return self.connection

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        """An active connection could not be made."""
        self.failed.happen(DataConnectionFailed(reason.getErrorMessage()))


def _wrap(factory: DataFactory) -> Any:
    return DataTLSFactory(factory.tls, factory) if factory.tls is not None else factory


class PassivePort:
    """A passive data port (PASV/EPSV) waiting for the client."""

    def __init__(self, reactor: Any, factory: DataFactory) -> None:
        self.reactor = reactor
        self.factory = factory
        self.port: Any = None
        self.number = 0
        self.arrived: _Event | None = None
        self.timer: Any = None

    def listen(self, host: str, ports: range | None) -> int:
        """Listen on ``host``; a port from ``ports`` (None: any)."""
        wrapped = _wrap(self.factory)
        if ports is None or ports.start == 0:
            candidates = [0]
        else:
            candidates = random.sample(ports, min(len(ports), 64))
        for number in candidates:
            try:
                self.port = self.reactor.listenTCP(number, wrapped, backlog=4, interface=host)
            except net_error.CannotListenError:
                continue
            self.number = self.port.getHost().port
            return self.number
        raise DataConnectionFailed("no passive port is free")

    def connect(self) -> Deferred[DataProtocol]:
        """The client's connection, when it comes (at most CONNECT_TIMEOUT)."""
        waiting = self.factory.connection
        if waiting is not None:
            self.close()
            return waiting.wait_opened()
        arrived = _Event()
        self.timer = self.reactor.callLater(CONNECT_TIMEOUT, self._timed_out, arrived)
        original = self.factory.buildProtocol

        def built(addr: Any) -> Any:
            protocol = original(addr)
            if protocol is not None:
                self.factory.buildProtocol = original  # type: ignore[method-assign]
                self.close()
                protocol.wait_opened().addBoth(arrived.happen)
            return protocol

        self.factory.buildProtocol = built  # type: ignore[method-assign]
        self.arrived = arrived
        return arrived.wait()

    def _timed_out(self, arrived: _Event) -> None:
        self.close()
        arrived.happen(DataConnectionFailed("the client did not connect in time"))

    def close(self) -> None:
        """Stop listening (an accepted connection is not affected)."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.port is not None:
            self.port.stopListening()
            self.port = None

    def discard(self) -> None:
        """Stop listening and drop a connection nobody used."""
        self.close()
        if self.arrived is not None:
            self.arrived.happen(DataConnectionFailed("transfer aborted"))
        if self.factory.connection is not None:
            self.factory.connection.abort()


class ActiveTarget:
    """An active data connection (PORT/EPRT), made when a transfer starts."""

    def __init__(
        self, reactor: Any, factory: DataFactory, target: tuple[str, int], local: str
    ) -> None:
        self.reactor = reactor
        self.factory = factory
        self.target = target
        self.local = local
        self.connector: Any = None

    def connect(self) -> Deferred[DataProtocol]:
        """Connect from the control connection's address to the client."""
        arrived = self.factory.failed
        original = self.factory.buildProtocol

        def built(addr: Any) -> Any:
            protocol = original(addr)
            if protocol is not None:
                protocol.wait_opened().addBoth(arrived.happen)
            return protocol

        self.factory.buildProtocol = built  # type: ignore[method-assign]
        host, port = self.target
        self.connector = self.reactor.connectTCP(
            host,
            port,
            _wrap(self.factory),
            timeout=CONNECT_TIMEOUT,
            bindAddress=(self.local, 0),
        )
        return arrived.wait()

    def discard(self) -> None:
        """Drop the connection (or the attempt)."""
        self.factory.failed.happen(DataConnectionFailed("transfer aborted"))
        if self.factory.connection is not None:
            self.factory.connection.abort()
        elif self.connector is not None:
            self.connector.disconnect()


# -- sending files -------------------------------------------------------------------


@implementer(IWriteDescriptor)
class Sendfile:
    """Sends a file on a plain TCP data connection with ``sendfile(2)``.

    The transport stops its own reading and writing for the time of the
    transfer and this descriptor takes the socket's write notifications;
    then the transport closes the connection as usual.
    """

    def __init__(
        self, reactor: Any, protocol: DataProtocol, handle: BinaryIO, offset: int, size: int
    ) -> None:
        self.reactor = reactor
        self.protocol = protocol
        self.transport: Any = protocol.transport
        self.handle = handle
        self.offset = offset
        self.size = size
        self.done: Deferred[None] = Deferred()

    def fileno(self) -> int:
        """The data socket."""
        return int(self.transport.socket.fileno())

    def logPrefix(self) -> str:
        """For the reactor's log lines."""
        return "ftp-sendfile"

    def start(self) -> Deferred[None]:
        """Take over the socket's write notifications."""
        self.protocol.sender = self
        self.transport.stopReading()
        self.transport.stopWriting()
        self.reactor.addWriter(self)
        return self.done

    def doWrite(self) -> None:
        """Hand the kernel as much of the file as the socket takes."""
        try:
            while self.offset < self.size:
                sent = os.sendfile(
                    self.fileno(),
                    self.handle.fileno(),
                    self.offset,
                    min(SENDFILE_CHUNK, self.size - self.offset),
                )
                if sent == 0:
                    break
                self.offset += sent
                self.protocol.moved += sent
        except BlockingIOError:
            return None
        except OSError as error:
            self._finish(DataConnectionFailed(f"data connection broken: {error.strerror}"))
            return None
        self._finish(None)
        return None

    def connectionLost(self, reason: Failure) -> None:
        """The reactor dropped this descriptor (shutdown)."""
        self._finish(DataConnectionFailed(reason.getErrorMessage()))

    def stop(self) -> None:
        """Give the socket back to the transport (the transfer is aborted)."""
        self._finish(DataConnectionFailed("transfer aborted"))

    def _finish(self, error: Exception | None) -> None:
        if self.done.called:
            return
        self.protocol.sender = None
        self.reactor.removeWriter(self)
        self.handle.close()
        if error is None and self.offset >= self.size:
            self.done.callback(None)
        else:
            self.done.errback(error or DataConnectionFailed("file shrank while being sent"))


@implementer(IPullProducer)
class ChunkSender:
    """Sends a file in chunks through a transport (TLS data connections)."""

    def __init__(self, protocol: DataProtocol, handle: BinaryIO, offset: int) -> None:
        self.protocol = protocol
        self.handle = handle
        self.handle.seek(offset)
        self.done: Deferred[None] = Deferred()

    def start(self) -> Deferred[None]:
        """Register as the transport's producer."""
        self.protocol.sender = self
        transport: Any = self.protocol.transport
        transport.registerProducer(self, False)
        return self.done

    def resumeProducing(self) -> None:
        """The next chunk, or the end."""
        chunk = self.handle.read(TLS_CHUNK)
        if chunk:
            self.protocol.moved += len(chunk)
            assert self.protocol.transport is not None
            self.protocol.transport.write(chunk)
            return
        self._stop()
        if not self.done.called:
            self.done.callback(None)

    def stopProducing(self) -> None:
        """The connection went away."""
        self.stop()

    def stop(self) -> None:
        """Stop sending (connection lost or transfer aborted)."""
        self._stop()
        if not self.done.called:
            self.done.errback(DataConnectionFailed("data connection closed"))

    def _stop(self) -> None:
        self.protocol.sender = None
        if not self.handle.closed:
            self.handle.close()
            transport: Any = self.protocol.transport
            if transport is not None:
                transport.unregisterProducer()


def send_file(
    reactor: Any, protocol: DataProtocol, handle: BinaryIO, offset: int
) -> Deferred[None]:
    """Send ``handle`` from ``offset``; fires when all of it was handed on."""
    size = os.fstat(handle.fileno()).st_size
    if not protocol.tls and hasattr(os, "sendfile") and hasattr(protocol.transport, "socket"):
        return Sendfile(reactor, protocol, handle, offset, size).start()
    return ChunkSender(protocol, handle, offset).start()
