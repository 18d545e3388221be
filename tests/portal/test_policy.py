"""Lockout (FailedLoginFlow), per-address slowing and equal work for
unknown accounts."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from communigate.cred.checkers.internal import InternalPassword
from communigate.cred.credentials import ConnectionInfo, LoginPassword
from communigate.cred.errors import WRONG_PASSWORD_TEXT, AccountLocked, UnknownAccount
from communigate.portal.accounts import AccountResolver
from communigate.portal.checker import AccountChecker
from communigate.portal.policy import LoginThrottle, flow
from communigate.store.files import FileDirectory
from tests.conftest import SyncClockReactor, SyncThreadPool, bcrypt_password


class CountingPool(SyncThreadPool):
    """Counts the functions run in the pool."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def callInThreadWithCallback(self, onResult: Any, f: Any, *a: Any, **kw: Any) -> None:
        self.calls.append(f.__name__)
        super().callInThreadWithCallback(onResult, f, *a, **kw)


def make(directory: FileDirectory) -> tuple[AccountChecker, SyncClockReactor, CountingPool]:
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
    """With bcrypt as the domain's scheme, an unknown name runs one bcrypt
    check in the pool, as a wrong password does."""
    directory.update_domain_settings(
        "company.com",
        {"ClearTextLogin": "Always", "AccountDefaults": {"PasswordEncryption": "UB-crpt"}},
    )
    directory.update_account_settings("company.com", "info", {"Password": bcrypt_password("b")})
    checker, _, pool = make(directory)
    assert isinstance(attempt(checker, "nobody", "x"), UnknownAccount)
    unknown_calls = list(pool.calls)
    pool.calls.clear()
    attempt(checker, "info", "wrong")
    assert unknown_calls == ["dummy_verify"] and pool.calls == ["verify"]


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
