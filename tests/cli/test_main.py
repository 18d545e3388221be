"""The ``communigate`` command: every subcommand, and bad input."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from communigate.cli.main import main
from communigate.cred import passwords
from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "base"
    assert (
        main(
            [
                "--base",
                str(path),
                "init",
                "--main-domain",
                "company.com",
                "--postmaster-password",
                "pm",
            ]
        )
        == 0
    )
    return path


def run(base: Path, *args: str, stdin: bytes | None = None) -> int:
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        return main(["--base", str(base), *args])
    finally:
        sys.stdin = sys.__stdin__


def test_init_prints_generated_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """init without a password generates one, prints it once, stores it hashed."""
    assert main(["--base", str(tmp_path / "b"), "init", "--main-domain", "x.org"]) == 0
    out = capsys.readouterr().out
    password = out.split("password: ")[1].strip()
    stored = FileDirectory(tmp_path / "b").raw_account_settings("x.org", "postmaster")["Password"]
    assert isinstance(stored, str) and passwords.verify(stored, password.encode())
    assert password not in stored
    assert main(["--base", str(tmp_path / "b"), "init", "--main-domain", "x.org"]) == 1


def test_domains_accounts_and_settings(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Domains with addresses and aliases; accounts with settings and passwords."""
    assert (
        run(base, "domain", "create", "client1.com", "--ip", "127.0.0.2", "--alias", "c1.org") == 0
    )
    assert (
        run(base, "account", "create", "info@c1.org", "--password", "p1", "FailedLoginFlow=(3,1m)")
        == 0
    )
    directory = FileDirectory(base)
    settings = directory.raw_account_settings("client1.com", "info")
    derived = {key: settings.pop(key) for key in ("SCRAM-SHA-1", "SCRAM-SHA-256")}
    assert settings == {"FailedLoginFlow": ["3", "1m"], "Password": "p1"}
    # The SCRAM secrets are stored beside the password (iterations first).
    assert all(str(value).startswith("4096,") for value in derived.values())
    assert directory.domain_for_address("127.0.0.2") == "client1.com"
    capsys.readouterr()
    assert run(base, "account", "list", "client1.com") == 0
    assert capsys.readouterr().out == "info@client1.com\n"
    assert run(base, "domain", "list") == 0
    assert capsys.readouterr().out == "company.com\nclient1.com\n"


def test_password_encryption_applies_when_set(base: Path) -> None:
    """PasswordEncryption=UB-crpt makes the next password a bcrypt hash."""
    assert (
        run(
            base,
            "account",
            "create",
            "u@company.com",
            "PasswordEncryption=UB-crpt",
            "--password",
            "secret1",
        )
        == 0
    )
    stored = FileDirectory(base).raw_account_settings("company.com", "u")["Password"]
    assert isinstance(stored, str) and stored.startswith("$2b$") and "secret1" not in stored
    assert run(base, "account", "settings", "u@company.com", "PasswordEncryption=clear") == 0
    stored = FileDirectory(base).raw_account_settings("company.com", "u")["Password"]
    assert isinstance(stored, str) and stored.startswith("$2b$")
    assert run(base, "account", "password", "u@company.com", stdin=b"new-one\n") == 0
    assert FileDirectory(base).raw_account_settings("company.com", "u")["Password"] == "new-one"


def test_removing_a_setting(base: Path) -> None:
    """Key= removes the key."""
    assert run(base, "account", "create", "u@company.com", "RequireAPOP=YES") == 0
    assert run(base, "account", "settings", "u@company.com", "RequireAPOP=") == 0
    assert "RequireAPOP" not in FileDirectory(base).raw_account_settings("company.com", "u")


@pytest.mark.parametrize(
    "args",
    [
        ("account", "create", "x@nowhere.com"),
        ("account", "create", ".bad@company.com"),
        ("account", "create", "u@company.com", "FailedLoginFlow=(3,"),
        ("account", "create", "u@company.com", "notanassignment"),
        ("account", "create", "u@company.com", "PasswordEncryption=rot13", "--password", "x"),
        ("domain", "create", "bad domain"),
        ("domain", "create", "d.com", "--ip", "999.1.1.1"),
        ("domain", "delete", "company.com"),
        ("account", "delete", "ghost@company.com"),
        ("router", "add", "no equals here"),
        ("router", "remove", "<x> = y"),
        ("alias", "add", "a@company.com", "ghost"),
        ("deliver", "nobody@company.com"),
    ],
)
def test_bad_input(base: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    """Bad input: one line on stderr, exit 1, nothing written (names and contents)."""
    before = snapshot(base)
    assert run(base, *args, stdin=b"") == 1
    err = capsys.readouterr().err
    assert err.startswith("communigate: error: ") and err.count("\n") == 1
    assert snapshot(base) == before


def snapshot(base: Path) -> dict[str, bytes | None]:
    """Every file's contents (None for a folder) under ``base``, by path."""
    return {
        str(path.relative_to(base)): path.read_bytes() if path.is_file() else None
        for path in base.rglob("*")
        if ".lock" not in path.name
    }


@pytest.mark.parametrize(
    ("args", "stdin", "reason"),
    [
        (("account", "password", "b@company.com"), b"", "empty passwords are not allowed"),
        (("account", "password", "b@company.com"), b"\n", "empty passwords are not allowed"),
        (("account", "password", "b@company.com", "--password", ""), b"", "empty passwords"),
        (("account", "create", "new@company.com", "--password", ""), b"", "empty passwords"),
        (("account", "password", "b@company.com"), b"\xff\xfe\n", "not valid UTF-8"),
        (("account", "password", "b@company.com"), b"x" * 73 + b"\n", "takes at most 72"),
        (("account", "password", "b@company.com", "--password", "a\udcff"), b"", "not valid UTF-8"),
        (("account", "settings", "b@company.com", "X=a\udcff"), b"", "must be valid UTF-8"),
    ],
)
def test_unstorable_passwords(
    base: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    stdin: bytes,
    reason: str,
) -> None:
    """Empty, non-UTF-8 and (bcrypt) over-72-byte passwords are refused with
    one line saying why, and nothing is written."""
    assert run(base, "account", "create", "b@company.com", "PasswordEncryption=UB-crpt") == 0
    capsys.readouterr()
    before = snapshot(base)
    assert run(base, *args, stdin=stdin) == 1
    err = capsys.readouterr().err
    assert err.startswith("communigate: error: ") and err.count("\n") == 1 and reason in err
    assert snapshot(base) == before


def test_duplicate_names(base: Path) -> None:
    """A name taken by any object in the domain cannot be taken again."""
    assert run(base, "account", "create", "u@company.com") == 0
    assert run(base, "account", "create", "U@company.com") == 1
    assert run(base, "alias", "add", "u@company.com", "postmaster") == 1
    assert run(base, "group", "create", "u@company.com") == 1
    assert run(base, "domain", "create", "company.com") == 1


def test_objects_router_deliver(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Aliases, groups, forwarders, router records and delivery work together."""
    assert run(base, "account", "create", "j.smith@company.com") == 0
    assert run(base, "alias", "add", "js@company.com", "j.smith") == 0
    assert run(base, "group", "create", "team@company.com", "js", "postmaster") == 0
    assert run(base, "group", "add-member", "team@company.com", "x@far.org") == 0
    assert run(base, "group", "remove-member", "team@company.com", "x@far.org") == 0
    assert run(base, "forwarder", "create", "fwd@company.com", "x@far.org") == 0
    assert run(base, "router", "add", "<John> = js") == 0
    capsys.readouterr()
    assert run(base, "router", "show") == 0
    assert capsys.readouterr().out == "<John> = js\n"
    assert run(base, "deliver", "john@company.com", stdin=b"Subject: hi\n\nbody\n") == 0
    assert capsys.readouterr().out == "delivered to j.smith@company.com\n"
    assert run(base, "deliver", "team@company.com", stdin=b"Subject: all\n\nx\n") == 0
    directory = FileDirectory(base)
    js = Mailbox.of_account(directory.account_path("company.com", "j.smith")).messages()
    assert len(js) == 2
    assert run(base, "deliver", "fwd@company.com", stdin=b"x") == 1
    assert run(base, "router", "remove", "<John> = js") == 0
    assert FileDirectory(base).router_table() == ""
    assert run(base, "alias", "list", "company.com") == 0
    assert "js@company.com -> j.smith" in capsys.readouterr().out


def test_server_settings(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """server settings shows and changes Main.settings."""
    assert run(base, "server", "settings", "HideAccountUnknown=YES") == 0
    assert "HideAccountUnknown = YES;" in capsys.readouterr().out
    assert FileDirectory(base).server_settings()["HideAccountUnknown"] == "YES"


def test_uninitialised_base(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Commands on an empty base say to run init."""
    assert main(["--base", str(tmp_path / "none"), "domain", "list"]) == 1
    assert "communigate init" in capsys.readouterr().err


def test_rights(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rights grant/revoke/show; server rights only for Main Domain accounts."""
    assert run(base, "domain", "create", "client1.com") == 0
    assert run(base, "account", "create", "a@client1.com") == 0
    assert (
        run(base, "rights", "grant", "postmaster", "CanImpersonate", "--domain", "client1.com") == 0
    )
    access = FileDirectory(base).access_rights("client1.com")
    assert access == {"postmaster@company.com": ["CanImpersonate"]}
    assert run(base, "rights", "grant", "a@client1.com", "Master") == 1
    assert run(base, "rights", "grant", "a@client1.com", "NoSuchRight") == 1
    assert (
        run(base, "rights", "revoke", "postmaster", "CanImpersonate", "--domain", "client1.com")
        == 0
    )
    assert FileDirectory(base).access_rights("client1.com") == {}
    capsys.readouterr()
    assert run(base, "rights", "show", "postmaster") == 0
    assert capsys.readouterr().out == "postmaster@company.com in company.com: Master\n"


def test_certificates(base: Path, tmp_path: Path) -> None:
    """init makes a Main Domain certificate; a checked pair can be installed."""
    assert (base / "Accounts" / "Settings" / "certificate.pem").is_file()
    key = base / "Accounts" / "Settings" / "key.pem"
    assert key.stat().st_mode & 0o077 == 0
    assert run(base, "domain", "create", "client1.com") == 0
    from communigate.store.certificates import self_signed

    cert_pem, key_pem = self_signed("client1.com")
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    assert (
        run(
            base,
            "domain",
            "certificate",
            "client1.com",
            "--cert",
            str(tmp_path / "c.pem"),
            "--key",
            str(tmp_path / "c.pem"),
        )
        == 1
    )
    assert (
        run(
            base,
            "domain",
            "certificate",
            "client1.com",
            "--cert",
            str(tmp_path / "c.pem"),
            "--key",
            str(tmp_path / "k.pem"),
        )
        == 0
    )
    installed = base / "Domains" / "client1.com" / "Settings" / "certificate.pem"
    assert installed.read_bytes() == cert_pem


def test_acl(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """acl set/show/delete on a mailbox; bad identifiers and rights refused."""
    assert run(base, "acl", "set", "postmaster", "INBOX", "anyone@", "lrs") == 0
    assert run(base, "acl", "set", "postmaster", "INBOX", "-john", "rs") == 0
    capsys.readouterr()
    assert run(base, "acl", "show", "postmaster", "INBOX") == 0
    assert capsys.readouterr().out == "anyone@ lrs\n-john rs\n"
    assert run(base, "acl", "delete", "postmaster", "INBOX", "-john") == 0
    assert run(base, "acl", "set", "postmaster", "INBOX", "x", "lrz") == 1
    assert run(base, "acl", "set", "postmaster", "Missing", "x", "l") == 1
    assert run(base, "acl", "show", "nobody@company.com", "INBOX") == 1
    capsys.readouterr()
    assert run(base, "acl", "show", "postmaster", "INBOX") == 0
    assert capsys.readouterr().out == "anyone@ lrs\n"
