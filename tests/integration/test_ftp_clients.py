"""FTP end to end with curl and lftp."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Server, admin, curl_tls

pytestmark = pytest.mark.integration


def curl(server: Server, url: str, user: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "60", url, "--user", user, *extra],
        capture_output=True,
        timeout=90,
        check=False,
    )


def lftp(server: Server, script: str, host: str = "127.0.0.1") -> subprocess.CompletedProcess[str]:
    commands = (
        "set ftp:ssl-allow no; set cmd:fail-exit yes; set net:max-retries 1; "
        f"open -u ftpuser,pw ftp://{host}:{server.ftp_port}; {script}; bye"
    )
    return subprocess.run(
        ["lftp", "-c", commands], capture_output=True, text=True, timeout=90, check=False
    )


@pytest.fixture(scope="module")
def ftp_account(server: Server) -> Path:
    """ftpuser@company.com (password pw) and other@client1.com with a file."""
    admin(server.base, "account", "create", "ftpuser@company.com", "--password", "pw")
    admin(server.base, "account", "create", "ftpuser@client1.com", "--password", "pw1")
    admin(server.base, "account", "create", "owner@client1.com", "--password", "x")
    storage = server.base / "Domains" / "client1.com" / "owner.macnt" / "account.web"
    storage.mkdir(parents=True, exist_ok=True)
    (storage / "shared.txt").write_text("from owner")
    time.sleep(1.1)
    return server.base / "Accounts" / "ftpuser.macnt" / "account.web"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("host", "user", "password", "expected"),
    [
        ("127.0.0.1", "ftpuser@company.com", "pw", "company.com"),
        ("127.0.0.1", "ftpuser%client1.com", "pw1", "client1.com"),
        ("127.0.0.2", "ftpuser", "pw1", "client1.com"),
        ("127.0.0.1", "ftpuser", "pw", "company.com"),
    ],
)
def test_logins(
    server: Server, ftp_account: Path, host: str, user: str, password: str, expected: str
) -> None:
    """user@domain, user%domain and a bare name on the domain's address."""
    result = curl(server, f"ftp://{host}:{server.ftp_port}/", f"{user}:{password}")
    assert result.returncode == 0, result.stderr
    assert f"as ftpuser@{expected}" in server.log_text().split("ftp USER login")[-1]


def test_wrong_password(server: Server, ftp_account: Path) -> None:
    """A wrong password is refused."""
    result = curl(server, f"ftp://127.0.0.1:{server.ftp_port}/", "ftpuser:wrong")
    assert result.returncode == 67


def test_store_retrieve_resume_list(server: Server, ftp_account: Path, tmp_path: Path) -> None:
    """STOR then RETR of 10 MB with equal sha256 (EPSV and PASV), REST
    resume, LIST and MLSD."""
    data = os.urandom(10 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(data)
    url = f"ftp://127.0.0.1:{server.ftp_port}/big.bin"
    assert curl(server, url, "ftpuser:pw", "-T", str(tmp_path / "big.bin")).returncode == 0
    assert sha((ftp_account / "big.bin").read_bytes()) == sha(data)
    got = curl(server, url, "ftpuser:pw")
    assert got.returncode == 0 and sha(got.stdout) == sha(data)
    got = curl(server, url, "ftpuser:pw", "--disable-epsv")
    assert got.returncode == 0 and sha(got.stdout) == sha(data)
    (tmp_path / "part.bin").write_bytes(data[:4_000_000])
    resumed = curl(server, url, "ftpuser:pw", "-C", "-", "-o", str(tmp_path / "part.bin"))
    assert resumed.returncode == 0
    assert sha((tmp_path / "part.bin").read_bytes()) == sha(data)
    listing = curl(server, f"ftp://127.0.0.1:{server.ftp_port}/", "ftpuser:pw")
    assert b"big.bin" in listing.stdout
    mlsd = curl(server, f"ftp://127.0.0.1:{server.ftp_port}/", "ftpuser:pw", "-X", "MLSD")
    assert b"type=file;size=10485760;" in mlsd.stdout and b" big.bin" in mlsd.stdout


def test_lftp_directories_and_unicode(server: Server, ftp_account: Path, tmp_path: Path) -> None:
    """mkdir, rename, delete; a name with non-ASCII letters both ways."""
    (tmp_path / "local.txt").write_text("grüße")
    result = lftp(
        server,
        f"mkdir docs; cd docs; put {tmp_path / 'local.txt'} -o größe.txt; "
        f"get größe.txt -o {tmp_path / 'back.txt'}; mv größe.txt renamed.txt; "
        "cls -1 > /dev/null",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "back.txt").read_text() == "grüße"
    assert (ftp_account / "docs" / "renamed.txt").read_text() == "grüße"
    result = lftp(server, "cd docs; rm renamed.txt; cd ..; rmdir docs")
    assert result.returncode == 0, result.stderr
    assert not (ftp_account / "docs").exists()


def test_ftps_with_ca(server: Server, ftp_account: Path) -> None:
    """Explicit FTPS (AUTH TLS, PROT P) with the certificate checked."""
    (ftp_account / "tls.txt").write_text("over tls")
    result = curl_tls(
        server, f"ftp://company.com:{server.ftp_port}/tls.txt", "--ssl-reqd", "--user", "ftpuser:pw"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"over tls"


def test_other_account_only_when_granted(server: Server, ftp_account: Path) -> None:
    """~owner@client1.com/ is readable only after a grant."""
    url = f"ftp://127.0.0.1:{server.ftp_port}/~owner@client1.com/shared.txt"
    assert curl(server, url, "ftpuser:pw").returncode != 0
    admin(server.base, "files", "set", "owner@client1.com", "/", "ftpuser@company.com", "r")
    result = curl(server, url, "ftpuser:pw")
    assert result.returncode == 0 and result.stdout == b"from owner"
    upload = curl(server, url, "ftpuser:pw", "-T", "/etc/hostname")
    assert upload.returncode != 0


def test_port_to_other_address_refused(server: Server, ftp_account: Path) -> None:
    """PORT and EPRT to another host get 504 (no FTP bounce)."""
    with socket.create_connection(("127.0.0.1", server.ftp_port), timeout=10) as conn:
        stream = conn.makefile("rwb")
        stream.readline()
        for line in (b"USER ftpuser", b"PASS pw"):
            stream.write(line + b"\r\n")
            stream.flush()
            stream.readline()
        for line in (b"PORT 192,0,2,7,4,1", b"EPRT |1|192.0.2.7|1025|"):
            stream.write(line + b"\r\n")
            stream.flush()
            assert stream.readline().startswith(b"504 ")


def test_secure_method_required(server: Server, ftp_account: Path) -> None:
    """USER/PASS is refused on a clear control connection for an account
    with Secure Method Required, and accepted after AUTH TLS."""
    admin(
        server.base,
        "account",
        "create",
        "strict@company.com",
        "--password",
        "pw",
        "RequireAPOP=YES",
    )
    time.sleep(1.1)
    url = f"ftp://company.com:{server.ftp_port}/"
    assert curl(server, f"ftp://127.0.0.1:{server.ftp_port}/", "strict:pw").returncode == 67
    result = curl_tls(server, url, "--ssl-reqd", "--user", "strict:pw")
    assert result.returncode == 0, result.stderr
