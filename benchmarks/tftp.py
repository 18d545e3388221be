"""TFTP figures: a ``--mb`` MB download with curl (blksize 1468) from
communigate and from tftpd-hpa when it is installed, and from communigate
with windowsize 16 (RFC 7440, which tftpd-hpa lacks; the test client of
this project, since Debian's clients lack it too).

Only loopback addresses are used; every transfer is bounded in time.
Run:  python benchmarks/tftp.py [--mb 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.servers import Base, communigate, free_udp_port
from tests.integration import tftpclient


def curl_rate(port: int, name: str, size: int, repeats: int) -> float:
    """Best MB/s of curl downloads with blksize 1468."""
    best = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            start = time.monotonic()
            subprocess.run(
                [
                    "curl",
                    "--silent",
                    "--tftp-blksize",
                    "1468",
                    "--max-time",
                    "300",
                    f"tftp://127.0.0.1:{port}/{name}",
                    "-o",
                    f"{tmp}/out",
                ],
                check=True,
                timeout=320,
            )
            elapsed = time.monotonic() - start
            if os.path.getsize(f"{tmp}/out") != size:
                raise RuntimeError("short download")
            best = max(best, size / elapsed / 1e6)
    return best


def window_rate(port: int, name: str, size: int, repeats: int) -> float:
    """Best MB/s with blksize 1468 and windowsize 16."""
    best = 0.0
    for _ in range(repeats):
        start = time.monotonic()
        data, _ = tftpclient.get(port, name, {"blksize": "1468", "windowsize": "16"}, 300)
        elapsed = time.monotonic() - start
        if len(data) != size:
            raise RuntimeError("short download")
        best = max(best, size / elapsed / 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * 1024 * 1024
    payload = os.urandom(size)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="tftp-bench-") as tmp:
        root = Path(tmp)
        base = Base(root)
        base.account("devices")
        base.run("server", "settings", "TFTPDefaultStorage=devices")
        storage = base.path / "Accounts" / "devices.macnt" / "account.web"
        storage.mkdir(parents=True, exist_ok=True)
        (storage / "big.bin").write_bytes(payload)
        with communigate(root, base, "tftp") as (port, _pid):
            rows.append(
                (
                    "communigate",
                    f"{curl_rate(port, 'big.bin', size, args.repeats):.1f}",
                    f"{window_rate(port, 'big.bin', size, args.repeats):.1f}",
                )
            )
        daemon = shutil.which("in.tftpd") or "/usr/sbin/in.tftpd"
        if os.path.exists(daemon):
            folder = root / "tftpboot"
            folder.mkdir()
            (folder / "big.bin").write_bytes(payload)
            port = free_udp_port()
            process = subprocess.Popen(
                [
                    daemon,
                    "--foreground",
                    "--listen",
                    "--address",
                    f"127.0.0.1:{port}",
                    "--secure",
                    str(folder),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(1)
                rows.append(
                    (
                        "tftpd-hpa",
                        f"{curl_rate(port, 'big.bin', size, args.repeats):.1f}",
                        "no windowsize",
                    )
                )
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
        else:
            print("tftpd-hpa: not installed, skipped")
    print(f"{args.mb} MB download, best of {args.repeats}, MB/s")
    print(f"{'server':<12}{'curl blksize 1468':>20}{'windowsize 16':>16}")
    for name, plain, window in rows:
        print(f"{name:<12}{plain:>20}{window:>16}")


if __name__ == "__main__":
    main()
