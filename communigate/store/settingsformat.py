"""CommuniGate's text dictionary syntax: a reader and a writer.

CommuniGate Pro keeps settings as text objects (spec §10).  This module is the
only place that parses or formats that syntax; it is pure code (text in,
Python values out, and back) so every settings file, the command line and the
administration protocol share it.

Mapping between the syntax and Python values:

========================  =============================================
syntax                    Python
========================  =============================================
``atom``, ``"string"``    :class:`str`
``#123``, ``#-4``         :class:`int`
``[base64]``              :class:`bytes`
``#T24-10-2026_13:05:00`` :class:`datetime.datetime` (``#TPAST`` and
                          ``#TFUTURE`` map to ``datetime.min``/``max``)
``#NULL#``                ``None``
``(a, b)``                :class:`list`
``{k = v; }``             :class:`dict` with :class:`str` keys
========================  =============================================

Quoted strings know the escapes ``\\"``, ``\\\\``, ``\\e`` (a line break),
``\\r``, ``\\n``, ``\\t`` and ``\\ddd`` (a decimal character code).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from typing import Union

Value = Union[str, int, bytes, datetime.datetime, None, list["Value"], dict[str, "Value"]]

_TIME_FORMAT = "%d-%m-%Y_%H:%M:%S"
_DATE_FORMAT = "%d-%m-%Y"
_DELIMITERS = frozenset('(){}[];,="#\\')
_SAFE_ATOM = re.compile(r"[A-Za-z0-9._@\-]+\Z")
_ESCAPES = {'"': '"', "\\": "\\", "e": "\n", "n": "\n", "r": "\r", "t": "\t"}
_MAX_DEPTH = 64
_NUMBER = re.compile(r"#(-?[0-9]+)")


class SettingsSyntaxError(ValueError):
    """Raised for text that is not in CommuniGate's dictionary syntax."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at offset {position}")
        self.position = position


class _Reader:
    """A recursive-descent reader over one text; depth is bounded."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> SettingsSyntaxError:
        return SettingsSyntaxError(message, self.pos)

    def skip_space(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos].isspace():
            pos += 1
        self.pos = pos

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def value(self, depth: int = 0) -> Value:
        if depth > _MAX_DEPTH:
            raise self.fail("nesting too deep")
        char = self.peek()
        if char == "":
            raise self.fail("unexpected end of text")
        if char == "{":
            return self.dictionary(depth)
        if char == "(":
            return self.array(depth)
        if char == '"':
            return self.string()
        if char == "[":
            return self.data()
        if char == "#":
            return self.special()
        if char in _DELIMITERS:
            raise self.fail(f"unexpected {char!r}")
        return self.atom()

    def atom(self) -> str:
        text, start = self.text, self.pos
        pos = start
        while pos < len(text) and not text[pos].isspace() and text[pos] not in _DELIMITERS:
            pos += 1
        if pos == start:
            raise self.fail("expected an atom")
        self.pos = pos
        return text[start:pos]

    def string(self) -> str:
        self.pos += 1
        text, out = self.text, []
        while True:
            end = self.pos
            while end < len(text) and text[end] not in '"\\':
                end += 1
            out.append(text[self.pos : end])
            if end >= len(text):
                self.pos = end
                raise self.fail("unterminated string")
            if text[end] == '"':
                self.pos = end + 1
                return "".join(out)
            escape = text[end + 1 : end + 2]
            if escape in _ESCAPES:
                out.append(_ESCAPES[escape])
                self.pos = end + 2
            elif text[end + 1 : end + 4].isdigit() and len(text[end + 1 : end + 4]) == 3:
                out.append(chr(int(text[end + 1 : end + 4])))
                self.pos = end + 4
            else:
                self.pos = end
                raise self.fail("bad escape in string")

    def data(self) -> bytes:
        end = self.text.find("]", self.pos)
        if end < 0:
            raise self.fail("unterminated data block")
        body = "".join(self.text[self.pos + 1 : end].split())
        try:
            decoded = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise self.fail("bad base64 in data block") from None
        self.pos = end + 1
        return decoded

    def special(self) -> int | datetime.datetime | None:
        text = self.text
        if text.startswith("#NULL#", self.pos):
            self.pos += 6
            return None
        if text.startswith("#T", self.pos):
            self.pos += 2
            word = self.atom()
            if word == "PAST":
                return datetime.datetime.min
            if word == "FUTURE":
                return datetime.datetime.max
            for fmt in (_TIME_FORMAT, _DATE_FORMAT):
                try:
                    return datetime.datetime.strptime(word, fmt)
                except ValueError:
                    continue
            raise self.fail("bad time value")
        match = _NUMBER.match(text, self.pos)
        if match is None:
            raise self.fail("bad '#' value")
        self.pos = match.end()
        return int(match.group(1))

    def array(self, depth: int) -> list[Value]:
        self.expect("(")
        items: list[Value] = []
        if self.peek() == ")":
            self.pos += 1
            return items
        while True:
            items.append(self.value(depth + 1))
            char = self.peek()
            self.pos += 1
            if char == ")":
                return items
            if char != ",":
                self.pos -= 1
                raise self.fail("expected ',' or ')'")

    def dictionary(self, depth: int) -> dict[str, Value]:
        self.expect("{")
        items: dict[str, Value] = {}
        while True:
            char = self.peek()
            if char == "}":
                self.pos += 1
                return items
            key = self.string() if char == '"' else self.atom()
            self.expect("=")
            items[key] = self.value(depth + 1)
            self.expect(";")


def loads(text: str) -> Value:
    """Parse one value written in CommuniGate's syntax; nothing may follow it."""
    reader = _Reader(text)
    result = reader.value()
    if reader.peek() != "":
        raise reader.fail("unexpected text after the value")
    return result


def loads_dictionary(text: str) -> dict[str, Value]:
    """Parse a settings file: a dictionary, or an empty text for no settings."""
    if not text.strip():
        return {}
    result = loads(text)
    if not isinstance(result, dict):
        raise SettingsSyntaxError("a settings file must hold a dictionary", 0)
    return result


def _format_string(value: str) -> str:
    if _SAFE_ATOM.match(value):
        return value
    out = ['"']
    for char in value:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\e")
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\{ord(char):03d}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _format_time(value: datetime.datetime) -> str:
    if value == datetime.datetime.min:
        return "#TPAST"
    if value == datetime.datetime.max:
        return "#TFUTURE"
    return "#T" + value.strftime(_TIME_FORMAT)


def dumps(value: Value, indent: bool = False) -> str:
    """Format a value; with ``indent`` a dictionary gets one key per line."""
    if value is None:
        return "#NULL#"
    if isinstance(value, bool):
        return "YES" if value else "NO"
    if isinstance(value, int):
        return f"#{value}"
    if isinstance(value, str):
        return _format_string(value)
    if isinstance(value, bytes):
        return "[" + base64.b64encode(value).decode("ascii") + "]"
    if isinstance(value, datetime.datetime):
        return _format_time(value)
    if isinstance(value, list):
        return "(" + ", ".join(dumps(item) for item in value) + ")"
    if isinstance(value, dict):
        items = [f"{_format_string(key)} = {dumps(item)};" for key, item in value.items()]
        if indent:
            return "{\n" + "".join(f"  {item}\n" for item in items) + "}\n"
        return "{" + " ".join(items) + "}" if items else "{}"
    raise TypeError(f"cannot format {type(value).__name__} in settings syntax")


def dumps_dictionary(settings: dict[str, Value]) -> str:
    """Format a settings file: one key per line, as CommuniGate writes them."""
    return dumps(settings, indent=True)


def as_bool(value: Value, default: bool = False) -> bool:
    """Read a ``YES``/``NO`` setting (CommuniGate also writes ``1``/``0``)."""
    if value is None:
        return default
    if isinstance(value, str):
        word = value.strip().upper()
        if word in ("YES", "TRUE", "1", "ON"):
            return True
        if word in ("NO", "FALSE", "0", "OFF"):
            return False
    if isinstance(value, int):
        return value != 0
    return default


_PERIOD = re.compile(r"(\d+)\s*([smhd]?)\Z", re.IGNORECASE)
_PERIOD_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def as_seconds(value: Value) -> int:
    """Read a time interval such as ``30s``, ``1m``, ``2h``, ``#10``."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _PERIOD.match(value.strip())
        if match:
            return int(match.group(1)) * _PERIOD_UNITS[match.group(2).lower()]
    raise ValueError(f"not a time interval: {value!r}")


def as_string_list(value: Value) -> list[str]:
    """Read a setting that is one string or an array of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []
