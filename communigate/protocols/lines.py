"""Splitting a byte stream into command lines, with a bound on their length.

Pure code shared by the line-based protocols: bytes in, events out.  A line
longer than the bound is never buffered whole: its start is reported once as
:class:`LineTooLong` and the rest is skipped up to the next line feed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LineTooLong:
    """A line exceeded the limit; what came of it was discarded."""

    limit: int


Event = bytes | LineTooLong


class LineSplitter:
    """Feed bytes, get complete lines (without CR LF) and overflow events."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[Event]:
        """Add received bytes; return the events they complete."""
        events: list[Event] = []
        self._buffer += data
        start = 0
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            elif end - start > self.max_length:
                events.append(LineTooLong(self.max_length))
            else:
                line = bytes(buffer[start:end])
                events.append(line[:-1] if line.endswith(b"\r") else line)
            start = end + 1
        del buffer[:start]
        if len(buffer) > self.max_length:
            if not self._skipping:
                events.append(LineTooLong(self.max_length))
                self._skipping = True
            buffer.clear()
        return events

    def clear(self) -> bytes:
        """Drop and return what was buffered (at a TLS switch, nothing sent
        before it may be executed after it)."""
        pending = bytes(self._buffer)
        self._buffer.clear()
        self._skipping = False
        return pending
