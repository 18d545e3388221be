"""TFTP figures, communigate side by side with tftpd-hpa (started by this
script when it is installed; otherwise communigate alone).

What is measured, on the same ``--mb`` MB file:

1. Lock-step download (RFC 1350 with RFC 2348 blksize 1468) with curl
   writing to a temporary file that must have the file's size: MB/s.
2. The same with windowsize 16 (RFC 7440), communigate only (tftpd-hpa
   lacks it, and so do Debian's clients: the test client of this project
   is used).

With ``--baseline DIR`` communigate is also run from another source tree
(``git archive`` of an earlier commit, say), on the same base directory,
as a third server: before and after in the same interleaved runs.

Both servers run at once; every work is run ``--repeats`` times,
interleaved (communigate run 1, tftpd-hpa run 1, communigate run 2, ...);
the table gives the median of the runs that succeeded and every run is
listed below it.  Every transfer is bounded in time.

Run:  python3 benchmarks/tftp.py [--mb 100] [--repeats 3]
      [--host 127.0.0.1] [--port N] [--tftpd-port N] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
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
    communigate,
    free_udp_port,
    link_or_copy,
    measure,
    report,
    server_log_tail,
    step,
    terminate_tree,
    wait_for_tftp,
)
from tests.integration import tftpclient

NAME = "big.bin"


def curl_rate(target: Target, size: int, scratch: Path) -> Run:
    """MB/s of one curl download with blksize 1468."""
    out = scratch / f"{target.name}.out"
    limit = 60 + size / 1e6
    try:
        start = time.monotonic()
        result = subprocess.run(
            [
                "curl",
                "--silent",
                "--show-error",
                "--tftp-blksize",
                "1468",
                "--max-time",
                str(int(limit)),
                f"tftp://{target.host}:{target.port}/{NAME}",
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=limit + 30,
            check=False,
        )
        elapsed = time.monotonic() - start
        if result.returncode != 0:
            raise Failed(f"curl exit {result.returncode}: {result.stderr.strip()[-200:]}")
        got = out.stat().st_size
        if got != size:
            raise Failed(f"downloaded {got} of {size} bytes")
        return Run(size / elapsed / 1e6)
    finally:
        out.unlink(missing_ok=True)


def window_rate(target: Target, size: int) -> Run:
    """MB/s of one download with blksize 1468 and windowsize 16."""
    if target.host != "127.0.0.1":
        raise Failed("the windowsize client speaks to 127.0.0.1 only")
    start = time.monotonic()
    data, _ = tftpclient.get(
        target.port, NAME, {"blksize": "1468", "windowsize": "16"}, 60 + size / 1e6
    )
    elapsed = time.monotonic() - start
    if len(data) != size:
        raise Failed(f"downloaded {len(data)} of {size} bytes")
    return Run(size / elapsed / 1e6)


def communigate_setup(
    root: Path, payload: Path, host: str, port: int, baseline: Path | None
) -> dict[str, Starter]:
    """A base whose TFTP Default Storage holds the file; starts a server
    (and, with ``baseline``, one running that source tree's code)."""
    base = Base(root)
    base.account("devices")
    base.run("server", "settings", "TFTPDefaultStorage=devices")
    storage = base.path / "Accounts" / "devices.macnt" / "account.web"
    storage.mkdir(parents=True, exist_ok=True)
    link_or_copy(payload, storage / NAME)

    def starter(name: str, source: Path | None, wanted: int) -> Starter:
        @contextmanager
        def start() -> Iterator[Target]:
            with communigate(root, base, "tftp", host, wanted, source) as (bound, pid):
                yield Target(name, host, bound, pid)

        return start

    starters = {"communigate": starter("communigate", None, port)}
    if baseline is not None:
        starters["baseline"] = starter("baseline", baseline, 0)
    return starters


def tftpd_setup(root: Path, payload: Path, host: str, port: int) -> Starter | None:
    """A folder holding the file; starts tftpd-hpa on it.  None unless
    installed."""
    daemon = shutil.which("in.tftpd") or "/usr/sbin/in.tftpd"
    if not os.path.exists(daemon):
        return None
    folder = root / "tftpboot"
    folder.mkdir()
    link_or_copy(payload, folder / NAME)

    @contextmanager
    def start() -> Iterator[Target]:
        bound = port or free_udp_port(host)
        process = subprocess.Popen(
            [
                daemon,
                "--foreground",
                "--listen",
                "--address",
                f"{host}:{bound}",
                "--secure",
                str(folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_tftp(bound, process, host=host)
            yield Target("tftpd-hpa", host, bound, process.pid)
        finally:
            terminate_tree(process)

    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=100, help="file size, MB (MiB)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per work and server")
    add_address_options(parser, "tftpd")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also run communigate from this source tree (e.g. an export of an earlier commit)",
    )
    args = parser.parse_args()
    if min(args.mb, args.repeats) < 1:
        parser.error("every count must be at least 1")
    size = args.mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="tftp-bench-") as tmp:
        root = Path(tmp)
        payload = root / "payload.bin"
        step(f"writing a {args.mb} MB file")
        with open(payload, "wb") as handle:
            for _ in range(args.mb):
                handle.write(os.urandom(1024 * 1024))
        scratch = root / "scratch"
        scratch.mkdir()
        works = [
            Work(
                f"curl blksize 1468, {args.mb} MB",
                "MB/s",
                "higher",
                lambda target: curl_rate(target, size, scratch),
            ),
            Work(
                f"windowsize 16, {args.mb} MB",
                "MB/s",
                "higher",
                lambda target: window_rate(target, size),
                only=("communigate", "baseline"),
            ),
        ]
        step("setting up communigate")
        starters = communigate_setup(root, payload, args.host, args.port, args.baseline)
        found = tftpd_setup(root, payload, args.host, args.tftpd_port)
        if found is None:
            print("tftpd-hpa: not installed (apt-get install tftpd-hpa); skipped", file=sys.stderr)
        else:
            starters["tftpd-hpa"] = found
        measure(works, starters, args.repeats)
        tail = server_log_tail(root)
    names = list(starters)
    report(f"TFTP on {args.host}: file of {args.mb} MB", works, names, "tftpd-hpa", args.repeats)
    if all(run.value is None for work in works for run in work.runs.get("communigate", [])):
        print("communigate: every run failed; end of its log:")
        print(tail)


if __name__ == "__main__":
    main()
