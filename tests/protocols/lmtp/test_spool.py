"""LMTP DATA spooled to disk as it arrives, and LMTP's connection limits."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from communigate.protocols.lmtp.server import LMTPFactory, LMTPServer
from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox


def session(directory: FileDirectory, spool: Path) -> tuple[LMTPServer, StringTransport, Clock]:
    clock = Clock()
    factory = LMTPFactory(directory, clock, "mx.test", 10_000_000, spool=spool)
    server = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 24))
    assert isinstance(server, LMTPServer)
    transport = StringTransport()
    server.makeConnection(transport)
    transport.clear()
    return server, transport, clock


def files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.exists() else []


def test_data_goes_to_the_spool_and_is_linked_to_each_recipient(
    directory: FileDirectory, tmp_path: Path
) -> None:
    """Message lines are written to a spool file, not memory; each INBOX gets a
    hard link of it and the spool is empty afterwards."""
    folder = tmp_path / "Spool"
    server, transport, _ = session(directory, folder)
    server.dataReceived(
        b"LHLO mta\r\nMAIL FROM:<a@far.example>\r\nRCPT TO:<info@company.com>\r\n"
        b"RCPT TO:<info@client1.com>\r\nDATA\r\n"
    )
    line = b"0123456789" * 9 + b"\r\n"
    server.dataReceived(b"Subject: spooled\r\n\r\n" + line * 5000)
    (spool_file,) = files(folder)
    assert spool_file.stat().st_size > 400_000
    transport.clear()
    server.dataReceived(b"..last\r\n.\r\n")
    assert transport.value() == (
        b"250 2.0.0 info@company.com delivered\r\n250 2.0.0 info@client1.com delivered\r\n"
    )
    assert files(folder) == []
    boxes = [
        Mailbox.of_account(directory.account_path(domain, "info"))
        for domain in ("company.com", "client1.com")
    ]
    infos = [box.messages()[-1] for box in boxes]
    assert os.stat(infos[0].path).st_ino == os.stat(infos[1].path).st_ino
    data = boxes[0].read(infos[0])
    assert data.startswith(b"Return-Path: <a@far.example>\r\nSubject: spooled\r\n")
    assert data.endswith(line + b".last\r\n") and not infos[0].dot_free


def test_lost_connection_during_data_leaves_no_spool(
    directory: FileDirectory, tmp_path: Path
) -> None:
    """A connection lost before the final dot delivers nothing and removes the spool."""
    folder = tmp_path / "Spool"
    server, _, _ = session(directory, folder)
    box = Mailbox.of_account(directory.account_path("company.com", "info"))
    before = len(box.messages())
    server.dataReceived(b"LHLO m\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<info@company.com>\r\nDATA\r\n")
    server.dataReceived(b"x" * 100 + b"\r\n")
    assert len(files(folder)) == 1
    server.connectionLost(None)
    assert files(folder) == []
    assert len(box.messages()) == before


def test_idle_timeout_from_the_settings(directory: FileDirectory, tmp_path: Path) -> None:
    """LMTP has no login deadline; its idle time-out comes from the Limits setting."""
    directory.update_server_settings({"Limits": {"lmtp": {"IdleTimeout": "2m"}}})
    server, transport, clock = session(directory, tmp_path / "Spool")
    clock.advance(119)
    server.dataReceived(b"NOOP\r\n")
    clock.advance(119)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.value().endswith(b"421 idle timeout\r\n")
    assert transport.disconnecting
