"""FETCH attributes (RFC 3501 §6.4.5): parsing and the response items.
Pure code, working on the same message views as SEARCH."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from communigate.protocols.imap4.message import (
    Part,
    body_structure,
    envelope,
    header_subset,
)
from communigate.protocols.imap4.reader import Argument
from communigate.protocols.imap4.search import View
from communigate.protocols.imap4.syntax import Literal, flag_list, format_data

_MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
_SIMPLE = {
    "FLAGS",
    "UID",
    "INTERNALDATE",
    "RFC822.SIZE",
    "ENVELOPE",
    "BODYSTRUCTURE",
    "BODY",
    "RFC822",
    "RFC822.HEADER",
    "RFC822.TEXT",
}
_SECTION = re.compile(
    r"(BODY|BODY\.PEEK)\[([0-9.]*?)\.?(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME)?"
    r"(?:\s*\(([^)]*)\))?\](?:<(\d+)\.(\d+)>)?\Z",
    re.IGNORECASE,
)


#: Names of cached header-field choices: printable ASCII, no space.
_CACHE_KEY = re.compile(r"[!-~]+\Z")


class FetchError(ValueError):
    """An attribute list that cannot be understood."""


@dataclass(frozen=True)
class Attribute:
    """One requested item."""

    name: str
    path: tuple[int, ...] = ()
    text: str = ""
    fields: tuple[str, ...] = ()
    partial: tuple[int, int] | None = None
    peek: bool = True

    @property
    def sets_seen(self) -> bool:
        """Whether fetching it marks the message \\Seen."""
        return (self.name == "BODY[]" and not self.peek) or self.name in (
            "RFC822",
            "RFC822.TEXT",
        )

    @property
    def needs_body(self) -> bool:
        """Whether the message file must be read."""
        return self.name not in ("FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE")


def parse(argument: Argument) -> list[Attribute]:
    """The attributes of a FETCH (one atom, a macro, or a list)."""
    items: list[Argument] = argument if isinstance(argument, list) else [argument]
    if len(items) == 1 and isinstance(items[0], str) and items[0].upper() in _MACROS:
        items = [*_MACROS[items[0].upper()]]
    found = []
    for item in items:
        if not isinstance(item, str):
            raise FetchError("fetch attributes are atoms")
        found.append(_attribute(item))
    if not found:
        raise FetchError("nothing to fetch")
    return found


def _attribute(item: str) -> Attribute:
    upper = item.upper()
    if upper in _SIMPLE:
        return Attribute(upper)
    match = _SECTION.match(item)
    if match is None:
        raise FetchError(f"unknown fetch attribute {item}")
    kind, path_text, text, fields, origin, length = match.groups()
    path_text = path_text.rstrip(".")
    try:
        path = tuple(int(number) for number in path_text.split(".")) if path_text else ()
    except ValueError:
        raise FetchError(f"bad section {item}") from None
    if any(number < 1 for number in path):
        raise FetchError(f"bad section {item}")
    text = (text or "").upper()
    if text == "MIME" and not path:
        raise FetchError("MIME needs a part number")
    if text.startswith("HEADER.FIELDS") and not fields:
        raise FetchError("HEADER.FIELDS needs field names")
    names = tuple(fields.split()) if fields else ()
    partial = (int(origin), int(length)) if origin is not None else None
    return Attribute("BODY[]", path, text, names, partial, kind.upper() == "BODY.PEEK")


def section_bytes(part: Part, attribute: Attribute) -> bytes | None:
    """The bytes of a section, or None if the part does not exist."""
    target = part.section(list(attribute.path)) if attribute.path else part
    if target is None:
        return None
    if attribute.text == "MIME":
        return target.header
    if attribute.text:
        message = target if not attribute.path else target.message
        if message is None:
            return None if attribute.path else b""
        if attribute.text == "HEADER":
            return message.header
        if attribute.text == "TEXT":
            return message.body
        return header_subset(message, list(attribute.fields), attribute.text.endswith(".NOT"))
    if not attribute.path:
        return part.header + part.body
    return target.body


def _section_name(attribute: Attribute) -> bytes:
    spec = ".".join(str(number) for number in attribute.path)
    if attribute.text:
        spec = f"{spec}.{attribute.text}" if spec else attribute.text
        if attribute.fields:
            spec += " (" + " ".join(attribute.fields) + ")"
    name = f"BODY[{spec}]"
    if attribute.partial is not None:
        name += f"<{attribute.partial[0]}>"
    return name.encode("ascii")


def internal_date_text(view: View) -> str:
    """``17-Jul-1996 02:44:25 -0700``."""
    return _date_text(view.internal_date())


@lru_cache(maxsize=4096)
def _date_text(moment: datetime) -> str:
    # Messages delivered in one second share their date: worked out once.
    return moment.strftime("%d-%b-%Y %H:%M:%S %z")


def response(view: View, attributes: list[Attribute], flags: frozenset[str]) -> bytes:
    """The parenthesised data of one ``* n FETCH (...)`` response.

    What the mailbox's cache holds (the header, ENVELOPE, BODYSTRUCTURE,
    chosen header fields) is served without opening the message file;
    ``BODY[]`` and ``BODY[TEXT]`` read the file without parsing it; only a
    numbered section or a BODYSTRUCTURE seen for the first time parse MIME.
    """
    out: list[bytes] = []
    for attribute in attributes:
        name = attribute.name
        if name == "FLAGS":
            out.append(b"FLAGS " + flag_list(flags | ({"\\Recent"} if view.recent else set())))
        elif name == "UID":
            out.append(b"UID %d" % view.uid)
        elif name == "INTERNALDATE":
            out.append(b"INTERNALDATE " + format_data(internal_date_text(view)))
        elif name == "RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % view.size)
        else:
            out.append(_body_item(view, attribute))
    return b"(" + b" ".join(out) + b")"


def _body_item(view: View, attribute: Attribute) -> bytes:
    name = attribute.name
    if name == "ENVELOPE":
        return b"ENVELOPE " + view.cached(
            "imap.envelope", lambda: format_data(envelope(Part.of_header(view.header())))
        )
    if name in ("BODYSTRUCTURE", "BODY"):
        extensible = name == "BODYSTRUCTURE"
        return (
            name.encode()
            + b" "
            + view.cached(
                f"imap.{name.lower()}",
                lambda: format_data(body_structure(view.part(), extensible)),
            )
        )
    if name == "RFC822":
        return b"RFC822 " + format_data(Literal(view.data()))
    if name == "RFC822.HEADER":
        return b"RFC822.HEADER " + format_data(Literal(view.header()))
    if name == "RFC822.TEXT":
        return b"RFC822.TEXT " + format_data(Literal(view.data()[len(view.header()) :]))
    data = _top_level(view, attribute)
    if data is None:
        data = section_bytes(view.part(), attribute)
    if data is None:
        return _section_name(attribute) + b" NIL"
    if attribute.partial is not None:
        origin, length = attribute.partial
        data = data[origin : origin + length]
    return _section_name(attribute) + b" " + format_data(Literal(data))


def _top_level(view: View, attribute: Attribute) -> bytes | None:
    """A section of the message as a whole, found without parsing its MIME
    structure; None for a numbered part."""
    if attribute.path:
        return None
    if not attribute.text:
        return view.data()
    if attribute.text == "HEADER":
        return view.header()
    if attribute.text == "TEXT":
        return view.data()[len(view.header()) :]
    exclude = attribute.text.endswith(".NOT")
    key = "imap.hdr" + ("-not." if exclude else ".") + ",".join(sorted(attribute.fields)).lower()
    if len(key) > 200 or not _CACHE_KEY.match(key):
        return header_subset(Part.of_header(view.header()), list(attribute.fields), exclude)
    return view.cached(
        key, lambda: header_subset(Part.of_header(view.header()), list(attribute.fields), exclude)
    )
