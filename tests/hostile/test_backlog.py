"""Backlog: a burst of clients connecting at once all get a greeting
promptly, because every listener listens with a backlog of at least 1024
(Twisted's default of 50 overflowed: half the clients waited for SYN
retransmissions or got nothing)."""

from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.hostile.listeners import LISTENERS, Client, Listener
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

CLIENTS = 500
#: Source addresses the clients are spread over, so the per-address limit
#: (50 by default) does not refuse them: 20 clients each.
SOURCES = [f"127.0.100.{index}" for index in range(1, CLIENTS // 20 + 1)]
#: Seconds within which every client must have its greeting.
WITHIN = 20.0


def listen_backlog(port: int) -> int:
    """The backlog of the listening socket on 127.0.0.1:``port`` (``ss``
    shows it as Send-Q of a listening socket)."""
    lines = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=10, check=True
    ).stdout.splitlines()
    for line in lines:
        fields = line.split()
        if fields and fields[3] == f"127.0.0.1:{port}":
            return int(fields[2])
    raise AssertionError(f"no listening socket on port {port}: {lines}")


@pytest.mark.parametrize("listener", LISTENERS, ids=str)
def test_burst_of_clients_all_greeted(server: Server, listener: Listener) -> None:
    """500 clients connecting at once all get the greeting within 20 s, and
    the listening socket's backlog is at least 1024 (or the kernel's cap)."""
    cap = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert listen_backlog(getattr(server, listener.port)) >= min(1024, cap)
    start = threading.Barrier(CLIENTS)
    deadline = time.monotonic() + WITHIN + 10
    clients: list[Client] = []
    lock = threading.Lock()

    def one(index: int) -> float:
        start.wait(timeout=30)
        began = time.monotonic()
        client = Client(server, listener, SOURCES[index % len(SOURCES)], WITHIN)
        with lock:
            clients.append(client)
        client.greet()
        return time.monotonic() - began

    try:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            waits = list(pool.map(one, range(CLIENTS), timeout=WITHIN + 30))
    finally:
        for client in clients:
            client.close()
    assert time.monotonic() < deadline
    assert len(waits) == CLIENTS
    assert max(waits) < WITHIN, f"slowest greeting after {max(waits):.1f} s"
