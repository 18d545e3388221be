"""A small TFTP client for the tests: options, windowsize (RFC 7440, which
Debian's tftp clients lack) and the OACK as received."""

from __future__ import annotations

import socket
import time

from communigate.protocols.tftp.packets import (
    RRQ,
    Ack,
    Data,
    Error,
    OptionAck,
    Request,
    encode,
    parse,
)


class TFTPError(Exception):
    """The server answered with an ERROR packet."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def get(
    port: int, name: str, options: dict[str, str], seconds: float = 60
) -> tuple[bytes, dict[str, str]]:
    """Download ``name``; the data and the server's OACK options."""
    deadline = time.monotonic() + seconds
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    try:
        sock.sendto(encode(Request(RRQ, name, "octet", options)), ("127.0.0.1", port))
        block_size = 512
        window = 1
        received = bytearray()
        expected = 1
        accepted: dict[str, str] = {}
        peer = None
        since_ack = 0
        while time.monotonic() < deadline:
            data, peer = sock.recvfrom(70000)
            packet = parse(data)
            if isinstance(packet, Error):
                raise TFTPError(packet.code, packet.message)
            if isinstance(packet, OptionAck):
                accepted = packet.options
                block_size = int(accepted.get("blksize", 512))
                window = int(accepted.get("windowsize", 1))
                sock.sendto(encode(Ack(0)), peer)
                continue
            assert isinstance(packet, Data)
            if packet.block != expected & 0xFFFF:
                sock.sendto(encode(Ack((expected - 1) & 0xFFFF)), peer)
                since_ack = 0
                continue
            received += packet.payload
            expected += 1
            since_ack += 1
            last = len(packet.payload) < block_size
            if last or since_ack >= window:
                sock.sendto(encode(Ack(packet.block)), peer)
                since_ack = 0
            if last:
                return bytes(received), accepted
        raise TimeoutError("download did not finish in time")
    finally:
        sock.close()
