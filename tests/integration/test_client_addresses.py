"""Client addresses and listener lists from a real non-local address: the
test makes a network namespace with a veth pair (root only) and removes it.

Every 127.x address is the server itself, so a client in the namespace
(``CLIENT``) talks to the server on the host side of the pair (``HOST``).
The namespace, the veth names and the /24 are chosen per run, so two runs
at once never meet.
"""

from __future__ import annotations

import itertools
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import admin, free_port, launch_server, wait_for_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root"
    ),
]

_RUN = secrets.token_hex(3)
NAMESPACE = f"cgtest-{_RUN}"
#: veth ends (interface names are at most 15 bytes).
OUTER, INNER = f"cg{_RUN}a", f"cg{_RUN}b"
_NET = f"10.{random.randrange(200, 250)}.{random.randrange(1, 255)}"
NETWORK = f"{_NET}.0/24"
HOST, CLIENT = f"{_NET}.1", f"{_NET}.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    ip("netns", "add", NAMESPACE)
    try:
        ip("link", "add", OUTER, "type", "veth", "peer", "name", INNER)
        ip("link", "set", INNER, "netns", NAMESPACE)
        ip("addr", "add", f"{HOST}/24", "dev", OUTER)
        ip("link", "set", OUTER, "up")
        ip("netns", "exec", NAMESPACE, "ip", "addr", "add", f"{CLIENT}/24", "dev", INNER)
        ip("netns", "exec", NAMESPACE, "ip", "link", "set", INNER, "up")
        ip("netns", "exec", NAMESPACE, "ip", "link", "set", "lo", "up")
        yield NAMESPACE
    finally:
        subprocess.run(["ip", "link", "del", OUTER], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True, check=False)


@pytest.fixture(scope="module")
def remote_server(
    namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, int, int]]:
    root = tmp_path_factory.mktemp("remote")
    base = root / "base"
    admin(base, "init", "--main-domain", "company.com", "--postmaster-password", "pm")
    admin(base, "domain", "settings", "company.com", "ClearTextLogin=Always")
    admin(base, "account", "create", "info@company.com", "--password", "pw")
    pop3, imap = free_port(), free_port()
    process = launch_server(
        base,
        root / "server.log",
        f"--pop3=tcp:{pop3}:interface={HOST}",
        f"--imap4=tcp:{imap}:interface={HOST}",
    )
    try:
        wait_for_port(HOST, pop3, process, root / "server.log")
        yield base, pop3, imap
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


CLIENT_SCRIPT = """
import imaplib, poplib, socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if kind == "pop3":
        c = poplib.POP3(host, port, timeout=5); c.user("info"); c.pass_("pw"); c.quit()
    elif kind == "imap":
        c = imaplib.IMAP4(host, port, timeout=5); c.login("info", "pw"); c.logout()
    else:
        s = socket.create_connection((host, port), timeout=5)
        data = s.recv(100)
        print("greeting" if data else "closed"); sys.exit(0)
    print("ok")
except Exception as error:
    print("refused", type(error).__name__, error)
"""


def from_client(kind: str, port: int) -> str:
    result = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            NAMESPACE,
            sys.executable,
            "-c",
            CLIENT_SCRIPT,
            kind,
            HOST,
            str(port),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout.strip() or result.stderr.strip()


def test_client_addresses_prohibit(remote_server: tuple[Path, int, int]) -> None:
    """With NonClientLogins=Prohibit, a listed client address logs in over
    POP3 and IMAP and an unlisted one is refused."""
    base, pop3, imap = remote_server
    admin(base, "server", "settings", "NonClientLogins=Prohibit", f"ClientIPs=({NETWORK})")
    time.sleep(1.1)
    assert from_client("pop3", pop3) == "ok"
    assert from_client("imap", imap) == "ok"
    admin(base, "server", "settings", f"ClientIPs=(192.0.2.0/24, !{CLIENT})")
    time.sleep(1.1)
    pop = from_client("pop3", pop3)
    assert pop.startswith("refused") and "not allowed" in pop
    assert from_client("imap", imap).startswith("refused")
    admin(base, "server", "settings", "NonClientLogins=", "ClientIPs=")


def test_deny_list_closes_before_greeting(remote_server: tuple[Path, int, int]) -> None:
    """A Deny entry closes the connection before any greeting."""
    base, pop3, _ = remote_server
    assert from_client("raw", pop3) == "greeting"
    admin(base, "server", "settings", f"Listeners={{pop3={{Deny=({CLIENT});}};}}")
    time.sleep(1.1)
    assert from_client("raw", pop3) == "closed"
    admin(base, "server", "settings", "Listeners=")


GUESS_SCRIPT = """
import imaplib, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
times = []
for number in range(count):
    client = imaplib.IMAP4(host, port, timeout=30)
    start = time.monotonic()
    try:
        client.login(f"guess{number}", "wrong")
    except imaplib.IMAP4.error:
        pass
    times.append(time.monotonic() - start)
    client.shutdown()
print(" ".join(f"{value:.2f}" for value in times))
"""


def test_guessing_address_is_slowed(remote_server: tuple[Path, int, int]) -> None:
    """An address guessing many accounts is slowed down; a user elsewhere
    (loopback here) is answered at once and nothing is locked."""
    base, _, imap = remote_server
    # The per-address slowing alone (not the delay floor every failure gets).
    admin(base, "server", "settings", "FailedLoginsPerAddress=(5,1m)", "FailedLoginDelay=0")
    admin(base, "account", "settings", "info@company.com", "FailedLoginFlow=(3,1m)")
    time.sleep(1.1)
    result = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            NAMESPACE,
            sys.executable,
            "-c",
            GUESS_SCRIPT,
            HOST,
            str(imap),
            "9",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    times = [float(value) for value in result.stdout.split()]
    assert len(times) == 9, result.stderr
    # Earlier refusals from this address count too, so only the trend is
    # fixed: answered at once at first, then later and later.
    # (every failure costs one bcrypt check, a few tenths of a second)
    assert times[0] < 1.0
    assert times[-1] >= times[0] + 1.0
    assert all(later >= earlier - 0.4 for earlier, later in itertools.pairwise(times)), times
    assert from_client("imap", imap) == "ok"  # the guessed names locked nothing
