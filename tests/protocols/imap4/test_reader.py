"""The IMAP command reader: literals, lists, sections, limits."""

from __future__ import annotations

from communigate.protocols.imap4.reader import (
    BadCommand,
    Command,
    CommandReader,
    Continue,
    Line,
)


def test_simple_commands() -> None:
    """Atoms, quoted strings with escapes and lists come out typed."""
    reader = CommandReader()
    events = reader.feed(b'a1 LOGIN "jo\\"hn" "p\\\\w"\r\na2 fetch 1:* (FLAGS UID)\r\n')
    assert events == [
        Command("a1", "LOGIN", [b'jo"hn', b"p\\w"]),
        Command("a2", "FETCH", ["1:*", ["FLAGS", "UID"]]),
    ]


def test_sections_with_spaces() -> None:
    """A BODY section keeps its spaces and partial suffix in one atom."""
    events = CommandReader().feed(b"t FETCH 1 (BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>)\r\n")
    assert events == [Command("t", "FETCH", ["1", ["BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>"]])]


def test_synchronising_literal() -> None:
    """{n} asks for a continuation; the literal arrives in pieces."""
    reader = CommandReader()
    assert reader.feed(b"a APPEND INBOX (\\Seen) {11}\r\n") == [Continue()]
    assert reader.feed(b"Hello") == []
    assert reader.feed(b" World\r\n") == [
        Command("a", "APPEND", ["INBOX", ["\\Seen"], b"Hello World"])
    ]


def test_non_synchronising_literal() -> None:
    """{n+} (LITERAL+) needs no continuation."""
    reader = CommandReader()
    assert reader.feed(b"a LOGIN {4+}\r\njohn {2+}\r\npw\r\n") == [
        Command("a", "LOGIN", [b"john", b"pw"])
    ]


def test_huge_literals() -> None:
    """A 10 GB synchronising literal is refused and the session goes on; a
    10 GB non-synchronising one is fatal."""
    reader = CommandReader(max_literal=1000)
    events = reader.feed(b"a APPEND INBOX {10000000000}\r\nb NOOP\r\n")
    assert events == [BadCommand("a", "[TOOBIG] literal too large"), Command("b", "NOOP", [])]
    events = CommandReader(max_literal=1000).feed(b"a APPEND INBOX {10000000000+}\r\nxx")
    assert events == [BadCommand("a", "literal too large", fatal=True)]


def test_nesting_and_garbage() -> None:
    """Deep nesting, binary bytes and unbalanced lists are BAD, never a crash."""
    reader = CommandReader()
    events = reader.feed(b"a SEARCH " + b"(" * 100_000 + b"\r\n")
    assert isinstance(events[0], BadCommand) and events[0].tag == "a"
    assert reader.feed(b"b SEARCH \xff\xfe\r\n")[0] == BadCommand("b", "8-bit characters in atom")
    assert isinstance(reader.feed(b"c LIST (\r\n")[0], BadCommand)
    assert reader.feed(b"\x00\x01\r\n")[0] == BadCommand(None, "missing or invalid tag")
    assert reader.feed(b"d NOOP\r\n") == [Command("d", "NOOP", [])]


def test_overlong_line() -> None:
    """A line beyond the limit is refused once, without buffering it all."""
    reader = CommandReader(max_line=100)
    assert reader.feed(b"x" * 1000) == []
    assert reader.feed(b"x" * 1000 + b"\r\na NOOP\r\n") == [
        BadCommand(None, "line too long"),
        Command("a", "NOOP", []),
    ]


def test_raw_lines() -> None:
    """In raw mode lines come out as they are (IDLE, AUTHENTICATE)."""
    reader = CommandReader()
    reader.raw_lines = True
    assert reader.feed(b"DONE\r\n") == [Line(b"DONE")]
