"""``--workers 2``: IMAP and POP3 served by worker processes, with what
must be one for all processes kept one — the lockout, connections per
address, mailbox changes, the sessions listing, ``kick`` and the log —
and a worker that dies replaced.  Real clients (imaplib, poplib) against
the real server started with ``twistd``."""

from __future__ import annotations

import imaplib
import json
import os
import poplib
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from communigate.control.location import socket_path
from tests.integration.conftest import (
    admin,
    children,
    free_port,
    launch_server,
    stop_server,
    wait_for_port,
)
from tests.integration.test_http import TOKEN, imap_sessionid, pop3_sessionid, web_login

WORKERS = 2
DOMAIN = "company.com"


@dataclass
class Served:
    """The server under test: its process, ports and log."""

    process: subprocess.Popen[bytes]
    base: Path
    log: Path
    imap: int
    imaps: int
    pop3: int
    http: int
    metrics: int

    @property
    def url(self) -> str:
        """The HTTP listener (served by the server process)."""
        return f"http://127.0.0.1:{self.http}"

    def workers(self) -> list[int]:
        """The pids of its worker processes."""
        return children(self.process.pid)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _hex_address(host: str, port: int) -> str:
    packed = socket.inet_aton(host)
    return f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"


def serving_pid(client: socket.socket, candidates: list[int]) -> int | None:
    """Which of ``candidates`` holds the server's end of ``client``'s
    connection (found by the socket's inode in /proc)."""
    server_end = _hex_address(*client.getpeername())
    client_end = _hex_address(*client.getsockname())
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == server_end and fields[2] == client_end:
            inode = fields[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in candidates:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(f"/proc/{pid}/fd/{descriptor}") == target:
                    return pid
            except OSError:
                continue
    return None


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Whether ``condition()`` came true within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def start(base: Path, log: Path) -> Served:
    """``twistd communigate --workers 2`` with IMAP, IMAPS and POP3."""
    imap, imaps, pop3, http, metrics = (free_port() for _ in range(5))
    process = launch_server(
        base,
        log,
        f"--workers={WORKERS}",
        f"--imap4=tcp:{imap}:interface=127.0.0.1",
        f"--imaps=tcp:{imaps}:interface=127.0.0.1",
        f"--pop3=tcp:{pop3}:interface=127.0.0.1",
        f"--http=tcp:{http}:interface=127.0.0.1",
        f"--metrics=tcp:{metrics}:interface=127.0.0.1",
    )
    served = Served(process, base, log, imap, imaps, pop3, http, metrics)
    try:
        for port in (imap, imaps, pop3, http, metrics):
            wait_for_port("127.0.0.1", port, process, log)
        assert wait_until(lambda: socket_path(base).exists(), 20)
        assert wait_until(lambda: len(served.workers()) == WORKERS, 20)
        assert wait_until(lambda: served.log_text().count(") is serving") >= WORKERS, 30)
    except BaseException:
        stop_server(process)
        raise
    return served


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The server with two workers; once stopped, no worker is left and
    the log holds no traceback and no channel lost."""
    root = tmp_path_factory.mktemp("workers")
    base = root / "base"
    admin(base, "init", "--main-domain", DOMAIN, "--postmaster-password", "pm")
    admin(base, "server", "settings", "FailedLoginDelay=0.1s")
    admin(base, "domain", "settings", DOMAIN, "LoginMethods=(PLAIN,LOGIN,SESSIONID)")
    for name in ("alice", "bob", "carol", "locked", "relocked", "kicked", "popper"):
        admin(base, "account", "create", f"{name}@{DOMAIN}", "--password", "pw")
    served = start(base, root / "server.log")
    workers = served.workers()
    try:
        yield served
    finally:
        stop_server(served.process)
    assert served.process.returncode is not None
    assert wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 10)
    text = served.log_text()
    assert "Traceback" not in text
    assert "Unhandled Error" not in text
    # Workers killed by the tests end; none lost its channel while alive.
    assert "its channel closed" not in text


def imap_login(served: Served, name: str) -> imaplib.IMAP4:
    """An imaplib client logged in as ``name``."""
    client = imaplib.IMAP4("127.0.0.1", served.imap, timeout=10)
    client.login(f"{name}@{DOMAIN}", "pw")
    return client


def on_two_workers(served: Served, name: str) -> tuple[imaplib.IMAP4, imaplib.IMAP4, list]:
    """Two clients of ``name`` served by different workers (and every
    client opened to find them, to log out)."""
    workers = served.workers()
    opened = []
    seen: dict[int, imaplib.IMAP4] = {}
    for _ in range(8):
        client = imap_login(served, name)
        opened.append(client)
        pid = serving_pid(client.sock, workers)
        if pid is not None:
            seen.setdefault(pid, client)
        if len(seen) == 2:
            first, second = seen.values()
            return first, second, opened
    raise AssertionError(f"connections were not spread over {workers}: {seen}")


def logout_all(clients: list) -> None:
    for client in clients:
        try:
            client.logout()
        except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError):
            pass


def test_connections_are_served_by_both_workers(served: Served) -> None:
    """Logged-in IMAP clients are spread over both workers; the server
    process itself serves none of them."""
    workers = served.workers()
    clients = [imap_login(served, "alice") for _ in range(4)]
    try:
        pids = [serving_pid(client.sock, [*workers, served.process.pid]) for client in clients]
        assert set(pids) == set(workers), pids
        for client in clients:
            assert client.select("INBOX")[0] == "OK"
    finally:
        logout_all(clients)


def test_failures_in_one_worker_lock_the_account_in_the_other(served: Served) -> None:
    """Wrong passwords counted by one worker lock the account for a login
    served by the other (FailedLoginFlow)."""
    admin(served.base, "account", "settings", f"locked@{DOMAIN}", "FailedLoginFlow=(3,1m)")
    time.sleep(1.1)
    workers = served.workers()
    first = imaplib.IMAP4("127.0.0.1", served.imap, timeout=10)
    second = imaplib.IMAP4("127.0.0.1", served.imap, timeout=10)
    others = []
    # Until the two are on different workers.
    while serving_pid(first.sock, workers) == serving_pid(second.sock, workers):
        others.append(second)
        second = imaplib.IMAP4("127.0.0.1", served.imap, timeout=10)
        assert len(others) < 8
    try:
        for _ in range(3):
            with pytest.raises(imaplib.IMAP4.error):
                first.login(f"locked@{DOMAIN}", "wrong")
        time.sleep(0.2)
        with pytest.raises(imaplib.IMAP4.error):
            second.login(f"locked@{DOMAIN}", "pw")
    finally:
        logout_all([first, second, *others])
    locked = "locked@company.com locked after too many failed"
    assert wait_until(lambda: locked in served.log_text())


def test_connections_per_address_are_counted_across_workers(served: Served) -> None:
    """MaxPerAddress holds for the connections of both workers together:
    the fourth of a limit of three is closed before any greeting, and one
    more is taken once one closed."""
    admin(served.base, "server", "settings", "Listeners={pop3={MaxPerAddress=#3;};}")
    time.sleep(1.1)
    clients = [poplib.POP3("127.0.0.1", served.pop3, timeout=10) for _ in range(3)]
    try:
        assert len({serving_pid(c.sock, served.workers()) for c in clients}) == 2
        with pytest.raises((poplib.error_proto, OSError, EOFError)):
            poplib.POP3("127.0.0.1", served.pop3, timeout=5)
        clients.pop().quit()
        time.sleep(0.3)
        clients.append(poplib.POP3("127.0.0.1", served.pop3, timeout=10))
        assert clients[-1].getwelcome().startswith(b"+OK")
    finally:
        for client in clients:
            client.quit()
        admin(served.base, "server", "settings", "Listeners=")
        time.sleep(1.1)


def test_idle_in_one_worker_sees_append_in_the_other(served: Served) -> None:
    """A message APPENDed through one worker reaches an IDLE session of the
    same mailbox in the other worker."""
    watcher, writer, opened = on_two_workers(served, "bob")
    try:
        watcher.select("INBOX")
        tag = watcher._new_tag().decode()
        watcher.send(f"{tag} IDLE\r\n".encode())
        assert watcher.readline().startswith(b"+")
        status, _ = writer.append("INBOX", None, None, b"Subject: across\r\n\r\nhello\r\n")
        assert status == "OK"
        watcher.sock.settimeout(5)
        line = watcher.readline()
        assert re.match(rb"\* \d+ EXISTS", line), line
        watcher.send(b"DONE\r\n")
        lines = [watcher.readline()]
        while not lines[-1].startswith(tag.encode()) and len(lines) < 5:
            lines.append(watcher.readline())
        assert lines[-1].startswith(tag.encode() + b" OK"), lines
    finally:
        logout_all(opened)


def test_pop3_and_imaps_are_served(served: Served) -> None:
    """POP3 retrieves a delivered message through a worker; IMAPS (TLS from
    the first byte) logs in through a worker."""
    admin(served.base, "deliver", f"popper@{DOMAIN}", stdin=b"Subject: pop\r\n\r\nmarker-pop\r\n")
    client = poplib.POP3("127.0.0.1", served.pop3, timeout=10)
    try:
        assert serving_pid(client.sock, served.workers()) is not None
        client.user(f"popper@{DOMAIN}")
        client.pass_("pw")
        assert b"marker-pop" in b"\n".join(client.retr(1)[1])
    finally:
        client.quit()
    context = ssl.create_default_context(
        cafile=served.base / "Accounts" / "Settings" / "certificate.pem"
    )
    context.check_hostname = False
    secure = imaplib.IMAP4_SSL("127.0.0.1", served.imaps, ssl_context=context, timeout=10)
    try:
        assert serving_pid(secure.sock, served.workers()) is not None
        assert secure.login(f"carol@{DOMAIN}", "pw")[0] == "OK"
    finally:
        secure.logout()


def test_sessions_listing_and_kick_reach_the_workers(served: Served) -> None:
    """``communigate sessions`` lists the sessions of both workers and
    ``kick`` ends them with a BYE."""
    first, second, opened = on_two_workers(served, "kicked")
    try:
        answer = json.loads(admin(served.base, "sessions", f"kicked@{DOMAIN}", "--json"))
        ports = {entry["remote_port"] for entry in answer["sessions"]}
        assert {first.sock.getsockname()[1], second.sock.getsockname()[1]} <= ports
        said = admin(served.base, "kick", f"kicked@{DOMAIN}")
        assert f"ended {len(opened)} sessions" in said
        for client in (first, second):
            with pytest.raises((imaplib.IMAP4.abort, OSError)):
                for _ in range(50):
                    client.noop()
                    time.sleep(0.1)
            assert client.untagged_responses.get("BYE")
        assert wait_until(
            lambda: (
                not json.loads(admin(served.base, "sessions", f"kicked@{DOMAIN}", "--json"))[
                    "sessions"
                ]
            )
        )
    finally:
        logout_all(opened)


def test_worker_lines_reach_the_server_log(served: Served) -> None:
    """A worker's login and logout lines are in the server's log, written
    as the server writes its own (durations with three decimals)."""
    client = imap_login(served, "carol")
    client.logout()
    # The lines come through the worker's pipe: a moment after the answer.
    login = r"imap4 LOGIN login 'carol@company.com' from 127\.0\.0\.1:\d+ .*: ok"
    logout = r"imap4 logout of carol@company.com session \w+ after \d+\.\d{3}s"
    assert wait_until(lambda: re.search(logout, served.log_text()) is not None)
    assert re.search(login, served.log_text())


def test_a_killed_worker_is_replaced(served: Served) -> None:
    """A worker killed with SIGKILL ends its connections; another takes
    its place and new clients are served."""
    client = imap_login(served, "alice")
    victim = serving_pid(client.sock, served.workers())
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        for _ in range(50):
            client.noop()
            time.sleep(0.1)
    serving = served.log_text().count(") is serving")
    assert wait_until(lambda: served.log_text().count(") is serving") > serving, 30)
    assert len(served.workers()) == WORKERS
    assert victim not in served.workers()
    assert "ended (signal 9); starting it again" in served.log_text()
    clients = [imap_login(served, "alice") for _ in range(4)]
    try:
        assert {serving_pid(c.sock, served.workers()) for c in clients} == set(served.workers())
    finally:
        logout_all(clients)


def test_sessionid_of_a_web_session_logs_in_through_workers(served: Served, tmp_path: Path) -> None:
    """The ID of a web session opened by the server process logs its
    account in over IMAP and POP3 served by workers (also by a worker
    started after the session opened), and no longer once logged out."""
    jar = tmp_path / "jar"
    session = web_login(served, jar, "carol", "pw")  # type: ignore[arg-type]
    for _ in range(4):
        assert imap_sessionid(served.imap, "127.0.0.1", "carol", session)
    assert pop3_sessionid(served.pop3, "carol", session)
    assert not imap_sessionid(served.imap, "127.0.0.1", "alice", session)
    forged = session.split("-")[0] + "-" + "A" * 20
    assert not imap_sessionid(served.imap, "127.0.0.1", "carol", forged)
    page = subprocess.run(
        ["curl", "-s", "-b", str(jar), f"{served.url}/"], capture_output=True, timeout=30
    ).stdout.decode()
    token = TOKEN.search(page)
    assert token is not None
    subprocess.run(
        ["curl", "-s", "-b", str(jar), "-c", str(jar), "--data-urlencode",
         f"csrf={token.group(1)}", f"{served.url}/logout"],
        capture_output=True, timeout=30, check=True,
    )  # fmt: skip
    time.sleep(0.2)
    for _ in range(4):
        assert not imap_sessionid(served.imap, "127.0.0.1", "carol", session)


def metric(served: Served, name: str, **labels: str) -> float:
    """A value of the server's /metrics (0 when the series is absent)."""
    text = subprocess.run(
        ["curl", "-s", f"http://127.0.0.1:{served.metrics}/metrics"],
        capture_output=True, timeout=30, check=True,
    ).stdout.decode()  # fmt: skip
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("}")[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rpartition(" ")[2])
    return 0.0


def test_metrics_count_the_workers_sessions(served: Served) -> None:
    """/metrics counts the logins and open sessions of the workers' clients."""
    logins = metric(served, "communigate_logins_total", protocol="imap4", result="ok")
    open_before = metric(served, "communigate_sessions_open", protocol="imap4")
    clients = [imap_login(served, "alice") for _ in range(3)]
    try:
        assert wait_until(
            lambda: metric(served, "communigate_sessions_open", protocol="imap4") == open_before + 3
        )
        after = metric(served, "communigate_logins_total", protocol="imap4", result="ok")
        assert after == logins + 3
    finally:
        logout_all(clients)
    assert wait_until(
        lambda: metric(served, "communigate_sessions_open", protocol="imap4") == open_before
    )


def test_a_lockout_outlives_the_workers(served: Served) -> None:
    """An account locked by failures in the workers stays locked for the
    workers started after they were all killed."""
    admin(served.base, "account", "settings", f"relocked@{DOMAIN}", "FailedLoginFlow=(3,10m)")
    time.sleep(1.1)
    client = imaplib.IMAP4("127.0.0.1", served.imap, timeout=10)
    try:
        for _ in range(3):
            with pytest.raises(imaplib.IMAP4.error):
                client.login(f"relocked@{DOMAIN}", "wrong")
    finally:
        logout_all([client])
    serving = served.log_text().count(") is serving")
    for pid in served.workers():
        os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: served.log_text().count(") is serving") >= serving + WORKERS, 30)
    for _ in range(WORKERS * 2):
        with pytest.raises(imaplib.IMAP4.error):
            imap_login(served, "relocked")
    assert imap_login(served, "carol").logout()[0] == "BYE"


def test_status_lists_the_workers(served: Served) -> None:
    """``communigate status`` lists both workers with their pids and what
    they serve."""
    client = imap_login(served, "alice")
    try:
        answer = json.loads(admin(served.base, "status", "--json"))
        workers = answer["workers"]
        assert sorted(worker["pid"] for worker in workers) == served.workers()
        assert all(worker["ready"] for worker in workers)
        assert sum(worker["sessions"] for worker in workers) >= 1
        assert "workers   2" in admin(served.base, "status")
    finally:
        client.logout()


def test_workers_leave_group_signals_to_the_server(served: Served) -> None:
    """SIGTERM and SIGINT sent to a worker (as a supervisor or a terminal
    sends them to the whole process group) do not end it: the server stops
    its workers itself."""
    client = imap_login(served, "bob")
    pid = serving_pid(client.sock, served.workers())
    assert pid is not None
    try:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        time.sleep(1)
        assert client.noop()[0] == "OK"
        assert pid in served.workers()
    finally:
        client.logout()
