"""etc/communigate.service: its ExecStart, run as systemd would (with a
NOTIFY_SOCKET), is ready only when it listens, serves, and says it stops;
a start that cannot succeed ends with one line on stderr."""

from __future__ import annotations

import imaplib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import TWISTD, free_port

pytestmark = pytest.mark.integration

UNIT = Path(__file__).resolve().parents[2] / "etc" / "communigate.service"
#: Options that name a listener, each followed by its description.
LISTENER_OPTIONS = {"--pop3", "--pop3s", "--imap4", "--imaps", "--lmtp", "--ftp", "--ftps"}
LISTENER_OPTIONS |= {"--pwd", "--tftp"}


def unit_settings() -> dict[str, list[str]]:
    """Every ``Key=Value`` of the unit (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", UNIT.read_text())
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def server_command(base: Path, *listeners: str) -> list[str]:
    """The unit's ExecStart with this interpreter's twistd, ``base`` and
    ``listeners`` in place of the unit's base and listeners."""
    (exec_start,) = unit_settings()["ExecStart"]
    words = shlex.split(exec_start)
    arguments: list[str] = []
    rest = iter(words[1:])
    for word in rest:
        name, equals, _ = word.partition("=")
        if name in LISTENER_OPTIONS or name == "--base":
            if not equals:
                next(rest)
            continue
        arguments.append(word)
    return [*TWISTD, *arguments, f"--base={base}", *listeners]


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace, and its NOTIFY_SOCKET."""
    name = f"communigate-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


class Output:
    """Collects a process's standard output as it comes."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self.stream = process.stdout
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.stream:
            self.lines.append(line.decode(errors="replace"))

    def text(self) -> str:
        return "".join(self.lines)


def test_unit_hardening() -> None:
    """The unit runs twistd by absolute path as a dedicated user, notify type, hardened."""
    settings = unit_settings()
    (exec_start,) = settings["ExecStart"]
    program = shlex.split(exec_start)[0]
    assert program.startswith("/") and program.endswith("/twistd")
    assert "/usr/bin/env" not in exec_start and "--logfile" not in exec_start
    expected = {
        "Type": "notify",
        "User": "communigate",
        "Group": "communigate",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/communigate",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        # A stop signals the server alone; it stops its worker processes.
        "KillMode": "mixed",
    }
    for key, value in expected.items():
        assert settings.get(key) == [value], key
    assert "#SupplementaryGroups=shadow" in UNIT.read_text()


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the unit (with this venv's twistd)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    (exec_start,) = unit_settings()["ExecStart"]
    program = shlex.split(exec_start)[0]
    twistd = Path(sys.executable).parent / "twistd"
    if not twistd.exists():
        pytest.skip("no twistd script beside the interpreter")
    unit = tmp_path / "communigate.service"
    unit.write_text(UNIT.read_text().replace(program, str(twistd)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_notify_ready_login_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    """READY=1 comes when IMAP accepts; the printed password logs in; SIGTERM sends STOPPING=1."""
    sock, name = notify_socket
    port = free_port()
    base = tmp_path / "base"
    command = server_command(base, f"--imap4=tcp:{port}:interface=127.0.0.1")
    environ = {**os.environ, "NOTIFY_SOCKET": name}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environ, cwd=tmp_path
    )
    output = Output(process)
    try:
        sock.settimeout(30)
        try:
            message = sock.recv(100)
        except TimeoutError:
            pytest.fail("no READY=1:\n" + output.text())
        assert message == b"READY=1"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        # Printed once the listeners are bound; it may reach the pipe after
        # the notification.
        deadline = time.monotonic() + 10
        found = None
        while found is None and time.monotonic() < deadline:
            found = re.search(r"(postmaster@\S+) password: (\S+)", output.text())
            time.sleep(0.1)
        assert found, output.text()
        assert "account password postmaster@" in output.text()
        client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        try:
            assert client.login(found.group(1), found.group(2))[0] == "OK"
        finally:
            client.logout()
        process.send_signal(signal.SIGTERM)
        assert sock.recv(100) == b"STOPPING=1"
        # twistd ends by the signal it got, which systemd counts as success.
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output.thread.join(5)
    assert "Traceback" not in output.text()


def run_failing(tmp_path: Path, base: Path, *listeners: str) -> subprocess.CompletedProcess[str]:
    """Run the unit's command expecting it to fail at start."""
    return subprocess.run(
        server_command(base, *listeners),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
    )


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    """A listener whose port is taken ends the start: status 1, one stderr line, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_failing(tmp_path, tmp_path / "base", f"--imap4=tcp:{port}:interface=127.0.0.1")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"communigate: cannot listen on 127.0.0.1:{port} (imap4:")
    assert "address already in use" in lines[0]
    # The base was created by this start: how to set postmaster's password.
    assert "account password postmaster@" in lines[1]
    assert len(lines) == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert " password: " not in result.stdout


def test_base_not_creatable_is_one_line(tmp_path: Path) -> None:
    """A base directory that cannot be created: status 1, one stderr line naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_failing(tmp_path, blocker / "base", f"--imap4=tcp:{free_port()}")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"communigate: cannot create or write the base directory {blocker}")
    assert "Not a directory" in line and line.endswith("or choose another with --base")
