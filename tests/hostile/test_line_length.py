"""Line length: a line over the limit is answered with an error and skipped,
never buffered whole, and the session goes on."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import rss
from tests.hostile.listeners import LISTENERS, Client, Listener
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

#: A line far over every listener's limit.
LENGTH = 16 * 1024 * 1024
CHUNK = 64 * 1024


@pytest.mark.parametrize("listener", LISTENERS, ids=str)
def test_long_line_is_refused_and_not_buffered(server: Server, listener: Listener) -> None:
    """16 MB without a line end: one error reply, the next command answered,
    and the server no bigger than a few MB more."""
    client = Client(server, listener)
    try:
        client.greet()
        before = rss(server)
        block = b"A" * CHUNK
        for _ in range(LENGTH // CHUNK):
            client.send(block)
        client.send(b"\r\n")
        assert client.line().startswith(listener.too_long)
        command, expected = listener.probe
        assert client.command(command, expected).startswith(expected)
        grown = rss(server) - before
        assert grown < 4 * 1024 * 1024, f"server grew by {grown} octets"
    finally:
        client.close()
