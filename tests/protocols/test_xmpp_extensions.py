"""XMPP extensions on StringTransports: stream management (XEP-0198)
acks and resumption, carbons (XEP-0280), blocking (XEP-0191)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from communigate.protocols.xmpp.modules.smacks import MAX_ASLEEP, RESUME_TIMEOUT
from communigate.protocols.xmpp.server import MAX_UNREAD, UNREAD_GRACE, XMPPFactory
from communigate.store.files import FileDirectory
from tests.protocols.xmpp_client import Stream, make_factory

J1 = ("j.smith", "js", "client1.com")
SM = b"xmlns='urn:xmpp:sm:3'"


@pytest.fixture
def reactor() -> Clock:
    return Clock()


@pytest.fixture
def factory(directory: FileDirectory, reactor: Clock) -> XMPPFactory:
    return make_factory(directory, reactor)


def chat(to: str, body: str) -> bytes:
    return f"<message to='{to}' type='chat'><body>{body}</body></message>".encode()


def test_sm_ack_counts_handled_stanzas(factory: XMPPFactory) -> None:
    """<r/> is answered with the number of stanzas handled since <enable/>."""
    alice = Stream(factory).online("a")
    assert b"<enabled" in alice.send(b"<enable " + SM + b"/>")
    alice.send(b"<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    alice.send(b"<presence/>")
    assert alice.send(b"<r " + SM + b"/>") == b"<a xmlns='urn:xmpp:sm:3' h='2'/>"


def test_sm_resume_delivers_unacked(factory: XMPPFactory, reactor: Clock) -> None:
    """A dropped resumable session stays bound; messages sent meanwhile are
    delivered on <resume/>, and nothing goes offline."""
    john = Stream(factory).online("pc", *J1)
    enabled = john.send(b"<enable " + SM + b" resume='true'/>")
    previd = re.search(rb"id='([^']+)'", enabled)
    assert previd is not None
    john.server.connectionLost(None)
    alice = Stream(factory).online("a")
    alice.send(chat("j.smith@client1.com/pc", "while asleep"))
    assert b"error" not in alice.take()
    reactor.advance(RESUME_TIMEOUT / 2)
    again = Stream(factory)
    again.login(*J1)
    reply = again.send(b"<resume " + SM + b" previd='" + previd.group(1) + b"' h='0'/>")
    assert b"<resumed" in reply
    assert b"while asleep" in reply
    alice.send(chat("j.smith@client1.com/pc", "after"))
    assert b"after" in again.take()


def test_sm_expiry_ends_session_and_keeps_messages(factory: XMPPFactory, reactor: Clock) -> None:
    """Not resumed in time: unavailable goes out and unacked chats go offline."""
    john = Stream(factory).online("pc", *J1)
    john.send(b"<enable " + SM + b" resume='true'/>")
    john.server.connectionLost(None)
    alice = Stream(factory).online("a")
    alice.send(chat("j.smith@client1.com/pc", "kept"))
    reactor.advance(RESUME_TIMEOUT + 1)
    assert factory.hub.session(john.server.jid) is None
    later = Stream(factory)
    later.login(*J1)
    later.bind("pc")
    later.take()
    assert b"kept" in later.send(b"<presence/>")


def test_sm_sleeping_sessions_per_account_are_bounded(factory: XMPPFactory, reactor: Clock) -> None:
    """Past MAX_ASLEEP dropped resumable sessions of one account, the oldest
    ends at once (unbound, not resumable); the newer ones still sleep."""
    dropped = []
    for number in range(MAX_ASLEEP + 1):
        john = Stream(factory).online(f"pc{number}", *J1)
        enabled = john.send(b"<enable " + SM + b" resume='true'/>")
        previd = re.search(rb"id='([^']+)'", enabled)
        assert previd is not None
        john.server.connectionLost(None)
        dropped.append((john, previd.group(1)))
    first, newest = dropped[0], dropped[-1]
    assert factory.hub.session(first[0].server.jid) is None
    assert factory.hub.session(newest[0].server.jid) is newest[0].server
    again = Stream(factory)
    again.login(*J1)
    assert b"item-not-found" in again.send(
        b"<resume " + SM + b" previd='" + first[1] + b"' h='0'/>"
    )
    assert b"<resumed" in again.send(b"<resume " + SM + b" previd='" + newest[1] + b"' h='0'/>")
    reactor.advance(RESUME_TIMEOUT + 1)


def test_sm_resume_unknown_id_fails(factory: XMPPFactory) -> None:
    """An unknown previd is item-not-found."""
    client = Stream(factory)
    client.login()
    assert b"<failed" in client.send(b"<resume " + SM + b" previd='nope' h='0'/>")


def test_carbons_copy_sent_and_received(factory: XMPPFactory) -> None:
    """With carbons, the other resource sees what one resource sends and
    what arrives at a full JID of the other."""
    phone = Stream(factory).online("phone")
    desk = Stream(factory).online("desk")
    enable = b"<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>"
    assert b"type='result'" in phone.send(enable)
    john = Stream(factory).online("pc", *J1)
    desk.send(chat("j.smith@client1.com/pc", "from desk"))
    copy = phone.take()
    assert b"<sent xmlns='urn:xmpp:carbons:2'>" in copy and b"from desk" in copy
    john.send(chat("info@company.com/desk", "to desk"))
    copy = phone.take()
    assert b"<received xmlns='urn:xmpp:carbons:2'>" in copy and b"to desk" in copy
    assert b"to desk" in desk.take()


def test_blocking(factory: XMPPFactory) -> None:
    """Blocking a JID stops messages both ways; unblocking lets them pass."""
    alice = Stream(factory).online("a")
    john = Stream(factory).online("pc", *J1)
    block = (
        b"<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>"
        b"<item jid='j.smith@client1.com'/></block></iq>"
    )
    assert b"type='result'" in alice.send(block)
    listed = alice.send(b"<iq type='get' id='l'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
    assert b"jid='j.smith@client1.com'" in listed
    assert b"urn:xmpp:blocking:errors" in alice.send(chat("j.smith@client1.com", "x"))
    assert b"service-unavailable" in john.send(chat("info@company.com", "y"))
    alice.send(b"<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'/></iq>")
    john.send(chat("info@company.com", "again"))
    assert b"again" in alice.take()


def test_sm_without_resume_keeps_unacked_chats(factory: XMPPFactory) -> None:
    """A non-resumable session that breaks puts unacknowledged chats offline."""
    john = Stream(factory).online("pc", *J1)
    john.send(b"<enable " + SM + b"/>")
    alice = Stream(factory).online("a")
    alice.send(chat("j.smith@client1.com/pc", "unacked"))
    assert b"unacked" in john.take()
    john.server.connectionLost(None)
    later = Stream(factory)
    later.login(*J1)
    later.bind("pc")
    later.take()
    assert b"unacked" in later.send(b"<presence/>")


def test_acking_more_than_was_sent_ends_the_stream(factory: XMPPFactory) -> None:
    """XEP-0198 §4: an <a/> with h above the stanzas sent is a stream error
    undefined-condition with <handled-count-too-high/>; acks up to what
    was sent, and repeated ones, are fine."""
    john = Stream(factory).online("pc", *J1)
    john.send(b"<enable " + SM + b"/>")
    alice = Stream(factory).online("a")
    for text in ("one", "two"):
        alice.send(chat("j.smith@client1.com/pc", text))
    assert b"two" in john.take()
    for h in (b"1", b"2", b"2", b"1", b"\xc2\xb2"):  # a stale one, a non-ASCII digit
        assert john.send(b"<a " + SM + b" h='" + h + b"'/>") == b""
    assert not john.transport.disconnecting
    reply = john.send(b"<a " + SM + b" h='3'/>")
    assert b"<undefined-condition" in reply
    assert b"<handled-count-too-high xmlns='urn:xmpp:sm:3' h='3' send-count='2'/>" in reply
    assert john.transport.disconnecting


def test_resume_acking_more_than_was_sent_fails(factory: XMPPFactory, reactor: Clock) -> None:
    """A <resume/> whose h is above what the session sent does not take the
    session over; the right h then does."""
    john = Stream(factory).online("pc", *J1)
    enabled = john.send(b"<enable " + SM + b" resume='true'/>")
    previd = re.search(rb"id='([^']+)'", enabled)
    assert previd is not None
    john.server.connectionLost(None)
    again = Stream(factory)
    again.login(*J1)
    reply = again.send(b"<resume " + SM + b" previd='" + previd.group(1) + b"' h='5'/>")
    assert b"<failed" in reply and b"undefined-condition" in reply
    retry = Stream(factory)
    retry.login(*J1)
    reply = retry.send(b"<resume " + SM + b" previd='" + previd.group(1) + b"' h='0'/>")
    assert b"<resumed" in reply


def test_a_client_that_does_not_read_is_dropped(factory: XMPPFactory, reactor: Clock) -> None:
    """A burst past MAX_UNREAD bytes into a full send buffer is kept (a
    client that reads drains it); once the buffer has stayed full for
    UNREAD_GRACE seconds, the next write past the bound drops the
    connection; the sender's stream goes on, the account logs in again."""
    john = Stream(factory).online("pc", *J1)
    alice = Stream(factory).online("a")
    assert john.server.gate is not None
    john.server.gate.pauseProducing()  # the client stopped reading
    body = "x" * 4000
    for _ in range(MAX_UNREAD // 4000 + 2):
        alice.send(chat("j.smith@client1.com/pc", body))
    assert not john.transport.disconnecting
    reactor.advance(UNREAD_GRACE + 1)
    alice.send(chat("j.smith@client1.com/pc", body))
    assert john.transport.disconnecting
    john.server.connectionLost(None)
    assert not alice.transport.disconnecting
    again = Stream(factory).online("pc", *J1)
    assert not again.transport.disconnecting


def test_a_reading_client_is_never_dropped(factory: XMPPFactory, reactor: Clock) -> None:
    """A client whose buffer drains between bursts keeps its connection,
    however much it is sent in all."""
    john = Stream(factory).online("pc", *J1)
    alice = Stream(factory).online("a")
    assert john.server.gate is not None
    body = "x" * 4000
    for _ in range(3):
        john.server.gate.pauseProducing()
        for _ in range(MAX_UNREAD // 4000 + 2):
            alice.send(chat("j.smith@client1.com/pc", body))
        reactor.advance(UNREAD_GRACE / 2)
        john.server.gate.resumeProducing()  # it read
        john.take()
        reactor.advance(UNREAD_GRACE)
    assert not john.transport.disconnecting


def test_a_stopping_server_tells_no_one_and_keeps_what_was_unacked(
    factory: XMPPFactory, directory: FileDirectory
) -> None:
    """While the server stops, a session's end is not broadcast to the
    others (they end too) and a resumable session does not sleep: the
    chats it had not acknowledged go to the offline store at once."""
    john = Stream(factory).online("pc", *J1)
    john.send(b"<enable " + SM + b" resume='true'/>")
    tablet = Stream(factory).online("tab", *J1)
    alice = Stream(factory).online("a")
    alice.send(chat("j.smith@client1.com/pc", "kept"))
    assert b"kept" in john.take()
    tablet.take()
    factory.hub.stopping = True
    john.server.connectionLost(None)
    assert b"unavailable" not in tablet.take()
    stored = list((Path(directory.account_path("client1.com", "j.smith")) / "offline").iterdir())
    assert len(stored) == 1 and b"kept" in stored[0].read_bytes()
