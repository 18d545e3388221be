"""The control protocol on the wire, without I/O.

One request per line: a JSON object with a ``command`` (a string) and its
arguments as further members, whose values are scalars (string, number,
boolean, null).  One answer per line: a JSON object with ``ok`` true and the
command's fields, or ``ok`` false and an ``error`` in words.  A request
longer than :data:`MAX_REQUEST` bytes, not UTF-8, not JSON or not of that
shape is a :class:`RequestError`, answered with :func:`error_answer`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Longest request line, in bytes (without its line end).
MAX_REQUEST = 4096
#: Longest answer line the client reads, in bytes.
MAX_ANSWER = 64 * 1024 * 1024
#: Longest command name.
_MAX_COMMAND = 64


class RequestError(ValueError):
    """A request line that cannot be understood; the text says why."""


@dataclass(frozen=True)
class Request:
    """One parsed request."""

    command: str
    arguments: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)


def parse_request(line: bytes) -> Request:
    """The request on ``line`` (without its line end); raises
    :class:`RequestError`."""
    line = line.rstrip(b"\r")
    if len(line) > MAX_REQUEST:
        raise RequestError(f"request longer than {MAX_REQUEST} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("request is not UTF-8") from None
    try:
        value = json.loads(text)
    except ValueError:
        raise RequestError("request is not JSON") from None
    if not isinstance(value, dict):
        raise RequestError("request is not a JSON object")
    command = value.pop("command", None)
    if not isinstance(command, str) or not command or len(command) > _MAX_COMMAND:
        raise RequestError("request has no command")
    for name, argument in value.items():
        if argument is not None and not isinstance(argument, (str, int, float, bool)):
            raise RequestError(f"argument {name!r} is not a string, number or boolean")
    return Request(command, value)


def format_request(command: str, **arguments: str | int | float | bool | None) -> bytes:
    """The line (with its line end) that asks ``command``."""
    return _line({**arguments, "command": command})


def format_answer(answer: Mapping[str, object]) -> bytes:
    """The line (with its line end) that carries ``answer``."""
    return _line(answer)


def error_answer(message: str) -> dict[str, object]:
    """An answer that refuses, saying why."""
    return {"ok": False, "error": message}


def parse_answer(line: bytes) -> dict[str, object]:
    """The answer on ``line``; raises :class:`RequestError` if it is not a
    JSON object with a boolean ``ok``."""
    try:
        value = json.loads(line.decode("utf-8"))
    except ValueError:
        raise RequestError("the server's answer is not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("ok"), bool):
        raise RequestError("the server's answer has no 'ok'")
    return value


def _line(value: Mapping[str, object]) -> bytes:
    # ensure_ascii: no raw line end or odd byte can end up inside a line.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"
