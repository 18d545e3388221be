"""NTLM and MSN logins over IMAP and POP3 with curl's NTLMv2 client."""

from __future__ import annotations

import base64
import socket
import subprocess
from collections.abc import Iterator

import pytest
import spnego

from communigate.cred.sasl.ntlm import nt_hash
from tests.integration.conftest import (
    FAILED_LOGIN_DELAY,
    Server,
    admin,
    marker,
    plan_server,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.integration

#: company.com (on 127.0.0.1) lists NTLM and MSN; client1.com (127.0.0.2)
#: keeps the default LoginMethods.
NTLM_METHODS = "LoginMethods=(PLAIN,LOGIN,NTLM,MSN)"


@pytest.fixture(scope="module")
def ntlm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose Main Domain offers NTLM, with a clear-password account
    (info), a bcrypt one with an NTHash (crypt: set with its password) and
    a bcrypt one without (nohash: set before the domain offered NTLM)."""
    root = tmp_path_factory.mktemp("ntlm")
    base = root / "base"
    admin(base, "init", "--main-domain", "company.com", "--postmaster-password", "pm")
    admin(base, "server", "settings", f"FailedLoginDelay={FAILED_LOGIN_DELAY}")
    admin(base, "domain", "create", "client1.com", "--ip", "127.0.0.2")
    # Created before company.com lists NTLM: no NT hash is stored for it.
    bcrypt = ("PasswordEncryption=UB-crpt", "--password", "Crypt-Secret-1")
    admin(base, "account", "create", "nohash@company.com", *bcrypt)
    admin(base, "domain", "settings", "company.com", NTLM_METHODS)
    admin(base, "account", "create", "info@company.com", "--password", "pw-ntlm")
    admin(base, "account", "create", "info@client1.com", "--password", "pw-client1")
    admin(base, "account", "create", "crypt@company.com", *bcrypt)
    for name in ("info", "crypt", "nohash"):
        message = f"Subject: {marker(name)}\r\n\r\n{marker(name)}\r\n".encode()
        admin(base, "deliver", f"{name}@company.com", stdin=message)
    server = plan_server(base, root / "server.log")
    process = start_server(server)
    try:
        yield server
    finally:
        stop_server(process)
    text = server.log_text()
    assert "Traceback" not in text
    assert "Unhandled Error" not in text


def curl(
    url: str, user: str, password: str, mechanism: str = "NTLM"
) -> subprocess.CompletedProcess[bytes]:
    """curl with one SASL mechanism; its exit code and output."""
    return subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            url,
            "--user",
            f"{user}:{password}",
            "--login-options",
            f"AUTH={mechanism}",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )


def capabilities(host: str, port: int, command: bytes, last: bytes) -> bytes:
    """The server's answer to CAPABILITY or CAPA, up to the line starting
    with ``last``."""
    with socket.create_connection((host, port), timeout=10) as connection:
        stream = connection.makefile("rb")
        stream.readline()
        connection.sendall(command)
        lines = b""
        while True:
            line = stream.readline()
            lines += line
            if not line or line.startswith(last):
                return lines


def imap_sasl(server: Server, mechanism: str, user: str, password: str) -> bytes:
    """AUTHENTICATE with pyspnego's NTLM client over plain IMAP; the tagged
    answer."""
    client = spnego.client(user, password, protocol="ntlm")
    with socket.create_connection(("127.0.0.1", server.imap_port), timeout=10) as connection:
        stream = connection.makefile("rb")
        stream.readline()
        connection.sendall(f"a AUTHENTICATE {mechanism}\r\n".encode())
        while True:
            line = stream.readline()
            if not line.startswith(b"+"):
                return line
            token = client.step(base64.b64decode(line[1:].strip()) or None)
            connection.sendall(base64.b64encode(token or b"") + b"\r\n")


@pytest.mark.parametrize("mechanism", ["NTLM", "MSN"])
def test_imap_pyspnego_client(ntlm_server: Server, mechanism: str) -> None:
    """pyspnego's NTLMv2 client (with a MIC) logs in as NTLM and MSN; a
    wrong password is refused."""
    assert imap_sasl(ntlm_server, mechanism, "info", "pw-ntlm").startswith(b"a OK")
    assert imap_sasl(ntlm_server, mechanism, "info", "wrong").startswith(b"a NO")


def test_imap_ntlm_login(ntlm_server: Server) -> None:
    """curl logs in with NTLM over IMAP and reads the marker."""
    result = curl(f"imap://127.0.0.1:{ntlm_server.imap_port}/INBOX;UID=1", "info", "pw-ntlm")
    assert result.returncode == 0, result.stderr
    assert marker("info").encode() in result.stdout


def test_pop3_ntlm_login(ntlm_server: Server) -> None:
    """curl logs in with NTLM over POP3 and lists the mailbox."""
    result = curl(f"pop3://127.0.0.1:{ntlm_server.port}/", "info", "pw-ntlm")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"1 ")


def test_dns_domain_in_ntlm_domain_field(ntlm_server: Server) -> None:
    """``company.com\\info`` names info@company.com (a DNS domain completes the name)."""
    result = curl(
        f"imap://127.0.0.1:{ntlm_server.imap_port}/INBOX;UID=1", "company.com\\info", "pw-ntlm"
    )
    assert result.returncode == 0, result.stderr
    assert marker("info").encode() in result.stdout


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_wrong_password_refused(ntlm_server: Server, protocol: str) -> None:
    """A wrong password fails NTLM over IMAP and POP3."""
    port = ntlm_server.imap_port if protocol == "imap" else ntlm_server.port
    result = curl(f"{protocol}://127.0.0.1:{port}/", "info", "not-the-password")
    assert result.returncode == 67, (result.returncode, result.stderr)


def test_bcrypt_account_with_nt_hash(ntlm_server: Server) -> None:
    """A one-way password with an NTHash setting logs in with NTLM."""
    settings = (ntlm_server.base / "Accounts" / "crypt.macnt" / "account.settings").read_text()
    assert "$2b$" in settings
    assert nt_hash("Crypt-Secret-1").hex() in settings.lower()
    url = f"imap://127.0.0.1:{ntlm_server.imap_port}/INBOX;UID=1"
    result = curl(url, "crypt", "Crypt-Secret-1")
    assert result.returncode == 0, result.stderr
    assert marker("crypt").encode() in result.stdout
    assert curl(url, "crypt", "Crypt-Secret-2").returncode == 67


def test_bcrypt_account_without_nt_hash(ntlm_server: Server) -> None:
    """A one-way password without an NTHash cannot serve NTLM, but PLAIN works."""
    settings = (ntlm_server.base / "Accounts" / "nohash.macnt" / "account.settings").read_text()
    assert "NTHash" not in settings
    url = f"imap://127.0.0.1:{ntlm_server.imap_port}/INBOX;UID=1"
    assert curl(url, "nohash", "Crypt-Secret-1").returncode == 67
    assert curl(url, "nohash", "Crypt-Secret-1", "PLAIN").returncode == 0


def test_ntlm_advertised_only_where_listed(ntlm_server: Server) -> None:
    """CAPABILITY and CAPA list NTLM and MSN for company.com only."""
    for host, listed in (("127.0.0.1", True), ("127.0.0.2", False)):
        imap = capabilities(host, ntlm_server.imap_port, b"a CAPABILITY\r\n", b"a ")
        pop3 = capabilities(host, ntlm_server.port, b"CAPA\r\n", b".\r\n")
        for answer in (imap, pop3):
            assert (b"NTLM" in answer) is listed, answer
            assert (b"MSN" in answer) is listed, answer
