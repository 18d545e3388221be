"""Password schemes: what may be stored, and what never matches."""

from __future__ import annotations

import pytest
from passlib.hash import bcrypt, des_crypt, sha512_crypt

from communigate.cred import passwords


@pytest.mark.parametrize(
    "stored",
    ["", "{PLAIN}", bcrypt.hash(""), "{CRYPT}" + des_crypt.hash(""), sha512_crypt.hash("")],
)
def test_empty_password_never_verifies(stored: str) -> None:
    """An empty password does not match, not even a hash of the empty string."""
    assert passwords.verify(stored, b"") is False


@pytest.mark.parametrize("encryption", passwords.ENCRYPTIONS)
@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("", "empty passwords are not allowed"),
        (b"", "empty passwords are not allowed"),
        (b"\xff\xfe", "the new password is not valid UTF-8"),
        ("a\udcff", "the new password is not valid UTF-8"),
    ],
)
def test_unstorable_passwords_refused(encryption: str, password: str | bytes, reason: str) -> None:
    """Empty and non-UTF-8 new passwords are refused under every scheme,
    with one line saying why."""
    with pytest.raises(passwords.UnacceptablePassword, match=reason):
        passwords.check_new(password, encryption)


def test_bcrypt_length_limit() -> None:
    """UB-crpt takes 72 bytes and refuses 73 with a clear line; clear takes any length."""
    assert passwords.verify(passwords.encode("é" * 36, "UB-crpt"), "é".encode() * 36)
    with pytest.raises(passwords.UnacceptablePassword, match=r"73 bytes; UB-crpt .* at most 72"):
        passwords.encode("x" * 73, "UB-crpt")
    assert passwords.verify(passwords.encode("x" * 500, "clear"), b"x" * 500)


def test_check_new_decodes_utf8() -> None:
    """A UTF-8 byte password comes back as its text."""
    assert passwords.check_new("pässword".encode(), "clear") == "pässword"
