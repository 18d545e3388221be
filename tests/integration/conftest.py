"""The real server on loopback, set up as the seed's multihoming example.

company.com is the Main Domain; client1.com owns 127.0.0.2; client2.com owns
no address; each has an ``info`` account with a marker message.  The server
listens on 127.0.0.1 and 127.0.0.2 and is started with ``twistd`` exactly as
an administrator would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from communigate.control.location import socket_path
from tests.integration import ports

ADDRESSES = ("127.0.0.1", "127.0.0.2")
#: ``twistd`` run by the interpreter running the tests.
TWISTD = (sys.executable, "-c", "from twisted.scripts.twistd import run; run()")
DOMAINS = ("company.com", "client1.com", "client2.com")
ALL_METHODS = ("PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "APOP")
#: Names the number of worker processes the suite's server runs with.
WORKERS_VARIABLE = "COMMUNIGATE_TEST_WORKERS"
#: The server's FailedLoginDelay during the tests (the default is 2s).
FAILED_LOGIN_DELAY = "0.2s"


def free_port() -> int:
    """A TCP port free on both loopback addresses the server uses."""
    return ports.free_port(("127.0.0.1", "127.0.0.2"))


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1."""
    return ports.free_port(udp=True)


def communigate(base: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run the administration command as an administrator would."""
    command = [sys.executable, "-m", "communigate.cli.main", "--base", str(base), *args]
    return subprocess.run(command, input=stdin, capture_output=True, check=False, timeout=60)


def admin(base: Path, *args: str, stdin: bytes = b"") -> str:
    """Run the command; it must succeed."""
    result = communigate(base, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def children(parent: int) -> list[int]:
    """The processes whose parent is ``parent``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after it.
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == parent:
            found.append(int(entry))
    return sorted(found)


def marker(domain: str) -> str:
    return f"marker-of-{domain}"


@dataclass
class Server:
    """A running server: its base directory, port and log file."""

    base: Path
    port: int
    log: Path
    pop3s_port: int
    imap_port: int
    imaps_port: int
    lmtp_port: int
    tftp_port: int
    ftp_port: int
    pwd_port: int
    ftps_port: int
    submission_port: int = 0
    smtps_port: int = 0
    #: The twistd process, once started.
    pid: int = 0

    @property
    def ca(self) -> Path:
        """The Main Domain's self-signed certificate, to verify TLS with."""
        return self.base / "Accounts" / "Settings" / "certificate.pem"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def file_storage(server: Server, domain: str, name: str) -> Path:
    """The File Storage folder of ``name@domain`` (the Main Domain's
    accounts live in ``Accounts/``, the others' in ``Domains/<domain>/``)."""
    if domain == DOMAINS[0]:
        return server.base / "Accounts" / f"{name}.macnt" / "account.web"
    return server.base / "Domains" / domain / f"{name}.macnt" / "account.web"


def wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited:\n" + log.read_text(errors="replace"))
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start:\n" + log.read_text(errors="replace"))


def plan_server(base: Path, log: Path) -> Server:
    """A server for an initialised ``base`` on free ports, not yet started."""
    port, pop3s_port, imap_port, imaps_port, lmtp_port = (free_port() for _ in range(5))
    tftp_port = free_udp_port()
    ftp_port, pwd_port, ftps_port = free_port(), free_port(), free_port()
    return Server(
        base,
        port,
        log,
        pop3s_port,
        imap_port,
        imaps_port,
        lmtp_port,
        tftp_port,
        ftp_port,
        pwd_port,
        ftps_port,
        free_port(),
        free_port(),
    )


def launch_server(
    base: Path, log: Path, *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``twistd -n communigate`` for ``base`` as an administrator
    would, logging to ``log``, with ``options`` (its listeners and the
    rest); it is not waited for."""
    command = [
        *TWISTD,
        "--nodaemon",
        "--pidfile=",
        f"--logfile={log}",
        "communigate",
        f"--base={base}",
        *options,
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)


def start_server(server: Server) -> subprocess.Popen[bytes]:
    """Start ``twistd communigate`` for ``server`` as an administrator
    would; returns once every TCP listener accepts and the control socket
    is there (``server.pid`` is set).  With ``COMMUNIGATE_TEST_WORKERS=N``
    in the environment it runs with ``--workers N`` (and returns once
    every worker is serving), so a suite can be run against the IMAP and
    POP3 of worker processes."""
    workers = int(os.environ.get(WORKERS_VARIABLE) or 0)
    process = launch_server(
        server.base,
        server.log,
        *(f"--pop3=tcp:{server.port}:interface={address}" for address in ADDRESSES),
        f"--pop3s=tcp:{server.pop3s_port}:interface=127.0.0.1",
        *(f"--imap4=tcp:{server.imap_port}:interface={address}" for address in ADDRESSES),
        f"--imaps=tcp:{server.imaps_port}:interface=127.0.0.1",
        f"--lmtp=tcp:{server.lmtp_port}:interface=127.0.0.1",
        f"--tftp=udp:{server.tftp_port}:interface=127.0.0.1",
        *(f"--ftp=tcp:{server.ftp_port}:interface={address}" for address in ADDRESSES),
        f"--ftps=tcp:{server.ftps_port}:interface=127.0.0.1",
        f"--pwd=tcp:{server.pwd_port}:interface=127.0.0.1",
        f"--submission=tcp:{server.submission_port}:interface=127.0.0.1",
        f"--smtps=tcp:{server.smtps_port}:interface=127.0.0.1",
        *([f"--workers={workers}"] if workers else []),
    )
    try:
        for address in ADDRESSES:
            wait_for_port(address, server.port, process, server.log)
            wait_for_port(address, server.ftp_port, process, server.log)
        for extra in (
            server.pop3s_port,
            server.imap_port,
            server.imaps_port,
            server.lmtp_port,
            server.pwd_port,
            server.ftps_port,
            server.submission_port,
            server.smtps_port,
        ):
            wait_for_port("127.0.0.1", extra, process, server.log)
        # The control socket is made once the reactor runs, after the TCP
        # ports were bound (and accepting): the first test may come sooner.
        control = socket_path(server.base)
        deadline = time.monotonic() + 20
        while not control.exists() or server.log_text().count(") is serving") < workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no control socket {control}, or workers not serving")
            time.sleep(0.05)
    except BaseException:
        stop_server(process)
        raise
    server.pid = process.pid
    return process


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the server has not stopped within 10 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The seed's three domains served on 127.0.0.1 and 127.0.0.2; the log
    ends with no traceback and no unhandled error."""
    root = tmp_path_factory.mktemp("server")
    base = root / "base"
    admin(base, "init", "--main-domain", "company.com", "--postmaster-password", "pm")
    # Failed logins wait 0.2 s instead of 2 s, to keep the suite short;
    # test_policy.py checks the default floor.
    admin(base, "server", "settings", f"FailedLoginDelay={FAILED_LOGIN_DELAY}")
    admin(base, "domain", "create", "client1.com", "--ip", "127.0.0.2")
    admin(base, "domain", "create", "client2.com")
    for domain in DOMAINS:
        admin(base, "domain", "settings", domain, f"LoginMethods=({','.join(ALL_METHODS)})")
    for domain in DOMAINS:
        admin(base, "account", "create", f"info@{domain}", "--password", f"pw-{domain}")
        message = f"Subject: {marker(domain)}\r\n\r\n{marker(domain)}\r\n".encode()
        admin(base, "deliver", f"info@{domain}", stdin=message)
    log = root / "server.log"
    server = plan_server(base, log)
    process = start_server(server)
    try:
        yield server
    finally:
        stop_server(process)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    assert "Unhandled Error" not in text


@pytest.fixture(scope="session")
def ftp_account(server: Server) -> Path:
    """ftpuser@company.com (password pw), ftpuser@client1.com (pw1) and
    owner@client1.com with a file; the File Storage of ftpuser@company.com."""
    admin(server.base, "account", "create", "ftpuser@company.com", "--password", "pw")
    admin(server.base, "account", "create", "ftpuser@client1.com", "--password", "pw1")
    admin(server.base, "account", "create", "owner@client1.com", "--password", "x")
    storage = file_storage(server, "client1.com", "owner")
    storage.mkdir(parents=True, exist_ok=True)
    (storage / "shared.txt").write_text("from owner")
    time.sleep(1.1)
    return file_storage(server, "company.com", "ftpuser")


@pytest.fixture
def settle() -> float:
    """How long to wait for the server to see a command-line change."""
    return 1.1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def curl_tls(server: Server, url: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    """curl as info@company.com, verifying TLS against the Main Domain's
    certificate; company.com resolves to 127.0.0.1 on every server port."""
    resolve = []
    for port in (
        server.port,
        server.pop3s_port,
        server.imap_port,
        server.imaps_port,
        server.ftp_port,
        server.ftps_port,
    ):
        resolve += ["--resolve", f"company.com:{port}:127.0.0.1"]
    return subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--cacert",
            str(server.ca),
            *resolve,
            url,
            "--user",
            "info:pw-company.com",
            *extra,
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )


def fetchmail(tmp_path: Path, protocol: str, port: int, name: str, keep: bool) -> bytes:
    """Fetch every message of ``name@company.com`` (password ``pw``) with
    fetchmail over a plain connection; the messages as delivered to its MDA."""
    return run_fetchmail(
        tmp_path,
        f"poll 127.0.0.1 service {port} proto {protocol} auth password\n"
        f'  user "{name}" there with password "pw" is "root" here\n',
        keep,
    )


def run_fetchmail(
    tmp_path: Path, account: str, keep: bool = True, env: dict[str, str] | None = None
) -> bytes:
    """Run fetchmail once on the ``poll``/``user`` lines ``account`` (plain
    connection, every message, delivered to an MDA that appends to a file)
    with ``env`` added to a bare environment; it must succeed.  The
    messages delivered."""
    out = tmp_path / "fetched.mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        account + '  sslproto ""\n'
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n"
        f"  {'keep' if keep else 'nokeep'} fetchall\n"
    )
    rc.chmod(0o600)
    result = subprocess.run(
        [
            "fetchmail",
            "--nosyslog",
            "--nodetach",
            "-f",
            str(rc),
            "--idfile",
            str(tmp_path / "fetchids"),
            "--pidfile",
            str(tmp_path / "fetchmail.pid"),
        ],
        capture_output=True,
        check=False,
        timeout=60,
        env={**(env or {}), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    data = out.read_bytes()
    out.unlink()
    return data
