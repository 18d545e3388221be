"""The password-change avatar the PWD service works with."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from communigate.cred import passwords
from communigate.portal.passwordchange import IPasswordChange, PasswordChange
from communigate.store.files import FileDirectory
from tests.conftest import SyncReactor, SyncThreadPool


def avatar(directory: FileDirectory) -> PasswordChange:
    """info@company.com, hashing in a synchronous pool."""
    return PasswordChange(directory, "company.com", "info", SyncReactor(), SyncThreadPool())


def test_interface(directory: FileDirectory) -> None:
    """PasswordChange provides IPasswordChange and names its account."""
    change = avatar(directory)
    assert verifyObject(IPasswordChange, change)
    assert change.account == "info@company.com"


def test_stores_under_password_encryption(directory: FileDirectory) -> None:
    """The new password is stored hashed with the account's PasswordEncryption."""
    directory.update_account_settings("company.com", "info", {"PasswordEncryption": "UB-crpt"})
    results: list[Any] = []
    avatar(directory).change(b"new-secret").addBoth(results.append)
    assert len(results) == 1 and not isinstance(results[0], Failure)
    stored = str(directory.account_settings("company.com", "info")["Password"])
    assert stored != "new-secret" and passwords.verify(stored, b"new-secret")


def test_pwd_allowed_off(directory: FileDirectory) -> None:
    """PWDAllowed=NO refuses the change and keeps the old password."""
    directory.update_account_settings("company.com", "info", {"PWDAllowed": "NO"})
    with pytest.raises(PermissionError):
        avatar(directory).change(b"new-secret")
    assert directory.account_settings("company.com", "info")["Password"] == "pw-company.com"


@pytest.mark.parametrize(
    ("encryption", "password", "reason"),
    [
        ("clear", b"", "empty"),
        ("UB-crpt", b"", "empty"),
        ("clear", b"\xff\xfenew", "not valid UTF-8"),
        ("UB-crpt", b"x" * 73, "at most 72"),
    ],
)
def test_unstorable_password_refused(
    directory: FileDirectory, encryption: str, password: bytes, reason: str
) -> None:
    """Empty, non-UTF-8 and (under UB-crpt) over-72-byte passwords are refused
    at once with a one-line reason; the old password stays."""
    directory.update_account_settings("company.com", "info", {"PasswordEncryption": encryption})
    with pytest.raises(PermissionError, match=reason) as raised:
        avatar(directory).change(password)
    assert "\n" not in str(raised.value)
    assert directory.account_settings("company.com", "info")["Password"] == "pw-company.com"
