"""README's first command, ``bash etc/quickstart.sh``, with the
distribution's own ``python3`` (PEP 668 in force): it makes a virtual
environment in the clone, installs, starts the server on loopback and
prints the postmaster's password, with which IMAP logs in."""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")

pytestmark = pytest.mark.skipif(
    not SYSTEM_PYTHON.exists() or shutil.which("git") is None,
    reason="needs the distribution's /usr/bin/python3 and git",
)


def test_quickstart_with_the_system_python(tmp_path: Path) -> None:
    """A clean copy of the tree (what git tracks), a PATH with only the
    system's directories: the server starts and the printed password logs
    in; a wrong one is refused."""
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True, timeout=120
    )
    # What is committed, plus the files of this change not yet committed.
    for tracked in subprocess.run(
        ["git", "ls-files", "-m", "-o", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split():
        source = ROOT / tracked
        if source.is_file():
            (clone / tracked).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / tracked)
    ports = {name: free_port() for name in ("POP3_PORT", "IMAP_PORT", "FTP_PORT")}
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYENV", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update({"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **{k: str(v) for k, v in ports.items()}})
    log = tmp_path / "quickstart.out"
    with log.open("wb") as out:
        server = subprocess.Popen(
            ["bash", "etc/quickstart.sh"],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        password = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and server.poll() is None:
            found = re.search(rb"postmaster@\S+ password: (\S+)", log.read_bytes())
            if found:
                password = found.group(1).decode()
                break
            time.sleep(1)
        assert password is not None, log.read_text(errors="replace")[-3000:]
        # The virtual environment is the system python's.
        assert (clone / ".venv" / "bin" / "python").resolve() == SYSTEM_PYTHON.resolve()
        client = imaplib.IMAP4("127.0.0.1", ports["IMAP_PORT"], timeout=30)
        with pytest.raises(imaplib.IMAP4.error):
            client.login("postmaster", password + "x")
        client = imaplib.IMAP4("127.0.0.1", ports["IMAP_PORT"], timeout=30)
        assert client.login("postmaster", password)[0] == "OK"
        client.logout()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
