"""POP3 SASL and TLS with real clients: Cyrus pop3test, curl, raw TLS."""

from __future__ import annotations

import socket
import ssl
import subprocess

import pytest

from tests.integration.conftest import Server, curl_tls, marker

pytestmark = pytest.mark.integration

POP3TEST = "/usr/lib/cyrus/bin/pop3test"
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256")


def pop3test(server: Server, host: str, mechanism: str, user: str, password: str) -> str:
    result = subprocess.run(
        [POP3TEST, "-m", mechanism, "-a", user, "-w", password, "-p", str(server.port), host],
        input=b"STAT\r\nQUIT\r\n",
        capture_output=True,
        timeout=30,
        check=False,
    )
    return (result.stdout + result.stderr).decode(errors="replace")


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize(
    ("host", "user", "domain"),
    [("127.0.0.2", "info", "client1.com"), ("127.0.0.1", "info@client2.com", "client2.com")],
)
def test_pop3test_mechanisms(
    server: Server, mechanism: str, host: str, user: str, domain: str
) -> None:
    """pop3test authenticates with every mechanism in two domains."""
    out = pop3test(server, host, mechanism, user, f"pw-{domain}")
    assert "Authenticated." in out, out
    assert "+OK 1 " in out


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_pop3test_wrong_password(server: Server, mechanism: str) -> None:
    """A wrong password fails with every mechanism."""
    out = pop3test(server, "127.0.0.2", mechanism, "info", "not-the-password")
    assert "Authenticated." not in out and "Authentication failed" in out


def test_curl_pop3s(server: Server) -> None:
    """curl pop3s:// verifies the certificate against the CA and reads the marker."""
    result = curl_tls(server, f"pop3s://company.com:{server.pop3s_port}/1")
    assert result.returncode == 0, result.stderr
    assert marker("company.com").encode() in result.stdout


def test_curl_stls_required(server: Server) -> None:
    """curl --ssl-reqd upgrades with STLS and reads the marker."""
    result = curl_tls(server, f"pop3://company.com:{server.port}/1", "--ssl-reqd")
    assert result.returncode == 0, result.stderr
    assert marker("company.com").encode() in result.stdout


def test_stls_injection_gets_no_answer_inside_tls(server: Server) -> None:
    """A command pipelined after STLS in clear text is not answered inside TLS."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    stream = raw.makefile("rb")
    stream.readline()
    raw.sendall(b"STLS\r\nCAPA\r\n")
    assert stream.readline() == b"+OK begin TLS negotiation\r\n"
    context = ssl.create_default_context(cafile=str(server.ca))
    tls = context.wrap_socket(raw, server_hostname="company.com")
    tls.settimeout(1.5)
    with pytest.raises(TimeoutError):
        tls.recv(100)
    tls.sendall(b"NOOP\r\n")
    tls.settimeout(10)
    assert tls.recv(100).startswith(b"-ERR NOOP is not allowed")
    tls.close()
