"""The settings schema, and the store repairing bad values it finds on disk."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from communigate.portal.policy import LoginThrottle
from communigate.store import files, schema
from communigate.store.files import FileDirectory
from communigate.store.schema import Level, SettingError, check_changes
from communigate.store.settingsformat import loads
from tests.conftest import ManualClock


@pytest.mark.parametrize(
    ("level", "key", "text"),
    [
        (Level.SERVER, "HideAccountUnknown", "YES"),
        (Level.SERVER, "HideAccountUnknown", "no"),
        (Level.SERVER, "FailedLoginDelay", "0.2s"),
        (Level.SERVER, "FailedLoginDelay", "200ms"),
        (Level.SERVER, "FailedLoginDelay", "#3"),
        (Level.SERVER, "FailedLoginsPerAddress", "(5,1m)"),
        (Level.SERVER, "ClientIPs", "(192.0.2.0/24, !192.0.2.7)"),
        (Level.SERVER, "NonClientLogins", "Prohibit"),
        (Level.SERVER, "Listeners", "{pop3={Deny=(127.0.0.5); MaxPerAddress=#20;};}"),
        (Level.SERVER, "Limits", "{LoginTimeout=60s; imap4={IdleTimeout=1h; PreLoginData=16K;};}"),
        (Level.SERVER, "ExternalAUTH", '{Enabled=YES; ProgramName="/bin/x -y"; Timeout=2s;}'),
        (Level.SERVER, "TFTPDefaultStorage", "devices@client1.com"),
        (Level.SERVER, "AccountDefaults", "{PasswordEncryption=UB-crpt; RequireAPOP=YES;}"),
        (Level.DOMAIN, "LoginMethods", "(PLAIN,cram-md5,APOP)"),
        (Level.DOMAIN, "LoginMethods", "APOP"),
        (Level.DOMAIN, "ClearTextLogin", "Always"),
        (Level.DOMAIN, "IPAddresses", "(127.0.0.2, ::1)"),
        (Level.DOMAIN, "DomainAliases", "(c1.org)"),
        (Level.DOMAIN, "DomainAccessModes", "None"),
        (Level.ACCOUNT, "FailedLoginFlow", "(3,1m)"),
        (Level.ACCOUNT, "AccessModes", "(POP, IMAP, WebSite)"),
        (Level.ACCOUNT, "AccessModes", "All"),
        (Level.ACCOUNT, "MaxWebSize", "10M"),
        (Level.ACCOUNT, "MaxWebSize", "#1024"),
        (Level.ACCOUNT, "MaxWebSize", "unlimited"),
        (Level.ACCOUNT, "PasswordEncryption", "ub-crpt"),
        (Level.ACCOUNT, "OSUserName", "*%comp1"),
    ],
)
def test_values_the_server_reads_are_accepted(level: Level, key: str, text: str) -> None:
    """Every value the server understands passes the schema."""
    check_changes(level, {key: loads(text)})


@pytest.mark.parametrize(
    ("level", "key", "text", "said"),
    [
        (Level.DOMAIN, "LoginMethods", "(PLAIN,FOO)", "FOO is not known"),
        (Level.DOMAIN, "ClearTextLogin", "Sometimes", "allowed: Secure or Always"),
        (Level.DOMAIN, "IPAddresses", "(999.1.1.1)", "not an IP address"),
        (Level.ACCOUNT, "FailedLoginFlow", "(x,y)", "(count, interval)"),
        (Level.ACCOUNT, "FailedLoginFlow", "(#3,1m)", "(count, interval)"),
        (Level.ACCOUNT, "MaxWebSize", "lots", "not a size"),
        (Level.ACCOUNT, "PasswordEncryption", "UB-crypt", "clear or U-crpt or UB-crpt"),
        (Level.ACCOUNT, "AccessModes", "(POP, IMAPP)", "IMAPP is not known"),
        (Level.ACCOUNT, "RequireAPOP", "Maybe", "YES or NO"),
        (Level.SERVER, "Listeners", "{pop3={MaxPerAddress=20;};}", "written #20"),
        (Level.SERVER, "Limits", "{imap4={IdleTimout=1h;};}", "Limits.imap4.IdleTimeout?"),
        (Level.SERVER, "FailedLoginDelay", "soon", "not a delay"),
        (Level.SERVER, "AccountDefaults", "{MaxWebSize=lots;}", "AccountDefaults.MaxWebSize"),
    ],
)
def test_bad_values_are_refused(level: Level, key: str, text: str, said: str) -> None:
    """A value the server would not understand is refused, saying what is allowed."""
    with pytest.raises(SettingError) as raised:
        check_changes(level, {key: loads(text)})
    message = str(raised.value)
    assert said in message and key in message and "\n" not in message


def test_unknown_keys_name_the_nearest() -> None:
    """An unknown key is refused with the nearest known key (difflib, any case)."""
    with pytest.raises(SettingError, match=r"did you mean HideAccountUnknown\?"):
        check_changes(Level.SERVER, {"HideAccountUnknow": "YES"})
    with pytest.raises(SettingError, match=r"did you mean ClearTextLogin\?"):
        check_changes(Level.DOMAIN, {"cleartextlogin": "Always"})
    with pytest.raises(SettingError, match=r"unknown domain setting Foo\Z"):
        check_changes(Level.DOMAIN, {"Foo": "Bar"})


def test_key_at_the_wrong_level() -> None:
    """A key of another level is refused with where it belongs."""
    with pytest.raises(SettingError, match=r"an account setting; for every account use Acc"):
        check_changes(Level.DOMAIN, {"FailedLoginFlow": ["3", "1m"]})
    with pytest.raises(SettingError, match=r"HideAccountUnknown is a server setting\)"):
        check_changes(Level.ACCOUNT, {"HideAccountUnknown": "YES"})


def test_removing_needs_a_known_key() -> None:
    """Key= (None) is fine for a known key, refused for an unknown one."""
    check_changes(Level.ACCOUNT, {"FailedLoginFlow": None})
    with pytest.raises(SettingError):
        check_changes(Level.ACCOUNT, {"Nonsense": None})


def test_problems_list_every_problem() -> None:
    """problems() reports each unknown key and bad value, nested ones by path."""
    found = schema.problems(
        schema.SERVER,
        {"Foo": "1", "HideAccountUnknown": "x", "Limits": {"pop3": {"IdleTimeout": "?"}}},
    )
    assert [problem.key for problem in found] == [
        "Foo",
        "HideAccountUnknown",
        "Limits.pop3.IdleTimeout",
    ]


def test_repair_drops_keeps_and_remembers() -> None:
    """repair(): a bad value is dropped (default applies), or replaced by the
    previous good one; keep-marked keys and unknown keys stay as they are."""
    settings = {"RequireAPOP": "Maybe", "AccessModes": ["IMAPP"], "X": "y", "PWDAllowed": "NO"}
    repaired, actions = schema.repair(Level.ACCOUNT, settings)
    assert repaired == {"AccessModes": ["IMAPP"], "X": "y", "PWDAllowed": "NO"}
    assert [problem.key for problem, _ in actions] == ["RequireAPOP", "AccessModes"]
    again, _ = schema.repair(Level.ACCOUNT, {"RequireAPOP": "Maybe"}, {"RequireAPOP": "YES"})
    assert again == {"RequireAPOP": "YES"}
    inner, _ = schema.repair(Level.SERVER, {"AccountDefaults": {"MaxWebSize": "lots", "A": "b"}})
    assert inner == {"AccountDefaults": {"A": "b"}}


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """The texts of what the store logs while the test runs."""
    texts: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == files.__name__:
            texts.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield texts
    globalLogPublisher.removeObserver(observe)


def _account_file(directory: FileDirectory) -> Any:
    return directory.account_path("company.com", "info") / "account.settings"


def test_store_warns_once_and_applies_the_default(
    directory: FileDirectory, clock: ManualClock, warnings: list[str]
) -> None:
    """A bad value on disk is logged once per file and key (not at each
    re-read) and dropped, so the default applies."""
    path = _account_file(directory)
    path.write_text('{ Password = "pw"; RequireAPOP = Sometimes; MaxWebSize = lots; }\n')
    settings = directory.account_settings("company.com", "info")
    assert settings["RequireAPOP"] == "NO" and "MaxWebSize" not in settings
    assert len(warnings) == 2
    assert all(str(path) in text for text in warnings)
    assert any("RequireAPOP" in text and "default" in text for text in warnings)
    path.write_text('{ Password = "pw2"; RequireAPOP = Sometimes; MaxWebSize = lots; }\n')
    clock.advance(1)
    assert directory.account_settings("company.com", "info")["Password"] == "pw2"
    assert len(warnings) == 2


def test_locked_account_stays_locked(directory: FileDirectory, clock: ManualClock) -> None:
    """An account locked by FailedLoginFlow=(3,1m) is not unlocked when the
    value on disk becomes garbage: the value in force is kept."""
    directory.update_account_settings("company.com", "info", {"FailedLoginFlow": ["3", "1m"]})
    throttle = LoginThrottle(clock)
    for _ in range(3):
        throttle.failed("info@company.com", None)
    assert throttle.locked("info@company.com", directory.account_settings("company.com", "info"))
    text = _account_file(directory).read_text().replace("(3, 1m)", "(x, garbage)")
    _account_file(directory).write_text(text)
    clock.advance(1)
    settings = directory.account_settings("company.com", "info")
    assert settings["FailedLoginFlow"] == ["3", "1m"]
    assert throttle.locked("info@company.com", settings)


def test_fresh_start_with_garbage_uses_the_default(
    directory: FileDirectory, clock: ManualClock
) -> None:
    """Read for the first time, a garbage value is dropped: the next level's
    value (here the server's AccountDefaults) or the default applies."""
    directory.update_server_settings({"AccountDefaults": {"FailedLoginFlow": ["5", "1m"]}})
    _account_file(directory).write_text('{ Password = "pw"; FailedLoginFlow = (x, y); }\n')
    fresh = FileDirectory(directory.base, clock=clock)
    assert fresh.account_settings("company.com", "info")["FailedLoginFlow"] == ["5", "1m"]


def test_repair_happens_at_load_not_per_lookup(
    directory: FileDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings are checked when a file is (re)loaded, never per lookup."""
    calls: list[Level] = []
    real = schema.repair

    def counting(level: Level, *args: Any) -> Any:
        calls.append(level)
        return real(level, *args)

    monkeypatch.setattr(files.schema, "repair", counting)
    for _ in range(100):
        directory.account_settings("company.com", "info")
    assert calls.count(Level.ACCOUNT) == 1


def test_repair_off_reads_the_disk(directory: FileDirectory) -> None:
    """repair=False (the command line) sees bad values as they are on disk."""
    _account_file(directory).write_text('{ Password = "pw"; RequireAPOP = Sometimes; }\n')
    raw = FileDirectory(directory.base, repair=False)
    assert raw.raw_account_settings("company.com", "info")["RequireAPOP"] == "Sometimes"


def test_delete_domain_only_if_empty(directory: FileDirectory) -> None:
    """delete_domain(only_if_empty=True) refuses a domain that holds objects."""
    with pytest.raises(files.DomainNotEmpty, match="accounts: 2"):
        directory.delete_domain("client1.com", only_if_empty=True)
    assert directory.domain("client1.com") is not None
    directory.create_domain("empty.com")
    directory.delete_domain("empty.com", only_if_empty=True)
    assert directory.domain("empty.com") is None
