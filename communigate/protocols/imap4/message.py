"""A message as IMAP sees it: MIME parts with exact byte ranges, sections,
ENVELOPE and BODYSTRUCTURE (RFC 3501 §6.4.5, §7.4.2).  Pure code.

Parts are split on the raw bytes (not through a MIME library that rewrites
them), so ``BODY[1.2]`` returns exactly the bytes of that part.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header, make_header
from functools import cached_property

from communigate.protocols.imap4.syntax import Data, Literal

_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')
_MAX_PARTS = 1000
_MAX_DEPTH = 20


def split_header(data: bytes) -> tuple[bytes, bytes]:
    """The header (with its blank line) and the body."""
    if data.startswith(b"\r\n"):
        return b"\r\n", data[2:]
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, b""
    return data[: end + 4], data[end + 4 :]


def header_fields(header: bytes) -> list[tuple[str, str, bytes]]:
    """(lower-case name, unfolded value, raw field bytes) for each field."""
    fields: list[tuple[str, str, bytes]] = []
    current: list[bytes] = []
    for line in header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
            continue
        if current:
            fields.append(_field(current))
        current = [line] if line else []
    if current:
        fields.append(_field(current))
    return [entry for entry in fields if entry[0]]


def _field(lines: list[bytes]) -> tuple[str, str, bytes]:
    raw = b"\r\n".join(lines) + b"\r\n"
    name, _, value = raw.partition(b":")
    text = value.decode("utf-8", "replace").replace("\r\n", "").strip()
    return name.decode("ascii", "replace").strip().lower(), text, raw


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded (for SEARCH)."""
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


def content_params(value: str) -> tuple[str, str, dict[str, str]]:
    """Type, subtype and parameters of a Content-Type-like value."""
    main, _, rest = value.partition(";")
    kind, _, subtype = main.strip().partition("/")
    params = {}
    for match in _PARAM.finditer(";" + rest):
        raw = match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
    return kind.lower() or "text", subtype.lower() or "plain", params


@dataclass
class Part:
    """One MIME entity: header, body, and what it contains."""

    header: bytes
    body: bytes
    default_type: str = "text/plain"
    children: list[Part] = field(default_factory=list)
    message: Part | None = None

    @classmethod
    def parse(cls, data: bytes, default_type: str = "text/plain", depth: int = 0) -> Part:
        """Parse an entity and, within limits, what it contains."""
        header, body = split_header(data)
        part = cls(header, body, default_type)
        if depth >= _MAX_DEPTH:
            return part
        kind, subtype, params = part.content_type
        if kind == "multipart" and params.get("boundary"):
            child_type = "message/rfc822" if subtype == "digest" else "text/plain"
            part.children = [
                cls.parse(chunk, child_type, depth + 1)
                for chunk in _split_multipart(body, params["boundary"].encode("utf-8", "replace"))
            ]
        elif (kind, subtype) == ("message", "rfc822"):
            part.message = cls.parse(body, "text/plain", depth + 1)
        return part

    @cached_property
    def fields(self) -> list[tuple[str, str, bytes]]:
        """The header's fields (split once)."""
        return header_fields(self.header)

    @classmethod
    def of_header(cls, header: bytes) -> Part:
        """A part known by its header only (for ENVELOPE, header fields and
        SEARCH of header keys, which need nothing else)."""
        return cls(header, b"")

    def get(self, name: str) -> str | None:
        """The first field of that name, unfolded."""
        for key, value, _ in self.fields:
            if key == name:
                return value
        return None

    @property
    def content_type(self) -> tuple[str, str, dict[str, str]]:
        """Type, subtype, parameters (defaulted per RFC 2045 §5.2)."""
        value = self.get("content-type")
        if value is None:
            kind, _, subtype = self.default_type.partition("/")
            return kind, subtype, {"charset": "us-ascii"} if kind == "text" else {}
        return content_params(value)

    def section(self, path: list[int]) -> Part | None:
        """The part at a section path (``1.2`` → ``[1, 2]``)."""
        current = self
        for depth, number in enumerate(path):
            if depth > 0 and current.message is not None:
                current = current.message
            if current.children:
                if not 1 <= number <= len(current.children):
                    return None
                current = current.children[number - 1]
            elif number != 1:
                return None
        return current

    def lines(self) -> int:
        """Body lines (for text parts); a last line without CRLF counts."""
        return self.body.count(b"\n") + (1 if self.body and not self.body.endswith(b"\n") else 0)


def _split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    delimiter = b"--" + boundary
    chunks: list[bytes] = []
    data = b"\r\n" + body
    position = data.find(b"\r\n" + delimiter)
    while position >= 0 and len(chunks) < _MAX_PARTS:
        start = data.find(b"\r\n", position + 2)
        marker = data[position + 2 + len(delimiter) : position + 4 + len(delimiter)]
        if marker == b"--" or start < 0:
            break
        following = data.find(b"\r\n" + delimiter, start)
        end = following if following >= 0 else len(data)
        chunks.append(data[start + 2 : end])
        position = following
    return chunks


def _addresses(value: str | None) -> Data:
    if not value:
        return None
    found: list[Data] = []
    for name, address in email.utils.getaddresses([value]):
        local, _, host = address.rpartition("@") if "@" in address else (address, "", "")
        found.append([name or None, None, local or None, host or None])
    return found or None


def envelope(part: Part) -> Data:
    """ENVELOPE (RFC 3501 §7.4.2)."""
    sender = part.get("from")
    return [
        part.get("date"),
        part.get("subject"),
        _addresses(sender),
        _addresses(part.get("sender") or sender),
        _addresses(part.get("reply-to") or sender),
        _addresses(part.get("to")),
        _addresses(part.get("cc")),
        _addresses(part.get("bcc")),
        part.get("in-reply-to"),
        part.get("message-id"),
    ]


def _params(params: dict[str, str]) -> Data:
    if not params:
        return None
    flat: list[Data] = []
    for key, value in params.items():
        flat += [key.upper(), value]
    return flat


def _disposition(part: Part) -> Data:
    value = part.get("content-disposition")
    if not value:
        return None
    kind, _, rest = value.partition(";")
    _, _, params = content_params("x/x;" + rest)
    return [kind.strip().upper(), _params(params)]


def body_structure(part: Part, extensible: bool = True) -> Data:
    """BODYSTRUCTURE (or BODY, without extension data)."""
    kind, subtype, params = part.content_type
    if part.children:
        items: list[Data] = [body_structure(child, extensible) for child in part.children]
        items.append(subtype.upper())
        if extensible:
            items += [_params(params), _disposition(part), part.get("content-language"), None]
        return items
    encoding = (part.get("content-transfer-encoding") or "7BIT").upper()
    items = [
        kind.upper(),
        subtype.upper(),
        _params(params),
        part.get("content-id"),
        part.get("content-description"),
        encoding,
        len(part.body),
    ]
    if part.message is not None:
        items += [envelope(part.message), body_structure(part.message, extensible)]
        items.append(part.lines())
    elif kind == "text":
        items.append(part.lines())
    if extensible:
        items += [part.get("content-md5"), _disposition(part), part.get("content-language"), None]
    return items


def header_subset(part: Part, names: list[str], exclude: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: the chosen fields and a blank line."""
    wanted = {name.lower() for name in names}
    chosen = [raw for key, _, raw in part.fields if (key in wanted) != exclude]
    return b"".join(chosen) + b"\r\n"


def sent_date(part: Part) -> datetime | None:
    """The Date header as a datetime, if it parses."""
    value = part.get("date")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


def literal(data: bytes) -> Literal:
    """Message bytes, always as a literal."""
    return Literal(data)
