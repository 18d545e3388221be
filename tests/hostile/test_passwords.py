"""Passwords on the real server: an empty one can be neither set nor used;
the password service refuses new passwords that are not UTF-8 or too long
for bcrypt with a clear one-line reply, and keeps the old one."""

from __future__ import annotations

import imaplib
import time

import pytest

from tests.hostile.conftest import SETTLE
from tests.hostile.listeners import Client, Listener, having
from tests.integration.conftest import Server, admin, communigate

pytestmark = pytest.mark.integration

PWD = next(item for item in having("logs_in") if item.name == "pwd")


@pytest.fixture(scope="module")
def changer(server: Server) -> Server:
    """changer@company.com, password "old-pw", stored as bcrypt."""
    admin(
        server.base,
        "account",
        "create",
        "changer@company.com",
        "PasswordEncryption=UB-crpt",
        "--password",
        "old-pw",
    )
    time.sleep(SETTLE)
    return server


def imap_login(running: Server, user: str, password: str) -> bool:
    """Whether IMAP LOGIN succeeds."""
    client = imaplib.IMAP4("127.0.0.1", running.imap_port, timeout=15)
    try:
        client.login(user, password)
    except imaplib.IMAP4.error:
        return False
    finally:
        client.shutdown()
    return True


def newpass(running: Server, listener: Listener, password: bytes) -> bytes:
    """The reply to NEWPASS after logging in as changer."""
    client = Client(running, listener)
    try:
        client.greet()
        client.command(b"USER changer", b"300")
        client.command(b"PASS old-pw", b"200")
        return client.command(b"NEWPASS " + password, b"")
    finally:
        client.close()


@pytest.mark.parametrize(
    ("password", "reason"),
    [(b"\xff\xfe\xfd", b"not valid UTF-8"), (b"x" * 73, b"at most 72")],
    ids=["not-utf8", "73-bytes"],
)
def test_newpass_refused_with_a_reason(changer: Server, password: bytes, reason: bytes) -> None:
    """NEWPASS with bytes that are not UTF-8, or over bcrypt's 72 bytes, is
    answered 500 with the reason; the old password still works."""
    reply = newpass(changer, PWD, password)
    assert reply.startswith(b"500 ") and reason in reply, reply
    time.sleep(SETTLE)
    assert imap_login(changer, "changer", "old-pw")


def test_empty_password_cannot_be_set(changer: Server) -> None:
    """``account password X </dev/null`` fails with one line and changes
    nothing: the old password works, the empty one does not."""
    result = communigate(changer.base, "account", "password", "changer@company.com", stdin=b"")
    assert result.returncode == 1
    assert result.stderr == b"communigate: error: empty passwords are not allowed\n"
    time.sleep(SETTLE)
    assert imap_login(changer, "changer", "old-pw")
    assert not imap_login(changer, "changer", "")
