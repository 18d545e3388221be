"""IMAP's modified UTF-7 for mailbox names (RFC 3501 §5.1.3), and the one
check every mailbox name from a client goes through.

Written for this project (the standard library has UTF-7 but not IMAP's
variant).  Names are stored as the client sends them, so the check is that
the bytes are what a conforming client sends: printable ASCII, ``&`` shifts
to modified base64 of UTF-16 ending with ``-``, ``&-`` is ``&``, and the
encoding is the canonical one (decoding then encoding gives the same name;
RFC 3501 forbids encoding printable ASCII and two adjacent shifts).
"""

from __future__ import annotations

import base64
import binascii

from communigate.store.mailstore import MailboxError


def _is_printable(char: str) -> bool:
    return 0x20 <= ord(char) <= 0x7E


def decode(name: str) -> str:
    """The Unicode text of a modified UTF-7 name; ValueError if invalid."""
    out: list[str] = []
    index = 0
    while index < len(name):
        char = name[index]
        if not _is_printable(char):
            raise ValueError("mailbox names are printable ASCII (modified UTF-7)")
        if char != "&":
            out.append(char)
            index += 1
            continue
        end = name.find("-", index + 1)
        if end < 0:
            raise ValueError("unterminated '&' shift in mailbox name")
        if end == index + 1:
            out.append("&")
        else:
            chunk = name[index + 1 : end].replace(",", "/")
            padded = chunk + "=" * (-len(chunk) % 4)
            try:
                raw = base64.b64decode(padded, validate=True)
                out.append(raw.decode("utf-16-be"))
            except (binascii.Error, UnicodeDecodeError):
                raise ValueError("invalid modified base64 in mailbox name") from None
        index = end + 1
    return "".join(out)


def encode(text: str) -> str:
    """The canonical modified UTF-7 form of Unicode text."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be", "surrogatepass")
            out.append(
                "&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-"
            )
            pending.clear()

    for char in text:
        if _is_printable(char):
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def mailbox_name(raw: bytes) -> str:
    """A mailbox name argument as stored; MailboxError (a clear NO) for one
    that is not canonical modified UTF-7."""
    try:
        name = raw.decode("ascii")
        text = decode(name)
    except (UnicodeDecodeError, ValueError) as error:
        reason = "8-bit characters" if isinstance(error, UnicodeDecodeError) else str(error)
        raise MailboxError(f"invalid mailbox name: {reason}") from None
    if encode(text) != name:
        raise MailboxError("invalid mailbox name: not in canonical modified UTF-7")
    return name
