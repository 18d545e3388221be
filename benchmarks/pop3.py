"""POP3 figures: login sessions per second and RETR throughput.

Starts communigate on a loopback port with its own base directory and, when
Dovecot is installed, a private Dovecot instance (Debian's defaults for the
login and auth services, a passwd-file with the same clear passwords, Maildir)
on another loopback port, and measures both the same way:

* sessions/s: ``--clients`` concurrent clients each repeat
  connect, USER, PASS, STAT, QUIT, until ``--sessions`` sessions in all or
  ``--seconds`` have passed;
* RETR: MB/s for one message of ``--message-mb`` MB, best of ``--repeats``.

Only loopback addresses are used; every loop is bounded in count and time.
Run:  python benchmarks/pop3.py [--sessions 4000] [--clients 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.servers import Base, communigate, free_port, wait_for

USERS = [f"user{number}" for number in range(20)]


def message_of(size_mb: int, dotted: bool = False) -> bytes:
    """A message of about ``size_mb`` MB; ``dotted``: every tenth line starts
    with a dot, so the server must dot-stuff it."""
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
    block = line * 9 + (b"." + line[1:] if dotted else line)
    body = block * (size_mb * 1024 * 1024 // len(block))
    return b"Subject: big\r\n\r\n" + body


@contextmanager
def communigate_server(root: Path, big: list[bytes]) -> Iterator[int]:
    base = Base(root)
    for user in USERS:
        base.account(user)
    for message in big:
        base.run("deliver", "user0@bench.test", stdin=message)
    with communigate(root, base, "pop3") as (port, _pid):
        yield port


DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/home/%u
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {port}
  }}
}}
"""


@contextmanager
def dovecot_server(root: Path, big: list[bytes]) -> Iterator[int | None]:
    binary = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None
    )
    if binary is None or os.geteuid() != 0:
        yield None
        return
    root.chmod(0o755)  # Dovecot's auth process runs as the dovecot user
    root = root / "dovecot"
    for sub in ("run", "state", "home"):
        (root / sub).mkdir(parents=True)
    (root / "passwd").write_text("".join(f"{user}:secret\n" for user in USERS))
    maildir = root / "mail" / "user0"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for number, message in enumerate(big, 1):
        (maildir / "cur" / f"{1000 + number}.M{number}P1.bench:2,").write_bytes(message)
    # Mail is accessed as the unprivileged user "nobody", as Dovecot requires.
    for path in [root / "mail", root / "home", *(root / "mail").rglob("*")]:
        shutil.chown(path, "nobody", "nogroup")
    port = free_port()
    conf = root / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(root=root, port=port))
    process = subprocess.Popen(
        [binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(port, process)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


async def one_session(port: int, user: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()
        for command in (f"USER {user}", "PASS secret", "STAT", "QUIT"):
            writer.write(command.encode() + b"\r\n")
            await writer.drain()
            reply = await reader.readline()
            if not reply.startswith(b"+OK"):
                raise RuntimeError(f"{command.split()[0]}: {reply!r}")
    finally:
        writer.close()


async def sessions_per_second(port: int, clients: int, total: int, seconds: float) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def client(index: int) -> None:
        nonlocal done
        while done < total and time.monotonic() < deadline:
            await one_session(port, USERS[index % len(USERS)])
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(client(index) for index in range(clients)))
    return done / (time.monotonic() - start)


def read_until(conn: socket.socket, pending: bytearray, marker: bytes) -> bytes:
    """Receive until ``marker``; return everything up to and including it.

    Only the newly received bytes are searched, so a large reply costs
    linear time in the client."""
    start = 0
    while (found := pending.find(marker, start)) < 0:
        start = max(0, len(pending) - len(marker) + 1)
        chunk = conn.recv(1 << 20)
        if not chunk:
            raise RuntimeError("connection closed")
        pending += chunk
    data = bytes(pending[: found + len(marker)])
    del pending[: found + len(marker)]
    return data


def receive_body(conn: socket.socket, pending: bytearray, size: int) -> int:
    """Receive a multi-line reply of about ``size`` bytes into one buffer,
    checking only its tail for the terminator (a cheap client, so the server
    is what is measured); return the number of bytes received."""
    buffer = bytearray(size + size // 10 + (1 << 20))
    buffer[: len(pending)] = pending
    view, filled = memoryview(buffer), len(pending)
    while buffer[max(0, filled - 5) : filled] != b"\r\n.\r\n":
        got = conn.recv_into(view[filled:], 1 << 20)
        if not got:
            raise RuntimeError("connection closed during RETR")
        filled += got
    return filled


def retr_throughput(port: int, size: int, repeats: int, number: int = 1) -> float:
    """Best MB/s over ``repeats`` RETRs of message ``number`` of user0."""
    best = 0.0
    for _ in range(repeats):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            pending = bytearray()
            read_until(conn, pending, b"\r\n")
            for command in (b"USER user0", b"PASS secret"):
                conn.sendall(command + b"\r\n")
                read_until(conn, pending, b"\r\n")
            start = time.monotonic()
            conn.sendall(b"RETR %d\r\n" % number)
            read_until(conn, pending, b"\r\n")
            received = receive_body(conn, pending, size)
            elapsed = time.monotonic() - start
            conn.sendall(b"QUIT\r\n")
        if received < size:
            raise RuntimeError("short message")
        best = max(best, received / elapsed / 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--message-mb", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    big = [message_of(args.message_mb), message_of(args.message_mb, dotted=True)]
    columns = ("sessions/s", "RETR MB/s", "dotted MB/s")
    with tempfile.TemporaryDirectory(prefix="pop3-bench-") as tmp:
        root = Path(tmp)
        results: dict[str, tuple[float, ...]] = {}
        for name, server in (("communigate", communigate_server), ("dovecot", dovecot_server)):
            with server(root, big) as port:
                if port is None:
                    print(f"{name}: not installed (or not root), skipped")
                    continue
                rate = asyncio.run(
                    sessions_per_second(port, args.clients, args.sessions, args.seconds)
                )
                plain = retr_throughput(port, len(big[0]), args.repeats, 1)
                dotted = retr_throughput(port, len(big[1]), args.repeats, 2)
                results[name] = (rate, plain, dotted)
        print(
            f"{args.clients} concurrent USER/PASS/STAT/QUIT clients; RETR of a "
            f"{args.message_mb} MB message, best of {args.repeats}"
        )
        print(f"{'server':<12}" + "".join(f"{column:>14}" for column in columns))
        for name, figures in results.items():
            print(f"{name:<12}" + "".join(f"{figure:>14.0f}" for figure in figures))
        if len(results) == 2:
            ratios = [
                a / b for a, b in zip(results["communigate"], results["dovecot"], strict=True)
            ]
            print(f"{'ratio':<12}" + "".join(f"{ratio:>13.1f}x" for ratio in ratios))


if __name__ == "__main__":
    main()
