"""Line splitting with a length bound, and dot-stuffing."""

from __future__ import annotations

import pytest

from communigate.protocols.lines import LineSplitter, LineTooLong
from communigate.protocols.multiline import DotStuffer, stuff_all


def test_lines_split_across_feeds() -> None:
    """Lines come out whole whatever the chunking; CR LF and LF both end lines."""
    splitter = LineSplitter(100)
    assert splitter.feed(b"US") == []
    assert splitter.feed(b"ER a\r\nPASS b\nNO") == [b"USER a", b"PASS b"]
    assert splitter.feed(b"OP\r\n") == [b"NOOP"]


def test_overlong_line_reported_once_and_skipped() -> None:
    """A huge line yields one LineTooLong and the next line is intact."""
    splitter = LineSplitter(10)
    events = splitter.feed(b"x" * 50_000)
    events += splitter.feed(b"y" * 50_000 + b"\r\nNOOP\r\n")
    assert events == [LineTooLong(10), b"NOOP"]


def test_overlong_line_in_one_chunk() -> None:
    """A too-long line that arrives whole is refused too."""
    assert LineSplitter(4).feed(b"123456\r\nok\r\n") == [LineTooLong(4), b"ok"]


def test_clear_returns_pending() -> None:
    """clear() drops what is buffered (used at a TLS switch)."""
    splitter = LineSplitter(100)
    splitter.feed(b"partial")
    assert splitter.clear() == b"partial"
    assert splitter.feed(b"\r\n") == [b""]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_dot_stuffing_any_chunking(size: int) -> None:
    """Leading dots are doubled even when a line start falls between chunks."""
    message = b".first\r\nmid\r\n.\r\n..two\r\nlast"
    stuffer = DotStuffer()
    out = b"".join(stuffer.feed(message[i : i + size]) for i in range(0, len(message), size))
    out += stuffer.finish()
    assert out == b"..first\r\nmid\r\n..\r\n...two\r\nlast\r\n.\r\n"
    assert stuff_all(message) == out


def test_empty_body() -> None:
    """An empty body is just the terminator."""
    assert stuff_all(b"") == b".\r\n"
