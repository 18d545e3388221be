"""GSSAPI logins with each domain's Kerberos keys, against a real MIT KDC.

A KDC (kdc.py) runs for this module on a loopback port; the server is
started with ``KRB5_CONFIG`` and ``KRB5RCACHEDIR`` pointing into its
directory.  company.com has the alias ``localhost``, so Cyrus imtest,
pop3test and curl connecting to ``localhost`` ask for tickets of
``imap/localhost`` and ``pop/localhost``, which company.com imports.
A python-gssapi client names any service it likes, for the cases no real
client can make (another domain's service, a crafted keytab).
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import (
    FAILED_LOGIN_DELAY,
    Server,
    admin,
    communigate,
    plan_server,
    run_fetchmail,
    start_server,
    stop_server,
)
from tests.integration.kdc import KDC, GSSAPIClient

pytestmark = pytest.mark.integration

IMTEST = "/usr/lib/cyrus/bin/imtest"
POP3TEST = "/usr/lib/cyrus/bin/pop3test"
SETTLE = 1.1


@dataclass
class Kerberos:
    """The KDC, the server and the clients' credentials caches."""

    kdc: KDC
    server: Server
    root: Path
    ccache: dict[str, Path]

    def env(self, user: str) -> dict[str, str]:
        """A client environment with ``user``'s tickets."""
        return {**self.kdc.environ(), "KRB5CCNAME": f"FILE:{self.ccache[user]}"}


@pytest.fixture(scope="module")
def kerberos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kerberos]:
    """A KDC and a server whose company.com (alias localhost) and
    client1.com (127.0.0.2) hold keys; alice has accounts in both, carol
    one without UseKerberosPassword, bob only in company.com."""
    root = tmp_path_factory.mktemp("kerberos")
    kdc = KDC(root / "kdc")
    kdc.start()
    saved = {name: os.environ.get(name) for name in kdc.env}
    process = None
    try:
        ccache = {}
        for user in ("alice", "bob", "carol", "bad%name"):
            kdc.add_user(user, f"pw-{user}")
            ccache[user] = kdc.kinit(user, f"pw-{user}", root / f"{user}.cc")
        services = ("imap/company.com", "imap/localhost", "pop/localhost", "imap/client1.com")
        for service in services:
            kdc.add_service(service)
        base = root / "base"
        admin(base, "init", "--main-domain", "company.com", "--postmaster-password", "pm")
        admin(base, "server", "settings", f"FailedLoginDelay={FAILED_LOGIN_DELAY}")
        admin(base, "domain", "create", "client1.com", "--ip", "127.0.0.2")
        admin(base, "domain", "settings", "company.com", "--alias", "localhost")
        admin(base, "domain", "settings", "company.com", "LoginMethods=(PLAIN,LOGIN,GSSAPI)")
        for account in ("alice@company.com", "bob@company.com", "alice@client1.com"):
            admin(base, "account", "create", account, "UseKerberosPassword=YES", "--password", "x")
            admin(base, "deliver", account, stdin=f"Subject: to {account}\r\n\r\nhi\r\n".encode())
        admin(base, "account", "create", "carol@client1.com", "--password", "x")
        tab = kdc.keytab("imap/company.com", root / "company.keytab")
        kdc.keytab("imap/localhost", tab)
        kdc.keytab("pop/localhost", tab)
        admin(base, "domain", "kerberos", "import", "company.com", str(tab))
        client1 = kdc.keytab("imap/client1.com", root / "client1.keytab")
        admin(base, "domain", "kerberos", "import", "client1.com", str(client1))
        server = plan_server(base, root / "server.log")
        os.environ.update(kdc.env)
        process = start_server(server)
        yield Kerberos(kdc, server, root, ccache)
    finally:
        if process is not None:
            stop_server(process)
        kdc.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    text = (root / "server.log").read_text(errors="replace")
    assert "Traceback" not in text
    assert "Unhandled Error" not in text


class IMAP:
    """A bare IMAP connection for AUTHENTICATE exchanges."""

    def __init__(self, host: str, port: int) -> None:
        self.socket = socket.create_connection((host, port), timeout=20)
        self.stream = self.socket.makefile("rb")
        self.stream.readline()

    def command(self, line: str) -> list[bytes]:
        """Send a tagged command; every line up to the tagged reply."""
        self.socket.sendall(f"a {line}\r\n".encode())
        return self.until_tagged()

    def until_tagged(self) -> list[bytes]:
        lines = []
        while True:
            line = self.stream.readline()
            lines.append(line)
            if not line or line.startswith((b"a ", b"+")):
                return lines

    def authenticate(self, client: GSSAPIClient) -> list[bytes]:
        """AUTHENTICATE GSSAPI with SASL-IR; the lines of the end."""
        first = base64.b64encode(client.first()).decode()
        lines = self.command(f"AUTHENTICATE GSSAPI {first}")
        while lines[-1].startswith(b"+"):
            challenge = base64.b64decode(lines[-1][1:].strip())
            self.socket.sendall(base64.b64encode(client.answer(challenge)) + b"\r\n")
            lines = self.until_tagged()
        return lines

    def close(self) -> None:
        self.socket.close()


def python_login(
    kerberos: Kerberos, host: str, service: str, user: str, authzid: bytes = b""
) -> bytes:
    """AUTHENTICATE GSSAPI with a python-gssapi ticket for ``service``,
    then SELECT INBOX; the tagged results."""
    client = GSSAPIClient(service, kerberos.ccache[user], authzid)
    imap = IMAP(host, kerberos.server.imap_port)
    try:
        result = imap.authenticate(client)[-1]
        if result.startswith(b"a OK"):
            result += b"".join(imap.command("SELECT INBOX"))
        return result
    finally:
        imap.close()


def imtest(kerberos: Kerberos, user: str, host: str = "localhost") -> str:
    """Cyrus imtest -m GSSAPI with ``user``'s tickets, selecting INBOX."""
    result = subprocess.run(
        [IMTEST, "-m", "GSSAPI", "-p", str(kerberos.server.imap_port), host],
        input=b"a SELECT INBOX\r\na LOGOUT\r\n",
        capture_output=True,
        env=kerberos.env(user),
        timeout=30,
        check=False,
    )
    return (result.stdout + result.stderr).decode(errors="replace")


def test_imtest_login(kerberos: Kerberos) -> None:
    """imtest -m GSSAPI opens alice@company.com and sees her message."""
    out = imtest(kerberos, "alice")
    assert "Authenticated." in out, out
    assert "* 1 EXISTS" in out


def test_pop3test_login(kerberos: Kerberos) -> None:
    """pop3test -m GSSAPI (service pop) opens bob@company.com's one message."""
    result = subprocess.run(
        [POP3TEST, "-m", "GSSAPI", "-p", str(kerberos.server.port), "localhost"],
        input=b"STAT\r\nQUIT\r\n",
        capture_output=True,
        env=kerberos.env("bob"),
        timeout=30,
        check=False,
    )
    out = (result.stdout + result.stderr).decode(errors="replace")
    assert "Authenticated." in out, out
    assert "+OK 1 " in out


def test_curl_login(kerberos: Kerberos) -> None:
    """curl with AUTH=GSSAPI examines alice@company.com's INBOX."""
    result = subprocess.run(
        [
            "curl",
            "-s",
            "--login-options",
            "AUTH=GSSAPI",
            "-u",
            # curl offers GSSAPI only for a user name with a domain.
            "alice@company.com:",
            f"imap://localhost:{kerberos.server.imap_port}/INBOX",
            "-X",
            "EXAMINE INBOX",
        ],
        capture_output=True,
        env=kerberos.env("alice"),
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert b"1 EXISTS" in result.stdout


def test_account_without_setting_refused(kerberos: Kerberos) -> None:
    """carol@client1.com, without UseKerberosPassword, is refused."""
    result = python_login(kerberos, "127.0.0.2", "imap@client1.com", "carol")
    assert result.startswith(b"a NO"), result


def test_key_of_client1_never_opens_company(kerberos: Kerberos) -> None:
    """bob exists only in company.com: a ticket for imap/client1.com
    leads to bob@client1.com, which does not exist."""
    assert python_login(kerberos, "127.0.0.2", "imap@client1.com", "bob").startswith(b"a NO")
    assert python_login(kerberos, "127.0.0.2", "imap@company.com", "bob").startswith(b"a OK")


def test_crafted_keytab_cannot_open_company(kerberos: Kerberos, tmp_path: Path) -> None:
    """A keytab imported into client1.com with company.com's principal
    (exported as it is) opens nothing: a ticket naming company.com is
    accepted with company.com's keys only, and with them removed it fails."""
    crafted = kerberos.kdc.keytab("imap/company.com", tmp_path / "crafted.keytab", keep_old=True)
    admin(kerberos.server.base, "domain", "kerberos", "import", "client1.com", str(crafted))
    base = kerberos.server.base
    saved = (base / "Accounts" / "Settings" / "kerberos.keytab").read_bytes()
    admin(base, "domain", "kerberos", "delete", "company.com", "imap/company.com")
    try:
        time.sleep(SETTLE)
        result = python_login(kerberos, "127.0.0.1", "imap@company.com", "alice")
        assert result.startswith(b"a NO"), result
        result = python_login(kerberos, "127.0.0.2", "imap@company.com", "alice")
        assert result.startswith(b"a NO"), result
    finally:
        crafted_principal = f"imap/company.com@{kerberos.kdc.realm}"
        admin(base, "domain", "kerberos", "delete", "client1.com", crafted_principal)
        keys = tmp_path / "company.keytab"
        keys.write_bytes(saved)
        admin(base, "domain", "kerberos", "import", "company.com", str(keys))


def test_percent_principal_refused(kerberos: Kerberos) -> None:
    """A ticket of the principal bad%name is refused."""
    result = python_login(kerberos, "127.0.0.1", "imap@company.com", "bad%name")
    assert result.startswith(b"a NO"), result


def test_authzid_needs_impersonation_right(kerberos: Kerberos) -> None:
    """alice asking for bob's account without CanImpersonate is refused."""
    result = python_login(kerberos, "127.0.0.1", "imap@company.com", "alice", b"bob@company.com")
    assert result.startswith(b"a NO"), result


def test_rekey_keeps_old_tickets(kerberos: Kerberos, tmp_path: Path) -> None:
    """After a rekey and import of the new kvno, a ticket of the old key
    and one of the new key both log in."""
    old = kerberos.ccache["alice"]
    assert python_login(kerberos, "127.0.0.2", "imap@client1.com", "alice").startswith(b"a OK")
    newer = kerberos.kdc.keytab("imap/client1.com", tmp_path / "new.keytab")
    admin(kerberos.server.base, "domain", "kerberos", "import", "client1.com", str(newer))
    listing = admin(kerberos.server.base, "domain", "kerberos", "list", "client1.com")
    versions = {line.split()[3] for line in listing.splitlines()[1:]}
    assert {"2", "3"} <= versions, listing
    time.sleep(SETTLE)
    # The old ticket is still in alice's cache; a fresh cache gets the new kvno.
    assert python_login(kerberos, "127.0.0.2", "imap@client1.com", "alice").startswith(b"a OK")
    kerberos.kdc.kinit("alice", "pw-alice", tmp_path / "fresh.cc")
    kerberos.ccache["alice"] = tmp_path / "fresh.cc"
    try:
        result = python_login(kerberos, "127.0.0.2", "imap@client1.com", "alice")
        assert result.startswith(b"a OK"), result
    finally:
        kerberos.ccache["alice"] = old


def test_not_advertised_by_default(kerberos: Kerberos) -> None:
    """client1.com has keys but the default LoginMethods: no AUTH=GSSAPI;
    company.com lists GSSAPI and has keys: advertised."""
    imap = IMAP("127.0.0.2", kerberos.server.imap_port)
    try:
        capabilities = b"".join(imap.command("CAPABILITY"))
    finally:
        imap.close()
    assert b"AUTH=GSSAPI" not in capabilities
    imap = IMAP("127.0.0.1", kerberos.server.imap_port)
    try:
        capabilities = b"".join(imap.command("CAPABILITY"))
    finally:
        imap.close()
    assert b"AUTH=GSSAPI" in capabilities


def test_bad_keytab_import_refused(kerberos: Kerberos, tmp_path: Path) -> None:
    """Importing a file that is not a keytab fails on one line and changes nothing."""
    path = kerberos.server.base / "Domains" / "client1.com" / "Settings" / "kerberos.keytab"
    before = path.read_bytes()
    bogus = tmp_path / "bogus.keytab"
    bogus.write_bytes(b"\x05\x02\x00\x00\x00\x10garbage")
    result = communigate(
        kerberos.server.base, "domain", "kerberos", "import", "client1.com", str(bogus)
    )
    assert result.returncode == 1
    assert len(result.stderr.decode().strip().splitlines()) == 1
    assert path.read_bytes() == before
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_fetchmail_gssapi(kerberos: Kerberos, tmp_path: Path) -> None:
    """fetchmail --auth gssapi fetches alice@company.com's message."""
    fetched = run_fetchmail(
        tmp_path,
        f"poll localhost service {kerberos.server.imap_port} proto IMAP auth gssapi\n"
        '  user "alice" there is "root" here\n',
        env=kerberos.env("alice"),
    )
    assert b"Subject: to alice@company.com" in fetched
