"""systemd's readiness messages: where they go and when they are sent."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from communigate.sdnotify import NotifyService, notify, notify_address


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's, and its path (short:
    a Unix socket path has room for about 100 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="sdn", dir="/tmp"))
    path = str(folder / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield sock, path
    finally:
        sock.close()
        Path(path).unlink()
        folder.rmdir()


class RunningReactor:
    """Runs ``callWhenRunning`` calls when told that the reactor runs."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def callWhenRunning(self, function: Callable[..., Any], *args: Any) -> None:
        self.waiting.append((function, args))

    def run(self) -> None:
        for function, args in self.waiting:
            function(*args)
        self.waiting = []


def test_address_forms() -> None:
    """A path is used as is, ``@name`` is abstract, anything else is none."""
    assert notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert notify_address({"NOTIFY_SOCKET": "@x/y"}) == "\0x/y"
    assert notify_address({"NOTIFY_SOCKET": "vsock:2:1"}) is None
    assert notify_address({}) is None


def test_no_socket_sends_nothing() -> None:
    """Without NOTIFY_SOCKET, notify does nothing and says so."""
    assert notify(b"READY=1", {}) is False


def test_notify_sends_datagram(listener: tuple[socket.socket, str]) -> None:
    """The state arrives as one datagram on the socket NOTIFY_SOCKET names."""
    sock, path = listener
    assert notify(b"READY=1", {"NOTIFY_SOCKET": path}) is True
    assert sock.recv(100) == b"READY=1"


def test_abstract_socket() -> None:
    """An ``@`` name reaches a socket in the abstract namespace."""
    name = f"communigate-test-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notify(b"STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"STOPPING=1"


def test_service_ready_when_running_stopping_at_stop(
    listener: tuple[socket.socket, str],
) -> None:
    """READY=1 goes out once the reactor runs, not at startService; STOPPING=1 at stop."""
    sock, path = listener
    reactor = RunningReactor()
    service = NotifyService(reactor, {"NOTIFY_SOCKET": path})
    service.startService()
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(100)
    sock.settimeout(5)
    reactor.run()
    assert sock.recv(100) == b"READY=1"
    service.stopService()
    assert sock.recv(100) == b"STOPPING=1"


def test_unreachable_socket_does_not_stop_the_server() -> None:
    """A socket that is gone is logged, not raised."""
    reactor = RunningReactor()
    service = NotifyService(reactor, {"NOTIFY_SOCKET": "/nonexistent/notify"})
    service.startService()
    reactor.run()
    service.stopService()
    assert not service.running
