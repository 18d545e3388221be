"""The ``communigate sessions|kick|status|reload`` commands: against no
server, and against a stand-in answering on the base's control socket."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from communigate import __version__
from communigate.cli.main import main
from communigate.control.admin import duration, endpoint, status_lines
from communigate.control.commands import ControlCommands
from communigate.control.location import socket_path
from communigate.control.requests import format_answer, parse_request
from communigate.portal.sessions import LiveSession
from tests.control.test_commands import commands
from tests.control.test_sessions import connection

COMMANDS = (("sessions",), ("sessions", "company.com"), ("kick", "info"), ("status",), ("reload",))


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """An initialised base directory with Main Domain company.com."""
    path = tmp_path / "base"
    init = ["--base", str(path), "init", "--main-domain", "company.com"]
    assert main([*init, "--postmaster-password", "pm"]) == 0
    return path


@pytest.fixture
def served(base: Path) -> Iterator[ControlCommands]:
    """Handlers answering on ``base``'s control socket from a thread (a
    stand-in for the server, one request per connection)."""
    control, _ = commands()
    path = socket_path(base)
    path.parent.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(5)

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with client, client.makefile("rb") as lines:
                request = parse_request(lines.readline().rstrip(b"\n"))
                client.sendall(format_answer(control.answer(request.command, request.arguments)))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield control
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    thread.join(5)


@pytest.mark.parametrize("args", COMMANDS)
def test_no_server_is_one_line_and_status_1(
    base: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    """Without a running server each command says so in one line, status 1."""
    capsys.readouterr()
    assert main(["--base", str(base), *args]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"communigate: error: no server is running on {base} (no control socket)\n"
    )


def test_account_delete_without_server_still_works(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """account delete needs no server: the account is deleted, no error."""
    assert main(["--base", str(base), "account", "create", "gone@company.com"]) == 0
    assert main(["--base", str(base), "account", "delete", "gone@company.com"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "deleted account gone@company.com"


def test_sessions_table(
    base: Path, served: ControlCommands, capsys: pytest.CaptureFixture[str]
) -> None:
    """sessions prints a header and one row per session with every column."""
    served.sessions.opened(connection(session="abc123"), "info@company.com", "PLAIN")
    capsys.readouterr()
    assert main(["--base", str(base), "sessions"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "ACCOUNT",
        "PROTOCOL",
        "REMOTE",
        "SINCE",
        "DURATION",
        "TLS",
        "MECHANISM",
        "SESSION",
    ]
    cells = row.split()
    assert cells[:3] == ["info@company.com", "imap4", "127.0.0.9:40001"]
    assert cells[-4:] == ["0:00:00", "yes", "PLAIN", "abc123"]


def test_sessions_of_a_bare_name_or_a_domain(
    base: Path, served: ControlCommands, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bare name is a Main Domain account; a domain name picks the domain."""
    served.sessions.opened(connection(), "info@company.com", "PLAIN")
    capsys.readouterr()
    assert main(["--base", str(base), "sessions", "sales"]) == 0
    assert capsys.readouterr().out == "no live sessions of sales@company.com\n"
    assert main(["--base", str(base), "sessions", "COMPANY.COM", "--json"]) == 0
    assert '"account": "info@company.com"' in capsys.readouterr().out


def test_kick_prints_how_many(
    base: Path, served: ControlCommands, capsys: pytest.CaptureFixture[str]
) -> None:
    """kick ends the account's sessions and prints the count."""
    served.registry.opened("company.com", "info", LiveSession())
    capsys.readouterr()
    assert main(["--base", str(base), "kick", "info"]) == 0
    assert capsys.readouterr().out == "ended 1 session of info@company.com\n"
    assert served.registry.live == {}


def test_account_delete_asks_the_server(
    base: Path, served: ControlCommands, capsys: pytest.CaptureFixture[str]
) -> None:
    """account delete with a running server ends the sessions at once."""
    assert main(["--base", str(base), "account", "create", "gone@company.com"]) == 0
    ended: list[str] = []
    avatar = LiveSession()
    avatar.watch(ended.append)
    served.registry.opened("company.com", "gone", avatar)
    capsys.readouterr()
    assert main(["--base", str(base), "account", "delete", "gone@company.com"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "deleted account gone@company.com",
        "ended 1 live session of gone@company.com",
    ]
    assert ended == ["the account was deleted"]


def test_status_and_reload(
    base: Path, served: ControlCommands, capsys: pytest.CaptureFixture[str]
) -> None:
    """status prints version, uptime and sessions per protocol; reload
    prints the server's answer."""
    capsys.readouterr()
    assert main(["--base", str(base), "status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"version   {__version__}"
    assert "  imap4   0" in out
    assert main(["--base", str(base), "reload"]) == 0
    assert capsys.readouterr().out.startswith("reloaded: settings")


def test_formatting() -> None:
    """Durations, endpoints and status lines read as a person expects."""
    assert duration(3725.9) == "1:02:05"
    assert duration(90000) == "1d 1:00:00"
    assert endpoint("::1", 993) == "[::1]:993"
    assert endpoint(None, None) == "-"
    lines = status_lines(
        {
            "version": "9",
            "uptime": 5,
            "started": 0,
            "sessions": {"imap4": 2, "pop3": 1},
            "listeners": ["imap4:tcp:143"],
            "threads": {"min": 1, "max": 4, "running": 2},
            "external": {"enabled": True, "running": True, "starts": 1, "pending": 0},
        }
    )
    assert "sessions  3" in lines and "  imap4   2" in lines
    assert "listeners 1" in lines and "  imap4:tcp:143" in lines
    assert "threads   2 running (min 1, max 4)" in lines
    assert "external  running (started 1 times, 0 pending)" in lines


def test_status_lines_show_the_workers() -> None:
    """Each worker is a line: number, pid, state, connections, logins, uptime."""
    lines = status_lines(
        {
            "version": "9",
            "uptime": 100,
            "started": 1000,
            "workers": [
                {"number": 1, "pid": 42, "ready": True, "connections": 3, "sessions": 2,
                 "started": 1010},
                {"number": 2, "pid": 43, "ready": False, "connections": 0, "sessions": 0,
                 "started": 1099},
            ],
        }
    )  # fmt: skip
    assert "workers   2" in lines
    assert "  1  pid 42  serving  3 connections, 2 logged in  up 0:01:30" in lines
    assert "  2  pid 43  starting  0 connections, 0 logged in  up 0:00:01" in lines
    assert not any(line.startswith("workers") for line in status_lines({"version": "9"}))
