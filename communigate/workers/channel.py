"""The channel between the server and one worker process.

A Unix ``SOCK_SEQPACKET`` socket pair: every message is one JSON object in
one packet, so the kernel keeps the boundaries and the file descriptors
sent with a packet (an accepted connection) arrive with that packet and no
other.  Both ends are non-blocking and driven by the reactor; what the peer
cannot take yet waits in a queue (with its descriptors, which the channel
owns from :meth:`Channel.send` on and closes once sent or lost).

:func:`encode` and :func:`decode` are the wire format, pure code.
"""

from __future__ import annotations

import array
import errno
import json
import os
import socket
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import main
from twisted.internet.interfaces import IReadWriteDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

#: The largest packet either end sends or reads.
MAX_PACKET = 64 * 1024
#: Descriptors one packet may carry.
MAX_DESCRIPTORS = 4
#: Packets that may wait for the peer; past them the peer is taken for
#: gone (it stopped reading), so a stuck peer cannot make this side grow.
MAX_QUEUE = 10_000
#: Packets one call of ``doRead`` takes at most.
READ_BATCH = 64
#: Seconds before sending again when the kernel is short of room.
RETRY_SECONDS = 0.05
#: Send errors that mean "not now" rather than "the peer is gone": too
#: many descriptors in flight (``RLIMIT_NOFILE`` of them per user), or no
#: kernel memory.
_SHORT_OF_ROOM = frozenset({errno.ETOOMANYREFS, errno.ENOBUFS, errno.ENOMEM})

Message = dict[str, Any]
_INT = array.array("i")


def encode(message: Mapping[str, Any]) -> bytes:
    """One packet for ``message`` (an object with an ``op`` name); raises
    ValueError when it would not fit in :data:`MAX_PACKET`."""
    packet = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(packet) > MAX_PACKET:
        raise ValueError(f"message {message.get('op')!r} is {len(packet)} bytes")
    return packet


def decode(packet: bytes) -> Message | None:
    """The message in ``packet``; None for anything but a JSON object with a
    string ``op``."""
    try:
        message = json.loads(packet)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        return None
    return message


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of ``SOCK_SEQPACKET`` sockets, neither inheritable."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


@implementer(IReadWriteDescriptor)
class Channel:
    """One end of a socket pair, read and written by the reactor.

    ``received(message, descriptors)`` gets every message (the receiver owns
    the descriptors); ``lost()`` is called once when the peer is gone."""

    log = Logger()

    def __init__(
        self,
        sock: socket.socket,
        reactor: Any,
        received: Callable[[Message, list[int]], None],
        lost: Callable[[], None],
        name: str = "channel",
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.reactor = reactor
        self.received = received
        self.lost = lost
        self.name = name
        self.open = True
        self._queue: deque[tuple[bytes, list[int]]] = deque()
        self._retry: Any = None
        #: Called when a backlog the peer could not take at once has all
        #: been sent.
        self.drained: Callable[[], None] | None = None
        self._behind = False

    def start(self) -> None:
        """Read what the peer sends."""
        self.reactor.addReader(self)

    def fileno(self) -> int:
        """The socket's descriptor (-1 once closed)."""
        return self.sock.fileno()

    def logPrefix(self) -> str:
        """The name in Twisted's log lines."""
        return self.name

    def send(self, message: Mapping[str, Any], descriptors: list[int] | None = None) -> bool:
        """Send ``message`` with ``descriptors`` (owned by the channel from
        now on); False when the channel is closed or the message cannot be
        encoded (the descriptors are closed then).  Never raises."""
        fds = list(descriptors or ())
        if not self.open:
            _close_all(fds)
            return False
        try:
            packet = encode(message)
        except (ValueError, TypeError) as error:
            _close_all(fds)
            self.log.warn("{name}: message not sent: {error}", name=self.name, error=error)
            return False
        if len(self._queue) >= MAX_QUEUE:
            # The peer has stopped reading: it is as good as gone.
            _close_all(fds)
            self.log.error("{name}: the peer stopped reading", name=self.name)
            self.reactor.callLater(0, self.connectionLost, Failure(main.CONNECTION_LOST))
            return False
        self._queue.append((packet, fds))
        if len(self._queue) == 1 and self.doWrite() is not None:
            # The peer is gone: say so from the reactor, not from here.
            self.reactor.callLater(0, self.connectionLost, Failure(main.CONNECTION_LOST))
        return True

    def _write_again(self) -> None:
        self._retry = None
        if self.open and self.doWrite() is not None:
            self.connectionLost(Failure(main.CONNECTION_LOST))

    @property
    def waiting(self) -> int:
        """Packets the peer has not taken yet."""
        return len(self._queue)

    def doWrite(self) -> Any:
        """Send what waits, as far as the peer takes it."""
        while self._queue:
            packet, fds = self._queue[0]
            try:
                if fds:
                    socket.send_fds(self.sock, [packet], fds)
                else:
                    self.sock.send(packet)
            except (BlockingIOError, InterruptedError):
                self._behind = True
                self.reactor.addWriter(self)
                return None
            except OSError as error:
                if error.errno not in _SHORT_OF_ROOM:
                    return main.CONNECTION_LOST
                self._behind = True
                # Too many descriptors in flight, or no kernel memory for
                # now: the peer is there, try again in a moment.
                self.reactor.removeWriter(self)
                if self._retry is None or not self._retry.active():
                    self._retry = self.reactor.callLater(RETRY_SECONDS, self._write_again)
                return None
            self._queue.popleft()
            _close_all(fds)
        self.reactor.removeWriter(self)
        if self._behind:
            self._behind = False
            if self.drained is not None:
                self.drained()
        return None

    def doRead(self) -> Any:
        """Take the packets the socket holds, :data:`READ_BATCH` at most
        (the reactor calls again while more wait)."""
        for _ in range(READ_BATCH):
            if not self.open:
                return None
            try:
                packet, fds, flags = _receive(self.sock)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError:
                return main.CONNECTION_LOST
            if not packet and not fds:
                return main.CONNECTION_DONE
            message = decode(packet) if not flags & socket.MSG_TRUNC else None
            if message is None:
                _close_all(fds)
                self.log.warn("{name}: unreadable message dropped", name=self.name)
                continue
            try:
                self.received(message, fds)
            except Exception:
                self.log.failure("{name}: message {op} failed", name=self.name, op=message["op"])
        return None

    def close(self) -> None:
        """Stop and close the socket (``lost`` is not called)."""
        if not self.open:
            return
        self.open = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self.reactor.removeReader(self)
        self.reactor.removeWriter(self)
        while self._queue:
            _close_all(self._queue.popleft()[1])
        self.sock.close()

    def connectionLost(self, reason: Failure) -> None:
        """The peer is gone (the reactor says so): close, then ``lost()``."""
        if not self.open:
            return
        self.close()
        self.lost()


def _receive(sock: socket.socket) -> tuple[bytes, list[int], int]:
    """One packet, its descriptors (close-on-exec from the start, which
    ``socket.recv_fds`` cannot ask for), and its flags."""
    packet, ancillary, flags, _ = sock.recvmsg(
        MAX_PACKET, socket.CMSG_SPACE(MAX_DESCRIPTORS * _INT.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            numbers = array.array("i")
            numbers.frombytes(data[: len(data) - len(data) % numbers.itemsize])
            fds.extend(numbers)
    return packet, fds, flags


def _close_all(descriptors: list[int]) -> None:
    for descriptor in descriptors:
        try:
            os.close(descriptor)
        except OSError:
            pass
