"""POP3 figures, communigate side by side with Dovecot (a private instance
started by this script when it is installed and we are root; otherwise
communigate alone).

Both servers get the same users with the same clear passwords (communigate
its own accounts; Dovecot a passwd-file, Debian's defaults for the login and
auth services, Maildir) and the same two messages for user0, and both run
at once.  What is measured:

* sessions/s: ``--clients`` concurrent clients each repeat connect, USER,
  PASS, STAT, QUIT, until ``--sessions`` sessions in all or ``--seconds``
  have passed;
* RETR: MB/s for one message of ``--message-mb`` MB, and for one whose
  every tenth line starts with a dot (so it must be dot-stuffed).

Every work is run ``--repeats`` times, interleaved (communigate run 1,
dovecot run 1, communigate run 2, ...); the table gives the median of the
runs that succeeded and every run is listed below it.  Every loop is
bounded in count and time.

Run:  python3 benchmarks/pop3.py [--sessions 4000] [--clients 20] [--repeats 3]
      [--host 127.0.0.1] [--port N] [--dovecot-port N]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.servers import (
    Base,
    Failed,
    Run,
    Starter,
    Target,
    Work,
    add_address_options,
    bounded_rate,
    communigate,
    dovecot_binary,
    dovecot_conf,
    free_port,
    measure,
    report,
    running_dovecot,
    server_log_tail,
    step,
)

USERS = [f"user{number}" for number in range(20)]


def message_of(size_mb: int, dotted: bool = False) -> bytes:
    """A message of about ``size_mb`` MB; ``dotted``: every tenth line starts
    with a dot, so the server must dot-stuff it."""
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
    block = line * 9 + (b"." + line[1:] if dotted else line)
    body = block * (size_mb * 1024 * 1024 // len(block))
    return b"Subject: big\r\n\r\n" + body


def communigate_setup(root: Path, big: list[bytes], host: str, port: int) -> Starter:
    """A base with the users and user0's messages; starts a server on it."""
    base = Base(root)
    for user in USERS:
        base.account(user)
    for message in big:
        base.run("deliver", "user0@bench.test", stdin=message)

    @contextmanager
    def start() -> Iterator[Target]:
        with communigate(root, base, "pop3", host, port) as (bound, pid):
            yield Target("communigate", host, bound, pid)

    return start


def dovecot_setup(root: Path, big: list[bytes], host: str, port: int) -> Starter | None:
    """A private Dovecot with the same users and messages; None unless
    installed and root."""
    binary = dovecot_binary()
    if binary is None:
        return None
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

    @contextmanager
    def start() -> Iterator[Target]:
        bound = port or free_port(host)
        conf = dovecot_conf(root, "pop3", host, bound)
        with running_dovecot(binary, root, conf, bound, host) as process:
            yield Target("dovecot", host, bound, process.pid)

    return start


async def one_session(host: str, port: int, user: str) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await reader.readline()
        for command in (f"USER {user}", "PASS secret", "STAT", "QUIT"):
            writer.write(command.encode() + b"\r\n")
            await writer.drain()
            reply = await reader.readline()
            if not reply.startswith(b"+OK"):
                raise Failed(f"{command.split()[0]}: {reply!r}")
    finally:
        writer.close()


async def sessions_per_second(target: Target, clients: int, total: int, seconds: float) -> Run:
    """Sessions per second, ``clients`` at once."""

    async def one(index: int, units: int) -> int:
        await one_session(target.host, target.port, USERS[index % len(USERS)])
        return 1

    done, rate = await bounded_rate(one, clients, total, seconds)
    return Run(rate, f"{done} sessions")


def read_until(conn: socket.socket, pending: bytearray, marker: bytes) -> bytes:
    """Receive until ``marker``; return everything up to and including it.

    Only the newly received bytes are searched, so a large reply costs
    linear time in the client."""
    start = 0
    while (found := pending.find(marker, start)) < 0:
        start = max(0, len(pending) - len(marker) + 1)
        chunk = conn.recv(1 << 20)
        if not chunk:
            raise Failed("connection closed")
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
            raise Failed("connection closed during RETR")
        filled += got
    return filled


def retr_rate(target: Target, size: int, number: int) -> Run:
    """MB/s of one RETR of message ``number`` of user0."""
    with socket.create_connection((target.host, target.port), timeout=30) as conn:
        pending = bytearray()
        read_until(conn, pending, b"\r\n")
        for command in (b"USER user0", b"PASS secret"):
            conn.sendall(command + b"\r\n")
            if not read_until(conn, pending, b"\r\n").startswith(b"+OK"):
                raise Failed(f"{command.split()[0].decode()} refused")
        start = time.monotonic()
        conn.sendall(b"RETR %d\r\n" % number)
        if not read_until(conn, pending, b"\r\n").startswith(b"+OK"):
            raise Failed("RETR refused")
        received = receive_body(conn, pending, size)
        elapsed = time.monotonic() - start
        conn.sendall(b"QUIT\r\n")
    if received < size:
        raise Failed("short message")
    return Run(received / elapsed / 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--message-mb", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="runs per work and server")
    add_address_options(parser, "dovecot")
    args = parser.parse_args()
    if min(args.clients, args.sessions, args.message_mb, args.repeats) < 1:
        parser.error("every count must be at least 1")
    big = [message_of(args.message_mb), message_of(args.message_mb, dotted=True)]
    works = [
        Work(
            f"{args.clients} clients USER/PASS/STAT/QUIT",
            "sessions/s",
            "higher",
            lambda target: asyncio.run(
                sessions_per_second(target, args.clients, args.sessions, args.seconds)
            ),
        ),
        Work(
            f"RETR {args.message_mb} MB",
            "MB/s",
            "higher",
            lambda target: retr_rate(target, len(big[0]), 1),
        ),
        Work(
            f"RETR {args.message_mb} MB dot-stuffed",
            "MB/s",
            "higher",
            lambda target: retr_rate(target, len(big[1]), 2),
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="pop3-bench-") as tmp:
        root = Path(tmp)
        starters: dict[str, Starter] = {}
        step("setting up communigate")
        starters["communigate"] = communigate_setup(root, big, args.host, args.port)
        step("setting up dovecot")
        found = dovecot_setup(root, big, args.host, args.dovecot_port)
        if found is None:
            print("dovecot: not installed (dovecot-pop3d) or not root; skipped", file=sys.stderr)
        else:
            starters["dovecot"] = found
        measure(works, starters, args.repeats)
        tail = server_log_tail(root)
    names = list(starters)
    report(f"POP3 on {args.host}", works, names, "dovecot", args.repeats)
    if all(run.value is None for work in works for run in work.runs.get("communigate", [])):
        print("communigate: every run failed; end of its log:")
        print(tail)


if __name__ == "__main__":
    main()
