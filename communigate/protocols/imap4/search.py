"""SEARCH programs (RFC 3501 §6.4.4): parsed into predicates, evaluated on
message views.  Every search key of RFC 3501 is understood.  Pure code.

Text keys compare case-insensitively; header keys see RFC 2047 words
decoded.  Keys that need only flags, sizes, UIDs or dates never read the
message; header keys use the header from the mailbox's cache; BODY and
TEXT read the file once, through the view, without parsing its MIME.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Protocol

from communigate.protocols.imap4.message import Part, decode_words, sent_date
from communigate.protocols.imap4.reader import Argument
from communigate.protocols.imap4.sequence import SequenceError, SequenceSet

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DATE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})\Z")
_MAX_DEPTH = 64


class SearchError(ValueError):
    """A search program that cannot be understood."""


class View(Protocol):
    """What a search sees of one message."""

    number: int
    uid: int
    flags: frozenset[str]
    recent: bool
    size: int

    def internal_date(self) -> datetime: ...

    def header(self) -> bytes:
        """The message's header with its blank line (cached: the message
        file is not opened once the mailbox's cache has it)."""
        ...

    def cached(self, name: str, compute: Callable[[], bytes]) -> bytes:
        """A value worked out from the message, kept in the mailbox's cache
        under ``name``."""
        ...

    def part(self) -> Part: ...

    def data(self) -> bytes: ...


Predicate = Callable[[View, int, int], bool]  # view, largest number, largest uid


def parse_date(value: Argument) -> date:
    """``1-Feb-1994``."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    match = _DATE.match(text)
    if match is None or match.group(2).lower() not in _MONTHS:
        raise SearchError(f"invalid date {text!r}")
    day, month, year = match.groups()
    try:
        return date(int(year), _MONTHS.index(month.lower()) + 1, int(day))
    except ValueError:
        raise SearchError(f"invalid date {text!r}") from None


def _text(value: Argument) -> str:
    if not isinstance(value, (str, bytes)):
        raise SearchError("expected a string")
    return (value if isinstance(value, str) else value.decode("utf-8", "replace")).lower()


def _header_contains(view: View, name: str, needle: str) -> bool:
    for key, value, _ in _headers(view).fields:
        if key == name and needle in decode_words(value).lower():
            return True
    return False


def _lower(data: bytes) -> str:
    return data.decode("utf-8", "replace").lower()


def _flag(name: str, present: bool = True) -> Predicate:
    return lambda view, _n, _u: (name in view.flags) == present


def _headers(view: View) -> Part:
    """The message known by its (cached) header alone."""
    return Part.of_header(view.header())


def _body(view: View) -> bytes:
    """The message's body, read without parsing its MIME structure."""
    return view.data()[len(view.header()) :]


def _sent(view: View) -> date | None:
    sent = sent_date(_headers(view))
    return sent.date() if sent else None


class _Parser:
    def __init__(self, arguments: list[Argument]) -> None:
        self.items: Iterator[Argument] = iter(arguments)
        self.depth = 0

    def next(self) -> Argument:
        try:
            return next(self.items)
        except StopIteration:
            raise SearchError("search program ends too early") from None

    def program(self) -> Predicate:
        keys = []
        for item in self.items:
            keys.append(self.key(item))
        if not keys:
            raise SearchError("empty search program")
        return _all_of(keys)

    def key(self, item: Argument) -> Predicate:
        if isinstance(item, list):
            self.depth += 1
            if self.depth > _MAX_DEPTH or not item:
                raise SearchError("bad parenthesised search key")
            nested = _Parser(item)
            nested.depth = self.depth
            result = nested.program()
            self.depth -= 1
            return result
        if not isinstance(item, str):
            raise SearchError("unexpected string in search program")
        word = item.upper()
        simple = _SIMPLE.get(word)
        if simple is not None:
            return simple
        if word == "NOT":
            inner = self.key(self.next())
            return lambda view, n, u: not inner(view, n, u)
        if word == "OR":
            left, right = self.key(self.next()), self.key(self.next())
            return lambda view, n, u: left(view, n, u) or right(view, n, u)
        if word in ("KEYWORD", "UNKEYWORD"):
            keyword = self.next()
            name = keyword if isinstance(keyword, str) else _text(keyword)
            return _flag(name, word == "KEYWORD")
        if word in ("LARGER", "SMALLER"):
            size = self.number()
            if word == "LARGER":
                return lambda view, _n, _u: view.size > size
            return lambda view, _n, _u: view.size < size
        if word == "UID":
            uids = self.sequence()
            return lambda view, _n, largest_uid: uids.contains(view.uid, largest_uid)
        if word in ("BEFORE", "ON", "SINCE"):
            return _compare_date(word, parse_date(self.next()), lambda v: v.internal_date().date())
        if word in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            return _compare_date(word[4:], parse_date(self.next()), _sent)
        if word in ("FROM", "TO", "CC", "BCC", "SUBJECT"):
            needle = _text(self.next())
            name = word.lower()
            return lambda view, _n, _u: _header_contains(view, name, needle)
        if word == "HEADER":
            name, needle = _text(self.next()), _text(self.next())
            if not needle:
                return lambda view, _n, _u: _headers(view).get(name) is not None
            return lambda view, _n, _u: _header_contains(view, name, needle)
        if word == "BODY":
            needle = _text(self.next())
            return lambda view, _n, _u: needle in _lower(_body(view))
        if word == "TEXT":
            needle = _text(self.next())
            return lambda view, _n, _u: needle in _lower(view.data())
        try:
            numbers = SequenceSet(item)
        except SequenceError:
            raise SearchError(f"unknown search key {item}") from None
        return lambda view, largest, _u: numbers.contains(view.number, largest)

    def number(self) -> int:
        value = self.next()
        if not isinstance(value, str) or not value.isdigit():
            raise SearchError("expected a number")
        return int(value)

    def sequence(self) -> SequenceSet:
        value = self.next()
        if not isinstance(value, str):
            raise SearchError("expected a sequence set")
        try:
            return SequenceSet(value)
        except SequenceError as error:
            raise SearchError(str(error)) from None


def _compare_date(how: str, wanted: date, of: Callable[[View], date | None]) -> Predicate:
    def check(view: View, _n: int, _u: int) -> bool:
        actual = of(view)
        if actual is None:
            return False
        if how == "BEFORE":
            return actual < wanted
        if how == "ON":
            return actual == wanted
        return actual >= wanted

    return check


def _all_of(keys: list[Predicate]) -> Predicate:
    if len(keys) == 1:
        return keys[0]
    return lambda view, n, u: all(key(view, n, u) for key in keys)


_SIMPLE: dict[str, Predicate] = {
    "ALL": lambda _view, _n, _u: True,
    "ANSWERED": _flag("\\Answered"),
    "DELETED": _flag("\\Deleted"),
    "DRAFT": _flag("\\Draft"),
    "FLAGGED": _flag("\\Flagged"),
    "SEEN": _flag("\\Seen"),
    "UNANSWERED": _flag("\\Answered", False),
    "UNDELETED": _flag("\\Deleted", False),
    "UNDRAFT": _flag("\\Draft", False),
    "UNFLAGGED": _flag("\\Flagged", False),
    "UNSEEN": _flag("\\Seen", False),
    "RECENT": lambda view, _n, _u: view.recent,
    "OLD": lambda view, _n, _u: not view.recent,
    "NEW": lambda view, _n, _u: view.recent and "\\Seen" not in view.flags,
}


def parse(arguments: list[Argument]) -> Predicate:
    """A predicate for a search program (after any CHARSET)."""
    if arguments and isinstance(arguments[0], str) and arguments[0].upper() == "CHARSET":
        if len(arguments) < 2:
            raise SearchError("CHARSET needs a name")
        charset = _text(arguments[1])
        if charset not in ("utf-8", "us-ascii"):
            raise SearchError("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset")
        arguments = arguments[2:]
    return _Parser(arguments).program()


def utc(timestamp: float) -> datetime:
    """A file time as an aware datetime."""
    return datetime.fromtimestamp(timestamp, UTC)
