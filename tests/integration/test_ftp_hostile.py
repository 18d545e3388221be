"""FTP against hostile and careless clients: raw sockets and ftplib.

Each test drives the control connection byte by byte (pipelined commands,
resets with ``SO_LINGER`` 0, stray arguments, foreign data connections) and
checks the reply codes the FTP server must give (RFC 959, RFC 2228, RFC
2428, RFC 4217, RFC 7151), that File Storage is left consistent, and that
no traceback reaches the server log.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.integration.conftest import (
    Server,
    admin,
    curl_tls,
    file_storage,
    plan_server,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.integration

#: Seconds any single socket operation may take.
TIMEOUT = 10.0


class Reply(NamedTuple):
    """One FTP reply: its code and every line of it, as sent."""

    code: int
    text: bytes


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (relative names; empty if it is absent)."""
    if not folder.is_dir():
        return []
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def tls_context(server: Server) -> ssl.SSLContext:
    """Verifies the Main Domain's certificate, whatever address was dialled."""
    context = ssl.create_default_context(cafile=str(server.ca))
    context.check_hostname = False
    return context


def read_to_end(sock: socket.socket) -> bytes:
    """Everything until the peer closes."""
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


class Control:
    """An FTP control connection that writes exactly the bytes it is given."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.sock = socket.create_connection((host, port), TIMEOUT)
        self.buffer = b""
        self.greeting = self.reply()

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Write ``data`` as it is, in one go."""
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"control connection closed; unparsed {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def reply(self) -> Reply:
        """The next reply, multi-line ones whole (RFC 959 §4.2)."""
        lines = [self._line()]
        if lines[0][3:4] == b"-":
            end = lines[0][:3] + b" "
            while not lines[-1].startswith(end):
                lines.append(self._line())
        return Reply(int(lines[0][:3]), b"\r\n".join(lines))

    def command(self, line: str | bytes) -> Reply:
        """Send one command line; its (first) reply."""
        raw = line.encode() if isinstance(line, str) else line
        self.send(raw + b"\r\n")
        return self.reply()

    def login(self, user: str = "ftpuser", password: str = "pw") -> None:
        """USER and PASS, which must succeed."""
        assert self.command(f"USER {user}").code == 331
        reply = self.command(f"PASS {password}")
        assert reply.code == 230, reply

    def epsv(self, receive_buffer: int = 0) -> socket.socket:
        """A connected passive data socket (RFC 2428 EPSV); a non-zero
        ``receive_buffer`` is its SO_RCVBUF, set before connecting."""
        reply = self.command("EPSV")
        assert reply.code == 229, reply
        found = re.search(rb"\(\|\|\|(\d+)\|\)", reply.text)
        assert found, reply
        data = socket.socket()
        data.settimeout(TIMEOUT)
        if receive_buffer:
            data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        data.connect((self.host, int(found.group(1))))
        return data

    def pasv_port(self) -> int:
        """The port of a PASV reply."""
        reply = self.command("PASV")
        assert reply.code == 227, reply
        found = re.search(rb"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", reply.text)
        assert found, reply
        return int(found.group(5)) * 256 + int(found.group(6))

    def starttls(self, server: Server) -> None:
        """TLS on the control connection after a 234 reply."""
        assert self.buffer == b"", self.buffer
        self.sock = tls_context(server).wrap_socket(self.sock, server_hostname="company.com")


class LogMark:
    """The end of the server log now; what was logged after it."""

    def __init__(self, server: Server) -> None:
        self.log = server.log
        self.offset = server.log.stat().st_size

    def since(self) -> str:
        with self.log.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")

    def assert_clean(self) -> None:
        """No traceback and no unhandled error logged since the mark."""
        time.sleep(0.3)
        text = self.since()
        for word in ("Traceback", "Unhandled Error"):
            at = text.find(word)
            assert at < 0, text[max(0, at - 300) : at + 700]


def sane(reply: Reply) -> Reply:
    """The reply, after checking it is not an internal error."""
    assert b"internal server error" not in reply.text.lower(), reply
    return reply


@pytest.fixture(scope="module")
def accounts(server: Server, ftp_account: Path) -> Path:
    """Besides ftpuser: keeper@company.com (grants nothing), quota@company.com
    (MaxWebSize=1M), lister@company.com (known files); ftpuser's storage."""
    admin(server.base, "account", "create", "keeper@company.com", "--password", "k")
    admin(server.base, "account", "create", "quota@company.com", "--password", "q")
    admin(server.base, "account", "settings", "quota@company.com", "MaxWebSize=1M")
    admin(server.base, "account", "create", "lister@company.com", "--password", "l")
    time.sleep(1.1)
    return ftp_account


@pytest.fixture
def folder(accounts: Path) -> Path:
    """A fresh directory in ftpuser@company.com's storage; its name is the
    path to give the server."""
    path = accounts / f"t-{secrets.token_hex(4)}"
    path.mkdir(parents=True)
    return path


# -- 1. STARTTLS command injection ---------------------------------------------


def test_auth_tls_discards_pipelined_commands(server: Server, accounts: Path) -> None:
    """USER/PASS sent with AUTH TLS in one write get no reply inside TLS; PWD gets 530."""
    with Control(server.ftp_port) as control:
        control.send(b"AUTH TLS\r\nUSER ftpuser\r\nPASS pw\r\n")
        assert control.reply().code == 234
        control.starttls(server)
        control.sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            leaked = control.sock.recv(1 << 16)
            pytest.fail(f"server answered discarded commands: {leaked!r}")
        control.sock.settimeout(TIMEOUT)
        assert control.command("PWD").code == 530


# -- 2, 3. Connections reset during STOR ---------------------------------------


@pytest.mark.parametrize("existed", [True, False], ids=["replace", "new"])
def test_data_reset_mid_stor(server: Server, folder: Path, existed: bool) -> None:
    """A data connection reset mid-STOR gets 426 and leaves the old file (or none)."""
    target = folder / "upload.bin"
    if existed:
        target.write_bytes(b"old content")
    with Control(server.ftp_port) as control:
        control.login()
        data = control.epsv()
        assert control.command(f"STOR {folder.name}/upload.bin").code in (125, 150)
        data.sendall(os.urandom(80 * 1024))
        reset(data)
        assert control.reply().code == 426
        time.sleep(0.3)
    assert files_under(folder) == (["upload.bin"] if existed else [])
    if existed:
        assert target.read_bytes() == b"old content"


@pytest.mark.parametrize("existed", [True, False], ids=["replace", "new"])
def test_control_reset_mid_stor(server: Server, folder: Path, existed: bool) -> None:
    """A control connection reset mid-STOR leaves the old file (or none)."""
    target = folder / "upload.bin"
    if existed:
        target.write_bytes(b"old content")
    control = Control(server.ftp_port)
    control.login()
    data = control.epsv()
    assert control.command(f"STOR {folder.name}/upload.bin").code in (125, 150)
    data.sendall(os.urandom(80 * 1024))
    reset(control.sock)
    time.sleep(0.1)
    data.close()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert files_under(folder) == (["upload.bin"] if existed else [])
        if existed:
            assert target.read_bytes() == b"old content"
        time.sleep(0.1)


# -- 4. kill -9 during STOR ----------------------------------------------------


def own_server(root: Path) -> Server:
    """A second server on its own base under ``root`` (not started) with
    one account, ftpuser@company.com (password pw)."""
    base = root / "base"
    admin(base, "init", "--main-domain", "company.com", "--postmaster-password", "pm")
    admin(base, "account", "create", "ftpuser@company.com", "--password", "pw")
    return plan_server(base, root / "server.log")


def test_kill_during_stor_then_restart(tmp_path: Path) -> None:
    """SIGKILL mid-STOR leaves File Storage clean; a restart empties uploads.tmp."""
    own = own_server(tmp_path)
    account = file_storage(own, "company.com", "ftpuser").parent
    process = start_server(own)
    try:
        with Control(own.ftp_port) as control:
            control.login()
            data = control.epsv()
            assert control.command("STOR partial.bin").code in (125, 150)
            for _ in range(10):
                data.sendall(os.urandom(64 * 1024))
                time.sleep(0.05)
            process.kill()
            process.wait(timeout=TIMEOUT)
            data.close()
        assert files_under(account / "account.web") == []
        process = start_server(own)
        uploads = account / "uploads.tmp"
        deadline = time.monotonic() + 2
        while uploads.exists() and any(uploads.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not uploads.exists() or not any(uploads.iterdir())
        with Control(own.ftp_port) as control:
            control.login()
    finally:
        stop_server(process)


# -- 5. Many TLS sessions ------------------------------------------------------


def close_wait(server: Server) -> set[str]:
    """``ss`` lines of CLOSE-WAIT sockets on the FTP ports or of the server."""
    out = subprocess.run(
        ["ss", "-Htanp"], capture_output=True, text=True, timeout=TIMEOUT, check=True
    ).stdout
    ports = (f":{server.ftp_port} ", f":{server.ftps_port} ")
    return {
        line
        for line in out.splitlines()
        if line.startswith("CLOSE-WAIT")
        and (any(port in line for port in ports) or f"pid={server.pid}," in line)
    }


def test_hundred_tls_sessions(tmp_path: Path) -> None:
    """100 FTPS sessions (explicit, implicit) succeed and leave no CLOSE-WAIT."""
    # A server of its own: leaked sessions would use up the shared server's
    # connections per address (MaxPerAddress) and fail every later test.
    own = own_server(tmp_path)
    process = start_server(own)
    try:
        before = close_wait(own)
        explicit = f"ftp://company.com:{own.ftp_port}/"
        implicit = f"ftps://company.com:{own.ftps_port}/"
        failures = []
        for url, extra in [(explicit, ("--ssl-reqd",))] * 50 + [(implicit, ())] * 50:
            result = curl_tls(own, url, *extra, "--user", "ftpuser:pw")
            if result.returncode != 0:
                failures.append((url, result.returncode, result.stderr[-200:]))
        assert failures == []
        deadline = time.monotonic() + 3
        while (left := close_wait(own) - before) and time.monotonic() < deadline:
            time.sleep(0.2)
        names = {str(own.ftp_port): "ftp", str(own.ftps_port): "ftps"}
        local_ports = (line.split()[3].rpartition(":")[2] for line in left)
        where = Counter(names.get(port, "data") for port in local_ports)
        assert not left, f"sockets left in CLOSE-WAIT, by listener: {dict(where)}"
        result = curl_tls(own, implicit, "--user", "ftpuser:pw")
        assert result.returncode == 0, result.stderr
    finally:
        stop_server(process)


# -- 6. Quota ------------------------------------------------------------------


def test_quota_exceeded(server: Server, accounts: Path) -> None:
    """2 MB into a 1 MB storage gets 552 within 5 s and leaves nothing behind."""
    quota_storage = file_storage(server, "company.com", "quota")
    with Control(server.ftp_port) as control:
        control.login("quota", "q")
        data = control.epsv()
        assert control.command("STOR big.bin").code in (125, 150)

        def upload() -> None:
            try:
                data.sendall(os.urandom(2 * 1024 * 1024))
            except OSError:
                pass
            data.close()

        sender = threading.Thread(target=upload, daemon=True)
        started = time.monotonic()
        sender.start()
        control.sock.settimeout(5)
        assert control.reply().code == 552
        assert time.monotonic() - started < 5
        control.sock.settimeout(TIMEOUT)
        sender.join(TIMEOUT)
        time.sleep(0.3)
        assert files_under(quota_storage) == []
        assert control.command("NOOP").code == 200


# -- 7. Bare NLST ----------------------------------------------------------------


def test_bare_nlst(server: Server, accounts: Path) -> None:
    """curl --list-only (a bare NLST) lists the root's names, one a line."""
    names = {"alpha.txt", "beta.bin", "with space.txt", "größe.txt"}
    root = file_storage(server, "company.com", "lister")
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_text(name)
    result = subprocess.run(
        [
            *("curl", "--silent", "--show-error", "--max-time", "20", "--list-only"),
            *(f"ftp://127.0.0.1:{server.ftp_port}/", "--user", "lister:l"),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.decode().splitlines()) == names


# -- 8. RFC 7151 HOST ------------------------------------------------------------


def test_host_selects_domain(server: Server, accounts: Path) -> None:
    """HOST client1.com (220) on 127.0.0.1 makes a bare name log in to client1.com."""
    only = file_storage(server, "client1.com", "ftpuser") / f"host-{secrets.token_hex(4)}"
    only.mkdir(parents=True)
    with Control(server.ftp_port) as control:
        assert control.command("HOST client1.com").code == 220
        control.login("ftpuser", "pw1")
        assert control.command(f"CWD {only.name}").code == 250


def test_host_unknown_domain(server: Server, accounts: Path) -> None:
    """HOST with a domain the server does not serve gets a 5xx reply."""
    with Control(server.ftp_port) as control:
        reply = sane(control.command("HOST nosuch.example"))
    # 500/502: HOST unknown to the server; 530: refused for want of a login,
    # which HOST by definition precedes (RFC 7151 §3).
    assert 500 <= reply.code < 600 and reply.code not in (500, 502, 530), reply


def test_host_after_login(server: Server, accounts: Path) -> None:
    """HOST after login gets 503."""
    with Control(server.ftp_port) as control:
        control.login()
        assert control.command("HOST client1.com").code == 503


# -- 9. Passive port stolen from another address ---------------------------------


def test_passive_port_foreign_address(server: Server, folder: Path) -> None:
    """A passive port drops another address's connection and serves the client's."""
    content = os.urandom(300_000)
    (folder / "f.bin").write_bytes(content)
    with Control(server.ftp_port) as control:
        control.login()
        port = control.pasv_port()
        foreign = socket.socket()
        foreign.settimeout(5)
        foreign.bind(("127.0.0.5", 0))
        foreign.connect(("127.0.0.1", port))
        try:
            assert foreign.recv(1) == b"", "the foreign connection got data"
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail("the server left the foreign connection open")
        finally:
            foreign.close()
        with socket.create_connection(("127.0.0.1", port), TIMEOUT) as data:
            assert control.command(f"RETR {folder.name}/f.bin").code in (125, 150)
            assert read_to_end(data) == content
        assert control.reply().code == 226


# -- 10. Odd input ---------------------------------------------------------------


def test_rnto_without_rnfr(server: Server, accounts: Path) -> None:
    """RNTO without RNFR gets 503."""
    mark = LogMark(server)
    with Control(server.ftp_port) as control:
        control.login()
        assert sane(control.command("RNTO somewhere")).code == 503
    mark.assert_clean()


@pytest.mark.parametrize("verb", ["FEAT", "SYST", "PWD", "PASV", "NOOP", "QUIT", "CDUP"])
def test_stray_argument(server: Server, accounts: Path, verb: str) -> None:
    """A command that takes no argument gets 501 when given one."""
    mark = LogMark(server)
    with Control(server.ftp_port) as control:
        control.login()
        assert sane(control.command(f"{verb} stray")).code == 501
        assert control.command("NOOP").code == 200
    mark.assert_clean()


def test_rmd_root(server: Server, accounts: Path) -> None:
    """RMD / gets 550."""
    mark = LogMark(server)
    with Control(server.ftp_port) as control:
        control.login()
        assert sane(control.command("RMD /")).code == 550
    mark.assert_clean()


def test_pipelined_failed_login(server: Server, accounts: Path) -> None:
    """USER, PASS, PASS in one write get 331, 530, 503 in that order."""
    mark = LogMark(server)
    with Control(server.ftp_port) as control:
        control.send(b"USER a\r\nPASS b\r\nPASS c\r\n")
        codes = [sane(control.reply()).code for _ in range(3)]
    assert codes == [331, 530, 503]
    mark.assert_clean()


def test_disconnect_mid_retr(server: Server, folder: Path) -> None:
    """A client leaving mid-RETR logs no traceback; other sessions keep working."""
    (folder / "ten.bin").write_bytes(os.urandom(10 * 1024 * 1024))
    mark = LogMark(server)
    control = Control(server.ftp_port)
    control.login()
    data = control.epsv()
    assert control.command(f"RETR {folder.name}/ten.bin").code in (125, 150)
    data.recv(1 << 16)
    data.close()
    control.sock.close()
    time.sleep(0.5)
    with Control(server.ftp_port) as other:
        other.login()
        assert other.command("NOOP").code == 200
    mark.assert_clean()


def test_unknown_command(server: Server, accounts: Path) -> None:
    """An unknown command gets 500."""
    mark = LogMark(server)
    with Control(server.ftp_port) as control:
        control.login()
        assert sane(control.command("XYZZY now")).code == 500
    mark.assert_clean()


def test_long_line(server: Server, accounts: Path) -> None:
    """A 10,000-byte line gets 500 and the session goes on."""
    mark = LogMark(server)
    with Control(server.ftp_port) as control:
        control.login()
        assert sane(control.command(b"X" * 9998)).code == 500
        assert control.command("NOOP").code == 200
    mark.assert_clean()


# -- 11. Account harvesting ------------------------------------------------------


def test_cwd_harvesting(server: Server, accounts: Path) -> None:
    """CWD ~missing and CWD ~account-granting-nothing get the same 550, byte for byte."""
    with Control(server.ftp_port) as control:
        control.login()
        missing = control.command("CWD ~nosuch")
        closed = control.command("CWD ~keeper")
    assert missing.code == 550
    assert missing.text == closed.text


def test_retr_harvesting(server: Server, accounts: Path) -> None:
    """RETR under ~missing and ~account-granting-nothing get the same 550 reply."""
    replies = []
    with Control(server.ftp_port) as control:
        control.login()
        for path in ("~nosuch/x", "~keeper/x"):
            with control.epsv():
                replies.append(control.command(f"RETR {path}"))
    assert replies[0].code == 550
    assert replies[0].text == replies[1].text


# -- 12. ABOR --------------------------------------------------------------------


@pytest.mark.parametrize("synch", [False, True], ids=["plain", "telnet-synch"])
def test_abor_during_retr(server: Server, folder: Path, synch: bool) -> None:
    """ABOR mid-RETR gets 426 then 226 (225/226 if it had ended); the session goes on."""
    (folder / "large.bin").write_bytes(os.urandom(32 * 1024 * 1024))
    with Control(server.ftp_port) as control:
        control.login()
        data = control.epsv(receive_buffer=64 * 1024)
        assert control.command(f"RETR {folder.name}/large.bin").code in (125, 150)
        data.recv(1 << 16)
        control.sock.settimeout(5)
        if synch:
            # RFC 959 §4.1.3 as lftp sends it: the first IAC as TCP urgent
            # data, then IP, IAC, DM, then the command.
            control.sock.send(b"\xff", socket.MSG_OOB)
            control.send(b"\xf4\xff\xf2")
        first = control.command("ABOR")
        if first.code == 426:
            assert control.reply().code == 226
        else:
            assert first.code in (225, 226), first
        data.close()
        reply = control.command("NOOP")
        if reply.code in (225, 226):
            reply = control.reply()
        assert reply.code == 200


# -- 13. EPSV ALL, CCC, STAT, HELP -----------------------------------------------


def test_epsv_all(server: Server, accounts: Path) -> None:
    """After EPSV ALL (200) PASV and PORT are refused and EPSV works."""
    with Control(server.ftp_port) as control:
        control.login()
        assert control.command("EPSV ALL").code == 200
        assert 500 <= sane(control.command("PASV")).code < 600
        assert 500 <= sane(control.command("PORT 127,0,0,1,200,10")).code < 600
        control.epsv().close()


def test_ccc_refused(server: Server, accounts: Path) -> None:
    """CCC on a TLS control connection gets 534: protection stays on."""
    with Control(server.ftp_port) as control:
        assert control.command("AUTH TLS").code == 234
        control.starttls(server)
        control.login()
        assert sane(control.command("CCC")).code == 534
        assert control.command("NOOP").code == 200


def test_stat_help_site_help(server: Server, accounts: Path) -> None:
    """STAT gets a multi-line 211, HELP and SITE HELP get 214."""
    with Control(server.ftp_port) as control:
        control.login()
        status = control.command("STAT")
        assert status.code == 211 and status.text.startswith(b"211-"), status
        assert control.command("HELP").code == 214
        assert control.command("SITE HELP").code == 214
