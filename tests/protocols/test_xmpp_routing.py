"""Stanza routing between local XMPP sessions (RFC 6121 §8.5) and the
feature modules, on StringTransports sharing one hub."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from communigate.protocols.xmpp.server import XMPPFactory
from communigate.store.files import FileDirectory
from tests.protocols.xmpp_client import Stream, make_factory

J1 = ("j.smith", "js", "client1.com")


@pytest.fixture
def factory(directory: FileDirectory) -> XMPPFactory:
    return make_factory(directory, Clock())


def chat(to: str, body: str = "hi", kind: str = "chat") -> bytes:
    return f"<message to='{to}' type='{kind}' id='m1'><body>{body}</body></message>".encode()


def test_full_jid_message_and_stamped_from(factory: XMPPFactory) -> None:
    """A message to a bound full JID arrives with the sender's full JID."""
    alice = Stream(factory).online("a")
    john = Stream(factory).online("pc", *J1)
    alice.send(chat("j.smith@client1.com/pc", "hello"))
    got = john.take()
    assert b"<body>hello</body>" in got
    assert b"from='info@company.com/a'" in got


def test_bare_jid_goes_to_highest_priority(factory: XMPPFactory) -> None:
    """Only the resource of the highest non-negative priority gets a chat."""
    low = Stream(factory).online("low", *J1, priority=1)
    high = Stream(factory).online("high", *J1, priority=5)
    Stream(factory).online("a").send(chat("j.smith@client1.com"))
    assert b"<body>hi</body>" in high.take()
    assert b"<body>hi</body>" not in low.take()


def test_equal_priorities_all_receive(factory: XMPPFactory) -> None:
    """Resources sharing the highest priority all get the message."""
    one = Stream(factory).online("one", *J1, priority=2)
    two = Stream(factory).online("two", *J1, priority=2)
    Stream(factory).online("a").send(chat("j.smith@client1.com"))
    assert b"<body>hi</body>" in one.take()
    assert b"<body>hi</body>" in two.take()


def test_negative_priority_means_offline_storage(factory: XMPPFactory) -> None:
    """With only a negative-priority resource the message is stored and
    delivered at the next initial presence, with a delay stamp."""
    shy = Stream(factory).online("shy", *J1, priority=-1)
    Stream(factory).online("a").send(chat("j.smith@client1.com", "later"))
    assert b"later" not in shy.take()
    later = Stream(factory)
    later.login(*J1)
    later.bind("new")
    later.take()
    got = later.send(b"<presence/>")
    assert b"<body>later</body>" in got
    assert b"urn:xmpp:delay" in got


def test_unknown_account_and_remote_domain(factory: XMPPFactory) -> None:
    """No such account: service-unavailable; a remote domain:
    remote-server-not-found; groupchat to a bare JID: service-unavailable."""
    alice = Stream(factory).online("a")
    assert b"service-unavailable" in alice.send(chat("nobody@company.com"))
    assert b"remote-server-not-found" in alice.send(chat("x@remote.example"))
    assert b"service-unavailable" in alice.send(chat("j.smith@client1.com", kind="groupchat"))


def test_iq_to_unbound_full_jid(factory: XMPPFactory) -> None:
    """An iq get to a resource that is not bound is service-unavailable."""
    alice = Stream(factory).online("a")
    reply = alice.send(
        b"<iq type='get' id='q' to='j.smith@client1.com/none'>"
        b"<query xmlns='jabber:iq:version'/></iq>"
    )
    assert b"service-unavailable" in reply


def test_conflict_replaces_old_session(factory: XMPPFactory) -> None:
    """Binding the same full JID again ends the first stream with conflict."""
    first = Stream(factory).online("same")
    second = Stream(factory)
    second.login()
    assert b"<jid>info@company.com/same</jid>" in second.bind("same")
    assert b"<conflict" in first.take()
    assert first.transport.disconnecting
    assert factory.hub.session(second.server.jid) is second.server


def test_roster_set_get_push_and_version(factory: XMPPFactory) -> None:
    """A roster set is pushed to every resource; a get with the old version
    answers only the change."""
    one = Stream(factory).online("one")
    two = Stream(factory).online("two")
    reply = one.send(
        b"<iq type='set' id='s'><query xmlns='jabber:iq:roster'>"
        b"<item jid='j.smith@client1.com' name='John'><group>Work</group></item>"
        b"</query></iq>"
    )
    assert b"type='result'" in reply and b"id='s'" in reply
    assert b"name='John'" in reply  # the push to this resource
    assert b"name='John'" in two.take()
    full = two.send(b"<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>")
    assert b"ver='1'" in full and b"<group>Work</group>" in full
    same = two.send(b"<iq type='get' id='g2'><query xmlns='jabber:iq:roster' ver='1'/></iq>")
    assert b"<item" not in same


def test_subscription_and_presence_flow(factory: XMPPFactory) -> None:
    """subscribe → subscribed gives To; the contact's presence arrives; its
    unavailable on disconnect arrives too."""
    alice = Stream(factory).online("a")
    john = Stream(factory).online("pc", *J1)
    alice.send(b"<presence type='subscribe' to='j.smith@client1.com'/>")
    assert b"type='subscribe'" in john.take()
    john.send(b"<presence type='subscribed' to='info@company.com'/>")
    got = alice.take()
    assert b"subscription='to'" in got
    assert b"from='j.smith@client1.com/pc'" in got  # John's current presence
    john.server.connectionLost(None)
    assert b"type='unavailable'" in alice.take()


def test_ping_version_disco_vcard(factory: XMPPFactory) -> None:
    """Ping, version, disco#info and a vCard set then fetched by another account."""
    alice = Stream(factory).online("a")
    assert b"type='result'" in alice.send(
        b"<iq type='get' id='p' to='company.com'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    assert b"<name>communigate</name>" in alice.send(
        b"<iq type='get' id='v' to='company.com'><query xmlns='jabber:iq:version'/></iq>"
    )
    info = alice.send(
        b"<iq type='get' id='d' to='company.com'>"
        b"<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    assert b"category='server'" in info and b"urn:xmpp:ping" in info
    assert b"type='result'" in alice.send(
        b"<iq type='set' id='vs'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>"
    )
    john = Stream(factory).online("pc", *J1)
    card = john.send(
        b"<iq type='get' id='vg' to='info@company.com'><vCard xmlns='vcard-temp'/></iq>"
    )
    assert b"<FN>Alice</FN>" in card


def test_unknown_iq_is_service_unavailable(factory: XMPPFactory) -> None:
    """An iq payload no module handles is service-unavailable."""
    alice = Stream(factory).online("a")
    reply = alice.send(b"<iq type='get' id='u'><query xmlns='urn:example:none'/></iq>")
    assert b"service-unavailable" in reply


def test_target_account_is_looked_up_once_per_message(
    factory: XMPPFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocking, archiving and offline storage of one message to an account
    with no session look its stores up once, and the message is stored."""
    contacts = factory.hub.contacts
    looked: list[tuple[str, str]] = []
    original = contacts.stores

    def stores(domain: str, name: str) -> object:
        looked.append((domain, name))
        return original(domain, name)

    monkeypatch.setattr(contacts, "stores", stores)
    alice = Stream(factory).online("a")
    alice.send(chat("j.smith@client1.com", "kept"))
    assert looked == [("client1.com", "j.smith")]
    assert b"error" not in alice.take()
    later = Stream(factory)
    later.login(*J1)
    later.bind("pc")
    later.take()
    assert b"<body>kept</body>" in later.send(b"<presence/>")
