"""``communigate domain kerberos``: import, list, delete a domain's keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from communigate.cli.main import main
from communigate.cred.kerberos import keytab
from communigate.cred.kerberos.keytab import KeytabEntry
from tests.cred.test_keytab import MIT_KEYTAB, REALM


def entry(kvno: int, enctype: int = 18, name: str = "imap/client1.com") -> KeytabEntry:
    """A key of ``name`` in the test realm."""
    return KeytabEntry(REALM, tuple(name.split("/")), 1, 1700000000, kvno, enctype, b"n" * 32)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A base with client1.com."""
    path = tmp_path / "base"
    assert run(path, "init", "--main-domain", "company.com", "--postmaster-password", "pm") == 0
    assert run(path, "domain", "create", "client1.com") == 0
    return path


def run(base: Path, *args: str) -> int:
    """One command."""
    return main(["--base", str(base), *args])


def stored(base: Path) -> Path:
    """client1.com's keytab."""
    return base / "Domains" / "client1.com" / "Settings" / "kerberos.keytab"


def test_import_list_delete(base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Import stores the keys (0600), list shows them, delete removes one kvno."""
    source = tmp_path / "in.keytab"
    source.write_bytes(MIT_KEYTAB)
    assert run(base, "domain", "kerberos", "import", "client1.com", str(source)) == 0
    assert stored(base).read_bytes() == MIT_KEYTAB
    assert stored(base).stat().st_mode & 0o777 == 0o600
    capsys.readouterr()
    assert run(base, "domain", "kerberos", "list", "client1.com") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["REALM", "PRINCIPAL", "ISSUED", "VERSION", "ENCRYPTION"]
    assert lines[1].split() == [
        REALM,
        "imap/client1.com",
        "2026-11-30T13:05:49Z",
        "2",
        "aes256-cts-hmac-sha1-96",
    ]
    assert len(lines) == 3
    source.write_bytes(keytab.format_keytab([entry(3)]))
    assert run(base, "domain", "kerberos", "import", "client1.com", str(source)) == 0
    assert [e.kvno for e in keytab.parse(stored(base).read_bytes())] == [2, 2, 3]
    assert (
        run(base, "domain", "kerberos", "delete", "client1.com", "imap/client1.com", "--kvno", "2")
        == 0
    )
    assert [e.kvno for e in keytab.parse(stored(base).read_bytes())] == [3]
    assert (
        run(base, "domain", "kerberos", "delete", "client1.com", f"imap/client1.com@{REALM}") == 0
    )
    assert not stored(base).exists()


def test_import_replaces_same_kvno(base: Path, tmp_path: Path) -> None:
    """A key of the same principal, kvno and enctype is replaced, not doubled."""
    source = tmp_path / "in.keytab"
    source.write_bytes(keytab.format_keytab([entry(5)]))
    assert run(base, "domain", "kerberos", "import", "client1.com", str(source)) == 0
    newer = KeytabEntry(REALM, ("imap", "client1.com"), 1, 1800000000, 5, 18, b"m" * 32)
    source.write_bytes(keytab.format_keytab([newer]))
    assert run(base, "domain", "kerberos", "import", "client1.com", str(source)) == 0
    assert keytab.parse(stored(base).read_bytes()) == [newer]


@pytest.mark.parametrize(
    "args",
    [
        ("import", "client1.com", "MISSING"),
        ("import", "client1.com", "BOGUS"),
        ("import", "nowhere.org", "BOGUS"),
        ("delete", "client1.com", "imap/client1.com"),
        ("list",),
        ("rotate", "client1.com"),
    ],
)
def test_errors_write_nothing(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    """Bad files, unknown domains and keys, bad usage: one line, status 1, no file."""
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"\x05\x02\x00\x00\x00\x09truncated")
    names = {"MISSING": str(tmp_path / "missing"), "BOGUS": str(bogus)}
    capsys.readouterr()
    assert run(base, "domain", "kerberos", *(names.get(arg, arg) for arg in args)) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not stored(base).exists()


def test_check_reports_broken_keytab(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """communigate check names a stored keytab that does not parse."""
    stored(base).write_bytes(b"\x05\x01")
    capsys.readouterr()
    run(base, "check")
    assert "Domains/client1.com/Settings/kerberos.keytab: keytab format 0x0501" in (
        capsys.readouterr().out
    )
