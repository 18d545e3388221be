"""WebDAV ``PROPFIND`` answers (RFC 4918 §9.1, §14), pure code.

The server answers every ``PROPFIND`` as ``allprop`` (§9.1: a server may
return more than asked): each resource's ``displayname``,
``resourcetype``, ``getcontentlength``, ``getlastmodified`` (RFC 1123
date), ``getcontenttype`` and ``getetag``.  The request body is not parsed
beyond being well-formed XML or empty, so hostile XML (entities, billion
laughs) never reaches a parser that expands it.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from email.utils import formatdate
from xml.sax.saxutils import escape

from communigate.portal.filesession import Entry

MULTISTATUS = 207
#: Largest PROPFIND body read (bytes); the body is not used anyway.
MAX_BODY = 64 * 1024


def etag(entry: Entry) -> str:
    """A weak-enough validator: size and modification time."""
    return f'"{entry.size:x}-{int(entry.modified * 1_000_000):x}"'


def content_type(name: str) -> str:
    """The media type a file name suggests (``application/octet-stream``)."""
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _response(href: str, entry: Entry) -> str:
    if entry.directory:
        kind = "<D:resourcetype><D:collection/></D:resourcetype>"
        extra = ""
    else:
        kind = "<D:resourcetype/>"
        extra = (
            f"<D:getcontentlength>{entry.size}</D:getcontentlength>"
            f"<D:getcontenttype>{escape(content_type(entry.name))}</D:getcontenttype>"
            f"<D:getetag>{escape(etag(entry))}</D:getetag>"
        )
    return (
        f"<D:response><D:href>{escape(href)}</D:href><D:propstat><D:prop>"
        f"<D:displayname>{escape(entry.name)}</D:displayname>{kind}"
        f"<D:getlastmodified>{formatdate(entry.modified, usegmt=True)}</D:getlastmodified>"
        f"{extra}</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\n"
    )


def multistatus(responses: Iterable[tuple[str, Entry]]) -> bytes:
    """The ``207 Multi-Status`` body for ``(href, entry)`` pairs."""
    body = "".join(_response(href, entry) for href, entry in responses)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<D:multistatus xmlns:D="DAV:">\n{body}</D:multistatus>\n'
    ).encode()


def body_acceptable(body: bytes) -> bool:
    """Whether a PROPFIND body may be answered: empty, or XML without a
    document type declaration (no entities to expand)."""
    text = body.strip()
    if not text:
        return True
    return (
        text.startswith(b"<")
        and b"<!DOCTYPE" not in text.upper()
        and b"<!ENTITY" not in text.upper()
    )
