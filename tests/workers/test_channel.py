"""The channel between the server and a worker: its wire format, and
descriptors passed over a real Unix socket pair driven by a fake reactor."""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Iterator

import pytest
from twisted.internet import main
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from communigate.workers.channel import (
    MAX_PACKET,
    MAX_QUEUE,
    READ_BATCH,
    RETRY_SECONDS,
    Channel,
    Message,
    decode,
    encode,
    socket_pair,
)
from tests.workers.helpers import closed


class Ends:
    """A socket pair: ``channel`` on one end, a raw socket on the other,
    and what the channel received and whether it was lost."""

    def __init__(self) -> None:
        ours, theirs = socket_pair()
        self.reactor = MemoryReactorClock()
        self.messages: list[tuple[Message, list[int]]] = []
        self.lost = 0
        self.channel = Channel(ours, self.reactor, self.receive, self.lose, name="test")
        theirs.setblocking(False)
        self.peer = theirs

    def receive(self, message: Message, descriptors: list[int]) -> None:
        self.messages.append((message, descriptors))

    def lose(self) -> None:
        self.lost += 1

    def peer_packets(self) -> list[bytes]:
        """Every packet waiting at the peer."""
        packets = []
        while True:
            try:
                packets.append(self.peer.recv(MAX_PACKET))
            except BlockingIOError:
                return packets

    def close(self) -> None:
        self.channel.close()
        self.peer.close()
        for _, descriptors in self.messages:
            for descriptor in descriptors:
                if not closed(descriptor):
                    os.close(descriptor)


@pytest.fixture
def ends() -> Iterator[Ends]:
    pair = Ends()
    yield pair
    pair.close()


def test_encode_decode_round_trip() -> None:
    """A message decodes to what was encoded."""
    message = {"op": "accept", "id": 7, "listener": "imap4", "text": "é"}
    assert decode(encode(message)) == message


@pytest.mark.parametrize(
    "packet",
    [b"[1, 2]", b'"accept"', b"{}", b'{"op": 3}', b'{"id": 1}', b"{not json", b"\xff\xfe"],
)
def test_decode_rejects_what_is_not_a_message(packet: bytes) -> None:
    """decode gives None for non-objects, a missing or non-string op, and bad JSON."""
    assert decode(packet) is None


def test_encode_refuses_oversized_message() -> None:
    """encode raises ValueError for a message beyond MAX_PACKET bytes."""
    encode({"op": "x", "data": "a" * (MAX_PACKET - 100)})
    with pytest.raises(ValueError):
        encode({"op": "x", "data": "a" * MAX_PACKET})


def test_start_adds_reader(ends: Ends) -> None:
    """start registers the channel as a reader with the reactor."""
    ends.channel.start()
    assert ends.channel in ends.reactor.readers


def test_descriptor_crosses_socket_pair() -> None:
    """A sent pipe write end works at the peer; the sender's copy is closed."""
    left, right = socket_pair()
    reactor = MemoryReactorClock()
    got: list[tuple[Message, list[int]]] = []
    sender = Channel(left, reactor, lambda m, d: None, lambda: None)
    receiver = Channel(right, reactor, lambda m, d: got.append((m, d)), lambda: None)
    read_end, write_end = os.pipe()
    try:
        assert sender.send({"op": "accept", "id": 1}, [write_end])
        assert closed(write_end)
        assert receiver.doRead() is None
        assert len(got) == 1
        message, descriptors = got[0]
        assert message == {"op": "accept", "id": 1}
        assert len(descriptors) == 1
        os.write(descriptors[0], b"through")
        os.close(descriptors[0])
        assert os.read(read_end, 100) == b"through"
    finally:
        os.close(read_end)
        sender.close()
        receiver.close()


def test_send_queues_when_peer_is_full_and_drains_later(ends: Ends) -> None:
    """A full peer makes send queue; doWrite later drains it in order."""
    filler = "x" * 8000
    sent = 0
    while ends.channel.waiting == 0:
        assert ends.channel.send({"op": "fill", "n": sent, "data": filler})
        sent += 1
        assert sent < 100_000
    assert ends.channel in ends.reactor.writers
    ends.channel.send({"op": "last", "n": sent})
    assert ends.channel.waiting == 2
    received: list[Message | None] = []
    while ends.channel.waiting:
        received.extend(decode(packet) for packet in ends.peer_packets())
        assert ends.channel.doWrite() is None
    received.extend(decode(packet) for packet in ends.peer_packets())
    assert ends.channel not in ends.reactor.writers
    assert [m["n"] for m in received if m is not None] == list(range(sent + 1))
    assert received[-1] == {"op": "last", "n": sent}


def test_queued_descriptors_closed_after_sending(ends: Ends) -> None:
    """A descriptor queued behind a full peer stays open until sent, then is closed."""
    while ends.channel.waiting == 0:
        ends.channel.send({"op": "fill", "data": "x" * 8000})
    read_end, write_end = os.pipe()
    try:
        ends.channel.send({"op": "with"}, [write_end])
        assert not closed(write_end)
        while ends.channel.waiting:
            ends.peer_packets()
            ends.channel.doWrite()
        assert closed(write_end)
    finally:
        os.close(read_end)


def test_peer_closing_ends_the_channel(ends: Ends) -> None:
    """Peer close gives CONNECTION_DONE; connectionLost calls lost() once."""
    ends.channel.start()
    ends.peer.close()
    assert ends.channel.doRead() is main.CONNECTION_DONE
    ends.channel.connectionLost(Failure(main.CONNECTION_DONE))
    ends.channel.connectionLost(Failure(main.CONNECTION_DONE))
    assert ends.lost == 1
    assert not ends.channel.open
    assert ends.channel not in ends.reactor.readers


def test_close_does_not_call_lost(ends: Ends) -> None:
    """close() stops the channel without telling lost()."""
    ends.channel.close()
    ends.channel.connectionLost(Failure(main.CONNECTION_DONE))
    assert ends.lost == 0
    assert ends.channel.fileno() == -1


def test_unreadable_packet_dropped_and_its_descriptors_closed(ends: Ends) -> None:
    """A bad packet is dropped, its descriptors closed; later ones arrive."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        socket.send_fds(ends.peer, [b"not json"], [write_end])
        ends.peer.send(json.dumps({"op": "after"}).encode())
        os.close(write_end)
        assert ends.channel.doRead() is None
        assert [m for m, _ in ends.messages] == [{"op": "after"}]
        # Every write end is closed now, so the pipe reads as ended.
        assert os.read(read_end, 10) == b""
    finally:
        os.close(read_end)


def test_truncated_packet_dropped(ends: Ends) -> None:
    """A packet longer than MAX_PACKET is dropped, not decoded in part."""
    ends.peer.setblocking(True)
    big = json.dumps({"op": "big", "data": "a" * MAX_PACKET}).encode()
    ends.peer.send(big)
    ends.peer.send(encode({"op": "small"}))
    ends.channel.doRead()
    assert [m for m, _ in ends.messages] == [{"op": "small"}]


def test_receiver_failure_does_not_stop_reading(ends: Ends) -> None:
    """A receiver raising for one message still gets the next."""
    calls: list[Message] = []

    def receive(message: Message, descriptors: list[int]) -> None:
        calls.append(message)
        if message["op"] == "bad":
            raise RuntimeError("boom")

    ends.channel.received = receive
    ends.peer.send(encode({"op": "bad"}))
    ends.peer.send(encode({"op": "good"}))
    assert ends.channel.doRead() is None
    assert [m["op"] for m in calls] == ["bad", "good"]


def test_send_after_close_closes_descriptors(ends: Ends) -> None:
    """send on a closed channel returns False and closes the descriptors given."""
    ends.channel.close()
    read_end, write_end = os.pipe()
    try:
        assert ends.channel.send({"op": "late"}, [write_end]) is False
        assert closed(write_end)
    finally:
        os.close(read_end)


def test_close_closes_queued_descriptors(ends: Ends) -> None:
    """Closing a channel closes the descriptors still queued."""
    while ends.channel.waiting == 0:
        ends.channel.send({"op": "fill", "data": "x" * 8000})
    read_end, write_end = os.pipe()
    try:
        ends.channel.send({"op": "with"}, [write_end])
        ends.channel.close()
        assert closed(write_end)
        assert ends.channel.waiting == 0
    finally:
        os.close(read_end)


def test_send_to_gone_peer_reports_loss_from_reactor(ends: Ends) -> None:
    """Sending when the peer is gone schedules connectionLost, which calls lost()."""
    ends.peer.close()
    assert ends.channel.send({"op": "hello"}) is True
    assert ends.lost == 0
    ends.reactor.advance(0)
    assert ends.lost == 1
    assert not ends.channel.open


def test_a_message_too_long_is_not_sent_and_never_raises(ends: Ends) -> None:
    """A message that cannot be a packet is dropped (False, its descriptors
    closed) instead of raising into the caller."""
    read_end, write_end = os.pipe()
    try:
        assert not ends.channel.send({"op": "x", "data": "é" * MAX_PACKET}, [write_end])
        assert closed(write_end)
        assert ends.channel.send({"op": "after"})
        assert [decode(p) for p in ends.peer_packets()] == [{"op": "after"}]
    finally:
        os.close(read_end)


class ShortOfRoom:
    """A socket whose first send fails as the kernel does with too many
    descriptors in flight."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.failures = 1

    def send(self, packet: bytes) -> int:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.ETOOMANYREFS, "Too many references")
        return self.real.send(packet)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def test_too_many_descriptors_in_flight_is_waited_out(ends: Ends) -> None:
    """ETOOMANYREFS keeps the packet and sends it a moment later; the peer
    is not taken for gone."""
    ends.channel.sock = ShortOfRoom(ends.channel.sock)  # type: ignore[assignment]
    assert ends.channel.send({"op": "later"})
    assert ends.peer_packets() == [] and ends.channel.waiting == 1
    ends.reactor.advance(RETRY_SECONDS)
    assert [decode(p) for p in ends.peer_packets()] == [{"op": "later"}]
    assert ends.lost == 0 and ends.channel.waiting == 0


def test_received_descriptors_are_not_inherited(ends: Ends) -> None:
    """Descriptors that arrive are close-on-exec, so no child process
    started meanwhile keeps a client's connection open."""
    read_end, write_end = os.pipe()
    try:
        socket.send_fds(ends.peer, [encode({"op": "fd"})], [write_end])
        ends.channel.doRead()
        [(_, [received])] = ends.messages
        assert not os.get_inheritable(received)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_peer_that_stops_reading_is_taken_for_gone(ends: Ends) -> None:
    """Past MAX_QUEUE unsent packets the channel gives up on the peer (so a
    stuck peer cannot make this side grow) and says it is lost."""
    sent = 0
    while ends.channel.send({"op": "x", "pad": "y" * 1000}):
        sent += 1
        assert sent <= MAX_QUEUE + 1000
    assert ends.channel.waiting == MAX_QUEUE
    ends.reactor.advance(0)
    assert ends.lost == 1 and not ends.channel.open


def test_drained_is_called_when_a_backlog_is_sent(ends: Ends) -> None:
    """``drained`` is called once a backlog the peer could not take at once
    has all gone, not for each message sent straight away."""
    calls = []
    ends.channel.drained = lambda: calls.append(1)
    ends.channel.send({"op": "now"})
    assert calls == []
    while ends.channel.waiting == 0:
        ends.channel.send({"op": "fill", "pad": "z" * 4000})
    ends.peer_packets()
    while ends.channel.waiting:
        ends.channel.doWrite()
        ends.peer_packets()
    assert calls == [1]


def test_one_read_takes_a_bounded_number_of_packets(ends: Ends) -> None:
    """A peer that keeps the socket full cannot hold this side in one read."""
    for number in range(READ_BATCH + 10):
        ends.peer.send(encode({"op": "n", "n": number}))
    ends.channel.doRead()
    assert len(ends.messages) == READ_BATCH
    ends.channel.doRead()
    assert len(ends.messages) == READ_BATCH + 10
