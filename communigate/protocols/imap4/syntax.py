"""Formatting IMAP response data (RFC 3501 §4, §9): pure code."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Union

Data = Union[None, int, str, bytes, "Literal", "Raw", list["Data"], tuple["Data", ...]]

_ATOM = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\\]]+\Z")
_QUOTABLE = re.compile(rb"[^\x00\r\n\x80-\xff]*\Z")


class Literal(bytes):
    """Bytes always sent as a literal (message sections)."""


class Raw(bytes):
    """Bytes sent exactly as they are (flags, sections names, numbers)."""


def string(value: bytes) -> bytes:
    """A string as a quoted string when it can be one, else a literal."""
    if len(value) < 1024 and _QUOTABLE.match(value):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n%s" % (len(value), value)


def astring(value: bytes) -> bytes:
    """An atom when it is one (mailbox names), else a string."""
    if value and _ATOM.match(value) and value.upper() != b"NIL":
        return value
    return string(value)


def format_data(value: Data) -> bytes:
    """Format nested response data."""
    if value is None:
        return b"NIL"
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, Literal):
        return b"{%d}\r\n%s" % (len(value), bytes(value))
    if isinstance(value, bool):
        raise TypeError("booleans have no IMAP form")
    if isinstance(value, int):
        return str(value).encode("ascii")
    if isinstance(value, str):
        return string(value.encode("utf-8"))
    if isinstance(value, bytes):
        return string(value)
    return b"(" + b" ".join(format_data(item) for item in value) + b")"


def flag_list(flags: Iterable[str]) -> bytes:
    """``(\\Seen $Label)``."""
    return b"(" + b" ".join(flag.encode("utf-8") for flag in sorted(flags)) + b")"
