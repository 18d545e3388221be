"""Mailbox names a hostile IMAP client sends: each gets a clear NO, nothing
is half-created, the session goes on and the log holds no traceback."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator

import pytest

from tests.integration.conftest import Server, admin

pytestmark = pytest.mark.integration


@pytest.fixture
def client(server: Server) -> Iterator[imaplib.IMAP4]:
    """A logged-in session of names@company.com."""
    admin(server.base, "account", "create", "names@company.com", "--password", "pw")
    client = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    client.login("names", "pw")
    yield client
    try:
        client.logout()
    except (imaplib.IMAP4.error, OSError):
        pass
    admin(server.base, "account", "delete", "names@company.com")


def folder(server: Server) -> str:
    return str(server.base / "Accounts" / "names.macnt")


@pytest.mark.parametrize(
    "name",
    [
        "Parent/" + "a" * 300,
        "~" + "a" * 2000,
        "~" + "a" * 2000 + "/INBOX",
        "&AAA",
        "&AGE-",
    ],
)
def test_bad_names_get_no(server: Server, client: imaplib.IMAP4, name: str) -> None:
    """CREATE and SELECT of an over-long, unterminated or non-canonical name: NO."""
    status, data = client.create(f'"{name}"')
    assert status == "NO" and b"SERVERBUG" not in data[0]
    status, data = client.select(f'"{name}"')
    assert status == "NO"
    assert client.noop()[0] == "OK"


def test_eight_bit_name(server: Server, client: imaplib.IMAP4) -> None:
    """A name with 8-bit bytes (a literal) is refused, not stored."""
    tag = client._new_tag()  # type: ignore[attr-defined]
    client.send(tag + b" CREATE {2+}\r\n\xff\xfe\r\n")
    line = client.readline()
    assert line.startswith(tag + b" NO"), line
    assert client.noop()[0] == "OK"


def test_unsubscribe_path_escape(server: Server, client: imaplib.IMAP4) -> None:
    """UNSUBSCRIBE "../.." is a NO, not a crash."""
    status, _ = client.unsubscribe('"../.."')
    assert status == "NO"
    assert client.noop()[0] == "OK"
    assert "Traceback" not in server.log_text()


def test_nothing_half_created(server: Server, client: imaplib.IMAP4) -> None:
    """A refused CREATE of Parent/<too long> leaves no Parent behind."""
    client.create('"Parent2/' + "b" * 300 + '"')
    status, data = client.list('""', '"Parent2*"')
    assert status == "OK" and data == [None]
