"""The header fields a submission server adds, without I/O (RFC 6409 §8).

:func:`received` builds the trace field put on top of every submitted
message (RFC 5321 §4.4, with RFC 3848's ``ESMTPA``/``ESMTPSA``): who
connected (the EHLO name and address), which account authenticated, over
TLS or not.  RFC 8314 §4.4 lets a server leave the client's address and
name out for privacy; this server keeps them (the administrator can tell
where a message came from) and documents the choice.

:class:`HeaderCompleter` sees the message text line by line as it arrives
and, where the header block ends, inserts ``Message-ID`` and ``Date`` if
the client did not give them (RFC 6409 §8.2, §8.3).  The clock and the
identifier come from the caller.
"""

from __future__ import annotations

from collections.abc import Callable


def received(
    helo: str,
    remote: str | None,
    host: str,
    account: str,
    secure: bool,
    session: str | None,
    recipient: str | None,
    date: str,
) -> bytes:
    """The ``Received:`` field (folded, CRLF line ends)."""
    protocol = "ESMTPSA" if secure else "ESMTPA"
    tls = " (TLS)" if secure else ""
    lines = [
        f"Received: from {helo or 'unknown'} ([{remote or 'unknown'}])",
        f"\tby {host} (communigate) with {protocol}{tls}" + (f" id {session}" if session else ""),
        f"\t(authenticated as {account})",
    ]
    if recipient:
        lines.append(f"\tfor <{recipient}>")
    lines[-1] += f"; {date}"
    return "".join(line + "\r\n" for line in lines).encode("utf-8", "replace")


class HeaderCompleter:
    """Passes message lines on, adding ``Message-ID``/``Date`` where the
    header block ends if the message has none."""

    def __init__(self, message_id: Callable[[], str], date: Callable[[], str]) -> None:
        self._message_id = message_id
        self._date = date
        self._seen: set[str] = set()
        self.in_header = True

    def line(self, line: bytes) -> bytes:
        """One line without its line end; what to write (with line ends)."""
        if not self.in_header:
            return line + b"\r\n"
        if line[:1] in (b" ", b"\t"):
            return line + b"\r\n"
        name, colon, _ = line.partition(b":")
        if colon and name and b" " not in name.strip():
            self._seen.add(name.strip().lower().decode("ascii", "replace"))
            return line + b"\r\n"
        # A blank line (or one that is no field) ends the header block.
        return self.missing() + line + b"\r\n"

    def missing(self) -> bytes:
        """The fields to add, once; empty after the header block."""
        if not self.in_header:
            return b""
        self.in_header = False
        out = b""
        if "message-id" not in self._seen:
            out += f"Message-ID: {self._message_id()}\r\n".encode()
        if "date" not in self._seen:
            out += f"Date: {self._date()}\r\n".encode()
        return out
