"""Two front-end servers over one LDAP directory and one base directory.

A real ``slapd`` (:mod:`tests.integration.ldapserver`) holds the accounts;
two ``twistd communigate`` processes share it and the base directory (mail,
File Storage), each with its own control socket (``COMMUNIGATE_RUN``).
Changes made through the command line or through one server are seen by
the other within two seconds; when slapd stops, logins fail temporarily
and work again when it is back, without restarting the servers.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Server,
    launch_server,
    plan_server,
    stop_server,
    wait_for_port,
)
from tests.integration.ldapserver import ROOT_DN, ROOT_PASSWORD, SUFFIX, LdapServer, make_server

#: Seconds without LDAP after which the servers fail logins temporarily.
STALE_AFTER = 3
#: How soon a change must be seen by the other front end.
PROPAGATION = 2.0


@dataclass
class Cluster:
    """slapd, the shared base directory and the two front ends."""

    slapd: LdapServer
    base: Path
    servers: list[Server]

    def admin(self, *args: str) -> str:
        """Run ``communigate`` against the LDAP directory; it must succeed."""
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "communigate.cli.main",
                "--base",
                str(self.base),
                *self.slapd.options(),
                *args,
            ],
            capture_output=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout.decode()


def _start(
    server: Server, slapd: LdapServer, run: Path, workers: int = 0
) -> subprocess.Popen[bytes]:
    process = launch_server(
        server.base,
        server.log,
        *slapd.options(),
        f"--directory-stale-after={STALE_AFTER}",
        f"--pop3=tcp:{server.port}:interface=127.0.0.1",
        f"--imap4=tcp:{server.imap_port}:interface=127.0.0.1",
        f"--lmtp=tcp:{server.lmtp_port}:interface=127.0.0.1",
        f"--pwd=tcp:{server.pwd_port}:interface=127.0.0.1",
        *([f"--workers={workers}"] if workers else []),
        env={**os.environ, "COMMUNIGATE_RUN": str(run)},
    )
    try:
        for port in (server.port, server.imap_port, server.lmtp_port, server.pwd_port):
            wait_for_port("127.0.0.1", port, process, server.log)
        deadline = time.monotonic() + 30
        while server.log_text().count(") is serving") < workers:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
    except BaseException:
        stop_server(process)
        raise
    server.pid = process.pid
    return process


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """slapd with company.com and info@company.com, two servers on it (the
    second with two worker processes, each with its own connection to the
    directory, serving its IMAP and POP3); their logs end with no
    traceback."""
    root = tmp_path_factory.mktemp("ldapcluster")
    slapd = make_server(root / "slapd")
    slapd.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        cluster = Cluster(slapd, root / "base", [])
        cluster.admin("init", "--main-domain", "company.com", "--postmaster-password", "pm")
        cluster.admin("server", "settings", "FailedLoginDelay=0.2s")
        cluster.admin("account", "create", "info@company.com", "--password", "pw-info")
        for index in range(2):
            server = plan_server(cluster.base, root / f"server{index}.log")
            processes.append(_start(server, slapd, root / f"run{index}", workers=2 * index))
            cluster.servers.append(server)
        yield cluster
    finally:
        for process in processes:
            stop_server(process)
        slapd.stop()
    for server in cluster.servers:
        text = server.log_text()
        assert "Traceback" not in text
        assert "Unhandled Error" not in text


def imap_login(server: Server, name: str, password: str) -> str:
    """``OK`` or the text of the NO answer of an IMAP LOGIN."""
    with imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10) as client:
        try:
            client.login(name, password)
        except imaplib.IMAP4.error as error:
            return str(error)
        client.logout()
        return "OK"


def pop_login(server: Server, name: str, password: str) -> str:
    """``OK`` or the text of the -ERR answer of POP3 USER/PASS."""
    client = poplib.POP3("127.0.0.1", server.port, timeout=10)
    try:
        client.user(name)
        client.pass_(password)
    except poplib.error_proto as error:
        return str(error)
    finally:
        client.quit()
    return "OK"


def within(seconds: float, check: Callable[[], bool]) -> float:
    """How long ``check`` took to become true; fails after ``seconds``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        time.sleep(0.1)
    return time.monotonic() - started


def _logs_in(server: Server, name: str, password: str) -> Callable[[], bool]:
    """A check that ``name`` logs in over IMAP on ``server``."""
    return lambda: imap_login(server, name, password) == "OK"


def test_account_created_by_command_logs_in_on_both(cluster: Cluster) -> None:
    """An account created with the command line opens on both front ends."""
    cluster.admin("account", "create", "fresh@company.com", "--password", "pw-fresh")
    for server in cluster.servers:
        within(PROPAGATION, _logs_in(server, "fresh", "pw-fresh"))
    assert "AUTHENTICATIONFAILED" in imap_login(cluster.servers[1], "fresh", "not-it")


def _pwd_change(server: Server, name: str, old: str, new: str) -> None:
    with socket.create_connection(("127.0.0.1", server.pwd_port), timeout=10) as conn:
        stream = conn.makefile("rwb")
        assert stream.readline().startswith(b"200 ")
        for command, expected in (
            (f"USER {name}".encode(), b"300"),
            (f"PASS {old}".encode(), b"200"),
            (f"NEWPASS {new}".encode(), b"200"),
            (b"QUIT", b"200"),
        ):
            stream.write(command + b"\r\n")
            stream.flush()
            assert stream.readline().startswith(expected), command


def test_password_changed_over_pwd_on_one_works_on_the_other(cluster: Cluster) -> None:
    """A password changed over PWD on one front end opens the account on the
    other within two seconds, and the old one no longer does."""
    first, second = cluster.servers
    cluster.admin("account", "create", "mover@company.com", "--password", "old-pw")
    within(PROPAGATION, lambda: imap_login(first, "mover", "old-pw") == "OK")
    _pwd_change(first, "mover", "old-pw", "new-pw")
    within(PROPAGATION, lambda: imap_login(second, "mover", "new-pw") == "OK")
    assert "AUTHENTICATIONFAILED" in imap_login(second, "mover", "old-pw")


def test_alias_and_router_record_on_both(cluster: Cluster) -> None:
    """An alias and a Router record made with the command line log in on both."""
    cluster.admin("alias", "add", "boss@company.com", "info")
    cluster.admin("router", "add", "<chief> = info@company.com")
    assert "<chief> = info@company.com" in cluster.admin("router", "show")
    for server in cluster.servers:
        within(PROPAGATION, _logs_in(server, "boss", "pw-info"))
        within(PROPAGATION, _logs_in(server, "chief", "pw-info"))


def test_lmtp_on_one_imap_on_the_other(cluster: Cluster) -> None:
    """A message delivered over LMTP to one front end is read over IMAP on
    the other (the mail lives in the shared base directory)."""
    first, second = cluster.servers
    marker = f"ldap-cluster-{time.time_ns()}"
    with smtplib.LMTP("127.0.0.1", first.lmtp_port, timeout=10) as lmtp:
        lmtp.sendmail(
            "sender@elsewhere.org",
            ["info@company.com"],
            f"From: sender@elsewhere.org\r\nSubject: {marker}\r\n\r\nbody\r\n",
        )
    with imaplib.IMAP4("127.0.0.1", second.imap_port, timeout=10) as client:
        client.login("info", "pw-info")
        client.select("INBOX")
        status, found = client.search(None, "SUBJECT", marker)
        assert status == "OK" and found[0].split()
        client.logout()


def test_command_line_verbs_store_readable_entries(cluster: Cluster) -> None:
    """Domains, settings, groups, forwarders and rights made with the command
    line land in LDAP as entries ldapsearch shows as text."""
    cluster.admin("domain", "create", "client9.com", "--alias", "alias9.com")
    cluster.admin("domain", "settings", "client9.com", "LoginMethods=(PLAIN)")
    cluster.admin("account", "create", "ann@client9.com", "--password", "pw-ann")
    cluster.admin(
        "account", "settings", "ann@client9.com", "AccessModes=(IMAP,POP)", "MaxWebSize=10M"
    )
    cluster.admin("group", "create", "team@client9.com", "ann@client9.com")
    cluster.admin("forwarder", "create", "away@client9.com", "ann@elsewhere.org")
    cluster.admin("rights", "grant", "ann@client9.com", "CanImpersonate")
    assert "CanImpersonate" in cluster.admin("rights", "show", "ann@client9.com")
    assert "team@client9.com -> ann@client9.com" in cluster.admin("group", "list", "client9.com")
    cluster.admin("account", "rename", "ann@client9.com", "anne")
    assert cluster.admin("account", "list", "client9.com").split() == ["anne@client9.com"]
    shown = subprocess.run(
        [
            "ldapsearch",
            "-LLL",
            "-x",
            "-H",
            f"ldap://127.0.0.1:{cluster.slapd.port}",
            "-D",
            ROOT_DN,
            "-w",
            ROOT_PASSWORD,
            "-b",
            f"ou=domains,{SUFFIX}",
            "(|(uid=anne)(cgpDomainName=client9.com)(cn=away))",
            "uid",
            "mail",
            "cgpAccessModes",
            "cgpSetting",
            "cgpDomainAlias",
            "cgpAccessRight",
            "cgpForwardTo",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    for line in (
        "mail: anne@client9.com",
        "cgpAccessModes: (IMAP, POP)",
        "cgpSetting: MaxWebSize=10M",
        "cgpSetting: LoginMethods=(PLAIN)",
        "cgpDomainAlias: alias9.com",
        "cgpAccessRight: ann=(CanImpersonate)",
        "cgpForwardTo: ann@elsewhere.org",
    ):
        assert line in shown, shown
    cluster.admin("domain", "delete", "client9.com", "--force")
    assert "client9.com" not in cluster.admin("domain", "list")


def test_ldap_down_fails_temporarily_then_recovers(cluster: Cluster) -> None:
    """With slapd stopped, logins fail temporarily (never as a wrong
    password) once the copy is too old; when it is back they work again
    without restarting the front ends."""
    first, second = cluster.servers
    cluster.slapd.stop()
    try:
        time.sleep(STALE_AFTER + 1.5)
        for server in cluster.servers:
            answer = imap_login(server, "info", "pw-info")
            assert "[UNAVAILABLE]" in answer, answer
            assert "incorrect password" not in answer
        wrong = imap_login(first, "info", "not-the-password")
        assert "[UNAVAILABLE]" in wrong, wrong
        answer = pop_login(second, "info", "pw-info")
        assert "[SYS/TEMP]" in answer, answer
    finally:
        cluster.slapd.start()
    for server in cluster.servers:
        within(10, _logs_in(server, "info", "pw-info"))


def test_export_to_ldap_and_import_back(tmp_path: Path) -> None:
    """A files directory exported to an empty LDAP server reads the same
    through --directory, and imports back into a new base directory."""
    slapd = make_server(tmp_path / "slapd")
    slapd.start()
    try:
        files = Cluster(slapd, tmp_path / "files", [])

        def plain(base: Path, *args: str) -> str:
            result = subprocess.run(
                [sys.executable, "-m", "communigate.cli.main", "--base", str(base), *args],
                capture_output=True,
                check=False,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr.decode()
            return result.stdout.decode() + result.stderr.decode()

        base = files.base
        plain(base, "init", "--main-domain", "company.com", "--postmaster-password", "pm")
        plain(base, "domain", "create", "b.com", "--ip", "127.0.0.9")
        plain(base, "account", "create", "u1@b.com", "--password", "p1")
        plain(base, "alias", "add", "al@b.com", "u1")
        plain(base, "forwarder", "create", "f@b.com", "x@y.org")
        plain(base, "router", "add", "<boss> = postmaster")
        ldap = [
            f"--ldap-bind-dn={ROOT_DN}",
            f"--ldap-password-file={slapd.password_file}",
        ]
        shown = plain(base, "directory", "export", f"--to={slapd.url}", *ldap)
        assert "exported 2 accounts" in shown and "copying 2 domains" in shown
        assert files.admin("account", "list", "b.com").split() == ["u1@b.com"]
        assert "al@b.com -> u1" in files.admin("alias", "list", "b.com")
        assert "f@b.com -> x@y.org" in files.admin("forwarder", "list", "b.com")
        assert "<boss> = postmaster" in files.admin("router", "show")
        assert "127.0.0.9" in files.admin("domain", "settings", "b.com")
        again = tmp_path / "again"
        assert "imported 2 accounts" in plain(
            again, "directory", "import", f"--from={slapd.url}", *ldap
        )
        assert plain(again, "account", "list", "b.com").split() == ["u1@b.com"]
        assert "al@b.com -> u1" in plain(again, "alias", "list", "b.com")
        assert "postmaster@company.com in company.com: Master" in plain(
            again, "rights", "show", "postmaster@company.com"
        )
    finally:
        slapd.stop()
