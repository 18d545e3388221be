"""The incremental XML stream parser (RFC 6120 §4, §11): events from bytes
in any chunking, restarts, and the limits."""

from __future__ import annotations

import pytest

from communigate.protocols.xmpp.xmlstream import (
    Limits,
    StanzaReceived,
    StreamClosed,
    StreamOpened,
    StreamViolation,
    XMLStreamParser,
)
from tests.protocols.xmpp_client import header

MESSAGE = b"<message to='a@b'><body>x &amp; y</body></message>"


def test_byte_by_byte() -> None:
    """Fed one byte at a time, the parser yields header, stanza, close."""
    parser = XMLStreamParser()
    events = []
    for byte in header() + b" \n" + MESSAGE + b"</stream:stream>":
        events += parser.feed(bytes([byte]))
    assert isinstance(events[0], StreamOpened)
    assert events[0].attributes["to"] == "company.com"
    assert isinstance(events[1], StanzaReceived)
    element = events[1].element
    assert (element.uri, element.name) == ("jabber:client", "message")
    assert str(element.body) == "x & y"
    assert isinstance(events[2], StreamClosed)


def test_reset_starts_a_new_stream() -> None:
    """After reset a new header is accepted."""
    parser = XMLStreamParser()
    parser.feed(header())
    parser.reset()
    assert isinstance(parser.feed(header())[0], StreamOpened)


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (b"<a><b><c><d/></c></b></a>", "policy-violation"),
        (b"<a x='1' y='2' z='3'/>", "policy-violation"),
        (b"<a>" + b"x" * 2000, "policy-violation"),
        (b"<?pi x?>", "restricted-xml"),
        (b"<a></b>", "not-well-formed"),
        (b"text", "not-well-formed"),
    ],
)
def test_limits_and_restrictions(data: bytes, condition: str) -> None:
    """Depth, attributes, size, PIs, broken XML and text between stanzas."""
    parser = XMLStreamParser(Limits(max_stanza=1000, max_depth=3, max_attributes=2))
    parser.feed(header())
    with pytest.raises(StreamViolation) as raised:
        parser.feed(data)
    assert raised.value.condition == condition


def test_doctype_is_restricted() -> None:
    """A DTD before the stream is restricted-xml."""
    with pytest.raises(StreamViolation) as raised:
        XMLStreamParser().feed(b"<!DOCTYPE x [<!ENTITY a 'b'>]>" + header())
    assert raised.value.condition == "restricted-xml"
