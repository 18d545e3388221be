"""Directory listings as FTP sends them, without I/O.

``LIST`` lines look like ``ls -l`` (what every client parses), ``NLST`` is
names only (RFC 959 §4.1.3), ``MLSD``/``MLST`` lines carry RFC 3659 §7
facts.  Names go out as the bytes they have on disk (UTF-8, RFC 2640).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from communigate.portal.filesession import Entry

#: Older than this (about six months), ``ls`` shows the year, not the time.
_HALF_YEAR = 182 * 24 * 3600


def _name(entry: Entry) -> bytes:
    return entry.name.encode("utf-8", "surrogateescape")


def list_line(entry: Entry, now: float) -> bytes:
    """One ``ls -l`` style line."""
    mode = b"drwxr-xr-x" if entry.directory else b"-rw-r--r--"
    stamp = time.gmtime(entry.modified)
    if abs(now - entry.modified) < _HALF_YEAR:
        when = time.strftime("%b %d %H:%M", stamp)
    else:
        when = time.strftime("%b %d  %Y", stamp)
    head = f" 1 ftp ftp {entry.size:>12} {when} ".encode("ascii")
    return mode + head + _name(entry) + b"\r\n"


def list_lines(entries: Iterable[Entry], now: float) -> bytes:
    """A LIST body."""
    return b"".join(list_line(entry, now) for entry in entries)


def name_lines(entries: Iterable[Entry]) -> bytes:
    """An NLST body."""
    return b"".join(_name(entry) + b"\r\n" for entry in entries)


def facts(entry: Entry) -> bytes:
    """RFC 3659 §7 facts: ``type=…;size=…;modify=…;`` (no name)."""
    kind = "dir" if entry.directory else "file"
    modify = time.strftime("%Y%m%d%H%M%S", time.gmtime(entry.modified))
    return f"type={kind};size={entry.size};modify={modify};".encode("ascii")


def mlsd_lines(entries: Iterable[Entry]) -> bytes:
    """An MLSD body: facts, a space, the name."""
    return b"".join(facts(entry) + b" " + _name(entry) + b"\r\n" for entry in entries)


def mdtm(entry: Entry) -> str:
    """RFC 3659 §3 time value."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(entry.modified))
