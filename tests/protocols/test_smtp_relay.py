"""The submission queue and the relay client, with StringTransport and Clock:
the exchange with the smart host, back-off, bounces, expiry, orphans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from communigate.protocols.smtp.queue import MailQueue
from communigate.protocols.smtp.relay import (
    BACKOFF,
    Outcome,
    Relay,
    RelayClient,
    Results,
    backoff,
    parse_host,
)
from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox
from communigate.store.spool import MessageSpool, SpooledMessage


def pump(transport: StringTransport) -> None:
    """Pull the producer a real transport would pull (the message file)."""
    while transport.producer is not None:
        transport.producer.resumeProducing()


def spooled(directory: FileDirectory, text: bytes) -> SpooledMessage:
    spool = MessageSpool(directory.base / "Spool")
    spool.write(text)
    return spool.finish()


def inbox(directory: FileDirectory, domain: str, name: str) -> list[bytes]:
    box = Mailbox.of_account(directory.account_path(domain, name))
    return [box.read(info) for info in box.messages()]


class Script:
    """A relay whose connections go to a StringTransport the test drives."""

    def __init__(self, directory: FileDirectory, refuse: bool = False) -> None:
        directory.update_server_settings({"SubmitRelayHost": "smart.example:2525"})
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.clients: list[tuple[RelayClient, StringTransport]] = []
        self.refuse = refuse
        self.relay = Relay(directory, self.clock, "mx.test", connect=self.connect)
        self.relay.startService()

    def connect(self, host: str, port: int, factory: Any) -> Deferred[Any]:
        if self.refuse:
            return fail(ConnectionRefusedError())
        client = factory.buildProtocol(None)
        transport = StringTransport()
        client.makeConnection(transport)
        self.clients.append((client, transport))
        return Deferred()

    def queue(self, directory: FileDirectory, recipients: list[str]) -> str:
        message = spooled(directory, b"Subject: s\r\n\r\n.dot\r\nbody\r\n")
        entry = self.relay.queue.add(message, "info@company.com", recipients, self.clock.seconds())
        message.discard()
        self.clock.advance(0)
        return entry.id


def test_parse_host_and_backoff() -> None:
    """host:port, host alone, [v6]:port; retries wait 1m, 5m, ... then 1h."""
    assert parse_host("smart.example:2525") == ("smart.example", 2525)
    assert parse_host("smart.example") == ("smart.example", 25)
    assert parse_host("[::1]:26") == ("::1", 26)
    assert parse_host(" ") is None
    assert [backoff(n) for n in (1, 2, 5, 9)] == [60, 300, 3600, 3600]
    assert BACKOFF[0] == 60


def test_client_sends_with_dot_stuffing() -> None:
    """The client says EHLO, MAIL, RCPT, DATA, sends the text dot-stuffed, and
    reports the per-recipient outcome."""
    from communigate.protocols.smtp.queue import QueueEntry

    done: Deferred[Results] = Deferred()
    entry = QueueEntry("id", "a@b", ["x@far", "y@far"], 0.0)
    import io

    client = RelayClient("mx.test", entry, io.BytesIO(b"S: 1\r\n\r\n.dot\r\n"), done)
    transport = StringTransport()
    client.makeConnection(transport)
    for reply in (b"220 hi", b"250-far\r\n250 SIZE", b"250 ok", b"250 ok", b"550 5.1.1 no"):
        client.dataReceived(reply + b"\r\n")
    assert transport.value() == (
        b"EHLO mx.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@far>\r\nRCPT TO:<y@far>\r\nDATA\r\n"
    )
    transport.clear()
    client.dataReceived(b"354 go\r\n")
    pump(transport)
    assert transport.value() == b"S: 1\r\n\r\n..dot\r\n.\r\n"
    client.dataReceived(b"250 queued\r\n")
    results = done.result
    assert results == {
        "x@far": (Outcome.SENT, "250 queued"),
        "y@far": (Outcome.PERMANENT, "550 5.1.1 no"),
    }


def test_sent_message_leaves_the_queue(directory: FileDirectory) -> None:
    """A message the smart host accepts is removed from the queue."""
    script = Script(directory)
    entry_id = script.queue(directory, ["x@far.example"])
    script.relay.scan()
    ((client, transport),) = script.clients
    for reply in (b"220 hi", b"250 ok", b"250 ok", b"250 ok", b"354 go", b"250 done"):
        client.dataReceived(reply + b"\r\n")
        pump(transport)
    assert b"\r\n..dot\r\nbody\r\n.\r\n" in transport.value()
    assert script.relay.queue.load(entry_id) is None
    assert not script.relay.queue.message_path(entry_id).exists()


def test_temporary_failure_waits_with_backoff(directory: FileDirectory) -> None:
    """No connection: the entry stays, with one attempt and the next in a minute."""
    script = Script(directory, refuse=True)
    entry_id = script.queue(directory, ["x@far.example"])
    script.relay.scan()
    entry = script.relay.queue.load(entry_id)
    assert entry is not None
    assert entry.attempts == 1
    assert entry.next_attempt == script.clock.seconds() + 60
    assert "cannot connect" in entry.last_error


def test_permanent_failure_bounces_to_the_sender(directory: FileDirectory) -> None:
    """A 550 from the smart host sends a DSN to the sender's INBOX and ends the entry."""
    script = Script(directory)
    entry_id = script.queue(directory, ["x@far.example"])
    script.relay.scan()
    ((client, _),) = script.clients
    for reply in (b"220 hi", b"250 ok", b"250 ok", b"550 5.1.1 no such user"):
        client.dataReceived(reply + b"\r\n")
    assert script.relay.queue.load(entry_id) is None
    (dsn,) = inbox(directory, "company.com", "info")
    assert b"report-type=delivery-status" in dsn
    assert b"Final-Recipient: rfc822; x@far.example" in dsn
    assert b"Status: 5.1.1" in dsn
    assert b"Subject: s" in dsn


def test_expired_entry_bounces(directory: FileDirectory) -> None:
    """After SubmitQueueExpiry a temporary failure bounces with 4.4.7."""
    directory.update_server_settings({"SubmitQueueExpiry": "1h"})
    script = Script(directory, refuse=True)
    entry_id = script.queue(directory, ["x@far.example"])
    script.clock.advance(3601)
    script.relay.scan()
    assert script.relay.queue.load(entry_id) is None
    (dsn,) = inbox(directory, "company.com", "info")
    assert b"Status: 4.4.7" in dsn


def test_orphans_are_removed_at_start(directory: FileDirectory) -> None:
    """A message file without its envelope (a crash before the commit) goes at start."""
    queue = MailQueue(directory.base / "Queue")
    queue.folder.mkdir()
    (queue.folder / "1-dead.msg").write_bytes(b"x")
    Script(directory)
    assert not (queue.folder / "1-dead.msg").exists()


def test_queue_command(directory: FileDirectory, capsys: Any) -> None:
    """queue list shows the entry, flush makes it due now, delete removes it."""
    from communigate.cli.main import main

    script = Script(directory, refuse=True)
    entry_id = script.queue(directory, ["x@far.example"])
    script.relay.scan()
    base = str(directory.base)
    assert main(["--base", base, "queue", "list"]) == 0
    listed = capsys.readouterr().out
    assert entry_id in listed and "<x@far.example>" in listed and "attempts 1" in listed
    assert main(["--base", base, "queue", "flush"]) == 0
    entry = script.relay.queue.load(entry_id)
    assert entry is not None and entry.next_attempt == 0
    assert main(["--base", base, "queue", "delete", entry_id]) == 0
    assert script.relay.queue.entries() == []
    assert main(["--base", base, "queue", "delete", entry_id]) == 1
    assert not Path(script.relay.queue.message_path(entry_id)).exists()


def test_dropped_or_silent_smart_host_is_temporary(directory: FileDirectory) -> None:
    """A connection lost after RCPT, and a smart host silent past the time-out,
    leave the entry queued for a later attempt."""
    from communigate.protocols.smtp.relay import CLIENT_TIMEOUT

    script = Script(directory)
    entry_id = script.queue(directory, ["x@far.example"])
    script.relay.scan()
    ((client, _),) = script.clients
    for reply in (b"220 hi", b"250 ok", b"250 ok", b"250 ok"):
        client.dataReceived(reply + b"\r\n")
    client.connectionLost(None)
    entry = script.relay.queue.load(entry_id)
    assert entry is not None and entry.attempts == 1
    entry.next_attempt = 0
    script.relay.queue.save(entry)
    script.relay.scan()
    (client, transport) = script.clients[1]
    script.clock.advance(CLIENT_TIMEOUT + 1)
    assert transport.disconnecting or getattr(transport, "disconnected", False)
    entry = script.relay.queue.load(entry_id)
    assert entry is not None and entry.attempts == 2
    assert "did not answer" in entry.last_error


def test_client_uses_starttls_when_offered() -> None:
    """STARTTLS offered: the client switches to TLS and says EHLO again."""
    import io

    from communigate.protocols.smtp.queue import QueueEntry

    class Transport(StringTransport):
        tls: object = None

        def startTLS(self, options: object) -> None:
            self.tls = options

    done: Deferred[Results] = Deferred()
    entry = QueueEntry("id", "a@b", ["x@far"], 0.0)
    options = object()
    client = RelayClient("mx.test", entry, io.BytesIO(b"S: 1\r\n"), done, Clock(), options)
    transport = Transport()
    client.makeConnection(transport)
    client.dataReceived(b"220 hi\r\n250-far\r\n250 STARTTLS\r\n")
    assert transport.value() == b"EHLO mx.test\r\nSTARTTLS\r\n"
    transport.clear()
    client.dataReceived(b"220 go ahead\r\n")
    assert transport.tls is options
    assert transport.value() == b"EHLO mx.test\r\n"
    transport.clear()
    client.dataReceived(b"250-far\r\n250 STARTTLS\r\n")
    assert transport.value() == b"MAIL FROM:<a@b>\r\n"


def test_client_authenticates_to_a_loopback_smart_host() -> None:
    """With credentials, AUTH PLAIN follows EHLO on loopback; 235 then MAIL;
    a refused login leaves the recipients for a later attempt."""
    import base64
    import io

    from communigate.protocols.smtp.queue import QueueEntry

    for answer, expected in ((b"235 ok", b"MAIL FROM:<a@b>\r\n"), (b"535 no", b"QUIT\r\n")):
        done: Deferred[Results] = Deferred()
        entry = QueueEntry("id", "a@b", ["x@far"], 0.0)
        client = RelayClient(
            "mx.test", entry, io.BytesIO(b"S: 1\r\n"), done, Clock(), None, ("relay", "pw"), True
        )
        transport = StringTransport()
        client.makeConnection(transport)
        client.dataReceived(b"220 hi\r\n250-far\r\n250 AUTH LOGIN PLAIN\r\n")
        token = base64.b64encode(b"\0relay\0pw")
        assert transport.value() == b"EHLO mx.test\r\nAUTH PLAIN " + token + b"\r\n"
        transport.clear()
        client.dataReceived(answer + b"\r\n")
        assert transport.value() == expected
        if answer.startswith(b"535"):
            assert done.result["x@far"][0] is Outcome.TEMPORARY


def test_client_keeps_the_password_off_clear_links() -> None:
    """A smart host elsewhere without TLS never sees the password: the
    message waits instead."""
    import io

    from communigate.protocols.smtp.queue import QueueEntry

    done: Deferred[Results] = Deferred()
    entry = QueueEntry("id", "a@b", ["x@far"], 0.0)
    client = RelayClient(
        "mx.test", entry, io.BytesIO(b"S: 1\r\n"), done, Clock(), None, ("relay", "pw"), False
    )
    transport = StringTransport()
    client.makeConnection(transport)
    client.dataReceived(b"220 hi\r\n250-far\r\n250 AUTH PLAIN\r\n")
    assert b"AUTH" not in transport.value()
    assert done.result["x@far"][0] is Outcome.TEMPORARY


def test_a_smart_host_we_log_in_to_must_prove_its_name(directory: FileDirectory) -> None:
    """Opportunistic TLS without credentials; with them the certificate is
    checked for the smart host's name (ClientTLSOptions), so the password
    never goes to whoever answers."""
    from twisted.internet._sslverify import ClientTLSOptions
    from twisted.internet.ssl import CertificateOptions

    relay = Relay(directory, Clock(), "mx.test", connect=lambda *_: Deferred())
    assert isinstance(relay.client_tls("smart.example"), CertificateOptions)
    assert isinstance(relay.client_tls("smart.example", verify=True), ClientTLSOptions)
    directory.update_server_settings({"SubmitRelayTLS": "No"})
    assert relay.client_tls("smart.example", verify=True) is None
