"""Lockout (FailedLoginFlow), per-address slowing, the failed-login delay
floor and equal work for every failure."""

from __future__ import annotations

from typing import Any

import pytest
from passlib.hash import des_crypt
from twisted.internet.defer import Deferred

from communigate.cred.checkers.internal import InternalPassword
from communigate.cred.credentials import ConnectionInfo, LoginPassword
from communigate.cred.errors import (
    WRONG_PASSWORD_TEXT,
    AccountLocked,
    LoginFailure,
    UnknownAccount,
    WrongPassword,
)
from communigate.portal.accounts import AccountResolver
from communigate.portal.checker import AccountChecker
from communigate.portal.policy import LoginThrottle, failure_delay, flow
from communigate.store.files import FileDirectory
from tests.conftest import SyncClockReactor, SyncThreadPool, bcrypt_password


class CountingPool(SyncThreadPool):
    """Counts the functions run in the pool."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def callInThreadWithCallback(self, onResult: Any, f: Any, *a: Any, **kw: Any) -> None:
        self.calls.append(f.__name__)
        super().callInThreadWithCallback(onResult, f, *a, **kw)


def make(
    directory: FileDirectory, floor: str | None = "0"
) -> tuple[AccountChecker, SyncClockReactor, CountingPool]:
    """A checker on a Clock; FailedLoginDelay is ``floor`` (off by default
    here, so other rules can be seen alone; None: the server default)."""
    if floor is not None:
        directory.update_server_settings({"FailedLoginDelay": floor})
    reactor = SyncClockReactor()
    pool = CountingPool()
    source = InternalPassword(reactor, pool)  # type: ignore[arg-type]
    return AccountChecker(AccountResolver(directory), [source], reactor, pool), reactor, pool  # type: ignore[arg-type]


def attempt(checker: AccountChecker, name: str, password: str, address: str = "192.0.2.1") -> Any:
    connection = ConnectionInfo("imap4", "127.0.0.1", address)
    deferred: Deferred[Any] = checker.requestAvatarId(
        LoginPassword(name.encode(), password.encode(), connection)
    )
    box: list[Any] = []
    deferred.addBoth(box.append)
    return getattr(box[0], "value", box[0]) if box else box


def test_flow_syntax() -> None:
    """(3,1m) reads as three in sixty seconds."""
    assert flow(["3", "1m"]) == (3, 60)
    assert flow("3") is None and flow(["x", "1m"]) is None


def test_lockout_across_protocols(directory: FileDirectory) -> None:
    """FailedLoginFlow=(3,1m): three wrong passwords lock the account, the
    right one is refused with the wrong-password reply until the period ends."""
    directory.update_domain_settings("company.com", {"ClearTextLogin": "Always"})
    directory.update_account_settings("company.com", "info", {"FailedLoginFlow": ["3", "1m"]})
    checker, reactor, _ = make(directory)
    for _ in range(3):
        attempt(checker, "info", "wrong")
    locked = attempt(checker, "info", "pw-company.com")
    assert isinstance(locked, AccountLocked) and locked.reply == WRONG_PASSWORD_TEXT
    reactor.advance(61)
    assert attempt(checker, "info", "pw-company.com") == b"info@company.com"


def test_unknown_accounts_cost_the_same_hashing(directory: FileDirectory) -> None:
    """An unknown name runs one bcrypt check in the pool, as a wrong password
    on a bcrypt account does, whatever the domain's PasswordEncryption."""
    directory.update_domain_settings("company.com", {"ClearTextLogin": "Always"})
    directory.update_account_settings("company.com", "info", {"Password": bcrypt_password("b")})
    for encryption in ("clear", "U-crpt", "UB-crpt"):
        directory.update_domain_settings(
            "company.com", {"AccountDefaults": {"PasswordEncryption": encryption}}
        )
        checker, _, pool = make(directory)
        assert isinstance(attempt(checker, "nobody", "x"), UnknownAccount)
        unknown_calls = list(pool.calls)
        pool.calls.clear()
        attempt(checker, "info", "wrong")
        assert unknown_calls == ["dummy_verify"] and pool.calls == ["verify"]


def test_every_failure_costs_one_bcrypt(directory: FileDirectory) -> None:
    """A wrong password on a clear or crypt account, and a locked account,
    run one dummy bcrypt check; a wrong bcrypt password runs only its own."""
    directory.update_domain_settings("company.com", {"ClearTextLogin": "Always"})
    directory.create_account("company.com", "crypted", {"Password": "{CRYPT}m93IzVKXi9zOI"})
    directory.create_account("company.com", "hashed", {"Password": bcrypt_password("b")})
    directory.create_account(
        "company.com", "locked", {"Password": bcrypt_password("b"), "FailedLoginFlow": ["1", "1m"]}
    )
    checker, _, pool = make(directory)
    attempt(checker, "locked", "wrong")
    for name, calls in [
        ("info", ["dummy_verify"]),
        ("crypted", ["verify", "dummy_verify"]),
        ("hashed", ["verify"]),
        ("locked", ["dummy_verify"]),
    ]:
        pool.calls.clear()
        assert isinstance(attempt(checker, name, "wrong"), LoginFailure)
        assert pool.calls == calls, name


def test_failed_logins_answered_after_the_floor(directory: FileDirectory) -> None:
    """With the default FailedLoginDelay (2 s) unknown, wrong-clear and
    wrong-bcrypt failures, loopback included, are answered at 2 s, not
    before; a success is answered at once; waiting holds up nobody else."""
    directory.update_domain_settings("company.com", {"ClearTextLogin": "Always"})
    directory.create_account("company.com", "hashed", {"Password": bcrypt_password("b")})
    checker, reactor, _ = make(directory, floor=None)
    pending = [
        attempt(checker, "nobody", "x", "127.0.0.1"),
        attempt(checker, "info", "wrong", "192.0.2.1"),
        attempt(checker, "hashed", "wrong", "::1"),
    ]
    assert pending == [[], [], []]
    assert attempt(checker, "info", "pw-company.com", "127.0.0.1") == b"info@company.com"
    reactor.advance(1.99)
    assert pending == [[], [], []]
    reactor.advance(0.01)
    assert [type(box[0].value) for box in pending] == [UnknownAccount, WrongPassword, WrongPassword]


def test_floor_is_a_server_setting(directory: FileDirectory) -> None:
    """FailedLoginDelay=500ms answers failures after half a second; 0 at once."""
    checker, reactor, _ = make(directory, floor="500ms")
    pending = attempt(checker, "nobody", "x", "127.0.0.1")
    reactor.advance(0.49)
    assert pending == []
    reactor.advance(0.01)
    assert isinstance(pending[0].value, UnknownAccount)
    directory.update_server_settings({"FailedLoginDelay": "0"})
    assert isinstance(attempt(checker, "nobody", "x", "127.0.0.1"), UnknownAccount)


def test_failure_delay_syntax() -> None:
    """FailedLoginDelay reads seconds with s, ms or m, bounded; else 2 s."""
    assert failure_delay({}) == 2.0
    assert failure_delay({"FailedLoginDelay": "0.2s"}) == pytest.approx(0.2)
    assert failure_delay({"FailedLoginDelay": "200ms"}) == pytest.approx(0.2)
    assert failure_delay({"FailedLoginDelay": 3}) == 3.0
    assert failure_delay({"FailedLoginDelay": "1h"}) == 2.0
    assert failure_delay({"FailedLoginDelay": "10m"}) == 60.0


def test_one_address_is_slowed(directory: FileDirectory) -> None:
    """Past 10 failures a minute, an address's failures are answered later;
    another address is answered at once."""
    directory.update_domain_settings("company.com", {"ClearTextLogin": "Always"})
    checker, reactor, _ = make(directory)
    for number in range(10):
        assert isinstance(attempt(checker, f"user{number}", "x"), UnknownAccount)
    slowed = attempt(checker, "user11", "x")
    assert slowed == []  # not answered yet
    assert isinstance(attempt(checker, "user12", "x", "192.0.2.99"), UnknownAccount)
    reactor.advance(0.6)
    assert isinstance(slowed[0].value, UnknownAccount)
    assert attempt(checker, "info", "pw-company.com") == b"info@company.com"


def test_throttle_forgets_old_failures() -> None:
    """Failures older than the period no longer count."""
    now = [0.0]
    throttle = LoginThrottle(lambda: now[0])
    for _ in range(3):
        throttle.failed("a@b", "192.0.2.1")
    assert throttle.locked("a@b", {"FailedLoginFlow": ["3", "10s"]})
    now[0] = 11
    assert not throttle.locked("a@b", {"FailedLoginFlow": ["3", "10s"]})
    assert throttle.delay("192.0.2.1", {}) == 0.0


def test_rehash_on_login(directory: FileDirectory) -> None:
    """RehashPasswords=YES stores a clear password as bcrypt at the next
    successful login when PasswordEncryption asks for it; off by default."""
    directory.update_domain_settings("company.com", {"ClearTextLogin": "Always"})
    directory.update_account_settings("company.com", "info", {"PasswordEncryption": "UB-crpt"})
    checker, _, _ = make(directory)
    attempt(checker, "info", "pw-company.com")
    assert directory.raw_account_settings("company.com", "info")["Password"] == "pw-company.com"
    directory.update_server_settings({"RehashPasswords": "YES"})
    assert attempt(checker, "info", "pw-company.com") == b"info@company.com"
    stored = directory.raw_account_settings("company.com", "info")["Password"]
    assert isinstance(stored, str) and stored.startswith("$2b$")
    assert attempt(checker, "info", "pw-company.com") == b"info@company.com"


def test_rehash_keeps_non_utf8_passwords(directory: FileDirectory) -> None:
    """A password that is not UTF-8 is never re-hashed into U+FFFD
    replacements: the stored value stays, and still matches."""
    directory.update_domain_settings("company.com", {"ClearTextLogin": "Always"})
    directory.update_server_settings({"RehashPasswords": "YES"})
    secret = b"\xff\xfe-old"
    stored = "{CRYPT}" + des_crypt.hash(secret)
    directory.update_account_settings(
        "company.com", "info", {"Password": stored, "PasswordEncryption": "UB-crpt"}
    )
    checker, _, _ = make(directory)
    connection = ConnectionInfo("imap4", "127.0.0.1", "192.0.2.1")
    box: list[Any] = []
    checker.requestAvatarId(LoginPassword(b"info", secret, connection)).addBoth(box.append)
    assert box == [b"info@company.com"]
    assert directory.raw_account_settings("company.com", "info")["Password"] == stored
