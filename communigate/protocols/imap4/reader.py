"""Reading IMAP commands from a byte stream, without I/O (RFC 3501 §9).

:class:`CommandReader` takes bytes and gives events: whole commands (tag,
name, arguments), requests for a continuation (a synchronising literal
``{n}`` needs the server's ``+`` before the client sends it), raw lines
(while the server waits for AUTHENTICATE data or IDLE's ``DONE``) and
errors.  Everything a client controls is bounded: line length, literal
size, the size of one command and the nesting of parentheses.

Literals are limited by ``max_literal`` (the server lowers it before login,
so ``a LOGIN {60000000}`` is refused without ``+``), except the message of
an APPEND once a ``spool`` is set (after login): that may be as large as
``max_message`` and, when larger than ``max_literal``, is written to the
spool as it arrives (RFC 3501 §6.3.11) instead of into memory.  The spool is
injected, so the reader itself does no I/O.

Arguments are Python values: an atom is :class:`str`, a quoted string or
literal is :class:`bytes`, a spooled literal a
:class:`~communigate.store.spool.SpooledMessage`, a parenthesised list is
:class:`list`.  An atom may contain a bracketed section with spaces
(``BODY[HEADER.FIELDS (A B)]``) and a ``<partial>`` after it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, Union

from communigate.store.spool import SpooledMessage

Argument = Union[str, bytes, SpooledMessage, list["Argument"]]
Segment = Union[bytes, SpooledMessage]

MAX_LINE = 64 * 1024
MAX_DEPTH = 64
_LITERAL = re.compile(rb"\{(\d{1,20})(\+?)\}\Z")
_TAG = re.compile(rb"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|~]+\Z")


@dataclass(frozen=True)
class Command:
    """A complete command."""

    tag: str
    name: str
    arguments: list[Argument]


@dataclass(frozen=True)
class Continue:
    """Send ``+`` so the client sends its synchronising literal."""


@dataclass(frozen=True)
class Line:
    """A raw line (AUTHENTICATE response, IDLE's DONE)."""

    data: bytes


@dataclass(frozen=True)
class BadCommand:
    """A command that cannot be read; ``tag`` is None when unknown."""

    tag: str | None
    text: str
    fatal: bool = False


Event = Command | Continue | Line | BadCommand


class ParseError(ValueError):
    """Arguments that do not follow IMAP syntax."""


class LiteralSink(Protocol):
    """Where a spooled literal goes as it arrives
    (:class:`~communigate.store.spool.MessageSpool`)."""

    def write(self, data: bytes) -> None:
        """Take the next bytes of the literal."""

    def finish(self) -> SpooledMessage:
        """The whole literal; OSError if it could not be kept."""

    def discard(self) -> None:
        """Drop what was written."""


class CommandReader:
    """Feed bytes, get events."""

    def __init__(self, max_literal: int = 64 * 1024 * 1024, max_line: int = MAX_LINE) -> None:
        #: Largest literal held in memory (any command).
        self.max_literal = max_literal
        self.max_line = max_line
        #: Largest APPEND message, when a spool is set.
        self.max_message = 0
        #: Opens a sink for an APPEND message larger than ``max_literal``.
        self.spool: Callable[[], LiteralSink] | None = None
        self.raw_lines = False
        self._buffer = bytearray()
        self._segments: list[Segment] = []
        self._literal_left = 0
        self._literal = bytearray()
        self._sink: LiteralSink | None = None
        self._failure: str | None = None
        self._size = 0
        self._discarding = False
        self._closed = False

    def feed(self, data: bytes) -> list[Event]:
        """Add received bytes; return the events they complete."""
        if self._closed:
            return []
        self._buffer += data
        events: list[Event] = []
        while True:
            if self._literal_left:
                if not self._buffer:
                    break
                taken = bytes(self._buffer[: self._literal_left])
                del self._buffer[: len(taken)]
                self._literal_left -= len(taken)
                if self._sink is not None:
                    self._sink.write(taken)
                else:
                    self._literal += taken
                if self._literal_left:
                    break
                self._end_literal()
                continue
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.max_line:
                    self._buffer.clear()
                    self._discarding = True
                    self._drop_command()
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._discarding:
                self._discarding = False
                events.append(BadCommand(None, "line too long"))
                continue
            if len(line) > self.max_line:
                self._drop_command()
                events.append(BadCommand(_tag_of(line), "line too long"))
                continue
            if self.raw_lines and not self._segments:
                events.append(Line(line))
                continue
            event = self._line(line)
            if event is not None:
                events.append(event)
                if isinstance(event, BadCommand) and event.fatal:
                    # Whatever else the client sends is not read.
                    self._buffer.clear()
                    self._closed = True
                    break
        return events

    def _line(self, line: bytes) -> Event | None:
        self._size += len(line)
        literal = _LITERAL.search(line)
        first = self._segments[0] if self._segments else line
        assert isinstance(first, bytes)
        if literal is None:
            self._segments.append(line)
            segments, failure = self._segments, self._failure
            self._segments, self._size, self._failure = [], 0, None
            if failure is not None:
                _discard(segments)
                return BadCommand(_tag_of(first), failure)
            event = _parse(segments)
            if not isinstance(event, Command):
                _discard(segments)
            return event
        size, non_sync = int(literal.group(1)), bool(literal.group(2))
        message = self.spool is not None and _is_append(first)
        spooled = message and size > self.max_literal
        limit = self.max_message if message else self.max_literal
        held = 0 if spooled else size
        if size > limit or self._size + held > self.max_literal + self.max_line:
            self._drop_command()
            if non_sync:
                # The client sends the bytes anyway: nothing sensible follows.
                return BadCommand(_tag_of(first), "literal too large", fatal=True)
            return BadCommand(_tag_of(first), "[TOOBIG] literal too large")
        if spooled:
            assert self.spool is not None
            try:
                self._sink = self.spool()
            except OSError:
                self._drop_command()
                return BadCommand(
                    _tag_of(first), "[UNAVAILABLE] cannot take the message now", fatal=non_sync
                )
        self._segments.append(line)
        self._size += held
        self._literal_left = size
        if size == 0:
            self._end_literal()
        return None if non_sync else Continue()

    def _end_literal(self) -> None:
        """The literal being read is complete."""
        sink, self._sink = self._sink, None
        if sink is None:
            self._segments.append(bytes(self._literal))
            self._literal.clear()
            return
        try:
            self._segments.append(sink.finish())
        except OSError:
            sink.discard()
            # Keep the command's shape; it is answered with the failure.
            self._segments.append(b"")
            self._failure = "[UNAVAILABLE] the message could not be stored"

    def _drop_command(self) -> None:
        """Forget the command being read, and any literal spooled for it."""
        _discard(self._segments)
        self._segments, self._size, self._failure = [], 0, None
        self._literal.clear()
        if self._sink is not None:
            self._sink.discard()
            self._sink = None

    def pending(self) -> bool:
        """Whether a command is partly read."""
        return bool(self._segments or self._literal_left or self._buffer)

    def clear(self) -> bytes:
        """Drop everything buffered (at a TLS switch) and return it."""
        dropped = bytes(self._buffer)
        self._buffer.clear()
        self._drop_command()
        self._literal_left = 0
        return dropped

    def close(self) -> None:
        """The connection is gone: drop everything, spooled data included."""
        self.clear()
        self._closed = True


def spooled_in(arguments: list[Argument]) -> Iterator[SpooledMessage]:
    """The spooled literals among ``arguments`` (nested lists included)."""
    for argument in arguments:
        if isinstance(argument, SpooledMessage):
            yield argument
        elif isinstance(argument, list):
            yield from spooled_in(argument)


def _discard(segments: list[Segment]) -> None:
    for segment in segments:
        if isinstance(segment, SpooledMessage):
            segment.discard()


def _is_append(first: bytes) -> bool:
    parts = first.split(b" ", 2)
    return len(parts) > 1 and parts[1].upper() == b"APPEND"


def _tag_of(line: bytes) -> str | None:
    tag = line.split(b" ", 1)[0]
    return tag.decode("ascii") if _TAG.match(tag) else None


def _parse(segments: list[Segment]) -> Event:
    first = segments[0]
    assert isinstance(first, bytes)
    parts = first.split(b" ", 2)
    tag = _tag_of(first)
    if tag is None or tag == "+":
        return BadCommand(None, "missing or invalid tag")
    if len(parts) < 2 or not parts[1]:
        return BadCommand(tag, "missing command")
    try:
        name = parts[1].decode("ascii").upper()
    except UnicodeDecodeError:
        return BadCommand(tag, "invalid command name")
    rest = [parts[2] if len(parts) > 2 else b"", *segments[1:]]
    if len(parts) == 2 and len(segments) > 1:
        return BadCommand(tag, "unexpected literal")
    try:
        arguments = _Tokenizer(rest).arguments()
    except ParseError as error:
        return BadCommand(tag, str(error))
    return Command(tag, name, arguments)


class _Tokenizer:
    """Turns line text and literals into arguments."""

    def __init__(self, segments: list[Segment]) -> None:
        # Segments alternate: text, literal, text, literal, text...
        self.segments = segments
        self.index = 0
        self.pos = 0

    @property
    def text(self) -> bytes:
        text = self.segments[self.index]
        assert isinstance(text, bytes)
        return text

    def arguments(self) -> list[Argument]:
        return self._items(0, closing=None)

    def _items(self, depth: int, closing: bytes | None) -> list[Argument]:
        if depth > MAX_DEPTH:
            raise ParseError("too deeply nested")
        items: list[Argument] = []
        while True:
            text = self.text
            while self.pos < len(text) and text[self.pos : self.pos + 1] == b" ":
                self.pos += 1
            if self.pos >= len(text):
                if self.index + 1 < len(self.segments) and _LITERAL.search(text):
                    raise ParseError("literal out of place")
                if closing is not None:
                    raise ParseError("unbalanced parenthesis")
                return items
            char = text[self.pos : self.pos + 1]
            if char == b"(":
                self.pos += 1
                items.append(self._items(depth + 1, b")"))
            elif char == b")":
                if closing is None:
                    raise ParseError("unbalanced parenthesis")
                self.pos += 1
                return items
            elif char == b'"':
                items.append(self._quoted())
            elif char == b"{":
                items.append(self._literal())
            else:
                items.append(self._atom())

    def _quoted(self) -> bytes:
        text, out = self.text, bytearray()
        self.pos += 1
        while self.pos < len(text):
            char = text[self.pos]
            if char == 0x22:
                self.pos += 1
                return bytes(out)
            if char == 0x5C:
                self.pos += 1
                if self.pos >= len(text) or text[self.pos] not in (0x22, 0x5C):
                    raise ParseError("bad escape in quoted string")
                char = text[self.pos]
            out.append(char)
            self.pos += 1
        raise ParseError("unterminated quoted string")

    def _literal(self) -> Segment:
        match = _LITERAL.match(self.text, self.pos)
        if match is None or match.end() != len(self.text):
            raise ParseError("bad literal")
        if self.index + 2 >= len(self.segments):
            raise ParseError("missing literal")
        data = self.segments[self.index + 1]
        self.index += 2
        self.pos = 0
        return data

    def _atom(self) -> str:
        text, start = self.text, self.pos
        depth = 0
        while self.pos < len(text):
            char = text[self.pos : self.pos + 1]
            if char == b"[":
                depth += 1
            elif char == b"]" and depth:
                depth -= 1
            elif depth == 0 and char in b' ()"{':
                break
            elif char < b" " or char == b"\x7f":
                raise ParseError("control character in atom")
            self.pos += 1
        if depth:
            raise ParseError("unbalanced bracket")
        if self.pos == start:
            raise ParseError("empty atom")
        try:
            return text[start : self.pos].decode("ascii")
        except UnicodeDecodeError:
            raise ParseError("8-bit characters in atom") from None
