"""FTP end to end with curl, lftp and Python's ftplib."""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import secrets
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Server, admin, curl_tls, file_storage

pytestmark = pytest.mark.integration


def curl(server: Server, url: str, user: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "60", url, "--user", user, *extra],
        capture_output=True,
        timeout=90,
        check=False,
    )


def lftp(
    server: Server,
    script: str,
    host: str = "127.0.0.1",
    password: str = "pw",
    tls: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """lftp as the bare name ftpuser; ``tls``: FTPS with PROT P in that TLS
    version only ("1.2", "1.3"), the Main Domain's certificate verified
    (not its name: lftp has no --resolve)."""
    if tls is None:
        settings = "set ftp:ssl-allow no; "
    else:
        settings = (
            "set ftp:ssl-force yes; set ftp:ssl-protect-data yes; "
            f"set ssl:ca-file {server.ca}; set ssl:check-hostname no; "
            f'set ssl:priority "NORMAL:-VERS-ALL:+VERS-TLS{tls}"; '
        )
    commands = (
        f"{settings}set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 20; "
        f"open -u ftpuser,{password} ftp://{host}:{server.ftp_port}; {script}; bye"
    )
    return subprocess.run(
        ["lftp", "-c", commands], capture_output=True, text=True, timeout=120, check=False
    )


#: Where the bare name ftpuser logs in: address, password, domain.
BARE_LOGINS = [
    pytest.param("127.0.0.1", "pw", "company.com", id="company.com"),
    pytest.param("127.0.0.2", "pw1", "client1.com", id="client1.com"),
]
LOGIN_FIELDS = ("host", "password", "domain")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{secrets.token_hex(4)}"


def tree(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root``, by relative path."""
    return {
        str(path.relative_to(root)): sha(path.read_bytes())
        for path in root.rglob("*")
        if path.is_file()
    }


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


@pytest.mark.parametrize(LOGIN_FIELDS, BARE_LOGINS)
@pytest.mark.parametrize("active", ["127.0.0.1", "-"])
def test_curl_active_mode(
    server: Server,
    ftp_account: Path,
    tmp_path: Path,
    host: str,
    password: str,
    domain: str,
    active: str,
) -> None:
    """Active mode (curl -P): upload and download keep the sha256."""
    data = os.urandom(3 * 1024 * 1024)
    name = unique("active") + ".bin"
    (tmp_path / name).write_bytes(data)
    url = f"ftp://{host}:{server.ftp_port}/{name}"
    user = f"ftpuser:{password}"
    upload = curl(server, url, user, "-P", active, "-T", str(tmp_path / name))
    assert upload.returncode == 0, upload.stderr
    assert sha((file_storage(server, domain, "ftpuser") / name).read_bytes()) == sha(data)
    download = curl(server, url, user, "-P", active)
    assert download.returncode == 0, download.stderr
    assert sha(download.stdout) == sha(data)


@pytest.mark.parametrize(LOGIN_FIELDS, BARE_LOGINS)
@pytest.mark.parametrize("tls", ["1.3", "1.2"])
def test_lftp_ftps_empty_directory(
    server: Server, ftp_account: Path, host: str, password: str, domain: str, tls: str
) -> None:
    """lftp over FTPS (PROT P) lists an empty directory."""
    name = unique("empty")
    (file_storage(server, domain, "ftpuser") / name).mkdir(parents=True)
    result = lftp(server, f"cd {name}; ls", host, password, tls)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(LOGIN_FIELDS, BARE_LOGINS)
def test_lftp_ftps_repeated_uploads(
    server: Server, ftp_account: Path, tmp_path: Path, host: str, password: str, domain: str
) -> None:
    """Twenty 2 MB uploads by lftp over FTPS with TLS 1.3 all arrive whole."""
    data = os.urandom(2 * 1024 * 1024)
    source = tmp_path / "two.bin"
    source.write_bytes(data)
    stored = file_storage(server, domain, "ftpuser") / (unique("repeat") + ".bin")
    bad = []
    for attempt in range(20):
        stored.unlink(missing_ok=True)
        result = lftp(server, f"put {source} -o {stored.name}", host, password, "1.3")
        size = stored.stat().st_size if stored.exists() else -1
        if result.returncode != 0 or size != len(data) or sha(stored.read_bytes()) != sha(data):
            bad.append((attempt, result.returncode, size, result.stderr[-120:]))
    assert not bad, f"{len(bad)} of 20 failed (attempt, exit, size, stderr): {bad}"


@pytest.mark.parametrize(LOGIN_FIELDS, BARE_LOGINS)
def test_lftp_ftps_100_mb(
    server: Server, ftp_account: Path, tmp_path: Path, host: str, password: str, domain: str
) -> None:
    """100 MB up and down by lftp over FTPS (TLS 1.3, PROT P) keep the sha256."""
    data = os.urandom(100 * 1024 * 1024)
    source = tmp_path / "hundred.bin"
    source.write_bytes(data)
    name = unique("hundred") + ".bin"
    back = tmp_path / "back.bin"
    result = lftp(server, f"put {source} -o {name}; get {name} -o {back}", host, password, "1.3")
    assert result.returncode == 0, result.stderr
    assert sha((file_storage(server, domain, "ftpuser") / name).read_bytes()) == sha(data)
    assert sha(back.read_bytes()) == sha(data)


@pytest.mark.parametrize(LOGIN_FIELDS, BARE_LOGINS)
def test_lftp_mirror_round_trip(
    server: Server, ftp_account: Path, tmp_path: Path, host: str, password: str, domain: str
) -> None:
    """mirror -R of 200 files in sub-directories, then mirror back: trees equal."""
    local, back = tmp_path / "tree", tmp_path / "back"
    folders = ["", "a", "a/b", "c", "c/d/e"]
    for number in range(200):
        path = local / folders[number % len(folders)] / f"file-{number:03}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(number * 37 % 5000))
    remote = unique("mirror")
    result = lftp(server, f"mirror -R {local} {remote}; mirror {remote} {back}", host, password)
    assert result.returncode == 0, result.stderr
    assert len(tree(local)) == 200
    assert tree(file_storage(server, domain, "ftpuser") / remote) == tree(local)
    assert tree(back) == tree(local)


@pytest.mark.parametrize(LOGIN_FIELDS, BARE_LOGINS)
def test_ftplib_session(
    server: Server, ftp_account: Path, host: str, password: str, domain: str
) -> None:
    """ftplib: mkd, storbinary, retrbinary, nlst, mlsd, rename, delete, rmd."""
    data = os.urandom(300_000)
    folder = unique("ftplib")
    with ftplib.FTP() as ftp:
        ftp.connect(host, server.ftp_port, timeout=20)
        ftp.login("ftpuser", password)
        ftp.mkd(folder)
        ftp.cwd(folder)
        ftp.storbinary("STOR data.bin", io.BytesIO(data))
        chunks: list[bytes] = []
        ftp.retrbinary("RETR data.bin", chunks.append)
        assert sha(b"".join(chunks)) == sha(data)
        assert ftp.nlst() == ["data.bin"]
        facts = dict(ftp.mlsd())
        assert facts["data.bin"]["type"] == "file"
        assert int(facts["data.bin"]["size"]) == len(data)
        ftp.rename("data.bin", "renamed.bin")
        assert ftp.nlst() == ["renamed.bin"]
        ftp.delete("renamed.bin")
        assert ftp.nlst() == []
        ftp.cwd("..")
        ftp.rmd(folder)
    assert not (file_storage(server, domain, "ftpuser") / folder).exists()


@pytest.mark.parametrize(LOGIN_FIELDS, BARE_LOGINS)
def test_ftplib_tls_protected_retr(
    server: Server, ftp_account: Path, host: str, password: str, domain: str
) -> None:
    """ftplib.FTP_TLS with PROT P downloads a file whole."""
    data = os.urandom(1024 * 1024)
    name = unique("tls") + ".bin"
    (file_storage(server, domain, "ftpuser") / name).write_bytes(data)
    context = ssl.create_default_context(cafile=str(server.ca))
    context.check_hostname = False
    with ftplib.FTP_TLS(context=context, timeout=20) as ftp:
        ftp.connect(host, server.ftp_port)
        ftp.login("ftpuser", password)
        ftp.prot_p()
        chunks: list[bytes] = []
        ftp.retrbinary(f"RETR {name}", chunks.append)
    assert sha(b"".join(chunks)) == sha(data)
