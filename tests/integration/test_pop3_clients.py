"""POP3 end to end: the real server, curl, fetchmail and poplib."""

from __future__ import annotations

import poplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox
from tests.integration.conftest import Server, admin, fetchmail, marker

pytestmark = pytest.mark.integration


def curl(
    server: Server, host: str, user: str, password: str, path: str = "1", *extra: str
) -> tuple[int, str]:
    """Fetch with curl's POP3 client; returns curl's exit code and output."""
    result = subprocess.run(
        [
            "curl",
            "--silent",
            "--max-time",
            "20",
            f"pop3://{host}:{server.port}/{path}",
            "--user",
            f"{user}:{password}",
            *extra,
        ],
        capture_output=True,
        check=False,
        timeout=30,
    )
    return result.returncode, result.stdout.decode(errors="replace")


@pytest.mark.parametrize(
    ("host", "user", "domain"),
    [
        ("127.0.0.1", "info", "company.com"),
        ("127.0.0.2", "info", "client1.com"),
        ("127.0.0.1", "info%client2.com", "client2.com"),
        ("127.0.0.2", "info%client2.com", "client2.com"),
        ("127.0.0.1", "info@client2.com", "client2.com"),
        ("127.0.0.2", "info@client2.com", "client2.com"),
        ("127.0.0.2", "info@company.com", "company.com"),
    ],
)
def test_curl_multihoming(server: Server, host: str, user: str, domain: str) -> None:
    """curl reads the marker of the domain the name and the address select."""
    code, body = curl(server, host, user, f"pw-{domain}")
    assert code == 0
    assert marker(domain) in body
    assert all(
        marker(other) not in body
        for other in ("company.com", "client1.com", "client2.com")
        if other != domain
    )


def test_router_alias_and_refusals(server: Server, settle: float) -> None:
    """<John> leads to j.smith; an alias logs in; group, forwarder, unknown refused."""
    admin(server.base, "account", "create", "j.smith@client1.com", "--password", "js")
    admin(
        server.base, "deliver", "j.smith@client1.com", stdin=b"Subject: js\r\n\r\nfor-j-smith\r\n"
    )
    admin(server.base, "router", "add", "<John> = j.smith@client1.com")
    admin(server.base, "alias", "add", "helpdesk@client1.com", "info")
    admin(server.base, "group", "create", "team@company.com", "info")
    admin(server.base, "forwarder", "create", "fwd@company.com", "x@elsewhere.example")
    time.sleep(settle)
    code, body = curl(server, "127.0.0.1", "john", "js")
    assert code == 0 and "for-j-smith" in body
    code, body = curl(server, "127.0.0.2", "helpdesk", "pw-client1.com")
    assert code == 0 and marker("client1.com") in body
    for name in ("team", "fwd", "nobody-here"):
        code, _ = curl(server, "127.0.0.1", name, "pw-company.com")
        assert code == 67, name  # CURLE_LOGIN_DENIED


def pop_reply_to_login(server: Server, user: bytes, password: bytes) -> bytes:
    """The raw server reply to USER/PASS."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        stream = conn.makefile("rwb")
        stream.readline()
        stream.write(b"USER " + user + b"\r\n")
        stream.flush()
        stream.readline()
        stream.write(b"PASS " + password + b"\r\n")
        stream.flush()
        return stream.readline()


def test_hide_account_unknown(server: Server, settle: float) -> None:
    """With HideAccountUnknown=YES an unknown name gets the wrong-password bytes."""
    wrong = pop_reply_to_login(server, b"info", b"wrong")
    assert pop_reply_to_login(server, b"nobody-at-all", b"wrong") != wrong
    admin(server.base, "server", "settings", "HideAccountUnknown=YES")
    try:
        time.sleep(settle)
        assert pop_reply_to_login(server, b"nobody-at-all", b"wrong") == wrong
        assert wrong == b"-ERR [AUTH] incorrect password or account name\r\n"
    finally:
        admin(server.base, "server", "settings", "HideAccountUnknown=")


def test_setting_change_takes_effect_without_restart(server: Server, settle: float) -> None:
    """A password and an AccessModes change made while the server runs apply
    at the next login."""
    admin(server.base, "account", "create", "changer@company.com", "--password", "old")
    time.sleep(settle)
    assert curl(server, "127.0.0.1", "changer", "old", "")[0] == 0
    admin(server.base, "account", "password", "changer@company.com", "--password", "new")
    time.sleep(settle)
    assert curl(server, "127.0.0.1", "changer", "old", "")[0] == 67
    assert curl(server, "127.0.0.1", "changer", "new", "")[0] == 0
    admin(server.base, "account", "settings", "changer@company.com", "AccessModes=(IMAP)")
    time.sleep(settle)
    assert curl(server, "127.0.0.1", "changer", "new", "")[0] == 67


def test_bcrypt_account(server: Server, settle: float) -> None:
    """A UB-crpt password logs in and the settings file holds no clear password."""
    admin(
        server.base,
        "account",
        "create",
        "crypt@company.com",
        "PasswordEncryption=UB-crpt",
        "--password",
        "Bcrypt-Secret-1",
    )
    settings = (server.base / "Accounts" / "crypt.macnt" / "account.settings").read_text()
    assert "Bcrypt-Secret-1" not in settings and "$2b$" in settings
    time.sleep(settle)
    # The domain advertises DIGEST-MD5, which curl would pick; a one-way
    # password can only serve clear-text methods.
    plain = "--login-options", "AUTH=PLAIN"
    assert curl(server, "127.0.0.1", "crypt", "Bcrypt-Secret-1", "", *plain)[0] == 0
    assert curl(server, "127.0.0.1", "crypt", "Bcrypt-Secret-2", "", *plain)[0] == 67
    assert curl(server, "127.0.0.1", "crypt", "Bcrypt-Secret-1", "")[0] == 67


def inbox(server: Server, domain: str, name: str) -> Mailbox:
    return Mailbox.of_account(FileDirectory(server.base).account_path(domain, name))


def fill(server: Server, name: str, count: int) -> None:
    admin(server.base, "account", "create", f"{name}@company.com", "--password", "pw")
    for number in range(count):
        body = f"Subject: message {number}\r\n\r\n.line {number}\r\nbody {number}\r\n"
        admin(server.base, "deliver", f"{name}@company.com", stdin=body.encode())


def test_poplib_top_uidl_dele(server: Server, settle: float) -> None:
    """poplib: TOP and UIDL; DELE then a dropped connection keeps the
    message; DELE then QUIT removes it."""
    fill(server, "popper", 3)
    time.sleep(settle)
    client = poplib.POP3("127.0.0.1", server.port, timeout=10)
    client.user("popper")
    client.pass_("pw")
    _, lines, _ = client.top(2, 0)
    assert lines == [b"Subject: message 1", b""]
    _, uids, _ = client.uidl()
    assert len(uids) == 3 and len({line.split()[1] for line in uids}) == 3
    _, message, _ = client.retr(1)
    assert message == [b"Subject: message 0", b"", b".line 0", b"body 0"]
    client.dele(1)
    client.sock.close()  # dropped without QUIT
    assert len(inbox(server, "company.com", "popper").messages()) == 3

    client = poplib.POP3("127.0.0.1", server.port, timeout=10)
    client.user("popper")
    client.pass_("pw")
    assert client.uidl()[1] == uids
    client.dele(1)
    client.quit()
    remaining = inbox(server, "company.com", "popper").messages()
    assert [info.uid for info in remaining] == [2, 3]


def test_fetchmail_keep_and_nokeep(server: Server, tmp_path: Path, settle: float) -> None:
    """fetchmail --keep leaves the messages; without it they are removed."""
    fill(server, "fetcher", 2)
    time.sleep(settle)
    fetched = fetchmail(tmp_path, "pop3", server.port, "fetcher", keep=True)
    assert b"body 0" in fetched and b"body 1" in fetched
    assert len(inbox(server, "company.com", "fetcher").messages()) == 2
    fetched = fetchmail(tmp_path, "pop3", server.port, "fetcher", keep=False)
    assert b"body 0" in fetched and b"body 1" in fetched
    assert inbox(server, "company.com", "fetcher").messages() == []


def test_bad_input_leaves_other_sessions_alone(server: Server) -> None:
    """A 100 000-byte line, binary garbage, unknown and misplaced commands get
    -ERR, never a traceback, and a parallel session keeps working."""
    good = poplib.POP3("127.0.0.1", server.port, timeout=10)
    good.user("info")
    good.pass_("pw-company.com")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        stream = conn.makefile("rwb")
        stream.readline()
        for line in (
            b"X" * 100_000,
            bytes(range(256)).replace(b"\n", b""),
            b"FOO bar",
            b"STAT",
            b"RETR 1",
            b"PASS nothing-before",
        ):
            stream.write(line + b"\r\n")
            stream.flush()
            reply = stream.readline()
            assert reply.startswith(b"-ERR "), (line[:20], reply)
            assert b"Traceback" not in reply
        assert good.stat()[0] >= 1
        stream.write(b"QUIT\r\n")
        stream.flush()
        assert stream.readline() == b"+OK bye\r\n"
    assert good.noop().startswith(b"+OK")
    good.quit()
    assert "Traceback" not in server.log_text()
