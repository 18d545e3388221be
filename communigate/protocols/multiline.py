"""Dot-stuffed multi-line responses (RFC 1939 §3, RFC 5321 §4.5.2).

:class:`DotStuffer` turns a message, given in chunks of any size, into the
bytes of a multi-line response body: a ``.`` that starts a line is doubled.
Chunks are cut at line feeds (the tail is carried to the next chunk), so a
line start split across two chunks is handled like any other.  Pure code.
"""

from __future__ import annotations

TERMINATOR = b".\r\n"


class DotStuffer:
    """Stateful dot-stuffing over a sequence of chunks."""

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        """Stuffed bytes for whole lines seen so far."""
        data = self._carry + chunk
        cut = data.rfind(b"\n") + 1
        self._carry = data[cut:]
        return self._stuff(data[:cut])

    def finish(self) -> bytes:
        """The rest, with a line end if the message lacked one, and the
        terminating ``.`` line."""
        tail = self._stuff(self._carry)
        self._carry = b""
        if tail and not tail.endswith(b"\r\n"):
            tail += b"\r\n"
        return tail + TERMINATOR

    @staticmethod
    def _stuff(lines: bytes) -> bytes:
        if not lines:
            return b""
        stuffed = lines.replace(b"\n.", b"\n..")
        return b"." + stuffed if stuffed.startswith(b".") else stuffed


def stuff_all(data: bytes) -> bytes:
    """A whole multi-line body at once, terminator included."""
    stuffer = DotStuffer()
    return stuffer.feed(data) + stuffer.finish()
