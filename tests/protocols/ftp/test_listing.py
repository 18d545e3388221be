"""LIST, NLST and MLSD formatting."""

from __future__ import annotations

import calendar
import os

from communigate.portal.filesession import Entry
from communigate.protocols.ftp import listing

#: 2024-03-05 14:07:09 UTC.
STAMP = float(calendar.timegm((2024, 3, 5, 14, 7, 9)))
DAY = 24 * 3600.0


def test_list_line_for_a_recent_file() -> None:
    """A recent file: ls -l mode, size right-aligned in 12 columns, month, day, time."""
    entry = Entry("notes.txt", False, 1234, STAMP)
    assert listing.list_line(entry, STAMP + DAY) == (
        b"-rw-r--r-- 1 ftp ftp         1234 Mar 05 14:07 notes.txt\r\n"
    )


def test_list_line_for_a_directory() -> None:
    """A directory: 'd' mode and size 0."""
    entry = Entry("docs", True, 0, STAMP)
    assert listing.list_line(entry, STAMP) == (
        b"drwxr-xr-x 1 ftp ftp            0 Mar 05 14:07 docs\r\n"
    )


def test_list_line_for_an_old_file_shows_the_year() -> None:
    """A file older than about six months shows the year instead of the time."""
    entry = Entry("old.bin", False, 7, STAMP)
    assert listing.list_line(entry, STAMP + 200 * DAY) == (
        b"-rw-r--r-- 1 ftp ftp            7 Mar 05  2024 old.bin\r\n"
    )


def test_list_line_for_a_far_future_file_shows_the_year() -> None:
    """A modification time far in the future also shows the year."""
    entry = Entry("future", False, 1, STAMP)
    assert listing.list_line(entry, STAMP - 200 * DAY).endswith(b"Mar 05  2024 future\r\n")


def test_list_lines_and_name_lines() -> None:
    """LIST is one line per entry; NLST is the names only, CR LF terminated."""
    entries = [Entry("a", False, 1, STAMP), Entry("b", True, 0, STAMP)]
    body = listing.list_lines(entries, STAMP)
    assert body.count(b"\r\n") == 2 and body.startswith(b"-rw") and b"\r\ndrwx" in body
    assert listing.name_lines(entries) == b"a\r\nb\r\n"
    assert listing.name_lines([]) == b""


def test_mlsd_facts() -> None:
    """MLSD lines carry type, size and modify (UTC) facts, a space and the name."""
    entries = [Entry("f.txt", False, 42, STAMP), Entry("sub", True, 0, STAMP)]
    assert listing.mlsd_lines(entries) == (
        b"type=file;size=42;modify=20240305140709; f.txt\r\n"
        b"type=dir;size=0;modify=20240305140709; sub\r\n"
    )
    assert listing.facts(entries[0]) == b"type=file;size=42;modify=20240305140709;"
    assert listing.mdtm(entries[0]) == "20240305140709"


def test_non_ascii_names_go_out_as_utf8() -> None:
    """Non-ASCII names are sent as UTF-8 in every listing (RFC 2640)."""
    entry = Entry("café ü.txt", False, 1, STAMP)
    name = "café ü.txt".encode()
    assert listing.name_lines([entry]) == name + b"\r\n"
    assert listing.list_line(entry, STAMP).endswith(b" " + name + b"\r\n")
    assert listing.mlsd_lines([entry]).endswith(b"; " + name + b"\r\n")


def test_undecodable_names_go_out_as_their_bytes() -> None:
    """A name that is not UTF-8 on disk is sent as the bytes it has on disk."""
    raw = b"caf\xe9 \xff.txt"
    entry = Entry(os.fsdecode(raw), False, 1, STAMP)
    assert listing.name_lines([entry]) == raw + b"\r\n"
    assert listing.list_line(entry, STAMP).endswith(b" " + raw + b"\r\n")
    assert listing.mlsd_lines([entry]) == (
        b"type=file;size=1;modify=20240305140709; " + raw + b"\r\n"
    )
