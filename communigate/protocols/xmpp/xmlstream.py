"""The XML stream of RFC 6120 §4, parsed incrementally and sans-IO.

Bytes go in (:meth:`XMLStreamParser.feed`), events come out: the stream
header (:class:`StreamOpened`), each complete first-level element as a
:class:`twisted.words.xish.domish.Element` (:class:`StanzaReceived`), the
end of the stream (:class:`StreamClosed`).  Expat does the parsing; this
module adds what RFC 6120 §11 restricts and what a server must bound:

- no DTD, entity declaration, comment or processing instruction
  (``restricted-xml``, §11.1);
- elements nested at most :attr:`Limits.max_depth` deep, at most
  :attr:`Limits.max_attributes` attributes on one element;
- a first-level element (stanza) of at most :attr:`Limits.max_stanza`
  octets: counted while it arrives, so a client cannot make the server
  buffer more (``policy-violation``, §4.9.3.15).

A violation is raised as :class:`StreamViolation` carrying the stream
error condition; the parser is unusable afterwards.  A stream restart
(after STARTTLS and SASL, §5.4.3.3 and §6.4.6) is :meth:`reset`.

Between stanzas an idle stream needs nothing of expat but the namespace
context its header opened, so :meth:`XMLStreamParser.release` drops the
expat parser (its buffers and name tables are most of a bound session's
memory) when it holds no unparsed byte; the next :meth:`~XMLStreamParser.feed`
builds a new one and replays the client's header into it first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from xml.parsers import expat

from twisted.words.xish import domish

#: The streams namespace (RFC 6120 §4.8.1).
NS_STREAMS = "http://etherx.jabber.org/streams"
#: The content namespace of client-to-server streams.
NS_CLIENT = "jabber:client"


@dataclass(frozen=True)
class Limits:
    """How much one stream may make the parser hold."""

    #: Octets of one first-level element, from its ``<`` to its end.
    max_stanza: int = 256 * 1024
    #: Nesting below the stream element (the stanza itself is depth 1).
    max_depth: int = 32
    #: Attributes on one element (namespace declarations not included:
    #: expat does not report them as attributes).
    max_attributes: int = 64
    #: Different element and attribute names one parser has seen (expat
    #: keeps each until the parser is dropped: between stanzas of a bound
    #: session, at the end of the connection before).  Namespace prefixes
    #: and declarations are not counted here; what a stream sends before
    #: it is bound is bounded as a whole by the server.
    max_names: int = 1000
    #: Characters of one element or attribute name, its namespace included.
    max_name: int = 1024


class StreamViolation(Exception):
    """The client broke the stream; ``condition`` is the stream error."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(text or condition)
        self.condition = condition
        self.text = text


@dataclass(slots=True)
class StreamOpened:
    """The client's stream header: its attributes (qualified by namespace
    where they have one, ``xml:lang`` as ``lang``)."""

    attributes: dict[str, str]
    namespace: str
    name: str


@dataclass(slots=True)
class StanzaReceived:
    """One complete first-level element.  (Not frozen, like the other
    events: one is made per stanza, and a frozen dataclass sets each field
    through ``object.__setattr__``, six times the cost.)"""

    element: domish.Element


@dataclass(slots=True)
class StreamClosed:
    """The client sent ``</stream:stream>``."""


Event = StreamOpened | StanzaReceived | StreamClosed

_XML_NS = "http://www.w3.org/XML/1998/namespace"
#: Expat handlers for what RFC 6120 §11.1 forbids.
_RESTRICTED = (
    "StartDoctypeDeclHandler",
    "EntityDeclHandler",
    "CommentHandler",
    "ProcessingInstructionHandler",
    "NotationDeclHandler",
    "ExternalEntityRefHandler",
)


def _split(name: str) -> tuple[str, str]:
    """Expat's ``uri local`` (namespace separator: space) as a pair."""
    uri, _, local = name.rpartition(" ")
    return uri, local


#: :func:`_split` of element names, kept for the process: the same few come
#: in every stanza of every stream (one table for all, not one per session).
_split_kept = functools.lru_cache(maxsize=256)(_split)
#: The longest name kept: a client's made-up long names cost it a split.
_KEPT_NAME = 128


class XMLStreamParser:
    """Incremental parser of one client's stream (restartable)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._events: list[Event] = []
        self._parser: expat.XMLParserType | None = None
        self._stack: list[domish.Element] = []
        self._depth = 0
        self._fed = 0
        self._stanza_start = 0
        self._broken = False
        #: What was fed until the header was known to be complete, then the
        #: header itself (replayed into a rebuilt parser, see :meth:`release`).
        self._prefix = bytearray()
        self._header: bytes | None = None
        self._replaying = False
        self.reset()

    def reset(self) -> None:
        """A new stream begins (RFC 6120 §4.3.3): a fresh parser."""
        self._parser = self._new_parser()
        self._stack = []
        self._depth = 0
        self._fed = 0
        self._stanza_start = 0
        self._prefix = bytearray()
        self._header = None

    def _new_parser(self) -> expat.XMLParserType:
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.buffer_text = False
        parser.ordered_attributes = False
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        for handler in _RESTRICTED:
            setattr(parser, handler, self._restricted)
        return parser

    def release(self) -> bool:
        """Drop the expat parser if the stream stands between stanzas with
        every byte fed parsed; True if it was dropped.  Nothing is lost: the
        next :meth:`feed` rebuilds it from the client's header."""
        parser = self._parser
        if parser is None or self._broken or self._depth != 1 or self._stack:
            return False
        if parser.CurrentByteIndex != self._fed:
            return False  # expat holds part of a token
        if self._header is None:
            self._header = bytes(self._prefix)
            self._prefix = bytearray()
        self._parser = None
        return True

    def close(self) -> None:
        """The connection is gone: drop the expat parser now (it and this
        object refer to each other, which only the cyclic collector would
        otherwise undo) and refuse any more input."""
        self._parser = None
        self._stack = []
        self._events = []
        self._broken = True

    @property
    def released(self) -> bool:
        """Whether :meth:`release` dropped the expat parser (until the next
        :meth:`feed`)."""
        return self._parser is None and not self._broken

    def _rebuild(self) -> expat.XMLParserType:
        """A new expat parser inside the stream again: the header replayed
        (its events dropped), the byte counts restarted after it."""
        assert self._header is not None
        parser = self._new_parser()
        self._parser = parser
        self._depth = 0
        self._replaying = True
        try:
            parser.Parse(self._header, False)
        finally:
            self._replaying = False
        self._events = []
        self._fed = self._stanza_start = len(self._header)
        return parser

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; the events it completed, in order.  Raises
        :class:`StreamViolation`."""
        if self._broken:
            raise StreamViolation("not-well-formed", "the stream is broken")
        parser = self._parser if self._parser is not None else self._rebuild()
        self._events = []
        if self._header is None:
            self._prefix += data
        try:
            parser.Parse(data, False)
        except expat.ExpatError as error:
            self.close()
            raise StreamViolation("not-well-formed", str(error)) from None
        except StreamViolation:
            self.close()
            raise
        self._fed += len(data)
        # Also between stanzas and before the header: an unfinished tag
        # (``<message to='...`` that never ends) is held by expat too.
        if self._fed - self._stanza_start > self.limits.max_stanza:
            self.close()
            raise StreamViolation("policy-violation", "stanza too large")
        events, self._events = self._events, []
        return events

    def _restricted(self, *args: object) -> None:
        raise StreamViolation("restricted-xml", "DTDs, comments and PIs are not allowed")

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        limits = self.limits
        if len(attributes) > limits.max_attributes:
            raise StreamViolation("policy-violation", "too many attributes")
        keys = "".join(attributes)
        if len(name) > limits.max_name or (
            len(keys) > limits.max_name and any(len(key) > limits.max_name for key in attributes)
        ):
            raise StreamViolation("policy-violation", "name too long")
        assert self._parser is not None
        if len(self._parser.intern) > limits.max_names:
            raise StreamViolation("policy-violation", "too many different names")
        qname = _split_kept(name) if len(name) <= _KEPT_NAME else _split(name)
        uri, local = qname
        if self._depth == 0:
            if self._replaying:
                self._depth = 1
                return
            plain = {}
            for key, value in attributes.items():
                key_uri, key_local = _split(key)
                plain[key_local if key_uri in ("", _XML_NS) else key] = value
            self._events.append(StreamOpened(plain, uri, local))
            self._depth = 1
            self._mark()
            return
        if self._depth > self.limits.max_depth:
            raise StreamViolation("policy-violation", "elements nested too deep")
        if self._depth == 1:
            assert self._parser is not None
            self._stanza_start = self._parser.CurrentByteIndex
            if self._header is None:
                self._header_ends(self._stanza_start)
        if " " not in keys:
            # No attribute in a namespace (nearly every stanza): expat's
            # fresh dictionary is the element's as it is.
            element = domish.Element(qname, uri, attributes)
        else:
            element = domish.Element(qname, uri)
            for key, value in attributes.items():
                key_uri, key_local = _split(key)
                if key_uri == "":
                    element.attributes[key_local] = value
                else:
                    element.attributes[(key_uri, key_local)] = value
        if self._stack:
            # Without domish's parent link: a parsed stanza holds no cycle,
            # so it is freed as soon as it is routed, not by the cyclic
            # collector (nothing here walks up from a child).
            self._stack[-1].children.append(element)
        self._stack.append(element)
        self._depth += 1

    def _end(self, name: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._events.append(StreamClosed())
            return
        element = self._stack.pop()
        if not self._stack:
            self._events.append(StanzaReceived(element))
            element.parent = None
            self._mark()

    def _text(self, data: str) -> None:
        if self._depth >= 2 and self._stack:
            # domish's addContent, without its checks: expat gives text,
            # possibly in several pieces that join.
            children = self._stack[-1].children
            if children and children[-1].__class__ is str:
                children[-1] += data
            else:
                children.append(data)
        elif data.strip():
            raise StreamViolation("not-well-formed", "text between stanzas")
        else:
            self._mark()
            if self._depth == 1:
                self._header_ends(self._stanza_start)

    def _mark(self) -> None:
        """Between stanzas: what is parsed so far is done with (the
        size limit counts what comes after)."""
        assert self._parser is not None
        self._stanza_start = self._parser.CurrentByteIndex

    def _header_ends(self, index: int) -> None:
        """The first thing after the stream header starts at ``index``:
        the header is what was fed before it."""
        if self._header is None and index >= 0:
            self._header = bytes(self._prefix[:index])
            self._prefix = bytearray()
