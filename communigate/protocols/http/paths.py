"""URL path segments of File Storage requests, checked (pure code).

twisted.web splits the request path at ``/`` and percent-decodes each
segment, so an encoded ``%2f``, ``%2e%2e`` or ``%5c`` arrives inside one
segment.  A segment is accepted only when it is valid UTF-8 (strict: an
overlong encoding such as ``%c0%ae`` is refused), holds no ``/``, ``\\``,
NUL or control character and is neither ``.`` nor ``..``.  Anything else is
refused as a whole (HTTP 400), never "cleaned": a path that needed cleaning
was not written by an honest client.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes, urlsplit

_MAX_SEGMENT = 255
#: Separators and control characters (C0 and DEL).
_REFUSED = re.compile(r"[\x00-\x1f\x7f/\\]")


class BadPath(ValueError):
    """A path segment that could leave its directory or is not text."""


def segment(raw: bytes) -> str:
    """One decoded segment as text; BadPath if it is not acceptable."""
    try:
        text = raw.decode("utf-8", "strict")
    except UnicodeDecodeError:
        raise BadPath("not UTF-8") from None
    if text in (".", "..") or len(raw) > _MAX_SEGMENT:
        raise BadPath(f"segment {text!r} is not allowed")
    if _REFUSED.search(text):
        raise BadPath("separator or control character in a segment")
    return text


def segments(raw: list[bytes]) -> tuple[str, ...]:
    """Checked segments, empty ones (``a//b``, a trailing ``/``) dropped."""
    return tuple(segment(part) for part in raw if part != b"")


def destination(header: bytes) -> tuple[str, ...]:
    """The File Storage segments of a WebDAV ``Destination`` header (an
    absolute URL or an absolute path, RFC 4918 §10.3)."""
    path = urlsplit(header.decode("latin-1")).path
    if not path.startswith("/"):
        raise BadPath("Destination is not an absolute path")
    return segments([unquote_to_bytes(part) for part in path.encode("latin-1").split(b"/")])


def href(path: tuple[str, ...], directory: bool = False) -> str:
    """The URL path of storage segments (each percent-encoded)."""
    text = "/" + "/".join(quote(part, safe="~@") for part in path)
    return text + "/" if directory and path else text
