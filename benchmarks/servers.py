"""Starting the servers the benchmarks measure: communigate from a fresh
base directory, filled through its own command line."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TWISTD = (sys.executable, "-c", "from twisted.scripts.twistd import run; run()")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_udp_port() -> int:
    """A free UDP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(port: int, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    """Wait until a server accepts connections (or fail)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def raise_file_limit() -> None:
    """Let a server hold many idle connections."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Base:
    """A base directory filled with the ``communigate`` command."""

    def __init__(self, root: Path) -> None:
        self.path = root / "base"
        self.cli = [sys.executable, "-m", "communigate.cli.main", "--base", str(self.path)]
        self.run("init", "--main-domain", "bench.test", "--postmaster-password", "x")

    def run(self, *args: str, stdin: bytes | None = None) -> None:
        """One command; it must succeed."""
        subprocess.run([*self.cli, *args], input=stdin, check=True, capture_output=True)

    def account(self, name: str, *settings: str) -> None:
        """An account in bench.test with the password ``secret``."""
        self.run("account", "create", f"{name}@bench.test", "--password", "secret", *settings)


@contextmanager
def communigate(root: Path, base: Base, protocol: str) -> Iterator[tuple[int, int]]:
    """The server with one listener for ``protocol``; (port, pid).  TFTP
    listens on UDP, the others on TCP."""
    udp = protocol == "tftp"
    port = free_udp_port() if udp else free_port()
    process = subprocess.Popen(
        [
            *TWISTD,
            "-n",
            "--pidfile=",
            f"--logfile={root / 'server.log'}",
            "communigate",
            f"--base={base.path}",
            f"--{protocol}={'udp' if udp else 'tcp'}:{port}:interface=127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=raise_file_limit,
    )
    try:
        if udp:
            time.sleep(3)  # nothing to connect to: give twistd time to bind
        else:
            wait_for(port, process)
        yield port, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
