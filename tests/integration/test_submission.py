"""SMTP submission end to end: swaks, curl and smtplib against the real
server (STARTTLS on --submission, implicit TLS on --smtps), the message read
back over IMAP, and remote mail through the durable queue to an aiosmtpd
smart host — also across a smart host outage and a kill -9 of the server."""

from __future__ import annotations

import email
import imaplib
import signal
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    admin,
    communigate,
    free_port,
    launch_server,
    wait_for_port,
)

pytestmark = pytest.mark.integration

SWAKS_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5")
MSMTP_MECHANISMS = ("plain", "login", "cram-md5", "digest-md5", "scram-sha-1", "scram-sha-256")


@dataclass
class Submission:
    """A running server with submission, smtps and IMAP listeners."""

    base: Path
    log: Path
    submission: int
    smtps: int
    imap: int
    smart_port: int
    process: Any = None

    @property
    def ca(self) -> Path:
        return self.base / "Accounts" / "Settings" / "certificate.pem"

    def start(self) -> None:
        self.process = launch_server(
            self.base,
            self.log,
            f"--submission=tcp:{self.submission}:interface=127.0.0.1",
            f"--smtps=tcp:{self.smtps}:interface=127.0.0.1",
            f"--imap4=tcp:{self.imap}:interface=127.0.0.1",
        )
        for port in (self.submission, self.smtps, self.imap):
            wait_for_port("127.0.0.1", port, self.process, self.log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Submission]:
    """company.com with sender@ (alias me@) and reader@; the smart host is
    127.0.0.1 on a port the tests start aiosmtpd on."""
    root = tmp_path_factory.mktemp("submission")
    base = root / "base"
    admin(base, "init", "--main-domain", "company.com", "--postmaster-password", "pm")
    admin(base, "server", "settings", "FailedLoginDelay=0.2s")
    methods = "PLAIN,LOGIN,CRAM-MD5,DIGEST-MD5,SCRAM-SHA-1,SCRAM-SHA-256"
    admin(base, "domain", "settings", "company.com", f"LoginMethods=({methods})")
    admin(base, "account", "create", "sender@company.com", "--password", "pw-s")
    admin(base, "account", "create", "reader@company.com", "--password", "pw-r")
    admin(base, "alias", "add", "me@company.com", "sender")
    smart_port = free_port()
    admin(base, "server", "settings", f"SubmitRelayHost=127.0.0.1:{smart_port}")
    found = Submission(base, root / "server.log", free_port(), free_port(), free_port(), smart_port)
    found.start()
    try:
        yield found
    finally:
        found.stop()
    text = found.log.read_text(errors="replace")
    assert "Traceback" not in text
    assert "Unhandled Error" not in text


@dataclass
class SmartHost:
    """An aiosmtpd server on loopback, collecting what it receives."""

    port: int
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    controller: Any = None
    #: An SSL context: offer STARTTLS and require it before MAIL.
    tls: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK queued"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        if self.tls is not None:
            self.controller = Controller(
                self,
                hostname="127.0.0.1",
                port=self.port,
                tls_context=self.tls,
                require_starttls=True,
            )
        else:
            self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def wait(self, count: int, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.received) >= count, self.received


def swaks(server: Submission, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "swaks",
            "--server",
            "127.0.0.1",
            "--port",
            str(server.submission),
            "--helo",
            "client.example",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def imap_messages(server: Submission, user: str, password: str) -> list[bytes]:
    client = imaplib.IMAP4("127.0.0.1", server.imap, timeout=10)
    try:
        client.login(user, password)
        client.select("INBOX")
        _, data = client.search(None, "ALL")
        found = []
        for number in data[0].split():
            _, parts = client.fetch(number, "(RFC822)")
            found.append(parts[0][1])  # type: ignore[index]
        return found
    finally:
        client.logout()


def subject_in(messages: list[bytes], subject: str) -> email.message.Message:
    for raw in messages:
        message = email.message_from_bytes(raw)
        if message["Subject"] == subject:
            return message
    raise AssertionError(f"no message {subject!r} among {len(messages)}")


@pytest.mark.parametrize("mechanism", SWAKS_MECHANISMS)
def test_swaks_starttls_auth_and_imap(server: Submission, mechanism: str) -> None:
    """swaks: STARTTLS verified with the CA, AUTH, a local message read over IMAP
    with its Received field naming the account and TLS."""
    subject = f"swaks {mechanism}"
    result = swaks(
        server,
        "--tls",
        "--tls-verify",
        "--tls-ca-path",
        str(server.ca),
        "--tls-sni",
        "company.com",
        "--auth",
        mechanism,
        "--auth-user",
        "sender",
        "--auth-password",
        "pw-s",
        "--from",
        "sender@company.com",
        "--to",
        "reader@company.com",
        "--header",
        f"Subject: {subject}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0" in result.stdout
    message = subject_in(imap_messages(server, "reader", "pw-r"), subject)
    received = " ".join(message["Received"].split())
    assert "(authenticated as sender@company.com)" in received
    assert "with ESMTPSA (TLS)" in received
    assert message["Message-ID"] and message["Date"]


@pytest.mark.parametrize("mechanism", MSMTP_MECHANISMS)
def test_msmtp_mechanisms(server: Submission, mechanism: str, tmp_path: Path) -> None:
    """msmtp: STARTTLS with the CA and every SASL mechanism the server offers."""
    config = tmp_path / "msmtprc"
    config.write_text(
        f"account default\nhost 127.0.0.1\nport {server.submission}\n"
        f"tls on\ntls_starttls on\ntls_trust_file {server.ca}\n"
        "tls_host_override company.com\n"
        f"auth {mechanism}\nuser sender\npassword pw-s\nfrom sender@company.com\n"
    )
    config.chmod(0o600)
    subject = f"msmtp {mechanism}"
    result = subprocess.run(
        ["msmtp", "-C", str(config), "reader@company.com"],
        input=f"Subject: {subject}\n\nhello\n".encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    subject_in(imap_messages(server, "reader", "pw-r"), subject)


def test_swaks_wrong_password_and_no_auth(server: Submission) -> None:
    """A wrong password is 535 5.7.8; MAIL without AUTH is 530 5.7.0."""
    result = swaks(
        server,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "sender",
        "--auth-password",
        "wrong",
        "--from",
        "sender@company.com",
        "--to",
        "reader@company.com",
    )
    assert result.returncode != 0
    assert "535 5.7.8 incorrect password or account name" in result.stdout
    result = swaks(server, "--from", "sender@company.com", "--to", "x@far.example")
    assert result.returncode != 0
    assert "530 5.7.0" in result.stdout


def test_swaks_foreign_sender_refused(server: Submission) -> None:
    """MAIL FROM another account's address is 553 5.7.1; the alias passes."""
    common = ["--tls", "--auth", "LOGIN", "--auth-user", "sender", "--auth-password", "pw-s"]
    result = swaks(server, *common, "--from", "reader@company.com", "--to", "reader@company.com")
    assert result.returncode != 0 and "553 5.7.1" in result.stdout
    result = swaks(server, *common, "--from", "me@company.com", "--to", "reader@company.com")
    assert result.returncode == 0, result.stdout


def test_curl_smtp_ssl_reqd(server: Submission, tmp_path: Path) -> None:
    """curl smtp:// with --ssl-reqd and the CA sends a local message."""
    mail = tmp_path / "mail.txt"
    mail.write_bytes(b"Subject: via curl\r\n\r\nhello from curl\r\n")
    result = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--max-time",
            "30",
            "--ssl-reqd",
            "--cacert",
            str(server.ca),
            "--resolve",
            f"company.com:{server.submission}:127.0.0.1",
            f"smtp://company.com:{server.submission}/client.example",
            "--user",
            "sender:pw-s",
            "--mail-from",
            "sender@company.com",
            "--mail-rcpt",
            "reader@company.com",
            "--upload-file",
            str(mail),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    message = subject_in(imap_messages(server, "reader", "pw-r"), "via curl")
    assert "hello from curl" in message.get_payload()


def test_smtplib_smtps_to_the_smart_host(server: Submission) -> None:
    """smtplib over implicit TLS: a remote recipient reaches the aiosmtpd smart
    host; the local one the INBOX; the queue is empty afterwards."""
    smart = SmartHost(server.smart_port)
    smart.start()
    try:
        context = ssl.create_default_context(cafile=str(server.ca))
        with smtplib.SMTP_SSL(
            "127.0.0.1", server.smtps, context=_named(context), timeout=20
        ) as client:
            client.login("sender@company.com", "pw-s")
            refused = client.sendmail(
                "sender@company.com",
                ["friend@far.example", "reader@company.com"],
                b"Subject: to the world\r\n\r\n.leading dot\r\nbye\r\n",
            )
        assert refused == {}
        smart.wait(1)
        sender, recipients, content = smart.received[0]
        assert (sender, recipients) == ("sender@company.com", ["friend@far.example"])
        assert b"\r\n.leading dot\r\nbye\r\n" in content
        assert b"authenticated as sender@company.com" in content
        subject_in(imap_messages(server, "reader", "pw-r"), "to the world")
        _wait_empty_queue(server)
    finally:
        smart.stop()


def _named(context: ssl.SSLContext) -> ssl.SSLContext:
    """Certificates name company.com, not 127.0.0.1: check the chain only."""
    context.check_hostname = False
    return context


def _queue_list(server: Submission) -> str:
    return admin(server.base, "queue", "list")


def _wait_empty_queue(server: Submission, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while "the queue is empty" not in _queue_list(server):
        assert time.monotonic() < deadline, _queue_list(server)
        time.sleep(0.2)


def test_outage_kill_and_restart(server: Submission) -> None:
    """With the smart host down the message waits in the queue; kill -9 of the
    server after the 250 loses nothing; after a restart and with the smart host
    back, ``queue flush`` sends it."""
    context = _named(ssl.create_default_context(cafile=str(server.ca)))
    with smtplib.SMTP("127.0.0.1", server.submission, timeout=20) as client:
        client.starttls(context=context)
        client.login("sender", "pw-s")
        client.sendmail("sender@company.com", ["late@far.example"], b"Subject: late\r\n\r\nx\r\n")
        # kill -9 right after the 250: the queue entry is already on disk.
        server.stop(signal.SIGKILL)
    listed = _queue_list(server)
    assert "<late@far.example>" in listed, listed
    server.start()
    time.sleep(1)
    listed = _queue_list(server)
    assert "<late@far.example>" in listed and "attempts 1" in listed, listed
    smart = SmartHost(server.smart_port)
    smart.start()
    try:
        assert "1 entry due now" in admin(server.base, "queue", "flush")
        smart.wait(1)
        assert smart.received[0][1] == ["late@far.example"]
        _wait_empty_queue(server)
    finally:
        smart.stop()


def test_starttls_to_the_smart_host(server: Submission) -> None:
    """A smart host that requires STARTTLS gets the message over TLS."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    settings = server.base / "Accounts" / "Settings"
    context.load_cert_chain(settings / "certificate.pem", settings / "key.pem")
    smart = SmartHost(server.smart_port, tls=context)
    smart.start()
    try:
        with smtplib.SMTP_SSL(
            "127.0.0.1",
            server.smtps,
            context=_named(ssl.create_default_context(cafile=str(server.ca))),
            timeout=20,
        ) as client:
            client.login("sender", "pw-s")
            client.sendmail("sender@company.com", ["tls@far.example"], b"Subject: tls\r\n\r\nx\r\n")
        smart.wait(1)
        assert smart.received[0][1] == ["tls@far.example"]
        _wait_empty_queue(server)
    finally:
        smart.stop()


def test_queue_delete_unknown(server: Submission) -> None:
    """queue delete of an unknown id fails with one line."""
    result = communigate(server.base, "queue", "delete", "no-such-id")
    assert result.returncode == 1
    assert b"no queue entry" in result.stderr
