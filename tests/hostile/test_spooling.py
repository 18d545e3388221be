"""Spooling: after login, message data goes to a spool file as it arrives,
so four unfinished 50 MB messages cost the server a few MB, not 200; a
finished message is delivered whole and an abandoned one leaves nothing."""

from __future__ import annotations

import time

import pytest

from tests.hostile.conftest import rss, spool_files
from tests.hostile.listeners import Client, Listener, having
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

SIZE = 50_000_000
#: How much of each message the clients send before stopping.
SENT = 45_000_000
CONNECTIONS = 4
#: 1000-octet lines, so the same data suits literals and LMTP's lines.
LINE = b"x" * 998 + b"\r\n"
BLOCK = LINE * 64


def start_message(client: Client, size: int) -> None:
    """Log in and open a message of ``size`` octets (the go-ahead read)."""
    client.greet()
    client.log_in()
    for line, prefix in client.listener.message:
        client.command(line.replace(b"%d", str(size).encode()), prefix)


def wait_for(condition: object, seconds: float) -> bool:
    """Poll ``condition`` (a callable) until it is true or time is up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("listener", having("message"), ids=str)
def test_unfinished_messages_do_not_grow_the_server(server: Server, listener: Listener) -> None:
    """Four connections each 45 MB into a 50 MB message: the server's memory
    grows by a few MB at most, the data is in the spool, and closing the
    connections removes it."""
    warm = Client(server, listener)
    try:
        start_message(warm, len(BLOCK))
        warm.send(BLOCK)
    finally:
        warm.close()
    assert wait_for(lambda: spool_files(server) == [], 10)
    clients = [Client(server, listener, timeout=60) for _ in range(CONNECTIONS)]
    try:
        for client in clients:
            start_message(client, SIZE)
        before = rss(server)
        for _ in range(SENT // len(BLOCK)):
            for client in clients:
                client.send(BLOCK)

        def spooled() -> bool:
            files = spool_files(server)
            return len(files) == CONNECTIONS and all(
                path.stat().st_size >= SENT - len(BLOCK) for path in files
            )

        assert wait_for(spooled, 30), [path.stat().st_size for path in spool_files(server)]
        grown = rss(server) - before
        assert grown < 4 * 1024 * 1024, f"server grew by {grown} octets"
    finally:
        for client in clients:
            client.close()
    assert wait_for(lambda: spool_files(server) == [], 10), spool_files(server)


@pytest.mark.parametrize("listener", having("message"), ids=str)
def test_finished_message_is_delivered_whole(server: Server, listener: Listener) -> None:
    """A 5 MB message sent in full is delivered with every octet and the
    spool is empty afterwards."""
    size = len(BLOCK) * 80
    inbox = server.base / "Accounts" / "info.macnt" / "INBOX.mdir"
    before = set(inbox.rglob("*,S=*"))
    client = Client(server, listener, timeout=60)
    try:
        start_message(client, size)
        for _ in range(80):
            client.send(BLOCK)
        if listener.dot_lines:
            assert client.command(b".", b"250").startswith(b"250")
        else:
            assert b"OK" in client.command(b"", b"m ")
    finally:
        client.close()
    (new,) = set(inbox.rglob("*,S=*")) - before
    data = new.read_bytes()
    assert data.endswith(BLOCK) and data.count(LINE) == 80 * 64
    assert wait_for(lambda: spool_files(server) == [], 10)
