"""IMAP figures, side by side with Dovecot when it is installed.

* LOGIN+LOGOUT per second with ``--clients`` concurrent clients (clear
  passwords), ``--logins`` in all or ``--seconds`` at most;
* memory per idle authenticated connection: ``--idle`` connections are
  opened, logged in and left idle; the growth of the server's private
  memory (every Dovecot process's for Dovecot) divided by their number;
* SELECT of a ``--big``-message mailbox and FETCH 1:* (UID FLAGS
  RFC822.SIZE) on it (communigate only: the store layout is ours);
* NOOP latency on an idle session while ``--clients`` clients log in with
  bcrypt passwords: median and 99th percentile.

Only loopback addresses are used; every loop is bounded in count and time.
Run as root (Dovecot needs it):  python benchmarks/imap.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.pop3 import DOVECOT_CONF
from benchmarks.servers import (
    Base,
    communigate,
    free_port,
    raise_file_limit,
    wait_for,
)

USERS = [f"user{number}" for number in range(20)]


def private_kib(pids: list[int]) -> int:
    """Private (unshared) memory of processes, KiB, from smaps_rollup."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


@contextmanager
def communigate_server(root: Path, big: int) -> Iterator[tuple[int, list[int]]]:
    base = Base(root)
    for user in USERS:
        base.account(user)
        base.account(f"b{user}", "PasswordEncryption=UB-crpt")
    base.account("big")
    fill_big(base.path / "Accounts" / "big.macnt" / "INBOX.mdir", big)
    with communigate(root, base, "imap4") as (port, pid):
        yield port, [pid]


def fill_big(folder: Path, count: int) -> None:
    """A mailbox of ``count`` small messages, written straight in the
    store's layout (a benchmark fixture, not a delivery path)."""
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    body = b"From: a@b.c\r\nSubject: bulk\r\n\r\nbody\r\n"
    for uid in range(1, count + 1):
        (folder / "cur" / f"{uid},S={len(body)},N:2,S").write_bytes(body)
    (folder / "uids.settings").write_text(
        f"{{\n  UIDValidity = #1;\n  UIDNext = #{count + 1};\n}}\n"
    )


@contextmanager
def dovecot(root: Path) -> Iterator[tuple[int, list[int]] | None]:
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if (
        not os.path.exists(binary)
        or os.geteuid() != 0
        or not Path("/usr/lib/dovecot/imap").exists()
    ):
        yield None
        return
    root.chmod(0o755)
    root = root / "dovecot"
    for sub in ("run", "state", "home", "mail"):
        (root / sub).mkdir(parents=True)
    for path in (root / "mail", root / "home"):
        shutil.chown(path, "nobody", "nogroup")
    (root / "passwd").write_text(
        "".join(f"{user}:secret\nb{user}:{bcrypt_hash()}\n" for user in USERS)
    )
    port = free_port()
    conf = DOVECOT_CONF.format(root=root, port=free_port()).replace(
        "protocols = pop3", "protocols = imap"
    ) + (
        f"service imap-login {{\n  inet_listener imap {{\n    port = {port}\n  }}\n}}\n"
        # The default of 10 connections per user and address would stop the
        # idle-connection measurement; nothing else is changed.
        "protocol imap {\n  mail_max_userip_connections = 10000\n}\n"
    )
    (root / "dovecot.conf").write_text(conf)
    process = subprocess.Popen(
        [binary, "-F", "-c", str(root / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(port, process)
        yield port, []
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


_BCRYPT: list[str] = []


def bcrypt_hash() -> str:
    if not _BCRYPT:
        from passlib.hash import bcrypt

        _BCRYPT.append("{BLF-CRYPT}" + bcrypt.hash("secret"))
    return _BCRYPT[0]


def dovecot_pids() -> list[int]:
    """Every Dovecot process (master, login, imap, auth)."""
    out = subprocess.run(
        ["pgrep", "-f", "dovecot|imap-login|/usr/lib/dovecot/"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [int(pid) for pid in out.split()]


async def login_logout(port: int, user: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()
        writer.write(f"a LOGIN {user} secret\r\nb LOGOUT\r\n".encode())
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                raise RuntimeError("connection closed")
            if line.startswith(b"a ") and not line.startswith(b"a OK"):
                raise RuntimeError(line.decode())
            if line.startswith(b"b "):
                return
    finally:
        writer.close()


async def logins_per_second(
    port: int, clients: int, total: int, seconds: float, prefix: str = ""
) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def client(index: int) -> None:
        nonlocal done
        while done < total and time.monotonic() < deadline:
            await login_logout(port, prefix + USERS[index % len(USERS)])
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(client(index) for index in range(clients)))
    return done / (time.monotonic() - start)


async def idle_memory(port: int, count: int, pids: list[int] | None) -> float:
    """KiB of private memory per idle, authenticated, selected connection
    (connections the server refused are not counted)."""

    def measure() -> int:
        return private_kib(pids if pids else dovecot_pids())

    before = measure()
    writers: list[asyncio.StreamWriter] = []
    kept = 0

    async def one(index: int) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writers.append(writer)
        try:
            await _login_select(reader, writer, index)
        except (OSError, RuntimeError):
            return False
        return True

    try:
        for start in range(0, count, 50):
            results = await asyncio.gather(
                *(one(index) for index in range(start, min(count, start + 50)))
            )
            kept += sum(results)
        await asyncio.sleep(1)
        after = measure()
    finally:
        for writer in writers:
            writer.close()
    return (after - before) / max(kept, 1)


async def _login_select(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int
) -> None:
    await reader.readline()
    writer.write(f"a LOGIN {USERS[index % len(USERS)]} secret\r\nb SELECT INBOX\r\n".encode())
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            raise RuntimeError("connection closed while logging in")
        if line.startswith(b"b "):
            return


async def big_mailbox(port: int) -> tuple[float, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    await reader.readline()

    async def command(text: bytes) -> float:
        start = time.monotonic()
        writer.write(text + b"\r\n")
        await writer.drain()
        tag = text.split(b" ", 1)[0]
        while not (await reader.readline()).startswith(tag + b" "):
            pass
        return time.monotonic() - start

    await command(b"a LOGIN big secret")
    select = await command(b"b SELECT INBOX")
    fetch = await command(b"c FETCH 1:* (UID FLAGS RFC822.SIZE)")
    writer.close()
    return select, fetch


async def noop_latency(port: int, clients: int, seconds: float) -> tuple[float, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    writer.write(b"a LOGIN user0 secret\r\n")
    await writer.drain()
    await reader.readline()
    stop = time.monotonic() + seconds
    latencies: list[float] = []

    async def pinger() -> None:
        count = 0
        while time.monotonic() < stop and count < 10_000:
            start = time.monotonic()
            writer.write(b"n NOOP\r\n")
            await writer.drain()
            await reader.readline()
            latencies.append(time.monotonic() - start)
            count += 1
            await asyncio.sleep(0.005)

    async def bcrypt_logins() -> None:
        await logins_per_second(port, clients, 10**6, seconds, prefix="b")

    await asyncio.gather(pinger(), bcrypt_logins())
    writer.close()
    latencies.sort()
    return statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--logins", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--big", type=int, default=100_000)
    args = parser.parse_args()
    raise_file_limit()
    results: dict[str, dict[str, str]] = {}

    def step(what: str) -> None:
        print(f"... {what}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="imap-bench-") as tmp:
        root = Path(tmp)
        step("setting up communigate")
        with communigate_server(root, args.big) as (port, pids):
            ours = results["communigate"] = {}
            step("logins")
            rate = asyncio.run(logins_per_second(port, args.clients, args.logins, args.seconds))
            ours["LOGIN+LOGOUT/s"] = f"{rate:.0f}"
            step("idle connections")
            ours["KiB/idle conn"] = f"{asyncio.run(idle_memory(port, args.idle, pids)):.1f}"
            step("big mailbox")
            select, fetch = asyncio.run(big_mailbox(port))
            ours[f"SELECT {args.big}"] = f"{select:.2f} s"
            ours["FETCH 1:*"] = f"{fetch:.2f} s"
            step("NOOP under bcrypt load")
            median, p99 = asyncio.run(noop_latency(port, args.clients, 10))
            ours["NOOP ms (bcrypt load)"] = f"{median:.1f} / p99 {p99:.1f}"
        step("setting up dovecot")
        with dovecot(root) as found:
            if found is None:
                print("dovecot: not installed (dovecot-imapd) or not root, skipped")
            else:
                port, _ = found
                theirs = results["dovecot"] = {}
                step("dovecot logins")
                rate = asyncio.run(logins_per_second(port, args.clients, args.logins, args.seconds))
                theirs["LOGIN+LOGOUT/s"] = f"{rate:.0f}"
                step("dovecot idle connections")
                memory = asyncio.run(idle_memory(port, min(args.idle, 500), None))
                theirs["KiB/idle conn"] = f"{memory:.1f}"
                step("dovecot NOOP under bcrypt load")
                median, p99 = asyncio.run(noop_latency(port, args.clients, 10))
                theirs["NOOP ms (bcrypt load)"] = f"{median:.1f} / p99 {p99:.1f}"
    columns = list(results["communigate"])
    print(f"{args.clients} concurrent clients; {args.idle} idle connections")
    print(f"{'server':<12}" + "".join(f"{column:>24}" for column in columns))
    for name, figures in results.items():
        print(f"{name:<12}" + "".join(f"{figures.get(column, '-'):>24}" for column in columns))


if __name__ == "__main__":
    main()
