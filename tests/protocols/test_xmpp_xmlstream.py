"""The incremental XML stream parser (RFC 6120 §4, §11): events from bytes
in any chunking, restarts, and the limits."""

from __future__ import annotations

import gc
import weakref

import pytest
from twisted.words.xish import domish

from communigate.protocols.xmpp.stream import serialize
from communigate.protocols.xmpp.xmlstream import (
    Limits,
    StanzaReceived,
    StreamClosed,
    StreamOpened,
    StreamViolation,
    XMLStreamParser,
    _split_kept,
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


@pytest.mark.parametrize(
    "before",
    [b"", b"<message/> \n"],
)
def test_unfinished_start_tag_is_bounded(before: bytes) -> None:
    """A start tag that never ends (expat holds it while it grows) is
    refused once it passes the stanza size, after stanzas or not."""
    parser = XMLStreamParser(Limits(max_stanza=1000))
    parser.feed(header() + before)
    with pytest.raises(StreamViolation) as raised:
        parser.feed(b"<message to='")
        for _ in range(20):
            parser.feed(b"x" * 100)
    assert raised.value.condition == "policy-violation"


def test_unfinished_header_is_bounded() -> None:
    """So is a stream header that never ends."""
    parser = XMLStreamParser(Limits(max_stanza=1000))
    with pytest.raises(StreamViolation) as raised:
        parser.feed(header()[:-1])
        for number in range(20):
            parser.feed(f" a{number}='{'x' * 100}'".encode())
    assert raised.value.condition == "policy-violation"


def test_whitespace_pings_and_stanzas_are_not_counted_together() -> None:
    """Whitespace keepalives and complete stanzas, however many, never add
    up to a stanza that is too large."""
    parser = XMLStreamParser(Limits(max_stanza=1000))
    parser.feed(header())
    received = 0
    for _ in range(30):
        for _ in range(100):
            parser.feed(b" ")
        events = parser.feed(b"<message><body>" + b"y" * 900 + b"</body></message>")
        received += sum(isinstance(event, StanzaReceived) for event in events)
    assert received == 30


def _released_after_each_chunk(
    chunks: list[bytes], parser: XMLStreamParser
) -> tuple[list[object], list[bool]]:
    events: list[object] = []
    released = []
    for chunk in chunks:
        events += parser.feed(chunk)
        released.append(parser.release())
    return events, released


def test_release_between_stanzas_keeps_the_stream() -> None:
    """A parser released between stanzas (with a prefixed stream element
    and a pipelined stanza) parses what follows in the same namespaces,
    without a second header event, and the stream's end still matches."""
    head = (
        b"<?xml version='1.0'?><s:stream xmlns='jabber:client' "
        b"xmlns:s='http://etherx.jabber.org/streams' to='company.com' version='1.0'>"
    )
    parser = XMLStreamParser()
    chunks = [head + b"<presence/>", b" ", MESSAGE, MESSAGE[:10], MESSAGE[10:], b"</s:stream>"]
    events, released = _released_after_each_chunk(chunks, parser)
    assert released == [True, True, True, False, True, False]
    kinds = [type(event).__name__ for event in events]
    assert kinds == ["StreamOpened"] + ["StanzaReceived"] * 3 + ["StreamClosed"]
    element = events[2].element  # type: ignore[attr-defined]
    assert (element.uri, element.name, str(element.body)) == ("jabber:client", "message", "x & y")


def test_release_only_at_a_boundary() -> None:
    """Nothing is dropped while a stanza or a tag is unfinished."""
    parser = XMLStreamParser()
    parser.feed(header())
    parser.feed(b"<message to='a@b'><body>x")
    assert not parser.release()
    parser.feed(b"</body></message><presence to='>")
    assert not parser.release()
    assert [type(event) for event in parser.feed(b"'/>")] == [StanzaReceived]
    assert parser.release()


def test_release_keeps_the_stanza_limit() -> None:
    """After a release the size limit still counts from the stanza's start."""
    parser = XMLStreamParser(Limits(max_stanza=1000))
    parser.feed(header())
    assert parser.release()
    parser.feed(b"<message><body>" + b"x" * 600)
    with pytest.raises(StreamViolation) as raised:
        parser.feed(b"x" * 600)
    assert raised.value.condition == "policy-violation"


def test_serialized_stanza_escapes_and_parses_back() -> None:
    """What the server writes escapes every special character of attribute
    values and text, names a child's other namespace, and parses back to
    the same values."""
    tricky = "a&b <c> 'd' \"e\" &amp;"
    stanza = domish.Element(("jabber:client", "message"))
    stanza["to"] = "a@b"
    stanza["id"] = tricky
    stanza.addElement("body", content=tricky)
    stanza.addElement(("urn:x", "extra"))["v"] = "'"
    data = serialize(stanza)
    assert data == (
        b"<message to='a@b' id='a&amp;b &lt;c&gt; &apos;d&apos; \"e\" &amp;amp;'>"
        b"<body>a&amp;b &lt;c&gt; 'd' \"e\" &amp;amp;</body>"
        b"<extra xmlns='urn:x' v='&apos;'/></message>"
    )
    parser = XMLStreamParser()
    parser.feed(header())
    (event,) = parser.feed(data)
    assert isinstance(event, StanzaReceived)
    assert event.element["id"] == tricky
    assert str(event.element.body) == tricky
    assert next(event.element.elements("urn:x", "extra"))["v"] == "'"


@pytest.mark.parametrize("char", ["&", "<", ">", "'", '"', "x", "\t", "\n", "\r", "\r\n"])
def test_each_special_character_alone_is_escaped(char: str) -> None:
    """A value holding one special character only is escaped as well (the
    writer looks for each before escaping), and parses back the same."""
    stanza = domish.Element(("jabber:client", "message"))
    stanza["id"] = f"a{char}b"
    stanza.addElement("body", content=f"c{char}d")
    parser = XMLStreamParser()
    parser.feed(header())
    (event,) = parser.feed(serialize(stanza))
    assert isinstance(event, StanzaReceived)
    assert event.element["id"] == f"a{char}b"
    assert str(event.element.body) == f"c{char}d"


def test_attribute_in_another_namespace_is_written_with_a_prefix() -> None:
    """An attribute in a namespace other than ``xml:`` is written with a
    prefix declared on its element, escaped like any other, and parses
    back to the same value; the element's other attributes too."""
    special = "a\tb\nc\rd & <e> 'f'"
    stanza = domish.Element(("jabber:client", "message"))
    stanza["id"] = special
    stanza[("urn:x", "one")] = special
    stanza[("urn:x", "two")] = "2"
    stanza[("urn:y", "three")] = "3"
    stanza[("http://www.w3.org/XML/1998/namespace", "lang")] = "en"
    stanza.addElement("body", content=special)
    data = serialize(stanza)
    assert data.count(b"xmlns:a0='urn:x'") == 1 and b"xmlns:a1='urn:y'" in data
    parser = XMLStreamParser()
    parser.feed(header())
    (event,) = parser.feed(data)
    assert isinstance(event, StanzaReceived)
    parsed = event.element
    assert parsed["id"] == special and parsed[("urn:x", "one")] == special
    assert (parsed[("urn:x", "two")], parsed[("urn:y", "three")]) == ("2", "3")
    assert str(parsed.body) == special


def test_parsed_stanza_is_freed_without_the_cyclic_collector() -> None:
    """A parsed stanza holds no reference cycle: dropping it frees it at
    once, with nothing left for the cyclic garbage collector."""
    parser = XMLStreamParser()
    parser.feed(header())
    (event,) = parser.feed(b"<message to='a@b'><body>x</body><x xmlns='urn:y'><z/></x></message>")
    assert isinstance(event, StanzaReceived)
    stanza = weakref.ref(event.element)
    child = weakref.ref(next(event.element.elements("urn:y", "x")))
    enabled = gc.isenabled()
    gc.disable()
    try:
        del event
        assert stanza() is None and child() is None
    finally:
        if enabled:
            gc.enable()


def test_element_names_kept_split_are_bounded() -> None:
    """Names are split once and kept for every stream (each still parses
    however many a client makes up), except long ones, which never enter
    the process's table."""
    parser = XMLStreamParser()
    parser.feed(header())
    for index in range(300):
        stanza = f"<message><x{index} xmlns='urn:n{index}'>t</x{index}></message>".encode()
        (event,) = parser.feed(stanza)
        assert isinstance(event, StanzaReceived)
        (child,) = event.element.elements()
        assert (child.uri, child.name, str(child)) == (f"urn:n{index}", f"x{index}", "t")
    # A long name is split without going through the cache at all.
    long_name = "n" * 600
    before = _split_kept.cache_info()
    (event,) = parser.feed(f"<message><{long_name} xmlns='urn:x'/></message>".encode())
    assert isinstance(event, StanzaReceived)
    assert next(event.element.elements()).name == long_name
    after = _split_kept.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)


def test_names_are_bounded_in_length_and_number() -> None:
    """expat keeps every name it has seen until the parser goes: a name
    over the limit, or more different names than the limit, ends the
    stream with policy-violation (the server's memory stays bounded)."""
    limits = Limits(max_names=50, max_name=100)
    for stanza in (
        b"<message><" + b"n" * 101 + b"/></message>",
        b"<message " + b"a" * 101 + b"='1'/>",
    ):
        parser = XMLStreamParser(limits)
        parser.feed(header())
        with pytest.raises(StreamViolation) as raised:
            parser.feed(stanza)
        assert raised.value.condition == "policy-violation"
        assert parser._parser is None  # what expat kept is let go at once
    parser = XMLStreamParser(limits)
    parser.feed(header())
    wide = b"<message " + b" ".join(b"a%d='1'" % n for n in range(30)) + b"/>"
    assert len(parser.feed(wide)) == 1  # many short attribute names are fine
    with pytest.raises(StreamViolation) as raised:
        for index in range(60):
            parser.feed(b"<message><x%d/></message>" % index)
    assert raised.value.condition == "policy-violation"


def test_closed_parser_lets_go_and_refuses_input() -> None:
    """Closing (the connection is gone) undoes the parser's cycle with
    expat, so dropping it frees both at once, with no work left for the
    cyclic collector; any input before that is refused."""
    parser = XMLStreamParser()
    parser.feed(header() + b"<message><body>half")
    parser.close()
    with pytest.raises(StreamViolation):
        parser.feed(b"</body></message>")
    gone = weakref.ref(parser)
    enabled = gc.isenabled()
    gc.disable()
    try:
        del parser
        assert gone() is None
    finally:
        if enabled:
            gc.enable()
