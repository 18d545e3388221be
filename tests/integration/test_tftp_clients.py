"""TFTP end to end: tftp-hpa, curl and a windowsize client."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from communigate.protocols.tftp import packets
from tests.integration import tftpclient
from tests.integration.conftest import Server, admin

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def storage(server: Server) -> Path:
    """A Default Storage account 'devices' with files; tftpuser may write
    to /upload; /secret is private; 'other@client1.com' has a file too."""
    admin(server.base, "account", "create", "devices@company.com", "--password", "x")
    admin(server.base, "account", "create", "tftpuser@company.com", "--password", "x")
    admin(server.base, "account", "create", "other@client1.com", "--password", "x")
    admin(server.base, "server", "settings", "TFTPDefaultStorage=devices")
    admin(server.base, "files", "set", "devices@company.com", "/upload", "tftpuser", "rw")
    admin(server.base, "files", "private", "devices@company.com", "/secret")
    root = server.base / "Accounts" / "devices.macnt" / "account.web"
    for folder in ("cfg", "upload", "secret"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "cfg" / "phone.cfg").write_bytes(os.urandom(100_000))
    (root / "big.bin").write_bytes(os.urandom(10 * 1024 * 1024))
    (root / "secret" / "key.txt").write_text("secret")
    other = server.base / "Domains" / "client1.com" / "other.macnt" / "account.web"
    other.mkdir(parents=True, exist_ok=True)
    (other / "hello.txt").write_text("hello from client1")
    time.sleep(1.1)
    return root


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tftp_hpa(server: Server, *commands: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tftp", "127.0.0.1", str(server.tftp_port), "-m", "binary", "-c", *commands],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_tftp_hpa_get_and_put(server: Server, storage: Path, tmp_path: Path) -> None:
    """tftp-hpa downloads and uploads with equal sha256."""
    result = tftp_hpa(server, "get", "cfg/phone.cfg", "phone.cfg", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sha((tmp_path / "phone.cfg").read_bytes()) == sha(
        (storage / "cfg" / "phone.cfg").read_bytes()
    )
    (tmp_path / "up.bin").write_bytes(os.urandom(300_000))
    result = tftp_hpa(server, "put", "up.bin", "/devices/upload/up.bin", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sha((storage / "upload" / "up.bin").read_bytes()) == sha(
        (tmp_path / "up.bin").read_bytes()
    )


def test_curl_blksize_and_big_file(server: Server, storage: Path, tmp_path: Path) -> None:
    """curl with --tftp-blksize 1468 fetches a 10 MB file intact; the OACK
    confirms the block size."""
    out = tmp_path / "big.bin"
    result = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--tftp-blksize",
            "1468",
            "--max-time",
            "120",
            f"tftp://127.0.0.1:{server.tftp_port}/big.bin",
            "-o",
            str(out),
        ],
        capture_output=True,
        timeout=150,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sha(out.read_bytes()) == sha((storage / "big.bin").read_bytes())
    _, accepted = tftpclient.get(server.tftp_port, "cfg/phone.cfg", {"blksize": "1468"})
    assert accepted["blksize"] == "1468"


def test_names(server: Server, storage: Path) -> None:
    """~name@domain/file, /file and Default Storage names."""
    data, _ = tftpclient.get(server.tftp_port, "~other@client1.com/hello.txt", {})
    assert data == b"hello from client1"
    assert (
        tftpclient.get(server.tftp_port, "/big.bin", {"blksize": "8192"})[0]
        == (storage / "big.bin").read_bytes()
    )
    assert (
        tftpclient.get(server.tftp_port, "/devices/cfg/phone.cfg", {})[0]
        == (storage / "cfg" / "phone.cfg").read_bytes()
    )


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("secret/key.txt", packets.ACCESS_VIOLATION),
        ("../../etc/passwd", packets.ACCESS_VIOLATION),
        ("/etc/passwd", packets.FILE_NOT_FOUND),
        ("no-such-file", packets.FILE_NOT_FOUND),
    ],
)
def test_errors(server: Server, storage: Path, name: str, code: int) -> None:
    """Private, escaping, foreign and missing names get the right error code."""
    with pytest.raises(tftpclient.TFTPError) as raised:
        tftpclient.get(server.tftp_port, name, {})
    assert raised.value.code == code


def test_account_names_tell_nothing(server: Server, storage: Path) -> None:
    """~nosuch/x, ~other@client1.com/x (missing), ~devices/secret/key.txt
    (private) and /nosuch/dir/x are all answered ERROR 1 "file not found"."""
    answers = set()
    for name in ("~nosuch/x", "~other@client1.com/x", "~devices/secret/key.txt", "/nosuch/d/x"):
        with pytest.raises(tftpclient.TFTPError) as raised:
            tftpclient.get(server.tftp_port, name, {})
        answers.add((raised.value.code, raised.value.message))
    assert answers == {(packets.FILE_NOT_FOUND, "file not found")}


def test_default_storage_full_name(server: Server, storage: Path) -> None:
    """TFTPDefaultStorage=other@client1.com serves that account's files
    (a full name stays a full name); the old value is put back after."""
    admin(server.base, "server", "settings", "TFTPDefaultStorage=other@client1.com")
    time.sleep(1.1)
    try:
        data, _ = tftpclient.get(server.tftp_port, "hello.txt", {})
        assert data == b"hello from client1"
    finally:
        admin(server.base, "server", "settings", "TFTPDefaultStorage=devices")
        time.sleep(1.1)


def test_upload_refused_without_rights(server: Server, storage: Path, tmp_path: Path) -> None:
    """tftpuser may not write where it was not granted w."""
    (tmp_path / "x.bin").write_bytes(b"x")
    result = tftp_hpa(server, "put", "x.bin", "cfg/x.bin", cwd=tmp_path)
    assert "Error code 2" in result.stdout + result.stderr
    assert not (storage / "cfg" / "x.bin").exists()


def test_windowsize_16(server: Server, storage: Path) -> None:
    """A windowsize 16 client receives the 10 MB file intact."""
    data, accepted = tftpclient.get(
        server.tftp_port, "big.bin", {"blksize": "1468", "windowsize": "16"}
    )
    assert accepted["windowsize"] == "16"
    assert sha(data) == sha((storage / "big.bin").read_bytes())
