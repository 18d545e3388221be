"""LMTP through StringTransport: per-recipient replies, dot-unstuffing, limits."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from communigate.protocols.lmtp.server import LMTPFactory
from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox


def session(directory: FileDirectory, max_message: int = 10_000) -> tuple[object, StringTransport]:
    factory = LMTPFactory(directory, Clock(), "mx.test", max_message)
    server = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 24))
    transport = StringTransport()
    server.makeConnection(transport)
    return server, transport


def talk(server: object, transport: StringTransport, data: bytes) -> list[bytes]:
    transport.clear()
    server.dataReceived(data)  # type: ignore[attr-defined]
    return transport.value().split(b"\r\n")[:-1]


def inbox(directory: FileDirectory, domain: str, name: str) -> list[bytes]:
    box = Mailbox.of_account(directory.account_path(domain, name))
    return [box.read(info) for info in box.messages()]


def test_delivery_with_one_reply_per_recipient(directory: FileDirectory) -> None:
    """Unknown recipients get 550 at RCPT; after DATA one reply per accepted one."""
    server, transport = session(directory)
    lines = talk(
        server,
        transport,
        b"LHLO mta\r\nMAIL FROM:<a@far.example>\r\nRCPT TO:<info@client1.com>\r\n"
        b"RCPT TO:<ghost@client1.com>\r\nRCPT TO:<john@company.com>\r\nDATA\r\n",
    )
    assert [line[:3] for line in lines] == [b"250"] * 5 + [b"250", b"250", b"550", b"250", b"354"]
    lines = talk(server, transport, b"Subject: x\r\n\r\n..dotted\r\nend\r\n.\r\n")
    assert lines == [
        b"250 2.0.0 info@client1.com delivered",
        b"250 2.0.0 john@company.com delivered",
    ]
    (message,) = inbox(directory, "client1.com", "j.smith")
    assert message.startswith(b"Return-Path: <a@far.example>\r\n")
    assert b"\r\n.dotted\r\nend\r\n" in message


def test_sequence_and_size(directory: FileDirectory) -> None:
    """Commands out of order get 503; a message over the limit gets 552."""
    server, transport = session(directory, max_message=20)
    assert talk(server, transport, b"MAIL FROM:<a@b.c>\r\n")[0].startswith(b"503")
    talk(server, transport, b"LHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<info@company.com>\r\n")
    assert talk(server, transport, b"DATA\r\n")[0].startswith(b"354")
    lines = talk(server, transport, b"x" * 50 + b"\r\n.\r\n")
    assert lines[0].startswith(b"552")
    assert inbox(directory, "company.com", "info") == []


def test_replies_wait_for_the_flush(directory: FileDirectory) -> None:
    """250 comes once the copy is durable; a pipelined QUIT waits behind it."""
    from communigate.portal.durable import DurableWriter
    from tests.conftest import SyncReactor
    from tests.portal.test_durablefiles import HeldPool

    server, transport = session(directory)
    pool = HeldPool()
    server.factory.writer = DurableWriter(SyncReactor(), pool)  # type: ignore[attr-defined]
    talk(server, transport, b"LHLO mta\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<info@company.com>\r\n")
    lines = talk(server, transport, b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    assert lines == [b"354 end data with <CR><LF>.<CR><LF>"]
    assert inbox(directory, "company.com", "info") == []
    transport.clear()
    pool.run()
    assert transport.value().split(b"\r\n")[:-1] == [
        b"250 2.0.0 info@company.com delivered",
        b"221 2.0.0 bye",
    ]
    (message,) = inbox(directory, "company.com", "info")
    assert message.endswith(b"Subject: x\r\n\r\nhi\r\n")
