"""The TFTP adapters: refusals on the listening port; transfers with a Clock
(time-outs, resends, the end)."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock

from communigate.portal.tftpfiles import Reason, Refused, Target, TFTPFiles
from communigate.protocols.tftp.packets import Ack, Data, Error, encode, parse
from communigate.protocols.tftp.server import TFTPServer, TransferProtocol
from communigate.protocols.tftp.transfer import Negotiated, ReadTransfer
from tests.protocols.tftp.test_transfer import reader


class FakeUDP:
    """A connected UDP transport that records datagrams."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.peer: tuple[str, int] | None = None

    def connect(self, host: str, port: int) -> None:
        self.peer = (host, port)

    def write(self, datagram: bytes, addr: object = None) -> None:
        # A copy, as the kernel takes one: transfers reuse their buffers.
        self.sent.append(bytes(datagram))


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
        ReadTransfer(reader(data), Negotiated({}, None)),
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


class FakeUDPPort(FakeUDP):
    """A transfer port: closing it ends the protocol a turn later, as the
    reactor does (``connectionLost`` → ``doStop`` → ``stopProtocol``)."""

    def __init__(self, reactor: UDPClock, protocol: DatagramProtocol) -> None:
        super().__init__()
        self.reactor = reactor
        self.protocol = protocol
        self.listening = True
        self.max_packet = 0

    def stopListening(self) -> None:
        if self.listening:
            self.listening = False
            self.reactor.callLater(0, self.connectionLost)

    def connectionLost(self) -> None:
        self.listening = False
        self.reactor.ports.remove(self)
        self.protocol.doStop()


class UDPClock(Clock):
    """A Clock that also opens fake UDP ports."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[FakeUDPPort] = []

    def listenUDP(
        self, port: int, protocol: DatagramProtocol, interface: str = "", maxPacketSize: int = 8192
    ) -> FakeUDPPort:
        opened = FakeUDPPort(self, protocol)
        opened.max_packet = maxPacketSize
        self.ports.append(opened)
        protocol.makeConnection(opened)
        return opened


class OneFile(TFTPFiles):
    """Every name is one small file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def resolve(self, name: str, write: bool) -> Target:
        return Target(None, name, self.path, None)  # type: ignore[arg-type]


RRQ = b"\x00\x01f.txt\x00octet\x00"
CLIENT = ("192.0.2.7", 4000)


def listening_server(tmp_path: Path) -> tuple[TFTPServer, FakeUDP, UDPClock]:
    (tmp_path / "f.txt").write_bytes(b"x" * 600)
    reactor = UDPClock()
    server = TFTPServer(OneFile(tmp_path / "f.txt"), reactor, max_per_address=8)
    listening = FakeUDP()
    server.transport = listening  # type: ignore[assignment]
    return server, listening, reactor


def test_unanswered_transfers_time_out_and_free_their_slots(tmp_path: Path) -> None:
    """8 read requests never ACKed from one address all time out, freeing
    their slots: a 9th request is then served (while they ran it was refused)."""
    server, listening, reactor = listening_server(tmp_path)
    for _ in range(8):
        server.datagramReceived(RRQ, CLIENT)
    reactor.advance(0)
    assert server.active[CLIENT[0]] == 8 and len(reactor.ports) == 8
    server.datagramReceived(RRQ, CLIENT)
    assert parse(listening.sent[-1]).message == "too many transfers from this address"  # type: ignore[union-attr]
    for _ in range(200):
        reactor.advance(1)
    assert not server.active and reactor.ports == [] and not reactor.getDelayedCalls()
    listening.sent.clear()
    server.datagramReceived(RRQ, CLIENT)
    reactor.advance(0)
    assert listening.sent == [] and server.active[CLIENT[0]] == 1
    assert parse(reactor.ports[0].sent[0]) == Data(1, b"x" * 512)


def test_port_closed_under_a_transfer_frees_its_slot(tmp_path: Path) -> None:
    """When the reactor closes a transfer's port (a socket error after an
    ICMP unreachable), the transfer ends, frees its slot, and its pending
    time-out neither sends nor raises."""
    server, _listening, reactor = listening_server(tmp_path)
    server.datagramReceived(RRQ, CLIENT)
    reactor.advance(0)
    port = reactor.ports[0]
    port.connectionLost()
    assert not server.active
    protocol = port.protocol
    assert isinstance(protocol, TransferProtocol) and protocol.transfer.error
    sent = len(port.sent)
    for _ in range(100):
        reactor.advance(10)
    assert len(port.sent) == sent and not reactor.getDelayedCalls()


def test_refused_write_ends_transfer_once(tmp_path: Path) -> None:
    """A write that fails inside a step (the client's port unreachable)
    ends the transfer exactly once: the slot count never goes below zero."""
    server, _listening, reactor = listening_server(tmp_path)
    server.datagramReceived(RRQ, CLIENT)
    reactor.advance(0)
    port = reactor.ports[0]
    protocol = port.protocol
    assert isinstance(protocol, TransferProtocol)
    calls: list[str] = []
    original = protocol.done
    protocol.done = lambda: (calls.append("done"), original())  # type: ignore[assignment,func-returns-value]

    def refusing_write(datagram: bytes, addr: object = None) -> None:
        protocol.connectionRefused()

    port.write = refusing_write  # type: ignore[method-assign]
    reactor.advance(5)
    protocol.connectionRefused()
    reactor.advance(100)
    assert calls == ["done"] and not server.active and reactor.ports == []


def test_error_inside_a_time_out_is_contained(tmp_path: Path) -> None:
    """An OSError while resending (ENOBUFS, EPERM) ends the transfer instead
    of escaping from the reactor's timed call."""
    server, _listening, reactor = listening_server(tmp_path)
    server.datagramReceived(RRQ, CLIENT)
    reactor.advance(0)
    port = reactor.ports[0]

    def failing_write(datagram: bytes, addr: object = None) -> None:
        raise OSError(105, "No buffer space available")

    port.write = failing_write  # type: ignore[method-assign]
    reactor.advance(1.5)
    reactor.advance(0)
    assert not server.active and reactor.ports == []


def test_unreadable_file_is_refused_without_a_slot(tmp_path: Path) -> None:
    """A file that vanished between the check and the open is refused with
    "file not found" and takes no slot."""
    reactor = UDPClock()
    server = TFTPServer(OneFile(tmp_path / "gone.txt"), reactor)
    listening = FakeUDP()
    server.transport = listening  # type: ignore[assignment]
    server.datagramReceived(RRQ, CLIENT)
    assert parse(listening.sent[0]) == Error(1, "file not found")
    assert not server.active and reactor.ports == []


def test_ports_read_whole_blocks(tmp_path: Path) -> None:
    """An upload's port reads datagrams as large as the negotiated block
    (RFC 2348 allows 65464 bytes), a download's port small ones."""
    server, _listening, reactor = listening_server(tmp_path)
    server.datagramReceived(b"\x00\x02up.bin\x00octet\x00blksize\x0065464\x00", CLIENT)
    server.datagramReceived(RRQ, CLIENT)
    upload, download = reactor.ports
    assert upload.max_packet >= 4 + 65464
    assert 516 <= download.max_packet < 4 + 65464


def test_downloads_beyond_the_thread_limit_run_on_the_reactor(tmp_path: Path) -> None:
    """While every download thread is taken, a download runs on a reactor
    port instead, and frees its slot when it ends."""
    server, _listening, reactor = listening_server(tmp_path)
    server.download_threads = 1
    server.threads_running = 1
    server.datagramReceived(RRQ, CLIENT)
    reactor.advance(0)
    assert len(reactor.ports) == 1 and server.active[CLIENT[0]] == 1
    port = reactor.ports[0]
    port.protocol.datagramReceived(encode(Ack(1)), CLIENT)
    port.protocol.datagramReceived(encode(Ack(2)), CLIENT)
    reactor.advance(0)
    assert not server.active and reactor.ports == [] and server.threads_running == 1
