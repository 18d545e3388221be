"""POP3 command parsing and the state table."""

from __future__ import annotations

import pytest

from communigate.protocols.pop3.parser import CommandError, State, parse, top_of


def test_commands_per_state() -> None:
    """Each state accepts only its commands."""
    assert parse(b"user Info", State.AUTHORIZATION).arguments == (b"Info",)
    with pytest.raises(CommandError, match="not allowed"):
        parse(b"STAT", State.AUTHORIZATION)
    with pytest.raises(CommandError, match="not allowed"):
        parse(b"USER x", State.TRANSACTION)
    assert parse(b"TOP 1 0", State.TRANSACTION).numbers() == (1, 0)


def test_password_keeps_spaces() -> None:
    """PASS takes the rest of the line, spaces included."""
    assert parse(b"PASS two  words ", State.AUTHORIZATION).arguments == (b"two  words ",)


@pytest.mark.parametrize(
    "line",
    [b"", b"XYZZY", b"\xff\xfe", b"RETR", b"RETR x", b"RETR -1", b"LIST 1 2", b"RETR 9999999999"],
)
def test_bad_commands(line: bytes) -> None:
    """Unknown commands, bad arguments and bad numbers are protocol errors."""
    with pytest.raises(CommandError):
        parse(line, State.TRANSACTION)


def test_top() -> None:
    """TOP returns the header, the blank line and n body lines."""
    message = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n"
    assert top_of(message, 0) == b"A: 1\r\nB: 2\r\n\r\n"
    assert top_of(message, 2) == b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n"
    assert top_of(message, 10) == message
