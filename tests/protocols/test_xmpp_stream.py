"""XMPP stream negotiation (RFC 6120) on a StringTransport: the header and
its domain, the order STARTTLS → SASL → restart → bind, SASL failures,
stream errors, the limits and time-outs."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from communigate.portal.xmppsession import IXMPPAccount, XMPPAccount
from communigate.protocols.tls import DomainContexts
from communigate.protocols.xmpp import server as server_module
from communigate.protocols.xmpp.server import MAX_FAILURES
from communigate.store.files import FileDirectory
from tests.protocols.xmpp_client import Stream, header, make_factory, plain


def stream(directory: FileDirectory, tls: object = None) -> Stream:
    return Stream(make_factory(directory, Clock(), tls))


def test_avatar_provides_interface(directory: FileDirectory) -> None:
    """The realm's XMPP avatar provides IXMPPAccount."""
    assert verifyObject(IXMPPAccount, XMPPAccount(directory, "company.com", "info"))


def test_header_answers_with_domain_and_features(directory: FileDirectory) -> None:
    """The response header names the domain; features list PLAIN on loopback."""
    reply = stream(directory).send(header())
    assert b'from="company.com"' in reply
    assert b"<mechanism>PLAIN</mechanism>" in reply
    assert b"starttls" not in reply  # no TLS contexts given


def test_answers_are_not_held_back(directory: FileDirectory) -> None:
    """TCP_NODELAY: an answer written in two turns (the stream header,
    then its features after a login check) never waits for the client's
    delayed ACK of the first part."""
    assert stream(directory).transport.no_delay


def test_domain_alias_becomes_its_domain(directory: FileDirectory) -> None:
    """``to`` naming a domain alias logs bare names into the real domain."""
    client = stream(directory)
    assert b'from="alias2.com"' in client.send(header("alias2.com"))
    reply = client.send(plain("info", "pw-client2.com"))
    assert reply.startswith(b"<success")
    client.send(header("alias2.com"))
    assert b"<jid>info@client2.com/x</jid>" in client.bind("x")


def test_unknown_domain_is_host_unknown(directory: FileDirectory) -> None:
    """An unknown ``to`` gets a header, host-unknown and the end of the stream."""
    client = stream(directory)
    reply = client.send(header("nowhere.example"))
    assert b"<stream:stream" in reply
    assert b"<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in reply
    assert reply.endswith(b"</stream:stream>")
    assert client.transport.disconnecting


def test_bad_namespace_and_version(directory: FileDirectory) -> None:
    """A header outside the streams namespace or of version 0.9 is refused."""
    wrong = header().replace(b"http://etherx.jabber.org/streams", b"urn:wrong")
    assert b"<invalid-namespace" in stream(directory).send(wrong)
    assert b"<unsupported-version" in stream(directory).send(header(version="0.9"))


def test_starttls_required_before_sasl(directory: FileDirectory) -> None:
    """With TLS available, STARTTLS is required and alone; <auth/> is
    refused with encryption-required; <starttls/> proceeds and drops what
    was pipelined behind it."""
    contexts = DomainContexts(directory)
    client = stream(directory, tls=contexts)
    features = client.send(header())
    assert b"<required/>" in features
    assert b"<mechanisms" not in features
    assert b"<encryption-required/>" in client.send(plain("info", "pw-company.com"))
    reply = client.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message/>")
    assert reply == b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    assert client.transport.tls is not None
    assert client.transport.tls is contexts.preferred("company.com")
    assert not client.transport.disconnecting
    assert b"<stream:stream" in client.send(header())


def test_clear_text_allowed_by_domain_setting(directory: FileDirectory) -> None:
    """ClearTextLogin = Always: STARTTLS offered but not required."""
    directory.update_domain_settings("company.com", {"ClearTextLogin": "Always"})
    features = stream(directory, tls=object()).send(header())
    assert b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'></starttls>" in features
    assert b"<mechanism>PLAIN</mechanism>" in features


def test_stanza_before_auth_is_not_authorized(directory: FileDirectory) -> None:
    """A message before SASL ends the stream with not-authorized."""
    client = stream(directory)
    client.send(header())
    assert b"<not-authorized" in client.send(b"<message to='x@company.com'/>")
    assert client.transport.disconnecting


def test_login_restart_and_bind(directory: FileDirectory) -> None:
    """PLAIN succeeds, the restarted stream offers bind, the server picks a
    resource when the client asks for none."""
    client = stream(directory)
    features = client.login()
    assert b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in features
    assert b"<mechanisms" not in features
    reply = client.bind()
    assert b"<jid>info@company.com/" in reply
    assert client.server.jid.resource


def test_bound_session_drops_its_parser_between_stanzas(directory: FileDirectory) -> None:
    """A bound session idle between stanzas holds no expat parser; the next
    stanza (split across reads) is parsed in the stream's namespaces."""
    client = stream(directory)
    client.login()
    client.bind("r1")
    parser = client.server.parser
    assert parser is not None and parser.released
    ping = b"<iq type='get' id='p1' to='company.com'><ping xmlns='urn:xmpp:ping'/></iq>"
    client.send(ping[:20])
    assert not parser.released
    reply = client.send(ping[20:])
    assert b"id='p1'" in reply and b"type='result'" in reply
    assert parser.released


def test_bare_name_takes_the_stream_domain(directory: FileDirectory) -> None:
    """A bare name logs into the domain the header named."""
    client = stream(directory)
    client.login("info", "pw-client1.com", "client1.com")
    assert b"<jid>info@client1.com/pc</jid>" in client.bind("pc")


def test_wrong_password_then_too_many(directory: FileDirectory) -> None:
    """A wrong password is not-authorized; after MAX_FAILURES the stream ends."""
    client = stream(directory)
    client.send(header())
    for _attempt in range(MAX_FAILURES):
        reply = client.send(plain("info", "nope"))
        assert b"<not-authorized/>" in reply
    assert b"<policy-violation" in reply
    assert client.transport.disconnecting


def test_sasl_abort_and_unknown_mechanism(directory: FileDirectory) -> None:
    """<abort/> is aborted; an unknown mechanism is invalid-mechanism."""
    client = stream(directory)
    client.send(header())
    sasl = b"xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"
    assert b"<invalid-mechanism/>" in client.send(b"<auth " + sasl + b" mechanism='X-NONE'/>")
    assert client.send(b"<auth " + sasl + b" mechanism='PLAIN'/>").startswith(b"<challenge")
    assert b"<aborted/>" in client.send(b"<abort " + sasl + b"/>")


def test_bind_bad_resource_and_iq_before_bind(directory: FileDirectory) -> None:
    """A stanza other than bind before binding is refused as a stanza error."""
    client = stream(directory)
    client.login()
    reply = client.send(b"<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
    assert b"type='error'" in reply and b"not-authorized" in reply


def test_oversized_stanza_is_policy_violation(directory: FileDirectory) -> None:
    """A stanza past the limit ends the stream; the factory serves the next."""
    factory = make_factory(directory, Clock())
    client = Stream(factory)
    client.send(header())
    reply = client.send(b"<message><body>" + b"x" * (300 * 1024))
    assert b"<policy-violation" in reply
    assert client.transport.disconnecting
    assert b"<stream:features>" in Stream(factory).send(header())


def test_stanzas_piling_up_during_a_login_check_end_the_stream(
    directory: FileDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading goes on while a login is checked; a client that piles up
    more than MAX_PENDING stanzas meanwhile gets policy-violation (nothing
    of it is handled), and the factory serves the next client."""
    monkeypatch.setattr(server_module, "MAX_PENDING", 5)
    factory = make_factory(directory, Clock())
    client = Stream(factory)
    client.send(header())
    client.server.busy = True  # as while a password check runs in the pool
    sasl = b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-NONE'/>"
    assert client.send(sasl * 5) == b""
    reply = client.send(sasl)
    assert b"<policy-violation" in reply and b"invalid-mechanism" not in reply
    assert client.transport.disconnecting
    assert b"<stream:features>" in Stream(factory).send(header())


def test_idle_session_keeps_no_event_queue(directory: FileDirectory) -> None:
    """Between stanzas a bound session holds no queue of events."""
    client = stream(directory).online("pc")
    assert client.server.pending == ()
    client.send(b"<presence/>" * 3)
    assert client.server.pending == ()


def test_restricted_xml(directory: FileDirectory) -> None:
    """Comments, processing instructions and DTDs are restricted-xml."""
    client = stream(directory)
    client.send(header())
    assert b"<restricted-xml" in client.send(b"<!-- hello -->")


def test_not_well_formed(directory: FileDirectory) -> None:
    """Broken XML ends the stream with not-well-formed."""
    client = stream(directory)
    client.send(header())
    assert b"<not-well-formed" in client.send(b"<a></b>")


def test_idle_and_login_timeouts(directory: FileDirectory) -> None:
    """Whitespace keeps the idle timer alive but not the login deadline."""
    clock = Clock()
    client = Stream(make_factory(directory, clock))
    client.send(header())
    for _ in range(5):
        clock.advance(11)
        client.send(b" ")
    assert not client.transport.disconnecting
    clock.advance(10)
    assert b"<connection-timeout" in client.take()
    assert client.transport.disconnecting


def test_logged_in_idle_timeout(directory: FileDirectory) -> None:
    """After login only the idle time-out applies."""
    clock = Clock()
    client = Stream(make_factory(directory, clock))
    client.online("r")
    clock.advance(120)
    client.send(b"\n")
    assert not client.transport.disconnecting
    clock.advance(10 * 60)
    assert b"<connection-timeout" in client.take()


def test_too_much_before_binding_ends_the_stream(
    directory: FileDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until a session is bound its parser is never dropped (expat keeps
    every name and prefix it saw): more than BEFORE_BOUND_STANZAS largest
    stanzas before binding is policy-violation (here 4 KiB, of 256 KiB
    stanzas); a bound session is not held to it."""
    monkeypatch.setattr(server_module, "BEFORE_BOUND_STANZAS", 4096 / (256 * 1024))
    factory = make_factory(directory, Clock())
    client = Stream(factory)
    client.send(header())
    sasl = b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-NONE'/>"
    replies = b"".join(client.send(sasl) for _ in range(4096 // len(sasl) + 1))
    assert b"<policy-violation" in replies
    assert client.transport.disconnecting
    bound = Stream(factory).online("pc")
    bound.send(b"<presence/>" * 1000)
    assert not bound.transport.disconnecting
