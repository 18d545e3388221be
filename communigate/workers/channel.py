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

Message = dict[str, Any]


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
        now on); False when the channel is closed (they are closed)."""
        fds = list(descriptors or ())
        if not self.open:
            _close_all(fds)
            return False
        self._queue.append((encode(message), fds))
        if len(self._queue) == 1 and self.doWrite() is not None:
            # The peer is gone: say so from the reactor, not from here.
            self.reactor.callLater(0, self.connectionLost, Failure(main.CONNECTION_LOST))
        return True

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
                self.reactor.addWriter(self)
                return None
            except OSError:
                return main.CONNECTION_LOST
            self._queue.popleft()
            _close_all(fds)
        self.reactor.removeWriter(self)
        return None

    def doRead(self) -> Any:
        """Take every packet the socket holds."""
        while self.open:
            try:
                packet, fds, flags, _ = socket.recv_fds(self.sock, MAX_PACKET, MAX_DESCRIPTORS)
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


def _close_all(descriptors: list[int]) -> None:
    for descriptor in descriptors:
        try:
            os.close(descriptor)
        except OSError:
            pass
