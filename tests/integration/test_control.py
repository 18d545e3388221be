"""The control socket of the real server: ``communigate sessions``,
``kick``, ``status``, ``reload`` and ``account delete`` against a live
IMAP client (imaplib)."""

from __future__ import annotations

import imaplib
import json
import stat
import time

import pytest

from communigate.control.location import socket_path
from tests.integration.conftest import Server, admin


def imap_sessions(server: Server) -> int:
    """How many IMAP sessions ``communigate status`` reports."""
    answer = json.loads(admin(server.base, "status", "--json"))
    return int(answer["sessions"]["imap4"])


def logged_in(server: Server, name: str) -> imaplib.IMAP4:
    """An imaplib client logged in as ``name@company.com`` (password pw)."""
    client = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    client.login(f"{name}@company.com", "pw")
    return client


def assert_ended(client: imaplib.IMAP4) -> None:
    """The server said BYE to ``client`` and closed its connection."""
    deadline = time.monotonic() + 5
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        while time.monotonic() < deadline:
            client.noop()
            time.sleep(0.1)
    assert client.untagged_responses.get("BYE")


def test_socket_is_private(server: Server) -> None:
    """The control socket is a socket of mode 0600 in a folder of mode 0700."""
    path = socket_path(server.base)
    mode = path.lstat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_sessions_kick_and_status(server: Server) -> None:
    """A logged-in IMAP client is listed with its port; kick says BYE to it;
    status counts it, then no longer."""
    admin(server.base, "account", "create", "kicked@company.com", "--password", "pw")
    before = imap_sessions(server)
    client = logged_in(server, "kicked")
    port = client.sock.getsockname()[1]
    try:
        answer = json.loads(admin(server.base, "sessions", "kicked@company.com", "--json"))
        [entry] = answer["sessions"]
        assert entry["account"] == "kicked@company.com"
        assert (entry["protocol"], entry["remote_port"]) == ("imap4", port)
        assert (entry["remote_host"], entry["tls"]) == ("127.0.0.1", False)
        assert entry["mechanism"] and entry["session"]
        table = admin(server.base, "sessions", "kicked@company.com")
        assert f"kicked@company.com  imap4     127.0.0.1:{port}" in table
        assert imap_sessions(server) == before + 1
        out = admin(server.base, "kick", "kicked@company.com")
        assert out == "ended 1 session of kicked@company.com\n"
        assert_ended(client)
        assert imap_sessions(server) == before
        assert "no live sessions" in admin(server.base, "sessions", "kicked@company.com")
    finally:
        client.shutdown()


def test_account_delete_ends_sessions_at_once(server: Server) -> None:
    """account delete tells the running server, which ends the sessions now."""
    admin(server.base, "account", "create", "deleted@company.com", "--password", "pw")
    client = logged_in(server, "deleted")
    try:
        out = admin(server.base, "account", "delete", "deleted@company.com")
        assert "ended 1 live session of deleted@company.com" in out
        assert_ended(client)
    finally:
        client.shutdown()


def test_status_and_reload(server: Server) -> None:
    """status shows version, uptime and the listeners; reload is answered."""
    out = admin(server.base, "status")
    assert out.startswith("version ")
    assert f"imap4:tcp:{server.imap_port}:interface=127.0.0.1" in out
    assert "threads " in out and "external " in out
    assert admin(server.base, "reload").startswith("reloaded: ")
