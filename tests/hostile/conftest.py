"""The hostile-client suite: the real server, driven the way an attacker
would, one file per property, each parametrised over the listeners of
:mod:`tests.hostile.listeners` that have it.

The server is the integration suite's (same set-up, same final check that
its log holds no traceback), started once for this folder; tests that
change server settings put them back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# The integration suite's server fixture, started once more for this folder.
from tests.integration.conftest import Server, admin, children
from tests.integration.conftest import server as server

#: How long the server takes to see a settings change (it re-reads files
#: at most twice a second).
SETTLE = 1.1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here starts the real server: mark it ``integration``."""
    for item in items:
        if "hostile" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)


@contextmanager
def server_setting(running: Server, key: str, value: str) -> Iterator[None]:
    """Set one server setting (CommuniGate syntax) for the block, then
    remove it again; waits until the server sees each change."""
    admin(running.base, "server", "settings", f"{key}={value}")
    time.sleep(SETTLE)
    try:
        yield
    finally:
        admin(running.base, "server", "settings", f"{key}=")
        time.sleep(SETTLE)


def rss(running: Server) -> int:
    """The resident memory in octets of the server process and of its
    worker processes, if it has any."""
    total = 0
    for pid in (running.pid, *children(running.pid)):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    if not total:
        raise RuntimeError("no VmRSS")
    return total


def spool_files(running: Server) -> list[Path]:
    """The files in the server's spool folder."""
    folder = running.base / "Spool"
    return sorted(folder.iterdir()) if folder.is_dir() else []
