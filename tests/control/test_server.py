"""The control socket listener: lines in, answers out (StringTransport),
the socket file's mode and stale files (MemoryReactor)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from twisted.application.service import MultiService, Service
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor, StringTransport

from communigate.control.commands import ControlCommands
from communigate.control.requests import MAX_REQUEST
from communigate.control.server import (
    ControlFactory,
    ControlService,
    clear_stale,
    service_names,
)
from tests.control.test_commands import commands


def connected(control: ControlCommands) -> tuple[object, StringTransport]:
    """A control protocol on a StringTransport."""
    protocol = ControlFactory(control).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def answers(transport: StringTransport) -> list[dict[str, object]]:
    """The answer lines written so far."""
    return [json.loads(line) for line in transport.value().splitlines()]


def test_one_answer_per_request_line() -> None:
    """Each request line, even split across reads, gets one answer line."""
    protocol, transport = connected(commands()[0])
    protocol.dataReceived(b'{"command":"status"}\n{"comm')  # type: ignore[attr-defined]
    protocol.dataReceived(b'and":"sessions"}\r\n')  # type: ignore[attr-defined]
    first, second = answers(transport)
    assert first["ok"] is True and "uptime" in first
    assert second == {"ok": True, "now": 100.0, "sessions": []}
    assert not transport.disconnecting


def test_bad_request_gets_an_error_and_the_connection_stays() -> None:
    """A request that is not JSON and an unknown command get error answers."""
    protocol, transport = connected(commands()[0])
    protocol.dataReceived(b'hello\n{"command":"nope"}\n')  # type: ignore[attr-defined]
    first, second = answers(transport)
    assert first == {"ok": False, "error": "request is not JSON"}
    assert second["ok"] is False and "unknown command" in str(second["error"])
    assert not transport.disconnecting


def test_too_long_request_is_refused_and_closed() -> None:
    """A line longer than the limit gets an error answer and a hang-up."""
    protocol, transport = connected(commands()[0])
    protocol.dataReceived(b"x" * (MAX_REQUEST + 100))  # type: ignore[attr-defined]
    [answer] = answers(transport)
    assert answer["ok"] is False and "longer than" in str(answer["error"])
    assert transport.disconnecting


def test_service_listens_mode_0600_in_a_private_folder(tmp_path: Path) -> None:
    """The service creates its folder (0700) and listens with mode 0600."""
    reactor = MemoryReactor()
    path = tmp_path / "Run" / "control.sock"
    service = ControlService(path, commands()[0], reactor)
    service.privilegedStartService()
    service.startService()
    [(address, factory, _backlog, mode)] = [u[:4] for u in reactor.unixServers]
    assert address == str(path)
    assert mode == 0o600
    assert isinstance(factory, ControlFactory)
    assert (path.parent.stat().st_mode & 0o777) == 0o700


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    """A socket file nobody listens on is removed."""
    path = tmp_path / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
    assert path.exists()
    clear_stale(path)
    assert not path.exists()


def test_live_socket_is_not_replaced(tmp_path: Path) -> None:
    """A socket another server answers on is kept and refused."""
    path = tmp_path / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen(1)
        with pytest.raises(CannotListenError, match="another server"):
            clear_stale(path)
    assert path.exists()


def test_other_file_is_not_replaced(tmp_path: Path) -> None:
    """A regular file where the socket goes is refused, not removed."""
    path = tmp_path / "control.sock"
    path.write_text("precious")
    with pytest.raises(CannotListenError, match="not a socket"):
        clear_stale(path)
    assert path.read_text() == "precious"


def test_start_without_socket_logs_and_carries_on(tmp_path: Path) -> None:
    """A socket that cannot be made is logged; the service still starts."""
    blocker = tmp_path / "Run"
    blocker.write_text("not a folder")
    service = ControlService(blocker / "control.sock", commands()[0], MemoryReactor())
    service.startService()
    assert service.running and service.port is None


def test_service_names_are_the_listeners_at_any_depth() -> None:
    """Services named kind:description are listed, nested ones too; other
    names are not."""
    top = MultiService()
    for name, parent in (("imap4:tcp:143", top), ("Settings/Listeners.settings", top)):
        child = Service()
        child.setName(name)
        child.setServiceParent(parent)
    group = MultiService()
    group.setName("from-settings")
    group.setServiceParent(top)
    nested = Service()
    nested.setName("pop3:tcp:110")
    nested.setServiceParent(group)
    assert service_names(top) == ["imap4:tcp:143", "pop3:tcp:110"]
