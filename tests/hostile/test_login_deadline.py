"""Slowloris: before login every listener closes the connection at an
absolute deadline that bytes do not extend; after login it does not apply.

The deadline is set to a few seconds through the ``Limits`` server setting,
as an administrator would, so the test stays short.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.hostile.conftest import server_setting
from tests.hostile.listeners import Client, Listener, having
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

#: The login deadline the tests set, in seconds.
DEADLINE = 3
#: Seconds between two bytes of the slow client.
DRIP = 2


@pytest.fixture(scope="module")
def short_deadline(server: Server) -> Iterator[Server]:
    """The server with ``Limits = { LoginTimeout = 3s; }``."""
    with server_setting(server, "Limits", f"{{LoginTimeout={DEADLINE}s;}}"):
        yield server


@pytest.mark.parametrize("listener", having("logs_in"), ids=str)
def test_bytes_do_not_extend_the_login_deadline(short_deadline: Server, listener: Listener) -> None:
    """A client sending one byte every 2 s is closed at the deadline, while a
    client that logged in at once stays connected past it."""
    slow = Client(short_deadline, listener)
    quick = Client(short_deadline, listener)
    try:
        started = time.monotonic()
        slow.greet()
        quick.greet()
        quick.log_in()
        closed = False
        while time.monotonic() - started < DEADLINE + 5:
            try:
                slow.send(b"X")
            except OSError:
                closed = True
                break
            if slow.closed_within(DRIP):
                closed = True
                break
        elapsed = time.monotonic() - started
        assert closed, f"{listener} kept a slow client for {elapsed:.1f} s"
        assert DEADLINE - 0.5 <= elapsed <= DEADLINE + 3, elapsed
        # Past the deadline of the quick client's connection too.
        time.sleep(max(0.0, started + DEADLINE + 1 - time.monotonic()))
        command, answer = listener.probe
        assert quick.command(command, answer).startswith(answer)
    finally:
        slow.close()
        quick.close()
