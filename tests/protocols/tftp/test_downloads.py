"""Downloads in a thread of their own, driven synchronously over a fake
socket: the same transfer rules as on the reactor, time-outs left to the
socket, and one end that frees the slot."""

from __future__ import annotations

import socket

from twisted.internet.task import Clock

from communigate.protocols.tftp.downloads import ThreadedDownload
from communigate.protocols.tftp.packets import Ack, Data, Error, encode, parse
from communigate.protocols.tftp.server import TFTPServer
from communigate.protocols.tftp.transfer import MAX_RETRIES, Negotiated, ReadTransfer
from tests.protocols.tftp.test_transfer import reader


class FakeSocket:
    """A connected blocking UDP socket: what it will receive (an exception
    is raised; nothing left means the receive time-out ran out), what was
    sent, the receive time-outs set."""

    def __init__(self, incoming: list[bytes | OSError]) -> None:
        self.incoming = incoming
        self.sent: list[bytes] = []
        self.timeouts: list[bytes] = []
        self.closed = False

    def recv_into(self, buffer: bytearray) -> int:
        if not self.incoming:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        item = self.incoming.pop(0)
        if isinstance(item, OSError):
            raise item
        size = min(len(item), len(buffer))
        buffer[:size] = item[:size]
        return size

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)

    def setsockopt(self, level: int, option: int, value: bytes) -> None:
        assert (level, option) == (socket.SOL_SOCKET, socket.SO_RCVTIMEO)
        self.timeouts.append(value)

    def close(self) -> None:
        self.closed = True


class ThreadReactor(Clock):
    """Runs what a thread hands to the reactor thread at once."""

    def callFromThread(self, f, *args, **kwargs):  # type: ignore[no-untyped-def]
        f(*args, **kwargs)


def download(
    data: bytes, incoming: list[bytes | OSError], options: dict[str, str] | None = None
) -> tuple[ThreadedDownload, FakeSocket, list[str]]:
    """A download of ``data`` run to its end over a fake socket."""
    sock = FakeSocket(incoming)
    ended: list[str] = []
    transfer = ReadTransfer(reader(data), Negotiated(options or {}, len(data)))
    running = ThreadedDownload(
        transfer,
        ("127.0.0.1", 5000),
        sock,  # type: ignore[arg-type]
        ThreadReactor(),
        lambda: ended.append("done"),
    )
    running.run()
    return running, sock, ended


def test_lockstep_download_and_duplicate_acks() -> None:
    """Blocks go one per ACK; a duplicate ACK is never answered; the last
    ACK ends the transfer, closes the socket and frees the slot once."""
    running, sock, ended = download(b"x" * 1000, [encode(Ack(1)), encode(Ack(1)), encode(Ack(2))])
    assert [parse(item) for item in sock.sent] == [Data(1, b"x" * 512), Data(2, b"x" * 488)]
    assert running.transfer.done and running.transfer.error is None
    assert sock.closed and ended == ["done"]


def test_oack_and_window() -> None:
    """With options the OACK comes first, then windows of blocks."""
    _, sock, ended = download(
        bytes(30),
        [encode(Ack(0)), encode(Ack(2)), encode(Ack(4))],
        {"blksize": "8", "windowsize": "2"},
    )
    blocks = [getattr(parse(item), "block", None) for item in sock.sent]
    assert blocks == [None, 1, 2, 3, 4] and ended == ["done"]


def test_time_outs_resend_with_doubling_waits_then_give_up() -> None:
    """Without answers the block is resent after each time-out, the wait
    doubling each time, until the transfer gives up."""
    running, sock, ended = download(b"x" * 100, [])
    assert [parse(item) for item in sock.sent] == [Data(1, b"x" * 100)] * (MAX_RETRIES + 1)
    seconds = [int.from_bytes(value[:8], "little") for value in sock.timeouts]
    assert seconds == [1, 2, 4, 8, 16, 32]
    assert running.transfer.error == "timed out" and ended == ["done"]


def test_unreachable_client_ends_the_transfer() -> None:
    """ICMP port unreachable ends the transfer at once, freeing the slot."""
    running, _sock, ended = download(b"x" * 1000, [ConnectionRefusedError(111, "refused")])
    assert running.transfer.error == "client port unreachable" and ended == ["done"]


def test_error_packet_and_garbage() -> None:
    """Garbage is answered with an ERROR that ends the transfer; a peer's
    ERROR ends it silently."""
    running, sock, ended = download(b"x" * 1000, [b"\x00\x09zz"])
    assert parse(sock.sent[-1]) == Error(4, "malformed packet") and ended == ["done"]
    running, sock, ended = download(b"x" * 1000, [encode(Error(0, "bye"))])
    assert running.transfer.error and len(sock.sent) == 1 and ended == ["done"]


def test_unexpected_error_is_contained() -> None:
    """An exception inside the transfer ends it as an internal error; the
    slot is freed all the same."""

    def broken(offset: int, buffer: memoryview) -> int:
        raise ValueError("broken reader")

    sock = FakeSocket([])
    ended: list[str] = []
    running = ThreadedDownload(
        ReadTransfer(broken, Negotiated({}, None)),
        ("127.0.0.1", 5000),
        sock,  # type: ignore[arg-type]
        ThreadReactor(),
        lambda: ended.append("done"),
    )
    running.run()
    assert running.transfer.error == "internal error" and ended == ["done"] and sock.closed


def test_threads_only_on_a_reactor_that_runs_them() -> None:
    """A reactor with threads serves downloads in threads by default; a
    test's Clock keeps them on the reactor."""
    assert TFTPServer(None, Clock()).download_threads == 0  # type: ignore[arg-type]
    from twisted.internet import reactor

    assert TFTPServer(None, reactor).download_threads > 0  # type: ignore[arg-type]
