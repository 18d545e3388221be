"""OS passwords through PAM, with a user made for the test (root only)."""

from __future__ import annotations

import imaplib
import os
import poplib
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import Server, admin

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="creating an OS user needs root"),
]

#: Unique per run, so two runs at once never share the OS user.
OS_USER = f"cgos{secrets.token_hex(4)}"
OS_PASSWORD = "Os-Secret-42"


@pytest.fixture(scope="module")
def os_user() -> Iterator[str]:
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", OS_USER], check=True)
    subprocess.run(["chpasswd"], input=f"{OS_USER}:{OS_PASSWORD}\n", text=True, check=True)
    try:
        yield OS_USER
    finally:
        subprocess.run(["userdel", OS_USER], capture_output=True, check=False)


def pop_ok(server: Server, user: str, password: str) -> bool:
    client = poplib.POP3("127.0.0.1", server.port, timeout=15)
    try:
        client.user(user)
        client.pass_(password)
    except poplib.error_proto:
        return False
    client.quit()
    return True


def test_os_password(server: Server, os_user: str) -> None:
    """UseSysPassword=YES: the OS password logs in over POP3 and IMAP;
    with it off, it is refused."""
    admin(
        server.base,
        "account",
        "create",
        f"{os_user}@company.com",
        "UseSysPassword=YES",
        "UseAppPassword=NO",
    )
    time.sleep(1.1)
    assert pop_ok(server, os_user, OS_PASSWORD)
    assert not pop_ok(server, os_user, "wrong")
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=15)
    assert imap.login(os_user, OS_PASSWORD)[0] == "OK"
    imap.logout()
    admin(server.base, "account", "settings", f"{os_user}@company.com", "UseSysPassword=NO")
    time.sleep(1.1)
    assert not pop_ok(server, os_user, OS_PASSWORD)


def test_os_user_name_mapping(server: Server, os_user: str) -> None:
    """OSUserName maps another account name to the OS user."""
    admin(
        server.base,
        "account",
        "create",
        "mapped@company.com",
        "UseSysPassword=YES",
        "UseAppPassword=NO",
        f"OSUserName={os_user}",
    )
    time.sleep(1.1)
    assert pop_ok(server, "mapped", OS_PASSWORD)


def test_migration_to_a_communigate_password(server: Server, os_user: str) -> None:
    """After logging in with the OS password, the user sets a CommuniGate
    password over PWD (NEWPASS); it then works without the OS password."""
    admin(
        server.base,
        "account",
        "create",
        "migrant@company.com",
        "UseSysPassword=YES",
        f"OSUserName={os_user}",
        "PasswordEncryption=UB-crpt",
    )
    time.sleep(1.1)
    with socket.create_connection(("127.0.0.1", server.pwd_port), timeout=10) as conn:
        stream = conn.makefile("rwb")
        assert stream.readline().startswith(b"200 ")
        for command, expected in (
            (b"USER migrant", b"300"),
            (b"PASS " + OS_PASSWORD.encode(), b"200"),
            (b"NEWPASS Own-Password-1", b"200"),
            (b"QUIT", b"200"),
        ):
            stream.write(command + b"\r\n")
            stream.flush()
            assert stream.readline().startswith(expected), command
    admin(server.base, "account", "settings", "migrant@company.com", "UseSysPassword=NO")
    time.sleep(1.1)
    assert pop_ok(server, "migrant", "Own-Password-1")
    stored = (server.base / "Accounts" / "migrant.macnt" / "account.settings").read_text()
    assert "Own-Password-1" not in stored and "$2b$" in stored
