"""Client certificates per domain and SASL EXTERNAL with real clients.

A server of its own: company.com (Main Domain, 127.0.0.1) and client1.com
(127.0.0.2, with its own server certificate) each trust a CA of their own;
client1.com's CA has a revocation list.  curl and Cyrus imtest present
client certificates over IMAP (implicit TLS and STARTTLS) and POP3.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from communigate.store.certificates import self_signed
from tests.clientcerts import Issued, make_ca, make_client, make_crl
from tests.integration.conftest import (
    Server,
    admin,
    communigate,
    marker,
    plan_server,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.integration

IMTEST = "/usr/lib/cyrus/bin/imtest"


@dataclass
class Setup:
    """The running server and the files the clients use."""

    server: Server
    files: Path
    #: The server certificates of both domains, for --cacert.
    bundle: Path

    def pair(self, name: str) -> tuple[Path, Path]:
        """The certificate and key files of a client certificate."""
        return self.files / f"{name}.crt", self.files / f"{name}.key"


CLIENTS = ("info1", "cross", "expired", "revoked", "nocert", "info0", "stranger")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """The server with both CAs installed and every client certificate
    written out (name.crt, name.key, name.pem with both)."""
    root = tmp_path_factory.mktemp("clientcerts")
    base, files = root / "base", root / "files"
    files.mkdir()
    admin(base, "init", "--main-domain", "company.com", "--postmaster-password", "pm")
    admin(base, "server", "settings", "FailedLoginDelay=0.2s")
    admin(base, "domain", "create", "client1.com", "--ip", "127.0.0.2")
    cert, key = self_signed("client1.com")
    (files / "server1.crt").write_bytes(cert)
    (files / "server1.key").write_bytes(key)
    admin(
        base,
        "domain",
        "certificate",
        "client1.com",
        "--cert",
        str(files / "server1.crt"),
        "--key",
        str(files / "server1.key"),
    )
    for address, password in (
        ("info@company.com", "pw0"),
        ("info@client1.com", "pw1"),
        ("nocert@client1.com", "pw2"),
    ):
        admin(base, "account", "create", address, "--password", password)
        admin(base, "deliver", address, stdin=f"Subject: {marker(address)}\r\n\r\nx\r\n".encode())
    for address in ("info@company.com", "info@client1.com"):
        admin(base, "account", "settings", address, "UseCertificateAuth=YES")
    ca0, ca1 = make_ca("Company CA"), make_ca("Client1 CA")
    issued: dict[str, Issued] = {
        "info1": make_client(ca1, "info@client1.com"),
        "cross": make_client(ca1, "info@company.com"),
        "expired": make_client(ca1, "info@client1.com", expired=True),
        "revoked": make_client(ca1, "info@client1.com"),
        "nocert": make_client(ca1, "nocert@client1.com"),
        "info0": make_client(ca0, None, subject_email="info@company.com"),
        "stranger": make_client(make_ca("Stranger CA"), "info@client1.com"),
    }
    for name, client in issued.items():
        (files / f"{name}.crt").write_bytes(client.cert_pem)
        (files / f"{name}.key").write_bytes(client.key_pem)
        (files / f"{name}.pem").write_bytes(client.cert_pem + client.key_pem)
    for name, ca in (("ca0", ca0), ("ca1", ca1)):
        (files / f"{name}.pem").write_bytes(ca.cert_pem)
    (files / "crl1.pem").write_bytes(make_crl(ca1, issued["revoked"]))
    admin(base, "domain", "trusted-ca", "company.com", "--ca", str(files / "ca0.pem"))
    admin(
        base,
        "domain",
        "trusted-ca",
        "client1.com",
        "--ca",
        str(files / "ca1.pem"),
        "--crl",
        str(files / "crl1.pem"),
    )
    server = plan_server(base, root / "server.log")
    bundle = files / "servers.pem"
    bundle.write_bytes(server.ca.read_bytes() + cert)
    process = start_server(server)
    try:
        yield Setup(server, files, bundle)
    finally:
        stop_server(process)
    text = server.log_text()
    assert "Traceback" not in text
    assert "Unhandled Error" not in text


def curl(
    setup: Setup, url: str, client: str | None, *extra: str
) -> subprocess.CompletedProcess[bytes]:
    """curl with the client certificate ``client`` (None: none), both
    domains' names resolving to 127.0.0.1 and the server certificates trusted."""
    server = setup.server
    resolve = []
    for name in ("company.com", "client1.com"):
        for port in (server.port, server.pop3s_port, server.imap_port, server.imaps_port):
            resolve += ["--resolve", f"{name}:{port}:127.0.0.1"]
    certificate: list[str] = []
    if client is not None:
        cert, key = setup.pair(client)
        certificate = ["--cert", str(cert), "--key", str(key)]
    return subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--cacert",
            str(setup.bundle),
            *resolve,
            *certificate,
            url,
            *extra,
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )


def urls(setup: Setup, domain: str) -> list[tuple[str, tuple[str, ...]]]:
    """Message 1 over IMAP (implicit TLS, STARTTLS) and POP3 (implicit, STLS)."""
    server = setup.server
    return [
        (f"imaps://{domain}:{server.imaps_port}/INBOX;UID=1", ()),
        (f"imap://{domain}:{server.imap_port}/INBOX;UID=1", ("--ssl-reqd",)),
        (f"pop3s://{domain}:{server.pop3s_port}/1", ()),
        (f"pop3://{domain}:{server.port}/1", ("--ssl-reqd",)),
    ]


EXTERNAL = ("--login-options", "AUTH=EXTERNAL")


def test_curl_external_logs_in(setup: Setup) -> None:
    """curl with client1.com's certificate logs in with EXTERNAL over IMAP
    and POP3, implicit TLS and STARTTLS/STLS, and reads the INBOX message."""
    for url, extra in urls(setup, "client1.com"):
        result = curl(setup, url, "info1", *EXTERNAL, *extra)
        assert result.returncode == 0, (url, result.stderr)
        assert marker("info@client1.com").encode() in result.stdout, url
    log = setup.server.log_text()
    for protocol in ("imap4", "pop3"):
        assert f"{protocol} EXTERNAL login 'info@client1.com'" in log


def test_curl_external_with_same_authzid(setup: Setup) -> None:
    """An authorization identity naming the certificate's own account is fine."""
    url, _ = urls(setup, "client1.com")[0]
    result = curl(setup, url, "info1", *EXTERNAL, "--user", "info@client1.com:")
    assert result.returncode == 0, result.stderr
    assert marker("info@client1.com").encode() in result.stdout


def test_main_domain_certificate(setup: Setup) -> None:
    """company.com's own CA; the address in the subject's emailAddress."""
    for url, extra in urls(setup, "company.com"):
        result = curl(setup, url, "info0", *EXTERNAL, *extra)
        assert result.returncode == 0, (url, result.stderr)
        assert marker("info@company.com").encode() in result.stdout, url


def test_imtest_external(setup: Setup) -> None:
    """Cyrus imtest with a certificate+key file logs in with EXTERNAL over
    STARTTLS on client1.com's address."""
    result = subprocess.run(
        [
            IMTEST,
            "-t",
            str(setup.files / "info1.pem"),
            "-m",
            "EXTERNAL",
            "-p",
            str(setup.server.imap_port),
            "127.0.0.2",
        ],
        input=b"a SELECT INBOX\r\nb LOGOUT\r\n",
        capture_output=True,
        timeout=30,
        check=False,
    )
    out = (result.stdout + result.stderr).decode(errors="replace")
    assert "Authenticated." in out, out
    assert "a OK [READ-WRITE]" in out, out


@pytest.mark.parametrize("client", ["cross", "nocert"])
def test_refused_by_the_checker(setup: Setup, client: str) -> None:
    """client1.com's CA naming a company.com account, and an account
    without UseCertificateAuth=YES, are refused (EXTERNAL was offered)."""
    for url, extra in urls(setup, "client1.com")[::2]:
        result = curl(setup, url, client, *EXTERNAL, *extra)
        assert result.returncode == 67, (url, result.returncode, result.stderr)
        assert b"marker" not in result.stdout
    reason = {
        "cross": "EXTERNAL proven by client1.com names info@company.com of another domain",
        "nocert": "nocert@client1.com does not allow UseCertificateAuth",
    }[client]
    assert reason in setup.server.log_text()


@pytest.mark.parametrize("client", ["expired", "revoked", "stranger"])
def test_unverified_certificate_refused(setup: Setup, client: str) -> None:
    """An expired, a revoked certificate and one of an unknown CA complete
    the handshake, but EXTERNAL is not offered, so it cannot log in."""
    for url, extra in urls(setup, "client1.com"):
        result = curl(setup, url, client, *EXTERNAL, *extra)
        assert result.returncode != 0, url
        assert b"marker" not in result.stdout
    assert "AUTH=EXTERNAL" not in capabilities(setup, client)


def capabilities(setup: Setup, client: str | None) -> str:
    """The IMAP CAPABILITY answer over implicit TLS with SNI client1.com."""
    context = ssl.create_default_context(cafile=str(setup.bundle))
    if client is not None:
        context.load_cert_chain(*setup.pair(client))
    with socket.create_connection(("127.0.0.1", setup.server.imaps_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="client1.com") as tls:
            reader = tls.makefile("rb")
            reader.readline()
            tls.sendall(b"a CAPABILITY\r\n")
            lines = [reader.readline(), reader.readline()]
            tls.sendall(b"b LOGOUT\r\n")
    return b"".join(lines).decode()


def test_external_advertised_only_with_verified_certificate(setup: Setup) -> None:
    """CAPABILITY lists AUTH=EXTERNAL after a verified certificate only."""
    assert "AUTH=EXTERNAL" in capabilities(setup, "info1")
    assert "AUTH=EXTERNAL" not in capabilities(setup, None)


def test_password_without_certificate(setup: Setup) -> None:
    """A client without a certificate logs in with a password as before."""
    for url, extra in urls(setup, "client1.com"):
        result = curl(setup, url, None, "--user", "info:pw1", *extra)
        assert result.returncode == 0, (url, result.stderr)
        assert marker("info@client1.com").encode() in result.stdout, url


def test_cli_refuses_bad_files(setup: Setup) -> None:
    """trusted-ca refuses a file that is not a CA certificate with one line
    and changes nothing; communigate check finds no fault with the files."""
    before = (
        setup.server.base / "Domains" / "client1.com" / "Settings" / "trusted-ca.pem"
    ).read_bytes()
    result = communigate(
        setup.server.base,
        "domain",
        "trusted-ca",
        "client1.com",
        "--ca",
        str(setup.files / "info1.crt"),
    )
    assert result.returncode == 1
    assert len(result.stderr.decode().strip().splitlines()) == 1
    assert b"not a CA certificate" in result.stderr
    after = (
        setup.server.base / "Domains" / "client1.com" / "Settings" / "trusted-ca.pem"
    ).read_bytes()
    assert after == before
    report = communigate(setup.server.base, "check").stdout.decode()
    assert "trusted" not in report, report


def test_imaps_greeting_offers_external(setup: Setup) -> None:
    """Over implicit TLS the greeting is sent after the handshake: its
    capabilities offer AUTH=EXTERNAL to a client with a certificate of the
    domain it named, and not to one without."""
    server = setup.server
    for client, offered in (("info1", True), (None, False)):
        context = ssl.create_default_context(cafile=str(setup.bundle))
        if client is not None:
            cert, key = setup.pair(client)
            context.load_cert_chain(str(cert), str(key))
        with socket.create_connection(("127.0.0.1", server.imaps_port), timeout=20) as raw:
            with context.wrap_socket(raw, server_hostname="client1.com") as link:
                greeting = link.recv(4096)
        assert greeting.startswith(b"* OK [CAPABILITY "), greeting
        assert (b"AUTH=EXTERNAL" in greeting) is offered, greeting
