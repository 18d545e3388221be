"""Stream management (XEP-0198) used at the wrong time: answered with
``<failed/>`` and the stream goes on (§3, §5)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from communigate.protocols.xmpp.server import XMPPFactory
from communigate.store.files import FileDirectory
from tests.protocols.xmpp_client import Stream, header, make_factory, plain

SM = b"xmlns='urn:xmpp:sm:3'"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
UNEXPECTED = f"<failed xmlns='urn:xmpp:sm:3'><unexpected-request xmlns='{STANZAS}'/></failed>"
NOT_AUTHORIZED = f"<failed xmlns='urn:xmpp:sm:3'><not-authorized xmlns='{STANZAS}'/></failed>"
PING = b"<iq type='get' id='p' to='company.com'><ping xmlns='urn:xmpp:ping'/></iq>"


@pytest.fixture
def factory(directory: FileDirectory) -> XMPPFactory:
    return make_factory(directory, Clock())


def test_enable_before_bind_fails_and_keeps_the_stream(factory: XMPPFactory) -> None:
    """<enable/> before binding: <failed><unexpected-request/></failed>;
    binding and enabling afterwards work."""
    client = Stream(factory)
    client.login()
    assert client.send(b"<enable " + SM + b"/>") == UNEXPECTED.encode()
    assert not client.transport.disconnecting
    assert b"<jid>" in client.bind("pc")
    assert b"<enabled" in client.send(b"<enable " + SM + b"/>")


def test_sm_before_authentication_is_not_authorized(factory: XMPPFactory) -> None:
    """Any stream management element before SASL: <failed><not-authorized/>,
    and the client can still log in."""
    client = Stream(factory)
    client.send(header())
    for element in (b"enable", b"r", b"resume previd='x' h='0'"):
        assert client.send(b"<" + element + b" " + SM + b"/>") == NOT_AUTHORIZED.encode()
    assert not client.transport.disconnecting
    assert client.send(plain("info", "pw-company.com")).startswith(b"<success")
    client.send(header())
    assert b"<jid>" in client.bind("pc")


def test_enable_twice_fails_and_counting_goes_on(factory: XMPPFactory) -> None:
    """A second <enable/> fails; the first one's counters keep working."""
    client = Stream(factory).online("pc")
    assert b"<enabled" in client.send(b"<enable " + SM + b"/>")
    assert client.send(b"<enable " + SM + b"/>") == UNEXPECTED.encode()
    assert b"id='p'" in client.send(PING)
    assert client.send(b"<r " + SM + b"/>") == b"<a xmlns='urn:xmpp:sm:3' h='1'/>"


def test_resume_after_bind_fails(factory: XMPPFactory) -> None:
    """<resume/> once a resource is bound fails; the session goes on."""
    client = Stream(factory).online("pc")
    reply = client.send(b"<resume " + SM + b" previd='x' h='0'/>")
    assert reply == UNEXPECTED.encode()
    assert b"id='p'" in client.send(PING)


@pytest.mark.parametrize("element", [b"<r " + SM + b"/>", b"<a " + SM + b" h='0'/>"])
def test_r_and_a_before_enable_fail(factory: XMPPFactory, element: bytes) -> None:
    """<r/> or <a/> before <enable/> (bound or not) fails and nothing else."""
    unbound = Stream(factory)
    unbound.login()
    assert unbound.send(element) == UNEXPECTED.encode()
    bound = Stream(factory).online("pc")
    assert bound.send(element) == UNEXPECTED.encode()
    assert b"id='p'" in bound.send(PING)
    assert not bound.transport.disconnecting
