"""IMAP figures, communigate side by side with Dovecot (a private instance
started by this script when it is installed and we are root; otherwise
communigate alone).

Both servers get the same users (``user0``… with clear passwords, ``buser0``…
with bcrypt ones) and both run at once.  What is measured:

* LOGIN+LOGOUT per second with ``--clients`` concurrent clients (clear
  passwords), ``--logins`` in all or ``--seconds`` at most;
* NOOP latency on a logged-in session while ``--clients`` clients log in
  with bcrypt passwords for ``--noop-seconds``: the 99th percentile (the
  median in the note);
* memory per idle connection, on a server started for each run: ``--idle``
  connections (the same number on both servers) are opened, logged in,
  SELECT INBOX, and left idle; the growth of the Pss of the server's own
  process tree (communigate's single process; Dovecot's master and the
  processes it forks) divided by the number that logged in;
* SELECT of a ``--big``-message mailbox and FETCH 1:* (UID FLAGS
  RFC822.SIZE) on it (communigate only: the mailbox is written in its store
  layout), and the 99th percentile of another session's NOOP round trips
  meanwhile (one every 5 ms): a large mailbox must not stall the others.

Every work is run ``--repeats`` times, interleaved (communigate run 1,
dovecot run 1, communigate run 2, ...); the table gives the median of the
runs that succeeded and every run is listed below it.  Every loop is
bounded in count and time.

Run as root (Dovecot needs it):  python3 benchmarks/imap.py [--repeats 3]
    [--clients 20] [--idle 500] [--big 100000]
    [--host 127.0.0.1] [--port N] [--dovecot-port N]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.servers import (
    LOOPBACK,
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
    raise_file_limit,
    report,
    running_dovecot,
    server_log_tail,
    step,
    tree_memory,
)

USERS = [f"user{number}" for number in range(20)]


def communigate_setup(root: Path, big: int, host: str, port: int, idle: int = 500) -> Starter:
    """A base with the users and a ``big`` account of ``big`` messages, and
    room for ``idle`` connections from one address; starts a server on it."""
    base = Base(root)
    base.run("server", "settings", f"Listeners={{imap4={{MaxPerAddress=#{idle + 100};}};}}")
    for user in USERS:
        base.account(user)
        base.account(f"b{user}", "PasswordEncryption=UB-crpt")
    base.account("big")
    fill_big(base.path / "Accounts" / "big.macnt" / "INBOX.mdir", big)

    @contextmanager
    def start() -> Iterator[Target]:
        with communigate(root, base, "imap4", host, port) as (bound, pid):
            yield Target("communigate", host, bound, pid)

    return start


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


def dovecot_limits(idle: int) -> str:
    """Configuration that lets Dovecot hold ``idle`` logged-in connections
    (one imap process each) and ``idle`` from one user and address; nothing
    else is changed."""
    return (
        f"default_client_limit = {max(1000, 2 * idle + 200)}\n"
        f"service imap {{\n  process_limit = {max(1024, idle + 100)}\n}}\n"
        f"protocol imap {{\n  mail_max_userip_connections = {idle + 100}\n}}\n"
    )


def dovecot_folder(root: Path) -> Path:
    """Dovecot's directories and passwd-file (the same users and passwords)."""
    root.chmod(0o755)  # Dovecot's auth process runs as the dovecot user
    folder = root / "dovecot"
    for sub in ("run", "state", "home", "mail"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for path in (folder / "mail", folder / "home"):
        shutil.chown(path, "nobody", "nogroup")
    (folder / "passwd").write_text(
        "".join(f"{user}:secret\nb{user}:{bcrypt_hash()}\n" for user in USERS)
    )
    return folder


@contextmanager
def dovecot(
    root: Path, host: str = LOOPBACK, port: int = 0, idle: int = 500
) -> Iterator[tuple[int, list[int]] | None]:
    """A private Dovecot serving IMAP with the same users; (port, [pid of
    its master]), or None unless installed and root."""
    binary = dovecot_binary()
    if binary is None or not Path("/usr/lib/dovecot/imap").exists():
        yield None
        return
    folder = dovecot_folder(root)
    bound = port or free_port(host)
    conf = dovecot_conf(folder, "imap", host, bound, dovecot_limits(idle))
    with running_dovecot(binary, folder, conf, bound, host) as process:
        yield bound, [process.pid]


def dovecot_setup(root: Path, host: str, port: int, idle: int) -> Starter | None:
    """Starts Dovecot for a work; None unless installed and root."""
    if dovecot_binary() is None or not Path("/usr/lib/dovecot/imap").exists():
        return None

    @contextmanager
    def start() -> Iterator[Target]:
        with dovecot(root, host, port, idle) as found:
            if found is None:
                raise RuntimeError("dovecot did not start")
            yield Target("dovecot", host, found[0], found[1][0])

    return start


_BCRYPT: list[str] = []


def bcrypt_hash() -> str:
    """Dovecot's form of the bcrypt hash of ``secret`` (made once)."""
    if not _BCRYPT:
        from passlib.hash import bcrypt

        _BCRYPT.append("{BLF-CRYPT}" + bcrypt.hash("secret"))
    return _BCRYPT[0]


async def login_logout(host: str, port: int, user: str) -> None:
    """One connection: LOGIN, LOGOUT, both answered."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await reader.readline()
        writer.write(f"a LOGIN {user} secret\r\nb LOGOUT\r\n".encode())
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                raise Failed("connection closed")
            if line.startswith(b"a ") and not line.startswith(b"a OK"):
                raise Failed(line.decode(errors="replace").strip())
            if line.startswith(b"b "):
                return
    finally:
        writer.close()


async def logins_per_second(
    target: Target, clients: int, total: int, seconds: float, prefix: str = ""
) -> float:
    """LOGIN+LOGOUT connections per second, ``clients`` at once."""

    async def one(index: int, units: int) -> int:
        await login_logout(target.host, target.port, prefix + USERS[index % len(USERS)])
        return 1

    return (await bounded_rate(one, clients, total, seconds))[1]


def logins(target: Target, clients: int, total: int, seconds: float) -> Run:
    """The LOGIN+LOGOUT rate as a run."""
    return Run(asyncio.run(logins_per_second(target, clients, total, seconds)))


async def _login_select(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int
) -> None:
    await reader.readline()
    writer.write(f"a LOGIN {USERS[index % len(USERS)]} secret\r\nb SELECT INBOX\r\n".encode())
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            raise Failed("connection closed while logging in")
        if line.startswith(b"a ") and not line.startswith(b"a OK"):
            raise Failed(line.decode(errors="replace").strip())
        if line.startswith(b"b "):
            return


async def idle_connections(target: Target, count: int) -> Run:
    """KiB of Pss per idle, logged-in, selected connection (connections the
    server refused are not counted); Pss_Anon and private memory in the
    note."""
    before = tree_memory(target.pid)
    writers: list[asyncio.StreamWriter] = []
    failures: list[str] = []

    async def one(index: int) -> bool:
        try:
            reader, writer = await asyncio.open_connection(target.host, target.port)
        except OSError as error:
            failures.append(str(error))
            return False
        writers.append(writer)
        try:
            await asyncio.wait_for(_login_select(reader, writer, index), 60)
        except (OSError, Failed) as error:
            failures.append(str(error) or type(error).__name__)
            return False
        return True

    kept = 0
    try:
        for start in range(0, count, 50):
            results = await asyncio.gather(
                *(one(index) for index in range(start, min(count, start + 50)))
            )
            kept += sum(results)
        await asyncio.sleep(1)
        after = tree_memory(target.pid)
    finally:
        for writer in writers:
            writer.close()
    if not kept:
        raise Failed(f"no connection logged in ({failures[0] if failures else '?'})")
    note = (
        f"{kept}/{count} logged in, {after.processes} processes, "
        f"Pss_Anon {(after.pss_anon - before.pss_anon) / kept:.1f}, "
        f"private {(after.private - before.private) / kept:.1f}"
    )
    if failures:
        note += f"; first failure: {failures[0]}"
    return Run((after.pss - before.pss) / kept, note)


async def ping(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    latencies: list[float],
    stop: float,
    most: int,
) -> None:
    """NOOP on a logged-in session every 5 ms, its round trips (seconds)
    added to ``latencies``, until the monotonic time ``stop`` or ``most``
    NOOPs."""
    while time.monotonic() < stop and len(latencies) < most:
        start = time.monotonic()
        writer.write(b"n NOOP\r\n")
        await writer.drain()
        while not (await reader.readline()).startswith(b"n "):
            pass
        latencies.append(time.monotonic() - start)
        await asyncio.sleep(0.005)


#: A NOOP client in a process of its own (the one reading a FETCH of a
#: million lines would delay its own pings): logs in as user0, then sends a
#: NOOP every 5 ms until a line arrives on stdin (or 20 minutes), and
#: prints the round trips in seconds, one per line.
PINGER = """
import select, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
sock = socket.create_connection((host, port))
stream = sock.makefile("rb")
stream.readline()
sock.sendall(b"a LOGIN user0 secret\\r\\nb SELECT INBOX\\r\\n")
while not stream.readline().startswith(b"b "):
    pass
print("ready", flush=True)
found = []
stop = time.monotonic() + 1200
while time.monotonic() < stop and len(found) < 200000:
    if select.select([sys.stdin], [], [], 0.005)[0]:
        break
    start = time.monotonic()
    sock.sendall(b"n NOOP\\r\\n")
    while not stream.readline().startswith(b"n "):
        pass
    found.append(time.monotonic() - start)
print("\\n".join(repr(value) for value in found), flush=True)
"""


async def big_mailbox(target: Target) -> tuple[float, float, list[float]]:
    """SELECT of the big mailbox and FETCH 1:* on it: their seconds, and
    the NOOP round trips (seconds) another session, in another process,
    saw meanwhile."""
    pinger = subprocess.Popen(
        [sys.executable, "-c", PINGER, target.host, str(target.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert pinger.stdin is not None and pinger.stdout is not None
    reader, writer = await asyncio.open_connection(target.host, target.port, limit=1 << 20)
    try:
        if pinger.stdout.readline().strip() != "ready":
            raise Failed("the NOOP client did not log in")
        await reader.readline()

        async def command(text: bytes) -> float:
            start = time.monotonic()
            writer.write(text + b"\r\n")
            await writer.drain()
            tag = text.split(b" ", 1)[0]
            while True:
                line = await reader.readline()
                if not line:
                    raise Failed("connection closed")
                if line.startswith(tag + b" "):
                    if not line.startswith(tag + b" OK"):
                        raise Failed(line.decode(errors="replace").strip())
                    return time.monotonic() - start

        await command(b"a LOGIN big secret")
        select = await asyncio.wait_for(command(b"b SELECT INBOX"), 600)
        fetch = await asyncio.wait_for(command(b"c FETCH 1:* (UID FLAGS RFC822.SIZE)"), 600)
    finally:
        writer.close()
        output, _ = pinger.communicate("stop\n", timeout=120)
    latencies = [float(line) for line in output.split()]
    return select, fetch, latencies


def big_select(target: Target) -> Run:
    """Seconds for SELECT + FETCH 1:* of the big mailbox."""
    select, fetch, _ = asyncio.run(big_mailbox(target))
    return Run(select + fetch, f"SELECT {select:.2f} s, FETCH {fetch:.2f} s")


def big_stall(target: Target) -> Run:
    """Another session's NOOP p99 (ms) during SELECT + FETCH 1:* of the
    big mailbox."""
    select, fetch, latencies = asyncio.run(big_mailbox(target))
    if not latencies:
        raise Failed("no NOOP answered")
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return Run(
        p99,
        f"max {latencies[-1] * 1000:.1f} ms, {len(latencies)} NOOPs, "
        f"SELECT {select:.2f} s, FETCH {fetch:.2f} s",
    )


async def noop_latency(target: Target, clients: int, seconds: float) -> Run:
    """NOOP round trips on one session while bcrypt logins run: p99 ms,
    the median in the note."""
    reader, writer = await asyncio.open_connection(target.host, target.port)
    await reader.readline()
    writer.write(b"a LOGIN user0 secret\r\n")
    await writer.drain()
    if not (await reader.readline()).startswith(b"a OK"):
        raise Failed("LOGIN refused")
    latencies: list[float] = []
    pinger = ping(reader, writer, latencies, time.monotonic() + seconds, 10_000)
    try:
        _, rate = await asyncio.wait_for(
            asyncio.gather(pinger, logins_per_second(target, clients, 10**6, seconds, "b")),
            seconds + 60,
        )
    finally:
        writer.close()
    if not latencies:
        raise Failed("no NOOP answered")
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    median = statistics.median(latencies) * 1000
    return Run(p99, f"median {median:.1f}, {len(latencies)} NOOPs, {rate:.1f} bcrypt logins/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--logins", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--noop-seconds", type=float, default=10)
    parser.add_argument("--idle", type=int, default=500, help="idle connections, on each server")
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per work and server")
    add_address_options(parser, "dovecot")
    args = parser.parse_args()
    if min(args.clients, args.logins, args.idle, args.big, args.repeats) < 1:
        parser.error("every count must be at least 1")
    raise_file_limit()
    works = [
        Work(
            f"LOGIN+LOGOUT, {args.clients} clients",
            "/s",
            "higher",
            lambda target: logins(target, args.clients, args.logins, args.seconds),
        ),
        Work(
            f"NOOP p99, {args.clients} bcrypt logins",
            "ms",
            "lower",
            lambda target: asyncio.run(noop_latency(target, args.clients, args.noop_seconds)),
        ),
        Work(
            f"SELECT + FETCH 1:* of {args.big}",
            "s",
            "lower",
            big_select,
            only=("communigate",),
        ),
        Work(
            f"NOOP p99 during SELECT + FETCH 1:* of {args.big}",
            "ms",
            "lower",
            big_stall,
            only=("communigate",),
        ),
        Work(
            f"idle connection ({args.idle})",
            "KiB Pss",
            "lower",
            lambda target: asyncio.run(idle_connections(target, args.idle)),
            fresh=True,
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="imap-bench-") as tmp:
        root = Path(tmp)
        starters: dict[str, Starter] = {}
        step("setting up communigate")
        starters["communigate"] = communigate_setup(root, args.big, args.host, args.port, args.idle)
        found = dovecot_setup(root, args.host, args.dovecot_port, args.idle)
        if found is None:
            print("dovecot: not installed (dovecot-imapd) or not root; skipped", file=sys.stderr)
        else:
            starters["dovecot"] = found
        measure(works, starters, args.repeats)
        tail = server_log_tail(root)
    names = list(starters)
    report(f"IMAP on {args.host}", works, names, "dovecot", args.repeats)
    if all(run.value is None for work in works for run in work.runs.get("communigate", [])):
        print("communigate: every run failed; end of its log:")
        print(tail)


if __name__ == "__main__":
    main()
