"""The TFTP adapters: refusals on the listening port; transfers with a Clock
(time-outs, resends, the end)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from communigate.portal.tftpfiles import Reason, Refused, Target, TFTPFiles
from communigate.protocols.tftp.packets import Ack, Data, encode, parse
from communigate.protocols.tftp.server import TFTPServer, TransferProtocol
from communigate.protocols.tftp.transfer import Negotiated, ReadTransfer


class FakeUDP:
    """A connected UDP transport that records datagrams."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.peer: tuple[str, int] | None = None

    def connect(self, host: str, port: int) -> None:
        self.peer = (host, port)

    def write(self, datagram: bytes, addr: object = None) -> None:
        self.sent.append(datagram)


class FakePort:
    stopped = False

    def stopListening(self) -> None:
        self.stopped = True


class RefusingFiles(TFTPFiles):
    """Refuses every name for one reason."""

    def __init__(self, reason: Reason) -> None:
        self.reason = reason

    def resolve(self, name: str, write: bool) -> Target:
        raise Refused(self.reason, f"refused {name}")


@pytest.mark.parametrize(
    ("reason", "code"),
    [(Reason.NOT_FOUND, 1), (Reason.ACCESS_DENIED, 2), (Reason.NO_SUCH_USER, 7)],
)
def test_refusal_error_codes(reason: Reason, code: int) -> None:
    """Each refusal reason is answered with its RFC 1350 error code and the message."""
    server = TFTPServer(RefusingFiles(reason), Clock())
    transport = FakeUDP()
    server.transport = transport  # type: ignore[assignment]
    server.datagramReceived(b"\x00\x01f.txt\x00octet\x00", ("127.0.0.1", 5000))
    assert transport.sent == [b"\x00\x05\x00" + bytes([code]) + b"refused f.txt\x00"]


def start(data: bytes) -> tuple[TransferProtocol, FakeUDP, Clock, list[str]]:
    clock = Clock()
    finished: list[str] = []
    protocol = TransferProtocol(
        ReadTransfer(lambda offset, size: data[offset : offset + size], Negotiated({}, None)),
        ("127.0.0.1", 5000),
        clock,
        lambda: finished.append("done"),
    )
    transport = FakeUDP()
    protocol.transport = transport  # type: ignore[assignment]
    protocol.port = FakePort()
    protocol.startProtocol()
    clock.advance(0)
    return protocol, transport, clock, finished


def test_resend_after_timeout_only() -> None:
    """A block is resent after the time-out, not before; progress postpones it."""
    protocol, transport, clock, _ = start(b"x" * 700)
    assert transport.peer == ("127.0.0.1", 5000)
    assert [parse(item) for item in transport.sent] == [Data(1, b"x" * 512)]
    clock.advance(0.9)
    assert len(transport.sent) == 1
    clock.advance(0.2)
    assert len(transport.sent) == 2 and transport.sent[1] == transport.sent[0]
    protocol.datagramReceived(encode(Ack(1)), ("127.0.0.1", 5000))
    assert parse(transport.sent[-1]) == Data(2, b"x" * 188)
    clock.advance(1.5)  # the timer fires but the deadline moved with the ACK
    assert len(transport.sent) == 3


def test_finishes_and_frees_the_port() -> None:
    """The last ACK ends the transfer and stops listening."""
    protocol, _transport, _clock, finished = start(b"short")
    protocol.datagramReceived(encode(Ack(1)), ("127.0.0.1", 5000))
    assert protocol.port is None and finished == ["done"]


def test_gives_up() -> None:
    """With no answer at all the transfer ends after its retries."""
    protocol, _transport, clock, finished = start(b"x" * 100)
    for _ in range(100):
        clock.advance(10)
    assert protocol.transfer.error == "timed out" and finished == ["done"]
