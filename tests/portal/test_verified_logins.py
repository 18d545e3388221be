"""Recently verified passwords (HTTP Basic): reused only while the stored
password is unchanged, never for a wrong one, never past the policy."""

from __future__ import annotations

import hmac
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from communigate.cred.checkers.internal import InternalPassword
from communigate.cred.credentials import ConnectionInfo, LoginPassword
from communigate.cred.errors import AccountLocked, ServiceDisabled, UnknownAccount, WrongPassword
from communigate.portal.accounts import AccountResolver
from communigate.portal.checker import AccountChecker
from communigate.portal.verifiedlogins import VerifiedLogins
from communigate.protocols.http.context import BasicLogin
from communigate.store.files import FileDirectory
from tests.conftest import ManualClock, SyncReactor, SyncThreadPool, bcrypt_password

LOCAL = ConnectionInfo("http", "127.0.0.1", "127.0.0.1")


class CountingSource(InternalPassword):
    """The CommuniGate password, counting its verifications."""

    def __init__(self) -> None:
        super().__init__(SyncReactor(), SyncThreadPool())  # type: ignore[arg-type]
        self.calls = 0

    def verify(self, account: Any, password: bytes) -> Deferred[bool]:
        self.calls += 1
        return super().verify(account, password)


@pytest.fixture
def checked(directory: FileDirectory) -> tuple[AccountChecker, CountingSource, ManualClock]:
    """A checker over the template directory with a counting source and a
    hand-moved clock for its cache; info@company.com has a bcrypt password."""
    directory.update_account_settings(
        "company.com", "info", {"Password": bcrypt_password("pw-company.com")}
    )
    source = CountingSource()
    checker = AccountChecker(AccountResolver(directory), [source], SyncReactor(), SyncThreadPool())  # type: ignore[arg-type]
    clock = ManualClock()
    checker.verified = VerifiedLogins(clock)
    return checker, source, clock


def attempt(checker: AccountChecker, password: str, credentials: type[Any] = BasicLogin) -> Any:
    """The outcome of one login of ``info`` (the avatar ID or the exception)."""
    box: list[Any] = []
    login = credentials(b"info", password.encode(), LOCAL, None, "BASIC")
    checker.requestAvatarId(login).addBoth(box.append)
    assert box, "the login has not finished"
    return getattr(box[0], "value", box[0])


def test_second_basic_login_skips_the_hash(checked: Any) -> None:
    """The same Basic password again within the TTL is not hashed again."""
    checker, source, _ = checked
    assert attempt(checker, "pw-company.com") == b"info@company.com"
    assert attempt(checker, "pw-company.com") == b"info@company.com"
    assert source.calls == 1


def test_other_credentials_are_always_verified(checked: Any) -> None:
    """Credentials that do not ask for reuse (a form, IMAP) are hashed each time."""
    checker, source, _ = checked
    attempt(checker, "pw-company.com", LoginPassword)
    attempt(checker, "pw-company.com", LoginPassword)
    assert source.calls == 2 and len(checker.verified) == 0


def test_entry_expires(checked: Any) -> None:
    """After the TTL the password is verified again."""
    checker, source, clock = checked
    attempt(checker, "pw-company.com")
    clock.advance(checker.verified.ttl + 1)
    assert attempt(checker, "pw-company.com") == b"info@company.com"
    assert source.calls == 2


def test_changed_password_invalidates(checked: Any, directory: FileDirectory) -> None:
    """Once the stored password changes the old one is refused at once
    and the new one is verified in full."""
    checker, source, _ = checked
    attempt(checker, "pw-company.com")
    directory.update_account_settings("company.com", "info", {"Password": bcrypt_password("new")})
    assert isinstance(attempt(checker, "pw-company.com"), WrongPassword)
    assert attempt(checker, "new") == b"info@company.com"
    assert source.calls == 3


def test_wrong_password_is_never_served(checked: Any) -> None:
    """A wrong password is verified (and refused) every time, before and
    after the right one was remembered; it evicts nothing."""
    checker, source, _ = checked
    assert isinstance(attempt(checker, "wrong"), WrongPassword)
    attempt(checker, "pw-company.com")
    assert isinstance(attempt(checker, "wrong"), WrongPassword)
    assert isinstance(attempt(checker, "wrong"), WrongPassword)
    assert source.calls == 4
    assert attempt(checker, "pw-company.com") == b"info@company.com"
    assert source.calls == 4


def test_policy_still_applies(checked: Any, directory: FileDirectory) -> None:
    """A remembered password does not pass the lockout, AccessModes or a
    deleted account."""
    checker, _, _ = checked
    attempt(checker, "pw-company.com")
    directory.update_account_settings("company.com", "info", {"AccessModes": ["IMAP"]})
    assert isinstance(attempt(checker, "pw-company.com"), ServiceDisabled)
    directory.update_account_settings(
        "company.com", "info", {"AccessModes": None, "FailedLoginFlow": ["2", "1m"]}
    )
    attempt(checker, "wrong")
    attempt(checker, "wrong")
    assert isinstance(attempt(checker, "pw-company.com"), AccountLocked)
    directory.delete_account("company.com", "info")
    assert isinstance(attempt(checker, "pw-company.com"), UnknownAccount)


def test_cache_keeps_no_clear_secret() -> None:
    """Neither the password nor the stored value is kept, only keyed MACs
    that differ between processes."""
    one, two = VerifiedLogins(ManualClock()), VerifiedLogins(ManualClock())
    for cache in (one, two):
        cache.remember("a@b", "internal", "stored-value", b"secret")
    entry = one._entries[("a@b", "internal")]
    assert b"secret" not in entry.password and b"stored-value" not in entry.stored
    assert entry.password != two._entries[("a@b", "internal")].password


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both MACs are compared with hmac.compare_digest, even when the first differs."""
    cache = VerifiedLogins(ManualClock())
    cache.remember("a@b", "internal", "stored", b"secret")
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr("communigate.portal.verifiedlogins.hmac.compare_digest", counting)
    assert cache.fresh("a@b", "internal", "stored", b"secret")
    assert not cache.fresh("a@b", "internal", "stored", b"guess")
    assert len(compared) == 4
    assert not cache.fresh("a@b", "internal", "other", b"secret")
    assert len(compared) == 6 and len(cache) == 0


def test_bounded_and_empty_passwords() -> None:
    """The table keeps at most its bound; an empty password is never kept."""
    cache = VerifiedLogins(ManualClock(), max_entries=3)
    for index in range(5):
        cache.remember(f"u{index}@b", "internal", "s", b"p")
    cache.remember("e@b", "internal", "s", b"")
    assert len(cache) == 3 and not cache.fresh("u0@b", "internal", "s", b"p")
    assert cache.fresh("u4@b", "internal", "s", b"p")
    cache.forget("U4@b")
    assert not cache.fresh("u4@b", "internal", "s", b"p")
