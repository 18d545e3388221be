"""Reading ``--directory`` and its companion options."""

from __future__ import annotations

from pathlib import Path

import pytest
from ldap3.core.exceptions import LDAPOperationResult, LDAPSocketReceiveError

from communigate.store.directory import DirectoryError
from communigate.store.ldap.connection import ConnectionPool, DirectoryUnreachable, parse_location


def test_url_forms(tmp_path: Path) -> None:
    """ldap:// and ldaps:// URLs give host, port (default 389/636) and base DN."""
    plain = parse_location("ldap://ldap.example.com/dc=example,dc=com")
    assert (plain.host, plain.port, plain.base, plain.tls) == (
        "ldap.example.com",
        389,
        "dc=example,dc=com",
        False,
    )
    secure = parse_location("ldaps://127.0.0.1:1636/ou=mail%2Cdc=example,dc=org")
    assert (secure.port, secure.base, secure.tls) == (1636, "ou=mail,dc=example,dc=org", True)


def test_password_file_and_repr(tmp_path: Path) -> None:
    """The password is the file's first line and never shown in a repr."""
    secret = tmp_path / "secret"
    secret.write_text("top-secret\nignored\n")
    location = parse_location("ldap://h/dc=x", bind_dn="cn=a,dc=x", password_file=secret)
    assert location.password == "top-secret"
    assert "top-secret" not in repr(location)


@pytest.mark.parametrize(
    ("url", "starttls", "password_file"),
    [
        ("http://h/dc=x", False, None),
        ("ldap://h/", False, None),
        ("ldap:///dc=x", False, None),
        ("ldaps://h/dc=x", True, None),
        ("ldap://h:99999/dc=x", False, None),
        ("ldap://h/dc=x", False, "/nonexistent/secret"),
    ],
)
def test_bad_options_refused(url: str, starttls: bool, password_file: str | None) -> None:
    """A URL or option the server cannot use is one DirectoryError line."""
    with pytest.raises(DirectoryError):
        parse_location(url, starttls, password_file=password_file)


def test_unreachable_server_is_a_directory_error() -> None:
    """No LDAP server listening: DirectoryUnreachable, no ldap3 exception."""
    location = parse_location("ldap://127.0.0.1:1/dc=x")
    with pytest.raises(DirectoryUnreachable):
        ConnectionPool(location).call(lambda connection: connection.search("dc=x", "(a=*)"))


class _Refusing:
    """A bound connection whose server answers every operation ``code``."""

    def __init__(self, code: int) -> None:
        self.code = code

    def search(self, *_: object) -> None:
        raise LDAPOperationResult(result=self.code, description=f"code {self.code}")

    def unbind(self) -> None:
        """Nothing to close."""


@pytest.mark.parametrize(("code", "temporary"), [(51, True), (52, True), (3, True), (32, False)])
def test_busy_server_is_unreachable_not_a_refusal(code: int, temporary: bool) -> None:
    """busy, unavailable and timeLimitExceeded (RFC 4511 §4.1.9) are the
    server unable to serve now, so logins fail temporarily; other result
    codes stay errors about the request."""
    pool = ConnectionPool(parse_location("ldap://127.0.0.1:1/dc=x"))
    pool._idle.put(_Refusing(code))
    expected = DirectoryUnreachable if temporary else LDAPOperationResult
    with pytest.raises(expected) as raised:
        pool.call(lambda connection: connection.search())
    if not temporary:
        assert not isinstance(raised.value, DirectoryUnreachable)


class _Dead:
    """A connection whose socket fails at the next operation."""

    def search(self, *_: object) -> None:
        raise LDAPSocketReceiveError("connection reset")

    def unbind(self) -> None:
        """Nothing to close."""


class _Alive(_Dead):
    """A connection that answers."""

    def search(self, *_: object) -> str:  # type: ignore[override]
        return "found"


def test_only_a_pooled_connection_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead pooled connection is replaced by a fresh one at once; a fresh
    one that fails is not tried again (the wait would only double)."""
    pool = ConnectionPool(parse_location("ldap://127.0.0.1:1/dc=x"))
    opened: list[object] = []
    fresh: list[object] = [_Alive(), _Dead()]

    def open_one() -> object:
        opened.append(fresh.pop(0))
        return opened[-1]

    monkeypatch.setattr(pool, "_open", open_one)
    pool._idle.put(_Dead())
    assert pool.call(lambda connection: connection.search()) == "found"
    assert len(opened) == 1
    pool.close()
    with pytest.raises(DirectoryUnreachable):
        pool.call(lambda connection: connection.search())
    assert len(opened) == 2
