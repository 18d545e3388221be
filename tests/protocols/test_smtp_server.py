"""SMTP submission through StringTransport and Clock: EHLO, AUTH, the
submission rules, local delivery with the added header fields, queueing
of remote recipients, STARTTLS and the limits."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface.verify import verifyObject

from communigate.portal.submission import ISubmitter, Submitter
from communigate.protocols.smtp.relay import Relay
from communigate.protocols.smtp.server import SubmissionFactory, SubmissionServer
from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox
from tests.conftest import Exchange, login_service

PLAIN = base64.b64encode(b"\0info\0pw-company.com")


class Session(Exchange):
    """A submission server on a StringTransport (loopback unless told)."""

    def __init__(
        self,
        directory: FileDirectory,
        relay: Any = None,
        max_message: int = 100_000,
        local: str = "127.0.0.1",
        tls: Any = None,
        peer: str | None = None,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.factory = SubmissionFactory(
            login_service(directory),
            self.clock,
            tls=tls,
            max_message=max_message,
            spool=directory.base / "Spool",
            relay=relay,
            token=lambda: "token1",
        )
        server = self.factory.buildProtocol(IPv4Address("TCP", local, 587))
        assert isinstance(server, SubmissionServer)
        self.server = server
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", local, 587),
            peerAddress=IPv4Address("TCP", peer or local, 40000),
        )
        self.server.makeConnection(self.transport)

    def lines(self, data: bytes) -> list[bytes]:
        """Send; the reply lines."""
        return self.send(data).split(b"\r\n")[:-1]

    def login(self) -> None:
        """EHLO and AUTH PLAIN as info@company.com."""
        self.take()
        self.send(b"EHLO client.example\r\n")
        assert self.send(b"AUTH PLAIN " + PLAIN + b"\r\n").startswith(b"235 2.7.0")


def inbox(directory: FileDirectory, domain: str, name: str) -> list[bytes]:
    box = Mailbox.of_account(directory.account_path(domain, name))
    return [box.read(info) for info in box.messages()]


def test_greeting_and_ehlo_extensions(directory: FileDirectory) -> None:
    """EHLO lists the ESMTP extensions and the clear-text mechanisms on loopback."""
    session = Session(directory)
    assert session.take() == b"220 company.com ESMTP communigate submission ready\r\n"
    lines = session.lines(b"EHLO client.example\r\n")
    assert lines[0] == b"250-company.com greets client.example"
    names = {line[4:] for line in lines}
    for extension in (b"PIPELINING", b"8BITMIME", b"SMTPUTF8", b"ENHANCEDSTATUSCODES"):
        assert extension in names
    assert b"SIZE 100000" in names
    assert any(name.startswith(b"AUTH ") and b"PLAIN" in name for name in names)
    assert b"STARTTLS" not in names  # no TLS context given
    assert lines[-1].startswith(b"250 ")


def test_clear_text_is_not_offered_off_loopback(directory: FileDirectory) -> None:
    """Without TLS and off loopback, PLAIN is neither offered nor accepted (538)."""
    session = Session(directory, local="10.1.1.1")
    session.take()
    lines = session.lines(b"EHLO c\r\n")
    assert not any(b"PLAIN" in line for line in lines)
    assert session.send(b"AUTH PLAIN " + PLAIN + b"\r\n").startswith(b"538 5.7.11")


def test_mail_needs_auth(directory: FileDirectory) -> None:
    """MAIL before AUTH is 530 5.7.0; before EHLO 503."""
    session = Session(directory)
    session.take()
    assert session.send(b"MAIL FROM:<info@company.com>\r\n").startswith(b"503 5.5.1")
    session.send(b"EHLO c\r\n")
    assert session.send(b"MAIL FROM:<info@company.com>\r\n").startswith(b"530 5.7.0")


def test_auth_plain_and_wrong_password(directory: FileDirectory) -> None:
    """A wrong password is 535 5.7.8 with the portal's text; the right one 235."""
    session = Session(directory)
    session.take()
    session.send(b"EHLO c\r\n")
    wrong = base64.b64encode(b"\0info\0nope")
    assert session.send(b"AUTH PLAIN " + wrong + b"\r\n") == (
        b"535 5.7.8 incorrect password or account name\r\n"
    )
    assert session.send(b"AUTH PLAIN\r\n") == b"334 \r\n"
    assert session.send(PLAIN + b"\r\n").startswith(b"235 2.7.0")
    assert session.send(b"AUTH PLAIN " + PLAIN + b"\r\n").startswith(b"503")


def test_auth_login_cram_md5_and_abort(directory: FileDirectory) -> None:
    """LOGIN's two 334 prompts, CRAM-MD5's challenge, and * aborting with 501."""
    session = Session(directory)
    session.take()
    session.send(b"EHLO c\r\n")
    assert session.send(b"AUTH LOGIN\r\n").startswith(b"334 ")
    assert session.send(b"*\r\n").startswith(b"501 5.7.0")
    challenge = session.send(b"AUTH CRAM-MD5\r\n")
    assert challenge.startswith(b"334 ")
    text = base64.b64decode(challenge[4:].strip())
    digest = hmac.new(b"pw-company.com", text, hashlib.md5).hexdigest().encode()
    answer = base64.b64encode(b"info " + digest)
    assert session.send(answer + b"\r\n").startswith(b"235 2.7.0")


def test_auth_login_with_initial_response(directory: FileDirectory) -> None:
    """AUTH LOGIN with the user name as initial response asks for the password."""
    session = Session(directory)
    session.take()
    session.send(b"EHLO c\r\n")
    out = session.send(b"AUTH LOGIN " + base64.b64encode(b"info") + b"\r\n")
    assert out.startswith(b"334 ")
    assert session.send(base64.b64encode(b"pw-company.com") + b"\r\n").startswith(b"235")


def test_sender_must_belong_to_the_account(directory: FileDirectory) -> None:
    """Another account's address is 553 5.7.1; <> and the own address pass."""
    session = Session(directory)
    session.login()
    out = session.send(b"MAIL FROM:<j.smith@client1.com>\r\n")
    assert out.startswith(b"553 5.7.1")
    assert session.send(b"MAIL FROM:<>\r\n").startswith(b"250 2.1.0")
    session.send(b"RSET\r\n")
    assert session.send(b"MAIL FROM:<INFO@company.com>\r\n").startswith(b"250")


def test_alias_and_router_record_count_as_own(directory: FileDirectory) -> None:
    """An address the Router leads to the account (the <John> record) may be used."""
    session = Session(directory)
    session.take()
    session.send(b"EHLO c\r\n")
    js = base64.b64encode(b"\0j.smith@client1.com\0js")
    assert session.send(b"AUTH PLAIN " + js + b"\r\n").startswith(b"235")
    assert session.send(b"MAIL FROM:<john@company.com>\r\n").startswith(b"250")


def test_local_delivery_with_added_fields(directory: FileDirectory) -> None:
    """The message reaches the INBOX with Received, Message-ID and Date added,
    dot-unstuffed; one 250 after the text."""
    session = Session(directory)
    session.login()
    lines = session.lines(
        b"MAIL FROM:<info@company.com> SIZE=50 BODY=8BITMIME\r\n"
        b"RCPT TO:<j.smith@client1.com>\r\nRCPT TO:<nobody@company.com>\r\nDATA\r\n"
    )
    assert [line[:3] for line in lines] == [b"250", b"250", b"550", b"354"]
    out = session.lines(b"Subject: hi\r\n\r\n..dotted\r\nend\r\n.\r\n")
    assert out == [b"250 2.0.0 message accepted"]
    (message,) = inbox(directory, "client1.com", "j.smith")
    head, _, body = message.partition(b"\r\n\r\n")
    assert head.startswith(b"Return-Path: <info@company.com>\r\nReceived: from client.example")
    assert b"(authenticated as info@company.com)" in head
    assert b"with ESMTPA " in head
    assert b"Message-ID: <token1@company.com>\r\n" in head
    assert b"\r\nDate: " in head
    assert body == b".dotted\r\nend\r\n"


def test_given_message_id_and_date_are_kept(directory: FileDirectory) -> None:
    """A message with its own Message-ID and Date gets none added."""
    session = Session(directory)
    session.login()
    session.send(b"MAIL FROM:<info@company.com>\r\nRCPT TO:<info@company.com>\r\nDATA\r\n")
    session.send(b"Message-ID: <mine@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nb\r\n.\r\n")
    (message,) = inbox(directory, "company.com", "info")[-1:]
    assert message.count(b"Message-ID:") == 1
    assert message.count(b"\r\nDate:") == 1


def test_remote_recipients_without_relay(directory: FileDirectory) -> None:
    """Without SubmitRelayHost a remote recipient is 550 5.7.1."""
    session = Session(directory)
    session.login()
    session.send(b"MAIL FROM:<info@company.com>\r\n")
    assert session.send(b"RCPT TO:<a@far.example>\r\n") == (
        b"550 5.7.1 relaying not configured\r\n"
    )


def test_size_limit(directory: FileDirectory) -> None:
    """SIZE over the limit is 552 at MAIL; a longer text is 552 after the dot."""
    session = Session(directory, max_message=100)
    session.login()
    assert session.send(b"MAIL FROM:<info@company.com> SIZE=1000\r\n").startswith(b"552 5.3.4")
    session.send(b"MAIL FROM:<info@company.com>\r\nRCPT TO:<info@company.com>\r\nDATA\r\n")
    assert session.send(b"x" * 200 + b"\r\n.\r\n").startswith(b"552 5.3.4")
    assert len(inbox(directory, "company.com", "info")) == 0


def test_sequence_errors_and_misc(directory: FileDirectory) -> None:
    """RCPT before MAIL and DATA before RCPT are 503; VRFY 252; unknown 500."""
    session = Session(directory)
    session.login()
    assert session.send(b"RCPT TO:<info@company.com>\r\n").startswith(b"503")
    session.send(b"MAIL FROM:<info@company.com>\r\n")
    assert session.send(b"DATA\r\n").startswith(b"503")
    assert session.send(b"MAIL FROM:<info@company.com>\r\n").startswith(b"503")
    assert session.send(b"VRFY info\r\n").startswith(b"252")
    assert session.send(b"FOO\r\n").startswith(b"500")
    assert session.send(b"MAIL FROM:<bad address>\r\n").startswith(b"503")
    session.send(b"RSET\r\n")
    assert session.send(b"MAIL FROM:info@company.com\r\n").startswith(b"501")
    assert session.send(b"MAIL FROM:<info@company.com> FOO=1\r\n").startswith(b"555")
    assert session.send(b"QUIT\r\n") == b"221 2.0.0 bye\r\n"
    assert session.transport.disconnecting


def test_pipelined_transaction(directory: FileDirectory) -> None:
    """A whole pipelined transaction is answered in order."""
    session = Session(directory)
    session.take()
    lines = session.lines(
        b"EHLO c\r\nAUTH PLAIN " + PLAIN + b"\r\nMAIL FROM:<info@company.com>\r\n"
        b"RCPT TO:<info@client1.com>\r\nDATA\r\nSubject: p\r\n\r\nx\r\n.\r\nQUIT\r\n"
    )
    codes = [line[:4] for line in lines if line[3:4] == b" "]
    assert codes == [b"250 ", b"235 ", b"250 ", b"250 ", b"354 ", b"250 ", b"221 "]
    assert len(inbox(directory, "client1.com", "info")) == 1


def test_starttls_drops_pipelined_plaintext(directory: FileDirectory) -> None:
    """Commands pipelined behind STARTTLS are never executed (RFC 3207 §6)."""

    class Transport(StringTransport):
        started = False

        def startTLS(self, contexts: object) -> None:
            self.started = True

    session = Session(directory, tls=object())
    session.transport = Transport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 587),
        peerAddress=IPv4Address("TCP", "127.0.0.1", 1),
    )
    session.server.makeConnection(session.transport)
    session.take()
    assert b"STARTTLS" in session.send(b"EHLO c\r\n")
    out = session.send(b"STARTTLS\r\nAUTH PLAIN " + PLAIN + b"\r\n")
    assert out == b"220 2.0.0 ready to start TLS\r\n"
    assert session.transport.started
    assert session.server.avatar is None
    # The session starts again: EHLO first, and STARTTLS is gone.
    assert session.send(b"MAIL FROM:<>\r\n").startswith(b"503")
    assert b"STARTTLS" not in session.send(b"EHLO c\r\n")


def test_idle_and_login_timeouts(directory: FileDirectory) -> None:
    """A client that does not log in within LoginTimeout gets 421 and is closed."""
    session = Session(directory)
    session.take()
    session.clock.advance(61)
    assert session.take() == b"421 4.4.2 company.com login time-out, closing the connection\r\n"
    assert session.transport.disconnecting


def test_remote_recipient_is_queued_durably(directory: FileDirectory) -> None:
    """With SubmitRelayHost a remote recipient is queued on disk before the 250."""
    directory.update_server_settings({"SubmitRelayHost": "127.0.0.1:2525"})
    connected: list[Any] = []

    def connect(host: str, port: int, factory: Any) -> Deferred[Any]:
        connected.append((host, port))
        return Deferred()

    clock = Clock()
    relay = Relay(directory, clock, "mx.test", connect=connect)
    relay.startService()
    session = Session(directory, relay=relay)
    session.login()
    session.send(
        b"MAIL FROM:<info@company.com>\r\nRCPT TO:<a@far.example>\r\n"
        b"RCPT TO:<info@client1.com>\r\nDATA\r\n"
    )
    assert session.send(b"Subject: out\r\n\r\nbody\r\n.\r\n") == b"250 2.0.0 message accepted\r\n"
    (entry,) = relay.queue.entries()
    assert entry.recipients == ["a@far.example"]
    assert entry.sender == "info@company.com"
    text = relay.queue.message_path(entry.id).read_bytes()
    assert b"Subject: out" in text and b"Return-Path" not in text
    assert len(inbox(directory, "client1.com", "info")) == 1
    clock.advance(0)
    assert connected == [("127.0.0.1", 2525)]
    assert not list(Path(directory.base, "Spool").iterdir())


def test_failed_local_copy_withdraws_the_queued_one(
    directory: FileDirectory, monkeypatch: Any
) -> None:
    """If the local copies cannot be stored the client gets 451 and the
    remote copy leaves the queue unsent, so its retry duplicates nothing."""
    from twisted.internet.defer import fail

    from communigate.protocols.smtp import server as smtp_server

    monkeypatch.setattr(smtp_server, "deliver_durably", lambda *args: fail(OSError("disk full")))
    directory.update_server_settings({"SubmitRelayHost": "127.0.0.1:2525"})
    connected: list[Any] = []
    clock = Clock()

    def connect(host: str, port: int, factory: Any) -> Deferred[Any]:
        connected.append(host)
        return Deferred()

    relay = Relay(directory, clock, "mx.test", connect=connect)
    relay.startService()
    session = Session(directory, relay=relay)
    session.login()
    session.send(
        b"MAIL FROM:<info@company.com>\r\nRCPT TO:<a@far.example>\r\n"
        b"RCPT TO:<info@client1.com>\r\nDATA\r\n"
    )
    answer = session.send(b"Subject: out\r\n\r\nbody\r\n.\r\n")
    assert answer.startswith(b"451 ")
    assert relay.queue.entries() == []
    clock.advance(60)
    assert connected == []


def test_forwarder_goes_to_its_target(directory: FileDirectory) -> None:
    """A forwarder to a remote address queues the message for that address."""
    from communigate.store.directory import ObjectKind

    directory.add_object(ObjectKind.FORWARDER, "company.com", "fwd", "Friend@Far.Example")
    directory.update_server_settings({"SubmitRelayHost": "127.0.0.1:2525"})
    relay = Relay(directory, Clock(), "mx.test", connect=lambda *_: Deferred())
    relay.startService()
    session = Session(directory, relay=relay)
    session.login()
    session.send(b"MAIL FROM:<info@company.com>\r\nRCPT TO:<fwd@company.com>\r\nDATA\r\n")
    assert session.send(b"Subject: f\r\n\r\nx\r\n.\r\n").startswith(b"250")
    (entry,) = relay.queue.entries()
    assert entry.recipients == ["friend@far.example"]


def test_flood_while_busy_pauses_reading(directory: FileDirectory) -> None:
    """Lines piling up behind a pending login stop the socket being read."""
    from communigate.protocols.smtp import server as module

    session = Session(directory)
    session.take()
    session.send(b"EHLO c\r\n")
    session.server.busy = True
    session.send(b"NOOP\r\n" * (module.PAUSE_LINES + 1))
    assert session.transport.producerState == "paused"
    session.server.resume()
    assert session.transport.producerState == "producing"
    assert session.take().count(b"250 2.0.0 OK") == module.PAUSE_LINES + 1


def test_submitter_avatar(directory: FileDirectory) -> None:
    """The avatar provides ISubmitter; Mail disabled refuses the avatar."""
    from communigate.cred.errors import ServiceDisabled

    avatar = Submitter.open(directory, "company.com", "info")
    assert verifyObject(ISubmitter, avatar)
    assert avatar.may_send_as("info@company.com")
    assert not avatar.may_send_as("info")
    directory.update_account_settings("company.com", "info", {"AccessModes": ["IMAP", "Relay"]})
    try:
        Submitter.open(directory, "company.com", "info")
    except ServiceDisabled:
        pass
    else:
        raise AssertionError("Mail disabled must refuse the avatar")


def test_access_modes_and_client_addresses(directory: FileDirectory) -> None:
    """AUTH needs Relay and Mail in AccessModes; NonClientLogins=Prohibit refuses
    AUTH from other addresses (535) and closes the connection."""
    for modes in (["IMAP"], ["IMAP", "Relay"]):
        directory.update_account_settings("company.com", "info", {"AccessModes": modes})
        session = Session(directory)
        session.take()
        session.send(b"EHLO c\r\n")
        out = session.send(b"AUTH PLAIN " + PLAIN + b"\r\n")
        assert out == b"535 5.7.8 access to this service is not allowed for this account\r\n"
    directory.update_account_settings("company.com", "info", {"AccessModes": None})
    directory.update_server_settings({"NonClientLogins": "Prohibit", "ClientIPs": ["10.0.0.0/8"]})
    session = Session(directory, local="192.0.2.1", peer="192.0.2.5")
    session.take()
    session.send(b"EHLO c\r\n")
    challenge = session.send(b"AUTH CRAM-MD5\r\n")
    text = base64.b64decode(challenge[4:].strip())
    digest = hmac.new(b"pw-company.com", text, hashlib.md5).hexdigest().encode()
    assert session.send(base64.b64encode(b"info " + digest) + b"\r\n").startswith(b"535 5.7.8")
    assert session.transport.disconnecting


def test_impersonation_sends_as_the_opened_account(directory: FileDirectory) -> None:
    """PLAIN with an authorization identity needs CanImpersonate; the sender
    must then belong to the opened account, not the authenticating one."""
    plain = base64.b64encode(b"j.smith@client1.com\0info\0pw-company.com")
    session = Session(directory)
    session.take()
    session.send(b"EHLO c\r\n")
    refused = session.send(b"AUTH PLAIN " + plain + b"\r\n")
    assert refused == b"535 5.7.8 not authorized to log in as that account\r\n"
    directory.update_access_rights("client1.com", "info@company.com", lambda _: ["CanImpersonate"])
    assert session.send(b"AUTH PLAIN " + plain + b"\r\n").startswith(b"235")
    assert session.send(b"MAIL FROM:<info@company.com>\r\n").startswith(b"553 5.7.1")
    assert session.send(b"MAIL FROM:<j.smith@client1.com>\r\n").startswith(b"250")
