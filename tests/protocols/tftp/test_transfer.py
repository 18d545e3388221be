"""TFTP packets and transfer state machines, without sockets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from communigate.protocols.tftp import packets
from communigate.protocols.tftp.packets import (
    Ack,
    Data,
    Error,
    OptionAck,
    PacketError,
    Request,
    encode,
    parse,
)
from communigate.protocols.tftp.transfer import (
    MAX_RETRIES,
    Negotiated,
    ReadTransfer,
    WriteTransfer,
)


def reader(data: bytes) -> Callable[[int, memoryview], int]:
    """A ``read_into`` over ``data``, as the server gives one over a file."""

    def read_into(offset: int, buffer: memoryview) -> int:
        chunk = data[offset : offset + len(buffer)]
        buffer[: len(chunk)] = chunk
        return len(chunk)

    return read_into


def test_packets_round_trip() -> None:
    """Every packet kind encodes and parses back."""
    for packet in (
        Request(packets.RRQ, "dir/file", "octet", {"blksize": "1468", "windowsize": "16"}),
        Data(65535, b"x" * 10),
        Ack(0),
        Error(2, "access denied"),
        OptionAck({"blksize": "1468"}),
    ):
        assert parse(encode(packet)) == packet


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x09abcd", b"\x00\x01name\x00"])
def test_malformed_packets(data: bytes) -> None:
    """Garbage raises PacketError."""
    with pytest.raises(packets.PacketError):
        parse(data)


def test_options_negotiated() -> None:
    """blksize, windowsize, timeout and tsize are accepted within bounds."""
    options = Negotiated({"blksize": "1468", "windowsize": "16", "tsize": "0", "x": "1"}, 5000)
    assert options.accepted == {"blksize": "1468", "windowsize": "16", "tsize": "5000"}
    assert Negotiated({"blksize": "4"}, None).accepted == {}


def test_read_lockstep_and_duplicate_acks() -> None:
    """Blocks go one by one; a duplicate ACK is never answered."""
    transfer = ReadTransfer(reader(b"a" * 1000), Negotiated({}, None))
    assert transfer.start() == [encode(Data(1, b"a" * 512))]
    assert transfer.received(Ack(1)) == [encode(Data(2, b"a" * 488))]
    assert transfer.received(Ack(1)) == []  # Sorcerer's Apprentice: no resend
    assert transfer.timed_out() == [encode(Data(2, b"a" * 488))]
    assert transfer.received(Ack(2)) == [] and transfer.done


def test_read_with_oack_and_window() -> None:
    """With options the OACK comes first; then windows of blocks."""
    transfer = ReadTransfer(
        reader(bytes(100)), Negotiated({"blksize": "10", "windowsize": "4"}, 100)
    )
    assert transfer.start() == [encode(OptionAck({"blksize": "10", "windowsize": "4"}))]
    window = transfer.received(Ack(0))
    assert [parse(item).block for item in window] == [1, 2, 3, 4]  # type: ignore[union-attr]
    # Block 3 was lost: the client acknowledges 2; the server goes on from 3.
    again = transfer.received(Ack(2))
    assert [parse(item).block for item in again] == [3, 4, 5, 6]  # type: ignore[union-attr]


def test_read_block_numbers_wrap() -> None:
    """More than 65535 blocks: numbers wrap to 0 and the file completes."""
    size = 8 * 70_000 + 3
    transfer = ReadTransfer(reader(bytes(size)), Negotiated({"blksize": "8"}, size))
    transfer.start()
    sent = transfer.received(Ack(0))
    blocks = 0
    while not transfer.done:
        packet = parse(sent[-1])
        assert isinstance(packet, Data)
        blocks += 1
        sent = transfer.received(Ack(packet.block))
    assert blocks == 70_001


def test_read_window_wraps_and_ignores_stale_acks() -> None:
    """With a window across the wrap from 65535 to 0, each ACK names the
    right block, and ACKs of blocks already acknowledged (before or after
    the wrap) are never answered."""
    size = 8 * 65_540 + 1
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    transfer = ReadTransfer(reader(data), Negotiated({"blksize": "8", "windowsize": "4"}, size))
    transfer.start()
    sent = transfer.received(Ack(0))
    received = bytearray()
    while transfer.acked < 65_532:
        packets_ = [parse(item) for item in sent]
        received += b"".join(packet.payload for packet in packets_)  # type: ignore[union-attr]
        sent = transfer.received(Ack(packets_[-1].block))  # type: ignore[union-attr]
    assert bytes(received) == data[: 8 * 65_532]
    window = [parse(item) for item in sent]
    assert [packet.block for packet in window] == [65533, 65534, 65535, 0]  # type: ignore[union-attr]
    assert transfer.received(Ack(65534)) != []  # moves on from 65535
    assert transfer.received(Ack(65533)) == []  # already acknowledged
    assert transfer.received(Ack(65534)) == []  # a duplicate
    following = [parse(item) for item in transfer.received(Ack(1))]
    assert [packet.block for packet in following] == [2, 3, 4, 5]  # type: ignore[union-attr]
    assert transfer.received(Ack(0)) == []  # acknowledged by ACK 1 already
    assert transfer.acked == 65_537


def test_lockstep_datagram_matches_the_file() -> None:
    """Lock-step blocks come from one reused buffer, each with the right
    header and bytes, and the last one is short."""
    data = bytes(range(256)) * 5
    transfer = ReadTransfer(reader(data), Negotiated({"blksize": "512"}, len(data)))
    transfer.start()
    out = bytearray()
    sent = transfer.received(Ack(0))
    for number in range(1, 4):
        assert len(sent) == 1 and bytes(sent[0][:4]) == bytes([0, 3, 0, number])
        out += sent[0][4:]
        sent = transfer.received(Ack(number))
    assert bytes(out) == data and transfer.done and sent == []


def test_read_gives_up() -> None:
    """After the last retry the transfer fails (time-outs double)."""
    transfer = ReadTransfer(reader(b"x"), Negotiated({}, None))
    transfer.start()
    timeouts = []
    for _ in range(MAX_RETRIES + 1):
        timeouts.append(transfer.next_timeout())
        transfer.timed_out()
    assert transfer.error == "timed out"
    assert timeouts[:3] == [1.0, 2.0, 4.0]


def test_write_in_order_duplicates_and_gaps() -> None:
    """DATA in order is written and acknowledged; a repeat is re-acked."""
    written: list[bytes] = []
    transfer = WriteTransfer(written.append, Negotiated({}, None), None)
    assert transfer.start() == [encode(Ack(0))]
    assert transfer.received(Data(1, b"a" * 512)) == [encode(Ack(1))]
    assert transfer.received(Data(1, b"a" * 512)) == [encode(Ack(1))]
    assert transfer.received(Data(3, b"c")) == [encode(Ack(1))]
    assert transfer.received(Data(2, b"end")) == [encode(Ack(2))]
    assert transfer.done and written == [b"a" * 512, b"end"]


def test_write_window_and_quota() -> None:
    """With a window, one ACK per window; the quota is enforced."""
    transfer = WriteTransfer(
        lambda _: None, Negotiated({"blksize": "8", "windowsize": "2"}, None), 20
    )
    assert transfer.start() == [encode(OptionAck({"blksize": "8", "windowsize": "2"}))]
    assert transfer.received(Data(1, bytes(8))) == []
    assert transfer.received(Data(2, bytes(8))) == [encode(Ack(2))]
    out = transfer.received(Data(3, bytes(8)))
    assert parse(out[0]) == Error(packets.DISK_FULL, "storage quota exceeded")
    big = WriteTransfer(lambda _: None, Negotiated({"tsize": "100"}, None), 20)
    assert parse(big.start()[0]).code == packets.DISK_FULL  # type: ignore[union-attr]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_parser_raises_only_packet_error(data: bytes) -> None:
    """Arbitrary bytes either parse to a packet or raise PacketError, nothing else."""
    try:
        packet = parse(data)
    except PacketError:
        return
    assert isinstance(packet, Request | Data | Ack | Error | OptionAck)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([1, 2, 3, 4, 5, 6]), st.binary(max_size=300))
def test_parser_with_valid_opcodes_raises_only_packet_error(opcode: int, body: bytes) -> None:
    """Bytes after a valid opcode either parse or raise PacketError, nothing else."""
    try:
        packet = parse(opcode.to_bytes(2, "big") + body)
    except PacketError:
        return
    assert isinstance(packet, Request | Data | Ack | Error | OptionAck)
