"""``communigate check`` against a directory kept in LDAP: the entries'
settings are checked against the schema, not files that are not there."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ldap3 import MODIFY_ADD, Connection, Server

from tests.integration.ldapserver import ROOT_DN, ROOT_PASSWORD, LdapServer, make_server

pytestmark = pytest.mark.integration


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[LdapServer]:
    """A real slapd on a loopback port."""
    server = make_server(tmp_path / "slapd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def communigate(base: Path, slapd: LdapServer, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``communigate`` command on the LDAP directory."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "communigate.cli.main",
            "--base",
            str(base),
            *slapd.options(),
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_check_reads_the_ldap_entries(slapd: LdapServer, tmp_path: Path) -> None:
    """A clean LDAP directory checks clean; a bad value stored in an
    account's entry (by another LDAP tool) is reported by entry and key."""
    base = tmp_path / "base"
    init = communigate(base, slapd, "init", "--main-domain", "company.com")
    assert init.returncode == 0, init.stderr
    created = communigate(base, slapd, "account", "create", "info@company.com", "--password", "pw")
    assert created.returncode == 0, created.stderr
    clean = communigate(base, slapd, "check")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no problems" in clean.stdout
    assert "MainDomainName is missing" not in clean.stdout
    link = Connection(
        Server(f"ldap://127.0.0.1:{slapd.port}"), ROOT_DN, ROOT_PASSWORD, auto_bind=True
    )
    link.search("dc=example,dc=com", "(uid=info)", attributes=["cgpSetting"])
    (entry,) = link.entries
    assert link.modify(entry.entry_dn, {"cgpSetting": [(MODIFY_ADD, ["MaxAccountSize=lots"])]})
    link.unbind()
    broken = communigate(base, slapd, "check")
    assert broken.returncode == 1
    assert "account info@company.com: " in broken.stdout
    assert "MaxAccountSize" in broken.stdout
