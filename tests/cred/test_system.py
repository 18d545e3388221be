"""OS user names for PAM."""

from __future__ import annotations

import pytest

from communigate.cred.checkers.system import os_user_name


@pytest.mark.parametrize(
    ("pattern", "account", "expected"),
    [
        ("*", "joe", "joe"),
        ("x-*", "joe", "x-joe"),
        ("*%comp1", "joe", "joe@comp1"),
        ("fixed", "joe", "fixed"),
        ("", "joe", "joe"),
        ("../*", "joe", None),
        ("%comp1", "joe", None),
    ],
)
def test_os_user_name(pattern: str, account: str, expected: str | None) -> None:
    """OSUserName: * is the account name, % separates an OS domain."""
    assert os_user_name(pattern, account) == expected
