"""Deleting an account ends its live sessions on every listener with a
login, and nothing they do afterwards brings the account back."""

from __future__ import annotations

import time

import pytest

from tests.hostile.listeners import Client, Listener, having
from tests.integration.conftest import Server, admin

#: The registry's sweep runs every 2 s; allow for a settings re-read too.
ENDED_WITHIN = 6.0


def as_victim(listener: Listener) -> tuple[tuple[bytes, bytes], ...]:
    """The listener's login lines for victim@company.com."""
    return listener.login_as(b"victim", b"pw-victim")


@pytest.mark.parametrize("listener", having("logs_in"), ids=str)
def test_sessions_end_and_the_account_stays_deleted(server: Server, listener: Listener) -> None:
    """A logged-in session is told and closed once the account is deleted;
    the account can then be created again from scratch."""
    admin(server.base, "account", "create", "victim@company.com", "--password", "pw-victim")
    folder = server.base / "Accounts" / "victim.macnt"
    client = Client(server, listener)
    try:
        client.greet()
        for line, prefix in as_victim(listener):
            client.command(line, prefix)
        probe, answer = listener.probe
        assert client.command(probe, answer).startswith(answer)
        admin(server.base, "account", "delete", "victim@company.com")
        assert client.closed_within(ENDED_WITHIN)
    finally:
        client.close()
    time.sleep(0.5)
    assert not folder.exists()
    assert "victim" not in admin(server.base, "account", "list", "company.com")
    admin(server.base, "account", "create", "victim@company.com", "--password", "pw-victim")
    admin(server.base, "account", "delete", "victim@company.com")


def test_imap_append_after_delete_recreates_nothing(server: Server) -> None:
    """An APPEND racing the deletion fails; the account's folder stays gone."""
    listener = next(item for item in having("literals") if not item.tls)
    admin(server.base, "account", "create", "victim@company.com", "--password", "pw-victim")
    folder = server.base / "Accounts" / "victim.macnt"
    client = Client(server, listener)
    try:
        client.greet()
        for line, prefix in as_victim(listener):
            client.command(line, prefix)
        admin(server.base, "account", "delete", "victim@company.com")
        try:
            client.send(b"x APPEND INBOX {5+}\r\nhello\r\n")
            client.reply(b"x ")
        except (ConnectionError, OSError):
            pass
    finally:
        client.close()
    time.sleep(ENDED_WITHIN)
    assert not folder.exists()
