"""FTP figures, side by side with vsftpd when it is installed (and root):

* RETR of a ``--mb`` MB file over loopback, best of ``--repeats`` (curl
  writing to /dev/null);
* ``--sessions`` sequential login + LIST + QUIT sessions (curl), seconds.

Only loopback addresses are used; every transfer is bounded in time.
Run:  python benchmarks/ftp.py [--mb 1024]
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.servers import Base, communigate, free_port, wait_for

VSFTPD_CONF = """\
listen=YES
listen_address=127.0.0.1
listen_port={port}
anonymous_enable=NO
local_enable=YES
write_enable=YES
pam_service_name=vsftpd-bench
seccomp_sandbox=NO
secure_chroot_dir={root}/empty
pasv_enable=YES
background=NO
"""


def retr_rate(port: int, user: str, size: int, repeats: int) -> float:
    """Best MB/s of a download to /dev/null."""
    best = 0.0
    for _ in range(repeats):
        start = time.monotonic()
        result = subprocess.run(
            [
                "curl",
                "--silent",
                "--max-time",
                "300",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                f"ftp://127.0.0.1:{port}/big.bin",
                "--user",
                user,
            ],
            capture_output=True,
            text=True,
            timeout=320,
            check=True,
        )
        elapsed = time.monotonic() - start
        if int(float(result.stdout)) != size:
            raise RuntimeError("short download")
        best = max(best, size / elapsed / 1e6)
    return best


def sessions_time(port: int, user: str, count: int) -> float:
    """Seconds for ``count`` sequential login + LIST + QUIT sessions."""
    start = time.monotonic()
    for _ in range(count):
        subprocess.run(
            ["curl", "--silent", "--max-time", "20", f"ftp://127.0.0.1:{port}/", "--user", user],
            capture_output=True,
            timeout=30,
            check=True,
        )
    return time.monotonic() - start


@contextmanager
def vsftpd(root: Path, payload_path: Path) -> Iterator[tuple[int, str] | None]:
    """vsftpd with a throw-away local user owning the file (root only)."""
    binary = shutil.which("vsftpd") or "/usr/sbin/vsftpd"
    if not os.path.exists(binary) or os.geteuid() != 0:
        yield None
        return
    user = "ftpbench"
    home = root / "vsftpd-home"
    subprocess.run(
        ["useradd", "-M", "-d", str(home), "-s", "/bin/sh", user], capture_output=True, check=False
    )
    subprocess.run(["chpasswd"], input=f"{user}:secret\n", text=True, check=True)
    pam = Path("/etc/pam.d/vsftpd-bench")
    pam.write_text("auth required pam_unix.so\naccount required pam_unix.so\n")
    home.mkdir()
    shutil.copyfile(payload_path, home / "big.bin")
    shutil.chown(home, user)
    (root / "empty").mkdir()
    port = free_port()
    conf = root / "vsftpd.conf"
    conf.write_text(VSFTPD_CONF.format(port=port, root=root))
    process = subprocess.Popen(
        [binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(port, process)
        yield port, f"{user}:secret"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        pam.unlink(missing_ok=True)
        subprocess.run(["userdel", user], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=200)
    args = parser.parse_args()
    size = args.mb * 1024 * 1024
    rows = []
    with tempfile.TemporaryDirectory(prefix="ftp-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        base = Base(root)
        base.account("bench")
        storage = base.path / "Accounts" / "bench.macnt" / "account.web"
        storage.mkdir(parents=True, exist_ok=True)
        with open(storage / "big.bin", "wb") as handle:
            chunk = os.urandom(1024 * 1024)
            for _ in range(args.mb):
                handle.write(chunk)
        with communigate(root, base, "ftp") as (port, _pid):
            rows.append(
                (
                    "communigate",
                    retr_rate(port, "bench:secret", size, args.repeats),
                    sessions_time(port, "bench:secret", args.sessions),
                )
            )
        with vsftpd(root, storage / "big.bin") as found:
            if found is None:
                print("vsftpd: not installed or not root, skipped")
            else:
                port, user = found
                rows.append(
                    (
                        "vsftpd",
                        retr_rate(port, user, size, args.repeats),
                        sessions_time(port, user, args.sessions),
                    )
                )
    print(f"RETR of {args.mb} MB (best of {args.repeats}); {args.sessions} sequential sessions")
    print(f"{'server':<12}{'RETR MB/s':>12}{'sessions s':>12}")
    for name, rate, seconds in rows:
        print(f"{name:<12}{rate:>12.0f}{seconds:>12.1f}")


if __name__ == "__main__":
    main()
