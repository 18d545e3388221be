"""Does a failed login tell whether the account exists?  Median reply time
of IMAP LOGIN with a wrong password for an existing (bcrypt) account and
for an unknown name, ``--attempts`` each, alternating, on loopback (which
the per-address slowing exempts).

Run:  python benchmarks/timing.py [--attempts 200]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.servers import Base, communigate


def login_time(port: int, user: str) -> float:
    """Seconds from sending LOGIN to its tagged reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attempts", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="timing-bench-") as tmp:
        root = Path(tmp)
        base = Base(root)
        base.run("server", "settings", "AccountDefaults={PasswordEncryption=UB-crpt;}")
        base.account("real")
        with communigate(root, base, "imap4") as (port, _pid):
            known, unknown = [], []
            for number in range(args.attempts):
                known.append(login_time(port, "real"))
                unknown.append(login_time(port, f"ghost{number}"))
    wrong, missing = statistics.median(known), statistics.median(unknown)
    print(f"{args.attempts} attempts each; median reply time")
    print(f"wrong password, existing account: {wrong * 1000:.1f} ms")
    print(f"unknown account:                  {missing * 1000:.1f} ms")
    print(f"difference: {abs(wrong - missing) / wrong * 100:.1f} %")


if __name__ == "__main__":
    main()
