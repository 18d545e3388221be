"""imaptest figures, side by side with Dovecot when it is installed.

Dovecot's stress tester (``../shared/tools/imaptest/``) runs ``--clients``
clients for ``--seconds`` against each server in turn, in each profile
(the default one, with LOGIN and LOGOUT, and ``logout=0``, the command path
only), ``--runs`` times interleaved; the figures are commands per second
for each command type and in total, every run listed and the median shown.
Both servers get the same accounts, passwords and mbox file.  ``IMAPTEST``
names imaptest's folder when it is not ``../shared/tools/imaptest/``.

Run as root (Dovecot needs it):  python benchmarks/imaptest.py
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.imap import USERS, dovecot
from benchmarks.servers import Base, communigate

IMAPTEST = Path(
    os.environ.get("IMAPTEST", Path(__file__).resolve().parents[2] / "shared/tools/imaptest")
)
PROFILES = {"default": [], "logout=0": ["logout=0"]}


def write_mbox(path: Path, count: int = 100) -> None:
    """An mbox of plain and multipart messages for imaptest to APPEND."""
    out = []
    for number in range(count):
        header = (
            f"From: Sender {number} <sender{number}@example.com>\n"
            f"To: user{number % 20}@bench.test\n"
            f"Cc: other{number}@example.org\n"
            f"Subject: message {number} about things\n"
            f"Date: Mon, 30 Nov 2026 08:{number % 60:02d}:00 +0000\n"
            f"Message-ID: <{number}@example.com>\n"
        )
        if number % 3 == 0:
            body = (
                'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n'
                "--b\nContent-Type: text/plain\n\nhello\n"
                "--b\nContent-Type: application/octet-stream\n"
                "Content-Transfer-Encoding: base64\n\n" + "QUJD" * 200 + "\n--b--\n"
            )
        else:
            body = "\n" + "line of text\n" * (5 + number % 40)
        out.append(f"From sender{number}@example.com Mon Nov 30 08:00:00 2026\n{header}{body}\n")
    path.write_text("".join(out))


def parse_totals(text: str) -> dict[str, float]:
    """Command counts from imaptest's ``Totals:`` block (a line of command
    names, percentage lines, then the counts)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("Totals:"):
            names = lines[index + 1].split()
            for following in lines[index + 2 : index + 6]:
                counts = following.split()
                if len(counts) == len(names) and all(count.isdigit() for count in counts):
                    return {name: float(count) for name, count in zip(names, counts, strict=True)}
    return {}


def run_imaptest(port: int, mbox: Path, clients: int, seconds: int, extra: list[str]) -> str:
    """One imaptest run; its output."""
    command = [
        str(IMAPTEST / "imaptest"),
        "host=127.0.0.1",
        f"port={port}",
        "user=user%d",
        # imaptest numbers users from 1: user1 … user19 of user0 … user19.
        f"users={len(USERS) - 1}",
        "pass=secret",
        f"mbox={mbox}",
        f"clients={clients}",
        f"secs={seconds}",
        *extra,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    return done.stdout + done.stderr


def main() -> None:
    """Run every profile on both servers and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--profile", choices=[*PROFILES, "both"], default="both")
    parser.add_argument(
        "--workers", type=int, default=0, help="communigate's --workers (0: one process)"
    )
    options = parser.parse_args()
    profiles = list(PROFILES) if options.profile == "both" else [options.profile]
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        mbox = root / "test.mbox"
        write_mbox(mbox)
        base = Base(root)
        for user in USERS:
            base.account(user)
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        extra = [f"--workers={options.workers}"] if options.workers else []
        with communigate(root, base, "imap4", extra=extra) as (ours, _), dovecot(root) as theirs:
            servers = [("communigate", ours)]
            if theirs is not None:
                servers.append(("dovecot", theirs[0]))
            for _run in range(options.runs):
                for profile in profiles:
                    for name, port in servers:
                        output = run_imaptest(
                            port, mbox, options.clients, options.seconds, PROFILES[profile]
                        )
                        errors = len(re.findall(r"^Error:", output, re.MULTILINE))
                        if os.environ.get("IMAPTEST_OUTPUT"):
                            log = Path(os.environ["IMAPTEST_OUTPUT"])
                            with log.open("a") as handle:
                                handle.write(f"== {profile} {name}\n{output}\n")
                        counts = parse_totals(output)
                        rates = {key: value / options.seconds for key, value in counts.items()}
                        rates["total"] = sum(rates.values())
                        rates["errors"] = errors
                        results.setdefault((profile, name), []).append(rates)
                        shown = " ".join(f"{key}={value:.1f}" for key, value in rates.items())
                        print(f"{profile:9} {name:12} {shown}", flush=True)
        print("medians (commands/s):")
        for (profile, name), runs in results.items():
            keys = list(runs[0])
            medians = {key: statistics.median(run.get(key, 0) for run in runs) for key in keys}
            shown = " ".join(f"{key}={value:.1f}" for key, value in medians.items())
            print(f"{profile:9} {name:12} {shown}")


if __name__ == "__main__":
    main()
