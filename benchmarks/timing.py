"""Does a failed login tell whether the account exists, or how its password
is stored?  Median reply time of IMAP LOGIN failing for an unknown name, for
a wrong password on an account stored in clear and for a wrong password on
a bcrypt (UB-crpt) account, ``--attempts`` each, interleaved, on loopback
(which the per-address slowing exempts but the ``FailedLoginDelay`` floor
does not).  The three medians should be within 5 % of each other.

Several logins run at once (``--parallel``): the floor is a timer, so they
do not wait for one another.

Run:  python3 benchmarks/timing.py [--attempts 30] [--parallel 6] [--delay 2s]
      [--host 127.0.0.1] [--port N]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.servers import Base, add_address_options, communigate

#: What each kind of failure logs in as (the ghost names are numbered).
KINDS = {
    "unknown account": "ghost",
    "wrong password, clear account": "plain",
    "wrong password, bcrypt account": "hashed",
}


def login_time(host: str, port: int, user: str) -> float:
    """Seconds from sending LOGIN to its tagged reply (which must be NO)."""
    with socket.create_connection((host, port), timeout=60) as conn:
        stream = conn.makefile("rwb")
        stream.readline()
        start = time.perf_counter()
        stream.write(f"a LOGIN {user} wrong-password\r\n".encode())
        stream.flush()
        reply = stream.readline()
        elapsed = time.perf_counter() - start
    if not reply.startswith(b"a NO"):
        raise RuntimeError(f"unexpected reply {reply!r}")
    return elapsed


def main() -> None:
    """Start a server, time the failures, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attempts", type=int, default=30, help="failures of each kind")
    parser.add_argument("--parallel", type=int, default=6, help="logins at once")
    parser.add_argument("--delay", help="FailedLoginDelay (default: the server's, 2s)")
    add_address_options(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="timing-bench-") as tmp:
        root = Path(tmp)
        base = Base(root)
        if args.delay:
            base.run("server", "settings", f"FailedLoginDelay={args.delay}")
        base.account("plain")
        base.account("hashed", "PasswordEncryption=UB-crpt")
        tasks = [
            (kind, f"{user}{number}" if user == "ghost" else user)
            for number in range(args.attempts)
            for kind, user in KINDS.items()
        ]
        times: dict[str, list[float]] = {kind: [] for kind in KINDS}
        with communigate(root, base, "imap4", args.host, args.port) as (port, _pid):
            started = time.perf_counter()
            with ThreadPoolExecutor(args.parallel) as pool:
                results = pool.map(
                    lambda task: (task[0], login_time(args.host, port, task[1])), tasks
                )
                for kind, elapsed in results:
                    times[kind].append(elapsed)
            total = time.perf_counter() - started
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    print(
        f"{args.attempts} failed IMAP logins of each kind, {args.parallel} at once, "
        f"{total:.0f} s in all; median reply time:"
    )
    for kind, median in medians.items():
        print(f"  {kind + ':':33} {median * 1000:8.1f} ms")
    low, high = min(medians.values()), max(medians.values())
    spread = (high - low) / low * 100
    print(f"spread (max - min) / min: {spread:.2f} % ({'within' if spread <= 5 else 'over'} 5 %)")


if __name__ == "__main__":
    main()
