"""Login policy across protocols on the real server."""

from __future__ import annotations

import imaplib
import poplib
import time

import pytest

from tests.integration.conftest import Server, admin

pytestmark = pytest.mark.integration


def pop(server: Server, user: str, password: str) -> str:
    client = poplib.POP3("127.0.0.1", server.port, timeout=15)
    try:
        client.user(user)
        client.pass_(password)
    except poplib.error_proto as error:
        return error.args[0].decode()
    client.quit()
    return "ok"


def imap(server: Server, user: str, password: str) -> str:
    client = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=15)
    try:
        client.login(user, password)
    except imaplib.IMAP4.error as error:
        return str(error)
    client.logout()
    return "ok"


def test_lockout_for_every_protocol(server: Server) -> None:
    """Three wrong passwords (POP3) lock the account for IMAP too, with the
    wrong-password reply; after the period the right password works.  The
    period is 3 s here instead of a minute, to keep the test short."""
    admin(
        server.base,
        "account",
        "create",
        "guarded@company.com",
        "--password",
        "right",
        "FailedLoginFlow=(3,3s)",
    )
    time.sleep(1.1)
    for _ in range(3):
        assert "incorrect password" in pop(server, "guarded", "wrong")
    assert "incorrect password or account name" in imap(server, "guarded", "right")
    assert "incorrect password" in pop(server, "guarded", "right")
    time.sleep(3.2)
    assert imap(server, "guarded", "right") == "ok"


def test_access_modes(server: Server) -> None:
    """AccessModes without IMAP: IMAP refuses, POP3 allows."""
    admin(
        server.base,
        "account",
        "create",
        "popper2@company.com",
        "--password",
        "pw",
        "AccessModes=(POP)",
    )
    time.sleep(1.1)
    assert "not allowed for this account" in imap(server, "popper2", "pw")
    assert pop(server, "popper2", "pw") == "ok"
