"""IMAP end to end: curl, imtest, mbsync, fetchmail, imaplib, LMTP."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Server, admin, curl_tls, fetchmail, marker

pytestmark = pytest.mark.integration
# imaplib does not know RFC 4314's LISTRIGHTS; tell it which states allow it.
imaplib.Commands.setdefault("LISTRIGHTS", ("AUTH", "SELECTED"))

IMTEST = "/usr/lib/cyrus/bin/imtest"
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256")


def imap(server: Server, user: str, password: str, host: str = "127.0.0.1") -> imaplib.IMAP4:
    client = imaplib.IMAP4(host, server.imap_port, timeout=10)
    client.login(user, password)
    return client


def account(server: Server, name: str, *settings: str, password: str = "pw") -> str:
    admin(
        server.base, "account", "create", f"{name}@company.com", "--password", password, *settings
    )
    return name


def lmtp(server: Server, recipients: list[str], message: bytes) -> dict[str, tuple[int, bytes]]:
    client = smtplib.LMTP("127.0.0.1", server.lmtp_port, timeout=10)
    try:
        return client.sendmail("sender@far.example", recipients, message)
    finally:
        client.quit()


def test_curl_imap_imaps_and_starttls(server: Server) -> None:
    """curl reads the marker over imap://, imaps:// and STARTTLS with the CA."""
    for url, extra in (
        (f"imap://127.0.0.1:{server.imap_port}/INBOX;UID=1", ()),
        (f"imaps://company.com:{server.imaps_port}/INBOX;UID=1", ()),
        (f"imap://company.com:{server.imap_port}/INBOX;UID=1", ("--ssl-reqd",)),
    ):
        result = curl_tls(server, url, "--login-options", "AUTH=PLAIN", *extra)
        assert result.returncode == 0, (url, result.stderr)
        assert marker("company.com").encode() in result.stdout


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize(
    ("host", "user", "domain"),
    [("127.0.0.2", "info", "client1.com"), ("127.0.0.1", "info@client2.com", "client2.com")],
)
def test_imtest_mechanisms(
    server: Server, mechanism: str, host: str, user: str, domain: str
) -> None:
    """imtest authenticates with every mechanism into two domains."""
    result = subprocess.run(
        [
            IMTEST,
            "-m",
            mechanism,
            "-a",
            user,
            "-w",
            f"pw-{domain}",
            "-p",
            str(server.imap_port),
            host,
        ],
        input=b"a SELECT INBOX\r\nb LOGOUT\r\n",
        capture_output=True,
        timeout=30,
        check=False,
    )
    out = (result.stdout + result.stderr).decode(errors="replace")
    assert "Authenticated." in out, out
    assert "a OK [READ-WRITE]" in out


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_imtest_wrong_password(server: Server, mechanism: str) -> None:
    """A wrong password fails with every mechanism: the server itself
    answers the login with NO [AUTHENTICATIONFAILED]."""
    result = subprocess.run(
        [
            IMTEST,
            "-m",
            mechanism,
            "-a",
            "info",
            "-w",
            "wrong",
            "-p",
            str(server.imap_port),
            "127.0.0.2",
        ],
        input=b"b LOGOUT\r\n",
        capture_output=True,
        timeout=30,
        check=False,
    )
    out = (result.stdout + result.stderr).decode(errors="replace")
    assert "Authenticated." not in out
    assert "IMAP4rev1 server ready" in out, out
    # imtest sends LOGIN as the LOGIN command (tag L01), others as AUTHENTICATE.
    tag, sent = ("L01", "LOGIN info") if mechanism == "LOGIN" else ("A01", "AUTHENTICATE")
    assert f"C: {tag} {sent}" in out, out
    assert f"S: {tag} NO [AUTHENTICATIONFAILED] incorrect password or account name" in out, out
    assert "Authentication failed." in out, out


def test_mbsync_two_way(server: Server, tmp_path: Path, settle: float) -> None:
    """mbsync pulls a message down and pushes a local one up."""
    account(server, "syncer")
    admin(
        server.base,
        "deliver",
        "syncer@company.com",
        stdin=b"Subject: down\r\n\r\nfrom the server\r\n",
    )
    local = tmp_path / "mail"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(
        f"IMAPAccount a\nHost 127.0.0.1\nPort {server.imap_port}\nUser syncer\nPass pw\n"
        "SSLType None\nAuthMechs PLAIN\n\nIMAPStore remote\nAccount a\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel c\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nExpunge Both\n"
        "SyncState *\n"
    )
    time.sleep(settle)

    def sync() -> None:
        result = subprocess.run(
            ["mbsync", "-c", str(config), "-a"], capture_output=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr.decode()

    sync()
    pulled = list((local / "INBOX").glob("*/*"))
    assert any(b"from the server" in path.read_bytes() for path in pulled)
    (local / "INBOX" / "new" / "1.local").write_bytes(b"Subject: up\r\n\r\nfrom the laptop\r\n")
    time.sleep(1.1)  # mbsync skips a Maildir modified within the last second
    sync()
    client = imap(server, "syncer", "pw")
    client.select("INBOX")
    _, found = client.search(None, "BODY", "laptop")
    assert found[0].split() != []
    client.logout()


def test_fetchmail_imap(server: Server, tmp_path: Path, settle: float) -> None:
    """fetchmail over IMAP retrieves and (without keep) removes."""
    account(server, "fetchimap")
    admin(server.base, "deliver", "fetchimap@company.com", stdin=b"Subject: f\r\n\r\nimap-body\r\n")
    time.sleep(settle)
    assert b"imap-body" in fetchmail(tmp_path, "imap", server.imap_port, "fetchimap", keep=False)
    client = imap(server, "fetchimap", "pw")
    assert client.select("INBOX")[1] == [b"0"]
    client.logout()


def test_idle_sees_lmtp_delivery(server: Server, settle: float) -> None:
    """IDLE reports a message delivered over LMTP within a second."""
    account(server, "idler")
    time.sleep(settle)
    client = imap(server, "idler", "pw")
    client.select("INBOX")
    tag = client._new_tag()
    client.send(tag + b" IDLE\r\n")
    assert client.readline().startswith(b"+")
    started = time.monotonic()
    refused = lmtp(
        server, ["idler@company.com", "ghost@company.com"], b"Subject: lmtp\r\n\r\nlmtp body\r\n"
    )
    assert list(refused) == ["ghost@company.com"]
    client.sock.settimeout(2)
    assert client.readline() == b"* 1 EXISTS\r\n"
    assert time.monotonic() - started < 1.0
    client.send(b"DONE\r\n")
    while not client.readline().startswith(tag):
        pass
    client.logout()


def test_idle_sees_cli_delivery(server: Server, settle: float) -> None:
    """IDLE reports a message that ``communigate deliver`` (another process)
    stored, within a second, and a flag change made by another session."""
    account(server, "cliidler")
    time.sleep(settle)
    client = imap(server, "cliidler", "pw")
    client.select("INBOX")
    tag = client._new_tag()
    client.send(tag + b" IDLE\r\n")
    assert client.readline().startswith(b"+")
    admin(
        server.base,
        "deliver",
        "cliidler@company.com",
        stdin=b"Subject: from the command line\r\n\r\nbody\r\n",
    )
    # Timed from the moment the other process has stored the message.
    delivered = time.monotonic()
    client.sock.settimeout(2)
    assert client.readline() == b"* 1 EXISTS\r\n"
    assert time.monotonic() - delivered < 1.0
    other = imap(server, "cliidler", "pw")
    other.select("INBOX")
    other.store("1", "+FLAGS", "(\\Flagged)")
    while True:
        line = client.readline()
        if b"FETCH" in line:
            break
    assert b"\\Flagged" in line
    other.logout()
    client.send(b"DONE\r\n")
    while not client.readline().startswith(tag):
        pass
    client.logout()


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_half_closed_client_gets_its_answers(server: Server) -> None:
    """LOGIN and LOGOUT pipelined before the client shuts down its sending
    side are both answered, then the server closes."""
    with socket.create_connection(("127.0.0.1", server.imap_port), timeout=10) as sock:
        sock.recv(4096)
        sock.sendall(b"a LOGIN info pw-company.com\r\nb LOGOUT\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = read_until_closed(sock)
    assert b"a OK" in data and b"* BYE" in data and b"b OK LOGOUT completed" in data


def test_client_gone_during_login_check_leaves_no_traceback(server: Server) -> None:
    """A client that resets the connection while its failed login waits
    out the delay leaves no CancelledError in the log."""
    with socket.create_connection(("127.0.0.1", server.imap_port), timeout=10) as sock:
        sock.recv(4096)
        sock.sendall(b"a LOGIN info wrong-password\r\n")
        time.sleep(0.05)
        # SO_LINGER 0: close with a reset, as a client that vanishes.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(0.5)
    text = server.log.read_text(errors="replace")
    assert "CancelledError" not in text and "Traceback" not in text


def test_mailbox_operations(server: Server, settle: float) -> None:
    """APPEND, COPY, MOVE, EXPUNGE, UID SEARCH, SEARCH by SUBJECT/FROM/SINCE,
    partial FETCH of exactly the requested bytes."""
    account(server, "mover")
    time.sleep(settle)
    client = imap(server, "mover", "pw")
    message = (
        b"From: Ann <ann@example.org>\r\nSubject: Quarterly report\r\n\r\n0123456789ABCDEF\r\n"
    )
    assert client.append("INBOX", "(\\Flagged)", None, message)[0] == "OK"
    assert client.append("Nowhere", None, None, b"x")[1][0].startswith(b"[TRYCREATE]")
    client.create("Archive")
    client.select("INBOX")
    assert client.search(None, "SUBJECT", "quarterly")[1] == [b"1"]
    assert client.search(None, "FROM", "ann@example")[1] == [b"1"]
    assert client.search(None, "SINCE", "1-Jan-2000")[1] == [b"1"]
    assert client.search(None, "SUBJECT", "nothing-like-this")[1] == [b""]
    assert client.uid("SEARCH", "FLAGGED")[1] == [b"1"]
    typ, data = client.fetch("1", "(BODY.PEEK[TEXT]<3.5>)")
    assert data[0][1] == b"34567"
    typ, data = client.copy("1", "Archive")
    assert typ == "OK" and b"COPYUID" in data[0]
    typ, data = client._simple_command("MOVE", "1", "Archive")
    assert typ == "OK"
    assert client.select("INBOX")[1] == [b"0"]
    assert client.select("Archive")[1] == [b"2"]
    client.store("1", "+FLAGS", "\\Deleted")
    client.expunge()
    assert client.select("Archive")[1] == [b"1"]
    client.logout()


def test_acl_commands_and_seed_example(server: Server, settle: float) -> None:
    """GETACL/SETACL/DELETEACL/MYRIGHTS/LISTRIGHTS, and the seed's example:
    anyone@ lrs, -john rs, +susan d."""
    for name in ("owner", "john", "susan", "carol"):
        account(server, name)
    admin(server.base, "account", "create", "dave@client1.com", "--password", "pw")
    time.sleep(settle)
    owner = imap(server, "owner", "pw")
    owner.create("Shared")
    owner.append("Shared", None, None, b"Subject: shared\r\n\r\nshared body\r\n")
    for identifier, rights in (("anyone@", "lrs"), ("-john", "rs"), ("+susan", "d")):
        assert owner.setacl("Shared", identifier, rights)[0] == "OK"
    acl = owner.getacl("Shared")[1][0]
    assert b"anyone@ lrs" in acl and b"-john rs" in acl and b"+susan d" in acl
    assert owner.myrights("Shared")[1][0] == b"Shared lrswipcda"
    assert owner._simple_command("LISTRIGHTS", "Shared", "john")[0] == "OK"
    owner.setacl("Shared", "carol", "lr")
    assert owner.deleteacl("Shared", "carol")[0] == "OK"
    assert b"carol" not in owner.getacl("Shared")[1][0]

    john = imap(server, "john", "pw")
    assert b"~owner/Shared" in b"".join(john.list('""', "~owner/*")[1])
    assert john.select("~owner/Shared")[0] == "NO"
    assert john.myrights("~owner/Shared")[1][0] == b"~owner/Shared l"

    susan = imap(server, "susan", "pw")
    assert susan.select("~owner/Shared")[0] == "OK"
    susan.store("1", "+FLAGS", "\\Deleted")
    assert susan.expunge()[0] == "OK"
    assert susan.setacl("~owner/Shared", "susan", "lrswipcda")[0] == "NO"

    owner.append("Shared", None, None, b"Subject: again\r\n\r\nx\r\n")
    carol = imap(server, "carol", "pw")
    assert carol.select("~owner/Shared")[1] == [b"1"]
    assert carol.store("1", "+FLAGS", "\\Deleted")[0] == "NO"

    dave = imap(server, "dave@client1.com", "pw")
    assert dave.list('""', "~owner@company.com/*")[1] == [None]
    assert dave.select("~owner@company.com/Shared")[0] == "NO"
    for client in (owner, john, susan, carol, dave):
        client.logout()


def test_impersonation(server: Server, settle: float) -> None:
    """AUTHENTICATE PLAIN with an authzid works only with CanImpersonate."""
    account(server, "boss")
    account(server, "clerk", password="clerk-pw")
    time.sleep(settle)

    def as_clerk() -> str:
        client = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
        try:
            client.authenticate("PLAIN", lambda _: b"clerk\0boss\0pw")
        except imaplib.IMAP4.error:
            return "refused"
        client.logout()
        return "opened"

    assert as_clerk() == "refused"
    admin(server.base, "rights", "grant", "boss@company.com", "CanImpersonate")
    time.sleep(settle)
    assert as_clerk() == "opened"
    assert "boss@company.com impersonates clerk@company.com" in server.log_text()


def test_secure_method_required(server: Server, settle: float) -> None:
    """LOGIN is refused on a clear link for an account with Secure Method
    Required, and accepted over TLS."""
    account(server, "careful", "RequireAPOP=YES")
    time.sleep(settle)
    client = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        client.login("careful", "pw")
    client.logout()
    tls = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    tls.starttls(_context(server))
    assert tls.login("careful", "pw")[0] == "OK"
    tls.logout()


def _context(server: Server) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server.ca))
    context.check_hostname = False  # connected by address; the CA is still checked
    return context


def read_reply(stream: Any, tag: bytes) -> list[bytes]:
    """Lines up to and including the tagged one."""
    lines = []
    while True:
        line = stream.readline()
        assert line, "connection closed"
        lines.append(line)
        if line.startswith(tag + b" "):
            return lines


def test_bad_input(server: Server) -> None:
    """Unterminated literals, a 10 GB literal, 100 000 parentheses, bad
    sequence sets and binary bytes get BAD/NO and the session stays usable."""
    with socket.create_connection(("127.0.0.1", server.imap_port), timeout=10) as conn:
        stream = conn.makefile("rwb")
        stream.readline()
        probes = [
            (b"a", b"LOGIN info pw-company.com", b"OK"),
            (b"b", b"SELECT INBOX", b"OK"),
            (b"c", b"APPEND INBOX {10000000000}", b"BAD"),
            (b"d", b"SEARCH " + b"(" * 100_000 + b"ALL", b"BAD"),
            (b"e", b"FETCH 1:x FLAGS", b"BAD"),
            (b"f", b"FETCH 0 FLAGS", b"BAD"),
            (b"g", b"SEARCH \x00\xff\xfe\x80 garbage", b"BAD"),
            (b"h", b"UID FETCH 1:* (FLAGS)", b"OK"),
        ]
        for tag, command, status in probes:
            stream.write(tag + b" " + command + b"\r\n")
            stream.flush()
            lines = read_reply(stream, tag)
            assert lines[-1].startswith(tag + b" " + status), (command[:30], lines)
            assert all(b"Traceback" not in line for line in lines)
        stream.write(b"i APPEND INBOX {20}\r\n")
        stream.flush()
        assert stream.readline().startswith(b"+")
        stream.write(b"short")  # and the client goes away: an unterminated literal
        stream.flush()
    with socket.create_connection(("127.0.0.1", server.imap_port), timeout=10) as conn:
        stream = conn.makefile("rwb")
        stream.readline()
        stream.write(b"j NOOP\r\n")
        stream.flush()
        assert stream.readline().startswith(b"j OK")
    assert "Traceback" not in server.log_text()


def test_starttls_injection(server: Server) -> None:
    """A command pipelined after STARTTLS in clear text gets no answer in TLS."""
    raw = socket.create_connection(("127.0.0.1", server.imap_port), timeout=10)
    stream = raw.makefile("rb")
    stream.readline()
    raw.sendall(b"a STARTTLS\r\nb CAPABILITY\r\n")
    assert stream.readline().startswith(b"a OK")
    tls = _context(server).wrap_socket(raw, server_hostname="company.com")
    tls.settimeout(1.5)
    with pytest.raises(TimeoutError):
        tls.recv(100)
    tls.settimeout(10)
    tls.sendall(b"c NOOP\r\n")
    assert tls.recv(100).startswith(b"c OK")
    tls.close()


def test_certificate_chosen_by_sni(server: Server, tmp_path: Path) -> None:
    """A domain's own certificate is served to clients naming it by SNI; the
    Main Domain's is the default."""
    from communigate.store.certificates import self_signed

    cert, key = self_signed("client1.com")
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    admin(
        server.base,
        "domain",
        "certificate",
        "client1.com",
        "--cert",
        str(tmp_path / "c.pem"),
        "--key",
        str(tmp_path / "k.pem"),
    )
    # A running server looks at a domain's files again within half a second.
    time.sleep(0.6)
    for name, ca in (("client1.com", tmp_path / "c.pem"), ("company.com", server.ca)):
        context = ssl.create_default_context(cafile=str(ca))
        with socket.create_connection(("127.0.0.1", server.imaps_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=name) as tls:
                subject = dict(item[0] for item in tls.getpeercert()["subject"])
                assert subject["commonName"] == name
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
