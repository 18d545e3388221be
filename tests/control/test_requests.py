"""The control protocol's wire format, parsed and formatted without I/O."""

from __future__ import annotations

import json

import pytest

from communigate.control.requests import (
    MAX_REQUEST,
    Request,
    RequestError,
    error_answer,
    format_answer,
    format_request,
    parse_answer,
    parse_request,
)


def test_request_with_arguments() -> None:
    """A JSON object line gives its command and the other members."""
    request = parse_request(b'{"command": "kick", "account": "a@b.c", "reason": "x"}')
    assert request == Request("kick", {"account": "a@b.c", "reason": "x"})


def test_carriage_return_is_ignored() -> None:
    """A CRLF line end leaves no ``\\r`` in the request."""
    assert parse_request(b'{"command":"status"}\r').command == "status"


def test_format_request_round_trips() -> None:
    """What the client formats the server parses back, one line."""
    line = format_request("sessions", of="company.com")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_request(line[:-1]) == Request("sessions", {"of": "company.com"})


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"x" * (MAX_REQUEST + 1), "longer than"),
        (b'{"command": "st\xffatus"}', "not UTF-8"),
        (b"status", "not JSON"),
        (b'["status"]', "not a JSON object"),
        (b'{"account": "a@b"}', "no command"),
        (b'{"command": 7}', "no command"),
        (b'{"command": ""}', "no command"),
        (b'{"command": "kick", "account": ["a"]}', "not a string"),
        (b'{"command": "kick", "account": {"a": 1}}', "not a string"),
    ],
)
def test_bad_requests_are_refused(line: bytes, why: str) -> None:
    """Too long, not UTF-8, not JSON, not an object, no command, or an
    argument that is not a scalar: a RequestError saying why."""
    with pytest.raises(RequestError, match=why):
        parse_request(line)


def test_answer_is_one_ascii_line() -> None:
    """An answer with line ends and non-ASCII text stays on one ASCII line."""
    line = format_answer({"ok": True, "text": "a\nb\u00e9"})
    assert line.count(b"\n") == 1 and line.isascii()
    assert parse_answer(line) == {"ok": True, "text": "a\nb\u00e9"}


def test_error_answer() -> None:
    """An error answer has ok false and the reason."""
    assert json.loads(format_answer(error_answer("no"))) == {"ok": False, "error": "no"}


@pytest.mark.parametrize("line", [b"nonsense", b"[1]", b'{"error": "x"}'])
def test_bad_answers_are_refused(line: bytes) -> None:
    """An answer that is not an object with a boolean ok is refused."""
    with pytest.raises(RequestError):
        parse_answer(line)
