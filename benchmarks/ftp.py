"""FTP figures, communigate side by side with vsftpd (started by this script
when it is installed and we are root; otherwise communigate alone).

What is measured, on the same ``--mb`` MB file (one random MiB, repeated):

1. RETR over plain FTP (passive), curl writing to /dev/null: MB/s.
2. RETR and STOR over explicit FTPS: AUTH TLS, PROT P on the data
   connection, TLS 1.3 only (curl ``--ssl-reqd --tlsv1.3``, verifying each
   server's certificate with ``--cacert``: communigate's Main Domain
   certificate from ``init``, a self-signed one made with openssl for
   vsftpd; both name ``bench.test``, which curl resolves to 127.0.0.1).
   STOR uploads a file from the temporary directory; a run counts only if
   the stored file has the source's size, and the upload is deleted after
   every run.  MB/s.
3. ``--sessions`` sequential curl sessions, each login + LIST + QUIT:
   seconds (and sessions per second).  Each server checks the password its
   default way: vsftpd through PAM against the system's hash (yescrypt on
   Debian, tens of milliseconds a login), communigate against the account's
   stored password (clear, its default ``PasswordEncryption``).
4. Memory per idle logged-in session, on a server started for each run
   (after one session logged in and out): ``--idle`` control connections
   are opened from this process (raw sockets, USER/PASS, 230 read) and kept
   open; the growth of the Pss (``/proc/PID/smaps_rollup``) of the server's
   process tree -- communigate's single process; vsftpd's listener and the
   session processes it forks -- divided by the number of sessions that
   logged in (each run also lists the growth of Pss_Anon alone, which other
   processes mapping the same libraries do not move).  The sessions are
   closed afterwards.

Every work is run ``--repeats`` times, interleaved: communigate run 1,
vsftpd run 1, communigate run 2, ...; the table gives the median of the
runs that succeeded and every run is listed below it.  Ratio is
communigate / vsftpd.  Only loopback (127.0.0.1) is used; every transfer,
session and wait is bounded in count and time.

Run (as root, for vsftpd):
    python3 benchmarks/ftp.py [--mb 1024] [--repeats 3] [--sessions 200] [--idle 500]
"""

from __future__ import annotations

import argparse
import ftplib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.servers import (
    Base,
    Failed,
    Run,
    Work,
    attempt,
    cell,
    communigate,
    free_port,
    link_or_copy,
    median,
    process_tree,
    raise_file_limit,
    server_log_tail,
    step,
    wait_for,
)

HOST = "bench.test"  # the name both certificates carry; resolved to 127.0.0.1
# The same name on both servers; for vsftpd a throw-away system user.
USER, PASSWORD = "ftpbench", "secret"

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
max_clients={sessions}
max_per_ip={sessions}
ssl_enable=YES
rsa_cert_file={root}/vsftpd-cert.pem
rsa_private_key_file={root}/vsftpd-key.pem
force_local_data_ssl=NO
force_local_logins_ssl=NO
require_ssl_reuse=NO
ssl_ciphers=HIGH
"""


@dataclass
class Target:
    """One running server, as the measurements see it."""

    name: str
    port: int
    pid: int  # the listener; its descendants are counted too
    storage: Path  # the directory the FTP user starts in
    cafile: Path


# -- curl ---------------------------------------------------------------------


def curl(target: Target, path: str, *extra: str, tls: bool, limit: float) -> str:
    """curl's ``-w`` output for one bounded request; raises Failed."""
    url = f"ftp://{HOST if tls else '127.0.0.1'}:{target.port}/{path}"
    secure = ["--ssl-reqd", "--tlsv1.3", "--cacert", str(target.cafile)] if tls else []
    command = [
        "curl",
        "--silent",
        "--show-error",
        "--max-time",
        str(int(limit)),
        "--resolve",
        f"{HOST}:{target.port}:127.0.0.1",
        "--user",
        f"{USER}:{PASSWORD}",
        *secure,
        *extra,
        url,
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=limit + 30, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise Failed("curl did not finish") from error
    if result.returncode != 0:
        raise Failed(f"curl exit {result.returncode}: {result.stderr.strip()[-200:]}")
    return result.stdout


def transfer_limit(size: int) -> float:
    """Seconds a transfer may take: at least 1 MB/s."""
    return 60 + size / 1e6


def retr(target: Target, size: int, tls: bool) -> Run:
    """MB/s of one download of big.bin to /dev/null."""
    start = time.monotonic()
    out = curl(
        target,
        "big.bin",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        tls=tls,
        limit=transfer_limit(size),
    )
    elapsed = time.monotonic() - start
    got = int(float(out or 0))
    if got != size:
        raise Failed(f"downloaded {got} of {size} bytes")
    return Run(size / elapsed / 1e6)


def stor(target: Target, source: Path, size: int) -> Run:
    """MB/s of one FTPS upload; the result must have the source's size and
    is deleted afterwards."""
    stored = target.storage / "upload.bin"
    try:
        start = time.monotonic()
        curl(
            target,
            "upload.bin",
            "-T",
            str(source),
            "-w",
            "%{size_upload}",
            tls=True,
            limit=transfer_limit(size),
        )
        elapsed = time.monotonic() - start
        got = stored.stat().st_size if stored.exists() else -1
        if got != size:
            raise Failed(f"stored file has {got} bytes, not {size}")
        return Run(size / elapsed / 1e6)
    finally:
        delete_upload(target, stored)


def delete_upload(target: Target, stored: Path) -> None:
    """DELE the upload (so the server's own accounting sees it go); remove
    it from the disk if that did not work."""
    try:
        with ftplib.FTP() as client:
            client.connect("127.0.0.1", target.port, timeout=20)
            client.login(USER, PASSWORD)
            client.delete("upload.bin")
    except (OSError, ftplib.Error):
        pass
    stored.unlink(missing_ok=True)


def sessions(target: Target, count: int) -> Run:
    """Seconds for ``count`` sequential login + LIST + QUIT sessions."""
    start = time.monotonic()
    for _ in range(count):
        curl(target, "", "-o", "/dev/null", tls=False, limit=20)
    elapsed = time.monotonic() - start
    return Run(elapsed, f"{count / elapsed:.1f}/s")


def tls_description(target: Target) -> str:
    """The TLS version and cipher curl negotiated on control and data
    connections (one small FTPS LIST), e.g. ``TLSv1.3 / TLS_AES_256_GCM_SHA384``."""
    command = [
        "curl",
        "--verbose",
        "--silent",
        "--max-time",
        "20",
        "--ssl-reqd",
        "--tlsv1.3",
        "--cacert",
        str(target.cafile),
        "--resolve",
        f"{HOST}:{target.port}:127.0.0.1",
        "--user",
        f"{USER}:{PASSWORD}",
        "-o",
        "/dev/null",
        f"ftp://{HOST}:{target.port}/",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "FTPS probe timed out"
    found = sorted(set(re.findall(r"SSL connection using (\S+ / \S+)", result.stderr)))
    if result.returncode != 0 or not found:
        return f"FTPS probe failed (curl exit {result.returncode})"
    return ", ".join(found)


# -- idle sessions ------------------------------------------------------------


def pss_kib(pid: int) -> tuple[int, int, int]:
    """(Pss, Pss_Anon, both in KiB; number of processes) of ``pid``'s
    process tree."""
    total = anon = count = 0
    for member in process_tree(pid):
        try:
            text = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
                count += 1
            elif line.startswith("Pss_Anon:"):
                anon += int(line.split()[1])
    return total, anon, count


def ftp_reply(conn: socket.socket, buffer: bytearray) -> bytes:
    """The final line of one (possibly multi-line) FTP reply."""
    for _ in range(200):
        while b"\n" not in buffer:
            data = conn.recv(4096)
            if not data:
                raise Failed("connection closed")
            buffer += data
            if len(buffer) > 65536:
                raise Failed("reply too long")
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        if len(line) >= 4 and line[:3].isdigit() and line[3:4] == b" ":
            return line.rstrip()
    raise Failed("reply too long")


def idle_login(port: int) -> socket.socket:
    """A control connection logged in with USER/PASS (230 read)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        buffer = bytearray()
        if not ftp_reply(conn, buffer).startswith(b"220"):
            raise Failed("no greeting")
        conn.sendall(f"USER {USER}\r\n".encode())
        if not ftp_reply(conn, buffer).startswith(b"331"):
            raise Failed("USER refused")
        conn.sendall(f"PASS {PASSWORD}\r\n".encode())
        reply = ftp_reply(conn, buffer)
        if not reply.startswith(b"230"):
            raise Failed(f"PASS refused: {reply.decode(errors='replace')}")
    except BaseException:
        conn.close()
        raise
    return conn


def settle(pid: int, processes: int, seconds: float = 20) -> None:
    """Wait until the tree is down to ``processes`` processes (vsftpd's
    session processes exit after their connection closes), then a second."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(process_tree(pid)) > processes:
        time.sleep(0.1)
    time.sleep(1)


def idle_memory(target: Target, count: int) -> Run:
    """KiB of Pss per idle logged-in session, on a server started for this
    run; one session logs in and out first so that what is done once (a
    first login) is not counted."""
    processes = len(process_tree(target.pid))
    idle_login(target.port).close()
    settle(target.pid, processes)
    before, before_anon, _ = pss_kib(target.pid)
    conns: list[socket.socket] = []
    failures: list[str] = []
    deadline = time.monotonic() + 60 + count * 0.5
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                failures.append("out of time")
                break
            try:
                conns.append(idle_login(target.port))
            except (OSError, Failed) as error:
                failures.append(str(error) or type(error).__name__)
                if len(failures) >= 10:
                    break
        time.sleep(1)
        after, after_anon, processes = pss_kib(target.pid)
    finally:
        for conn in conns:
            conn.close()
    if not conns:
        raise Failed(f"no session logged in ({failures[0] if failures else '?'})")
    anon = (after_anon - before_anon) / len(conns)
    note = f"{len(conns)}/{count} logged in, {processes} processes, Pss_Anon {anon:.1f}"
    if failures:
        note += f"; first failure: {failures[0]}"
    return Run((after - before) / len(conns), note)


# -- servers ------------------------------------------------------------------

Starter = Callable[[], AbstractContextManager[Target]]


def communigate_setup(root: Path, payload: Path, idle: int) -> Starter:
    """A base with the account and the file; starts a server on it."""
    base = Base(root)
    base.account(USER)
    # The default of 50 connections per address would stop the idle count.
    base.run("server", "settings", f"Listeners={{ftp={{MaxPerAddress=#{idle + 50};}};}}")
    storage = base.path / "Accounts" / f"{USER}.macnt" / "account.web"
    storage.mkdir(parents=True, exist_ok=True)
    link_or_copy(payload, storage / "big.bin")
    cafile = base.path / "Accounts" / "Settings" / "certificate.pem"

    @contextmanager
    def start() -> Iterator[Target]:
        with communigate(root, base, "ftp") as (port, pid):
            yield Target("communigate", port, pid, storage, cafile)

    return start


@contextmanager
def vsftpd_setup(root: Path, payload: Path, idle: int) -> Iterator[Starter | None]:
    """A throw-away local user owning the file, a certificate and a PAM
    service; starts vsftpd for them.  None unless installed and root."""
    binary = shutil.which("vsftpd") or "/usr/sbin/vsftpd"
    if not os.path.exists(binary) or os.geteuid() != 0:
        yield None
        return
    try:
        existing = pwd.getpwnam(USER).pw_dir
    except KeyError:
        existing = None
    if existing is not None and not existing.endswith("/vsftpd-home"):
        # Someone's real account: never change its password or delete it.
        raise RuntimeError(f"a system user {USER!r} exists and is not ours")
    home = root / "vsftpd-home"
    cert, key = root / "vsftpd-cert.pem", root / "vsftpd-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",  # as communigate's certificate
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={HOST}",
            "-addext",
            f"subjectAltName=DNS:{HOST}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    pam = Path("/etc/pam.d/vsftpd-bench")
    if existing is not None:  # left by an interrupted run
        subprocess.run(["userdel", USER], capture_output=True, check=False)
    try:
        subprocess.run(
            ["useradd", "-M", "-d", str(home), "-s", "/bin/sh", USER],
            capture_output=True,
            check=True,
        )
        subprocess.run(["chpasswd"], input=f"{USER}:{PASSWORD}\n", text=True, check=True)
        pam.write_text("auth required pam_unix.so\naccount required pam_unix.so\n")
        home.mkdir()
        link_or_copy(payload, home / "big.bin")
        shutil.chown(home, USER)
        (root / "empty").mkdir()

        @contextmanager
        def start() -> Iterator[Target]:
            port = free_port()
            conf = root / "vsftpd.conf"
            conf.write_text(VSFTPD_CONF.format(port=port, root=root, sessions=idle + 50))
            process = subprocess.Popen(
                [binary, str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=raise_file_limit,
            )
            try:
                wait_for(port, process)
                yield Target("vsftpd", port, process.pid, home, cert)
            finally:
                # Session processes end with their connections; then the
                # listener, then whatever is left of its tree.
                settle(process.pid, 1, seconds=10)
                left = process_tree(process.pid)[1:]
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except OSError:
                        pass

        yield start
    finally:
        pam.unlink(missing_ok=True)
        subprocess.run(["userdel", USER], capture_output=True, check=False)


# -- running and reporting ----------------------------------------------------


def measure(works: list[Work], starters: dict[str, Starter], repeats: int) -> dict[str, str]:
    """Every work, its runs interleaved over the servers: the works that
    need a fresh server start one per run, the others share one server
    each.  Returns each server's negotiated TLS."""
    tls: dict[str, str] = {}
    with ExitStack() as stack:
        targets: dict[str, Target | None] = {}
        for name, start in starters.items():
            step(f"starting {name}")
            try:
                target = targets[name] = stack.enter_context(start())
                tls[name] = tls_description(target)
            except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                targets[name] = None
                tls[name] = f"did not start ({error})"
        for work in (work for work in works if not work.fresh):
            for number in range(1, repeats + 1):
                for name, found in targets.items():
                    step(f"{work.label}: {name} run {number}")
                    result = attempt(work, found) if found else Run(None, "did not start")
                    work.runs.setdefault(name, []).append(result)
    for work in (work for work in works if work.fresh):
        for number in range(1, repeats + 1):
            for name, start in starters.items():
                step(f"{work.label}: {name} run {number} (fresh server)")
                try:
                    with start() as target:
                        result = attempt(work, target)
                except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                    result = Run(None, f"did not start ({error})")
                work.runs.setdefault(name, []).append(result)
    return tls


def report(works: list[Work], names: list[str], args: argparse.Namespace) -> None:
    print()
    print(
        f"FTP on 127.0.0.1: file of {args.mb} MB, {args.sessions} sessions, "
        f"{args.idle} idle sessions; median of {args.repeats} interleaved runs"
    )
    print("ratio = communigate / vsftpd")
    width = max(len(f"{work.label}, {work.unit}") for work in works) + 2
    print(f"{'work':<{width}}{'vsftpd':>12}{'communigate':>14}{'ratio':>8}  better")
    for work in works:
        ours = median(work.runs.get("communigate", []))
        theirs = median(work.runs.get("vsftpd", []))
        ratio = f"{ours / theirs:.2f}" if ours is not None and theirs else "-"
        theirs_text = cell(theirs) if "vsftpd" in names else "-"
        ours_text = cell(ours) if "communigate" in names else "-"
        label = f"{work.label}, {work.unit}"
        print(f"{label:<{width}}{theirs_text:>12}{ours_text:>14}{ratio:>8}  {work.better}")
    print()
    print("All runs, in the order they ran within each work:")
    for work in works:
        print(f"{work.label}, {work.unit}")
        for name in names:
            texts = []
            for run in work.runs.get(name, []):
                text = cell(run.value)
                if run.note:
                    text += f" ({run.note})"
                texts.append(text)
            print(f"  {name + ':':<13}" + "; ".join(texts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="file size, MB (MiB)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per work and server")
    parser.add_argument("--sessions", type=int, default=200, help="login+LIST+QUIT sessions")
    parser.add_argument("--idle", type=int, default=500, help="idle logged-in sessions")
    args = parser.parse_args()
    if min(args.mb, args.repeats, args.sessions, args.idle) < 1:
        parser.error("every count must be at least 1")
    raise_file_limit()
    size = args.mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="ftp-bench-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        root.chmod(0o755)
        payload = root / "payload.bin"
        step(f"writing a {args.mb} MB file")
        with open(payload, "wb") as handle:
            chunk = os.urandom(1024 * 1024)
            for _ in range(args.mb):
                handle.write(chunk)
        payload.chmod(0o644)
        works = [
            Work(f"RETR {args.mb} MB plain", "MB/s", "higher", lambda t: retr(t, size, tls=False)),
            Work(f"RETR {args.mb} MB FTPS", "MB/s", "higher", lambda t: retr(t, size, tls=True)),
            Work(f"STOR {args.mb} MB FTPS", "MB/s", "higher", lambda t: stor(t, payload, size)),
            Work(
                f"{args.sessions} login+LIST+QUIT",
                "s",
                "lower",
                lambda t: sessions(t, args.sessions),
            ),
            Work(
                f"idle session ({args.idle})",
                "KiB Pss",
                "lower",
                lambda t: idle_memory(t, args.idle),
                fresh=True,
            ),
        ]
        starters: dict[str, Starter] = {}
        step("setting up communigate")
        try:
            starters["communigate"] = communigate_setup(root, payload, args.idle)
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            print(f"communigate: could not be set up ({error}); skipped", file=sys.stderr)
        step("setting up vsftpd")
        try:
            found = stack.enter_context(vsftpd_setup(root, payload, args.idle))
            if found is None:
                print("vsftpd: not installed or not root; skipped", file=sys.stderr)
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            print(f"vsftpd: could not be set up ({error}); skipped", file=sys.stderr)
            found = None
        if found is not None:
            starters["vsftpd"] = found
        if not starters:
            sys.exit("no server to measure")
        tls = measure(works, starters, args.repeats)
        tail = server_log_tail(root)
    names = list(starters)
    report(works, names, args)
    print()
    for name in names:
        print(f"FTPS on {name}: {tls.get(name, '?')}")
    if "vsftpd" not in names:
        print("vsftpd: not measured (not installed, not root or not set up)")
    broken = "communigate" in names and all(
        run.value is None for work in works for run in work.runs.get("communigate", [])
    )
    if "communigate" not in names or broken:
        print("communigate: not measured or every run failed; end of its log:")
        print(tail)


if __name__ == "__main__":
    main()
