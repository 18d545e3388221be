"""Data before login: a literal larger than a few KiB is refused before it is
sent (no ``+``), a non-synchronising one ends the session, and the bytes a
client pushes anyway are not kept in memory."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import rss
from tests.hostile.listeners import Client, Listener, having
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

#: What the issue's attacker announced.
HUGE = 60_000_000
#: What each hostile connection pushes anyway.
PUSHED = 10 * 1024 * 1024
CHUNK = 64 * 1024


@pytest.mark.parametrize("listener", having("literals"), ids=str)
def test_large_literal_is_refused_without_continuation(server: Server, listener: Listener) -> None:
    """``a LOGIN {60000000}`` is answered with a tagged BAD or NO, never ``+``,
    and the session still works."""
    client = Client(server, listener)
    try:
        client.greet()
        client.send(b"a LOGIN {%d}\r\n" % HUGE)
        answer = client.line()
        assert answer.startswith((b"a BAD", b"a NO")), answer
        command, expected = listener.probe
        assert client.command(command, expected).startswith(expected)
    finally:
        client.close()


@pytest.mark.parametrize("listener", having("literals"), ids=str)
def test_large_non_synchronising_literal_closes(server: Server, listener: Listener) -> None:
    """``a LOGIN {60000000+}`` (LITERAL+) gets BAD and the connection is closed,
    since the bytes are coming anyway."""
    client = Client(server, listener)
    try:
        client.greet()
        client.send(b"a LOGIN {%d+}\r\n" % HUGE)
        assert client.line().startswith(b"a BAD")
        assert client.closed_within(5)
    finally:
        client.close()


@pytest.mark.parametrize("listener", having("literals"), ids=str)
def test_pushed_bytes_are_not_buffered(server: Server, listener: Listener) -> None:
    """Three connections that announce 60 MB and push 10 MB each anyway do
    not grow the server by more than a few MB."""
    clients = [Client(server, listener) for _ in range(3)]
    try:
        for client in clients:
            client.greet()
        before = rss(server)
        for client in clients:
            client.send(b"a LOGIN {%d}\r\n" % HUGE)
            assert client.line().startswith((b"a BAD", b"a NO"))
        block = b"x" * CHUNK
        for _ in range(PUSHED // CHUNK):
            for client in clients:
                client.send(block)
        for client in clients:
            command, expected = listener.probe
            client.send(b"\r\n")
            assert client.command(command, expected).startswith(expected)
        grown = rss(server) - before
        assert grown < 4 * 1024 * 1024, f"server grew by {grown} octets"
    finally:
        for client in clients:
            client.close()
