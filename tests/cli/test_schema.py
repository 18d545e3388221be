"""The command line against the settings schema: refused settings, ``check``,
hidden passwords, ``--version``, ``--base`` anywhere, ``domain delete`` and
``init --if-missing``."""

from __future__ import annotations

from pathlib import Path

import pytest

from communigate import __version__
from communigate.cli.main import main
from communigate.store.files import FileDirectory
from tests.cli.test_main import run, snapshot


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """An initialised base: company.com, client1.com with info@client1.com."""
    path = tmp_path / "base"
    args = ["--base", str(path), "init", "--main-domain", "company.com"]
    assert main([*args, "--postmaster-password", "pm"]) == 0
    assert run(path, "domain", "create", "client1.com") == 0
    assert run(path, "account", "create", "info@client1.com", "--password", "secret-pw") == 0
    return path


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("domain", "settings", "client1.com", "Foo=Bar"), "unknown domain setting Foo"),
        (("domain", "settings", "client1.com", "LoginMethods=(PLAIN,FOO)"), "LoginMethods"),
        (("domain", "settings", "client1.com", "ClearTextLogin=Sometimes"), "Secure or Always"),
        (("domain", "settings", "client1.com", "Foo="), "unknown domain setting Foo"),
        (("domain", "create", "d.com", "ClearTextLogin=Sometimes"), "ClearTextLogin"),
        (("account", "settings", "info@client1.com", "FailedLoginFlow=(x,y)"), "(count, interval)"),
        (("account", "settings", "info@client1.com", "MaxWebSize=lots"), "MaxWebSize"),
        (
            ("account", "settings", "info@client1.com", "PasswordEncryption=UB-crypt"),
            "clear or U-crpt or UB-crpt",
        ),
        (("account", "create", "new@client1.com", "RequireAPOP=Maybe"), "RequireAPOP"),
        (
            ("server", "settings", "HideAccountUnknow=YES"),
            "unknown server setting HideAccountUnknow (did you mean HideAccountUnknown?)",
        ),
        (("server", "settings", "Listeners={pop3={MaxPerAddress=20;};}"), "written #20"),
        (("server", "settings", "HideAccountUnknown=YES", "Bogus=1"), "Bogus"),
    ],
)
def test_bad_settings_refused(
    base: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], said: str
) -> None:
    """An unknown key or a bad value: one line naming it, exit 1, nothing written."""
    capsys.readouterr()
    before = snapshot(base)
    assert run(base, *args) == 1
    err = capsys.readouterr().err
    assert err.startswith("communigate: error: ") and err.count("\n") == 1
    assert said in err
    assert snapshot(base) == before


def test_good_settings_and_removal_accepted(base: Path) -> None:
    """Known keys with good values are stored; Key= removes a known key."""
    assert run(base, "domain", "settings", "client1.com", "LoginMethods=(PLAIN,APOP)") == 0
    assert run(base, "server", "settings", "Listeners={pop3={MaxPerAddress=#20;};}") == 0
    assert run(base, "domain", "settings", "client1.com", "LoginMethods=") == 0
    directory = FileDirectory(base)
    assert directory.server_settings()["Listeners"] == {"pop3": {"MaxPerAddress": 20}}
    record = directory.domain("client1.com")
    assert record is not None and "LoginMethods" not in record.settings


def test_passwords_shown_as_set(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """account settings never prints the password, clear or hashed: (set)."""
    capsys.readouterr()
    assert run(base, "account", "settings", "info@client1.com") == 0
    out = capsys.readouterr().out
    assert "Password = (set);" in out and "secret-pw" not in out
    assert run(base, "account", "settings", "postmaster@company.com", "RequireAPOP=NO") == 0
    out = capsys.readouterr().out
    assert "Password = (set);" in out and "$2" not in out
    assert run(base, "account", "settings", "info@client1.com", "Password=(set)") == 1


def test_check_clean_base(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check on a good base: exit 0 and a one-line summary."""
    capsys.readouterr()
    assert run(base, "check") == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no problems" in out


def test_check_reports_every_problem(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check prints one line per problem naming the file and the key; exit 1."""
    main_settings = base / "Settings" / "Main.settings"
    main_settings.write_text(main_settings.read_text().replace("}", "HideAccountUnknow = YES; }"))
    domain = base / "Domains" / "client1.com" / "Settings" / "Domain.settings"
    domain.write_text("{ ClearTextLogin = Sometimes; }\n")
    account = base / "Domains" / "client1.com" / "info.macnt" / "account.settings"
    account.write_text('{ Password = x; FailedLoginFlow = (x, y); MaxWebSize = "#5"; }\n')
    (base / "Settings" / "Router.data").write_text("no equals here\n")
    (base / "Domains" / "client1.com" / "Settings" / "Aliases.settings").write_text("{ a = ")
    (base / "Settings" / "Listeners.settings").write_text("{ imap4 = ({ Port = #0; }); }\n")
    capsys.readouterr()
    assert run(base, "check") == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    expected = [
        ("Settings/Main.settings", "HideAccountUnknow"),
        ("Settings/Router.data", ""),
        ("Settings/Listeners.settings", "Port"),
        ("Domains/client1.com/Settings/Domain.settings", "ClearTextLogin"),
        ("Domains/client1.com/Settings/Aliases.settings", "cannot be read"),
        ("Domains/client1.com/info.macnt/account.settings", "FailedLoginFlow"),
        ("Domains/client1.com/info.macnt/account.settings", "MaxWebSize"),
    ]
    assert len(lines) == len(expected)
    for line, (path, key) in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}: ") and key in line
    assert captured.err == f"communigate: error: 7 problems in {base}\n"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version and succeeds."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"communigate {__version__}"


def test_base_after_the_subcommand(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--base is accepted after the subcommand (deliver, settings, list)."""
    import io
    import sys

    sys.stdin = io.TextIOWrapper(io.BytesIO(b"Subject: hi\n\nbody\n"))
    try:
        assert main(["deliver", "--base", str(base), "info@client1.com"]) == 0
    finally:
        sys.stdin = sys.__stdin__
    assert "delivered to info@client1.com" in capsys.readouterr().out
    assert (
        main(["domain", "settings", "client1.com", "--base", str(base), "DomainAliases=(c1.org)"])
        == 0
    )
    assert main(["domain", "list", "--base", str(base)]) == 0
    assert capsys.readouterr().out.endswith("company.com\nclient1.com\n")


def test_domain_delete_needs_force(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """domain delete refuses a domain with accounts or other objects unless --force."""
    assert run(base, "domain", "create", "d.com") == 0
    assert run(base, "forwarder", "create", "f@d.com", "x@far.org") == 0
    capsys.readouterr()
    before = snapshot(base)
    assert run(base, "domain", "delete", "client1.com") == 1
    assert run(base, "domain", "delete", "d.com") == 1
    err = capsys.readouterr().err
    assert "client1.com is not empty: accounts: 1" in err and "--force" in err
    assert "d.com is not empty: forwarders: 1" in err
    assert snapshot(base) == before
    assert run(base, "domain", "delete", "client1.com", "--force") == 0
    assert run(base, "domain", "create", "empty.com") == 0
    assert run(base, "domain", "delete", "empty.com") == 0
    assert FileDirectory(base).domain_names() == ["company.com", "d.com"]


def test_init_if_missing(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """init --if-missing succeeds without a change on an initialised base;
    plain init there still fails; --if-missing on an empty base initialises."""
    before = snapshot(base)
    assert main(["--base", str(base), "init", "--if-missing"]) == 0
    assert snapshot(base) == before
    assert main(["--base", str(base), "init", "--postmaster-password", "x"]) == 1
    assert snapshot(base) == before
    fresh = base.parent / "fresh"
    assert main(["init", "--if-missing", "--base", str(fresh), "--main-domain", "x.org"]) == 0
    assert FileDirectory(fresh).main_domain() == "x.org"
