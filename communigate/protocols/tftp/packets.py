"""TFTP packets (RFC 1350 §5, RFC 2347 OACK): parsing and encoding.  Pure code."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6

# RFC 1350 error codes (and RFC 2347's 8).
NOT_DEFINED = 0
FILE_NOT_FOUND = 1
ACCESS_VIOLATION = 2
DISK_FULL = 3
ILLEGAL_OPERATION = 4
UNKNOWN_TID = 5
FILE_EXISTS = 6
NO_SUCH_USER = 7
OPTION_REFUSED = 8


class PacketError(ValueError):
    """Bytes that are not a TFTP packet."""


@dataclass(frozen=True)
class Request:
    """RRQ or WRQ with its options (names in lower case)."""

    opcode: int
    filename: str
    mode: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Data:
    """One block (numbers wrap from 65535 to 0)."""

    block: int
    payload: bytes


@dataclass(frozen=True)
class Ack:
    """Acknowledges a block (0 acknowledges a WRQ or an OACK)."""

    block: int


@dataclass(frozen=True)
class Error:
    """An error; ends the transfer."""

    code: int
    message: str


@dataclass(frozen=True)
class OptionAck:
    """The options the server accepted (RFC 2347)."""

    options: dict[str, str]


Packet = Request | Data | Ack | Error | OptionAck


def _strings(data: bytes) -> list[str]:
    if not data.endswith(b"\0"):
        raise PacketError("strings must end with NUL")
    try:
        return data[:-1].decode("utf-8").split("\0")
    except UnicodeDecodeError:
        raise PacketError("strings must be UTF-8") from None


def parse(data: bytes) -> Packet:
    """Parse one datagram."""
    if len(data) < 4:
        raise PacketError("packet too short")
    (opcode,) = struct.unpack("!H", data[:2])
    body = data[2:]
    if opcode in (RRQ, WRQ):
        strings = _strings(body)
        if len(strings) < 2 or len(strings) % 2 or not strings[0]:
            raise PacketError("malformed request")
        options = {}
        for index in range(2, len(strings), 2):
            options[strings[index].lower()] = strings[index + 1]
        return Request(opcode, strings[0], strings[1].lower(), options)
    if opcode == DATA:
        return Data(struct.unpack("!H", body[:2])[0], body[2:])
    if opcode == ACK:
        return Ack(struct.unpack("!H", body[:2])[0])
    if opcode == ERROR:
        code = struct.unpack("!H", body[:2])[0]
        return Error(code, body[2:].rstrip(b"\0").decode("utf-8", "replace"))
    if opcode == OACK:
        strings = _strings(body)
        return OptionAck(dict(zip(strings[::2], strings[1::2], strict=False)))
    raise PacketError(f"unknown opcode {opcode}")


def encode(packet: Packet) -> bytes:
    """The datagram of a packet."""
    if isinstance(packet, Data):
        return struct.pack("!HH", DATA, packet.block) + packet.payload
    if isinstance(packet, Ack):
        return struct.pack("!HH", ACK, packet.block)
    if isinstance(packet, Error):
        return struct.pack("!HH", ERROR, packet.code) + packet.message.encode("utf-8") + b"\0"
    if isinstance(packet, OptionAck):
        items = b"".join(
            key.encode("ascii") + b"\0" + value.encode("ascii") + b"\0"
            for key, value in packet.options.items()
        )
        return struct.pack("!H", OACK) + items
    strings = [packet.filename, packet.mode]
    for key, value in packet.options.items():
        strings += [key, value]
    return struct.pack("!H", packet.opcode) + "".join(s + "\0" for s in strings).encode("utf-8")
