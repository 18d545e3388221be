"""TFTP transfers as state machines, without I/O (RFC 1350, 2347–2349, 7440).

A transfer is fed received packets and time-outs and answers with the
datagrams to send; it reads or writes its file through callables given to
it.  Blocks are counted from 1 without wrapping inside; on the wire their
numbers wrap from 65535 to 0, so files of any size transfer.

Duplicate ACKs never cause a resend (the Sorcerer's Apprentice bug, RFC 1123
§4.2.3.1): only a time-out does, with the interval doubling each time.
With a window size (RFC 7440) the sender sends that many blocks before it
waits; an ACK for a block before the window's end makes it go on from the
block after that one.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Callable

from communigate.protocols.tftp import packets
from communigate.protocols.tftp.packets import Ack, Data, Error, OptionAck, Packet, encode

_DATA_HEADER = struct.Struct("!HH")
DEFAULT_BLOCK = 512
MAX_BLOCK = 65464
MAX_WINDOW = 64
MAX_RETRIES = 5
DEFAULT_TIMEOUT = 1.0

#: A datagram to send: bytes, or a view of a buffer the transfer reuses
#: (send it before calling the transfer again).
Datagram = bytes | memoryview


class Negotiated:
    """Options of one transfer after negotiation (RFC 2347)."""

    def __init__(self, requested: dict[str, str], size: int | None) -> None:
        self.block_size = DEFAULT_BLOCK
        self.window = 1
        self.timeout = DEFAULT_TIMEOUT
        self.accepted: dict[str, str] = {}
        self.transfer_size: int | None = None
        for name, value in requested.items():
            if not value.isdigit():
                continue
            number = int(value)
            if name == "blksize" and 8 <= number:
                self.block_size = min(number, MAX_BLOCK)
                self.accepted[name] = str(self.block_size)
            elif name == "windowsize" and 1 <= number:
                self.window = min(number, MAX_WINDOW)
                self.accepted[name] = str(self.window)
            elif name == "timeout" and 1 <= number <= 255:
                self.timeout = float(number)
                self.accepted[name] = value
            elif name == "tsize":
                self.transfer_size = number if size is None else size
                self.accepted[name] = str(self.transfer_size)


class Transfer(ABC):
    """What both directions share: retries, time-outs, the end."""

    def __init__(self, options: Negotiated) -> None:
        self.options = options
        self.retries = 0
        self.done = False
        self.error: str | None = None

    @property
    def finished(self) -> bool:
        """Whether nothing more will be sent."""
        return self.done or self.error is not None

    def next_timeout(self) -> float:
        """Seconds to wait now (doubling with each retry)."""
        return float(self.options.timeout * (2**self.retries))

    def fail(self, code: int, message: str) -> list[Datagram]:
        """End with an error sent to the peer."""
        self.error = message
        return [encode(Error(code, message))]

    def timed_out(self) -> list[Datagram]:
        """Nothing came in time: resend, or give up."""
        if self.finished:
            return []
        self.retries += 1
        if self.retries > MAX_RETRIES:
            self.error = "timed out"
            return []
        return self.resend()

    @abstractmethod
    def start(self) -> list[Datagram]:
        """The first datagrams of the transfer."""

    @abstractmethod
    def resend(self) -> list[Datagram]:
        """What to send again after a time-out."""

    def received(self, packet: Packet) -> list[Datagram]:
        """A packet from the peer's transfer ID."""
        if isinstance(packet, Error):
            self.error = f"peer error {packet.code}: {packet.message}"
            return []
        return self.handle(packet)

    @abstractmethod
    def handle(self, packet: Packet) -> list[Datagram]:
        """A non-error packet."""


class ReadTransfer(Transfer):
    """The server sends a file (RRQ).

    ``read_into(offset, buffer)`` fills ``buffer`` from the file at
    ``offset`` and says how many bytes it put there (fewer only at the end
    of the file).  Each block is read into one buffer reused for the whole transfer, behind
    a header packed in place: a lock-step transfer (window 1) allocates
    nothing per block, and the datagram it returns is a view of that buffer,
    valid until the next call.  With a larger window every block of the
    window is copied out, since they are all sent at once.
    """

    def __init__(self, read_into: Callable[[int, memoryview], int], options: Negotiated) -> None:
        super().__init__(options)
        self._read_into = read_into
        self.acked = 0
        self.sent = 0
        self.last: int | None = None
        self.awaiting_oack = bool(options.accepted)
        self._buffer = bytearray(_DATA_HEADER.size + options.block_size)
        self._packet = memoryview(self._buffer)
        self._payload = self._packet[_DATA_HEADER.size :]

    def start(self) -> list[Datagram]:
        """The OACK, or the first window of data."""
        if self.awaiting_oack:
            return [encode(OptionAck(self.options.accepted))]
        return self._window()

    def _block(self, number: int) -> memoryview:
        """Block ``number`` in the shared buffer (the last one is short)."""
        size = self.options.block_size
        got = self._read_into((number - 1) * size, self._payload)
        _DATA_HEADER.pack_into(self._buffer, 0, packets.DATA, number & 0xFFFF)
        if got < size:
            self.last = number
            return self._packet[: _DATA_HEADER.size + got]
        return self._packet

    def _window(self) -> list[Datagram]:
        number = self.acked + 1
        if self.options.window == 1:
            self.sent = number
            return [self._block(number)]
        out: list[Datagram] = []
        while len(out) < self.options.window and (self.last is None or number <= self.last):
            out.append(bytes(self._block(number)))
            number += 1
        self.sent = number - 1
        return out

    def resend(self) -> list[Datagram]:
        """The OACK or the unacknowledged window again."""
        if self.awaiting_oack:
            return [encode(OptionAck(self.options.accepted))]
        return self._window()

    def handle(self, packet: Packet) -> list[Datagram]:
        """ACKs move the window; anything else is an error."""
        if not isinstance(packet, Ack):
            return self.fail(packets.ILLEGAL_OPERATION, "expected an ACK")
        return self.ack(packet.block)

    def ack(self, block: int) -> list[Datagram]:
        """An ACK of the 16-bit block number ``block`` (the common packet,
        taken without building a packet object)."""
        if self.awaiting_oack:
            if block != 0:
                return []
            self.awaiting_oack = False
            self.retries = 0
            return self._window()
        # The outstanding block the 16-bit number names: the window is far
        # smaller than 65536 blocks, so at most one can match.
        number = self.acked + ((block - self.acked) & 0xFFFF)
        if number == self.acked or number > self.sent:
            return []  # a duplicate or stale ACK: never answered
        self.acked = number
        self.retries = 0
        if self.last is not None and number >= self.last:
            self.done = True
            return []
        return self._window()


class WriteTransfer(Transfer):
    """The server receives a file (WRQ)."""

    def __init__(
        self, write: Callable[[bytes], object], options: Negotiated, limit: int | None
    ) -> None:
        super().__init__(options)
        self._write = write
        self.limit = limit
        self.received_blocks = 0
        self.since_ack = 0
        self.size = 0
        self._last_sent: bytes = b""

    def start(self) -> list[Datagram]:
        """OACK if options were accepted, else ACK 0."""
        if self.limit is not None and (self.options.transfer_size or 0) > self.limit:
            return self.fail(packets.DISK_FULL, "file too large for the storage quota")
        if self.options.accepted:
            self._last_sent = encode(OptionAck(self.options.accepted))
        else:
            self._last_sent = encode(Ack(0))
        return [self._last_sent]

    def resend(self) -> list[Datagram]:
        """The last ACK again."""
        return [self._last_sent]

    def _ack(self) -> list[Datagram]:
        self.since_ack = 0
        self._last_sent = encode(Ack(self.received_blocks & 0xFFFF))
        return [self._last_sent]

    def handle(self, packet: Packet) -> list[Datagram]:
        """DATA in order is written; a gap or a repeat re-acknowledges."""
        if not isinstance(packet, Data):
            return self.fail(packets.ILLEGAL_OPERATION, "expected DATA")
        expected = (self.received_blocks + 1) & 0xFFFF
        if packet.block != expected:
            if self.since_ack == 0 and packet.block == self.received_blocks & 0xFFFF:
                return [self._last_sent]  # our ACK was lost: say it again
            return self._ack()  # a gap: the sender goes on after our last block
        if len(packet.payload) > self.options.block_size:
            return self.fail(packets.ILLEGAL_OPERATION, "block larger than negotiated")
        self.size += len(packet.payload)
        if self.limit is not None and self.size > self.limit:
            return self.fail(packets.DISK_FULL, "storage quota exceeded")
        self._write(packet.payload)
        self.received_blocks += 1
        self.since_ack += 1
        self.retries = 0
        if len(packet.payload) < self.options.block_size:
            self.done = True
            return self._ack()
        if self.since_ack >= self.options.window:
            return self._ack()
        return []
