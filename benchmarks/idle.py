"""CPU cost of idle IMAP IDLE sessions, and how fast they hear a delivery.

``--connections`` clients (default 10,000) each LOGIN, SELECT INBOX and
IDLE; then the server's CPU time (user + system, from ``/proc/<pid>/stat``)
is sampled over ``--seconds`` (default 30) and reported as a percentage of
one core.  Afterwards one message is delivered with ``communigate
deliver`` (another process, so inotify is what tells the server) to one of
the ``--users`` accounts, and the time until every IDLE session of that
account has seen ``* n EXISTS`` is reported.

The server is started here on ``--host``:``--port`` (a free port when 0),
unless ``--pid`` names a server already listening there.  Every loop is
bounded in count and time.  Example::

    python3 benchmarks/idle.py --connections 10000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.servers import LOOPBACK, Base, communigate, raise_file_limit

#: Connections opened at once while building up the idle population.
BATCH = 200


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class Idler:
    """One IDLE session."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def wait_for_exists(self, deadline: float) -> float | None:
        """Seconds until ``* n EXISTS`` arrives (None at the deadline)."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = await asyncio.wait_for(self.reader.readline(), left)
            except TimeoutError:
                return None
            if not line:
                return None
            if line.endswith(b"EXISTS\r\n"):
                return time.monotonic()


async def open_idler(host: str, port: int, user: str) -> Idler | None:
    """Connect, LOGIN, SELECT INBOX and IDLE; None if the server refused."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
        await reader.readline()
        writer.write(f"a LOGIN {user} secret\r\nb SELECT INBOX\r\nc IDLE\r\n".encode())
        await writer.drain()
        while True:
            line = await asyncio.wait_for(reader.readline(), 60)
            if not line or line.startswith((b"a NO", b"b NO", b"a BAD", b"b BAD")):
                writer.close()
                return None
            if line.startswith(b"+"):
                return Idler(reader, writer)
    except (OSError, TimeoutError):
        return None


async def run(args: argparse.Namespace, port: int, pid: int, base: Base | None) -> None:
    """Build the idle population, sample CPU, then time one delivery."""
    users = [f"idle{number}" for number in range(args.users)]
    idlers: dict[str, list[Idler]] = {user: [] for user in users}
    started = time.monotonic()
    for first in range(0, args.connections, BATCH):
        numbers = range(first, min(args.connections, first + BATCH))
        made = await asyncio.gather(
            *(open_idler(args.host, port, users[number % len(users)]) for number in numbers)
        )
        for number, idler in zip(numbers, made, strict=True):
            if idler is not None:
                idlers[users[number % len(users)]].append(idler)
    count = sum(len(group) for group in idlers.values())
    print(f"{count} of {args.connections} sessions idling ({time.monotonic() - started:.1f} s)")
    await asyncio.sleep(args.settle)
    samples = []
    for _ in range(args.repeats):
        before, wall = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(args.seconds)
        used, elapsed = cpu_seconds(pid) - before, time.monotonic() - wall
        samples.append(100 * used / elapsed)
        print(f"server CPU over {elapsed:.1f} s: {samples[-1]:.2f} % of a core")
    print(
        f"median of {len(samples)}: {statistics.median(samples):.2f} % of a core "
        f"with {count} idle IDLE sessions"
    )
    if base is None:
        return
    target = users[0]
    group = idlers[target]
    sent = time.monotonic()
    await asyncio.to_thread(
        subprocess.run,
        [*base.cli, "deliver", f"{target}@bench.test"],
        input=b"Subject: wake up\r\n\r\nbody\r\n",
        check=True,
        capture_output=True,
    )
    delivered = time.monotonic()
    deadline = delivered + 10
    seen = await asyncio.gather(*(idler.wait_for_exists(deadline) for idler in group))
    heard = sorted(moment - delivered for moment in seen if moment is not None)
    print(
        f"`communigate deliver` took {delivered - sent:.2f} s; "
        f"{len(heard)} of {len(group)} IDLE sessions of {target} saw EXISTS"
        + (
            f", first after {heard[0] * 1000:.0f} ms, last after {heard[-1] * 1000:.0f} ms"
            if heard
            else ""
        )
    )
    for group in idlers.values():
        for idler in group:
            idler.writer.close()


def main() -> None:
    """Parse the options, start the server, run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3, help="CPU samples (median reported)")
    parser.add_argument("--settle", type=float, default=5.0, help="pause before sampling")
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--pid", type=int, default=0, help="measure this running server (users idleN/secret)"
    )
    args = parser.parse_args()
    raise_file_limit()
    if args.pid:
        asyncio.run(run(args, args.port, args.pid, None))
        return
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        base = Base(root)
        # Every client comes from one address: lift the per-address cap.
        base.run(
            "server",
            "settings",
            f"Listeners={{imap4={{MaxPerAddress=#{args.connections + 50};}};}}",
        )
        for number in range(args.users):
            base.account(f"idle{number}")
        with communigate(root, base, "imap4", args.host, args.port) as (port, pid):
            asyncio.run(run(args, port, pid, base))


if __name__ == "__main__":
    main()
