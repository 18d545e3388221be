"""The MAM archive file: append-only lines, appends grouped while one runs,
a line cut short skipped, bounded."""

from __future__ import annotations

import os
from itertools import count
from pathlib import Path

from communigate.store.archive import (
    FILE_NAME,
    MAX_BYTES,
    Archive,
    Record,
    _line_length,
    format_record,
    read_records,
)
from communigate.store.writes import INLINE, FileWrites
from tests.store.test_writes import writer


def archive_in(folder: Path, writes: FileWrites = INLINE, max_bytes: int = MAX_BYTES) -> Archive:
    """An archive with ids 1, 2, 3, ... and a clock at 1000.0."""
    ids = count(1)
    return Archive(folder, writes, lambda: 1000.0, lambda: str(next(ids)), max_bytes)


def test_round_trip_and_private(tmp_path: Path) -> None:
    """Records come back as written, oldest first; the file is private."""
    archive = archive_in(tmp_path)
    archive.add("a@x/r", b"<message>\n\t1</message>")
    archive.add("b@x", b"<message>2</message>")
    records = read_records(tmp_path / FILE_NAME)
    assert [(r.id, r.with_jid, r.stanza) for r in records] == [
        ("1", "a@x/r", b"<message>\n\t1</message>"),
        ("2", "b@x", b"<message>2</message>"),
    ]
    assert records[0].stamp == 1000.0
    assert os.stat(tmp_path / FILE_NAME).st_mode & 0o077 == 0


def test_appends_while_one_runs_go_together(tmp_path: Path) -> None:
    """Two appends arriving during a running one are written in one more
    append; each record is in the file once, in order, and pending meanwhile."""
    writes, pool = writer()
    archive = archive_in(tmp_path, writes=writes)
    for n in range(3):
        archive.add("a@x", b"<m>%d</m>" % n)
    assert [r.id for r in archive.pending()] == ["1", "2", "3"]
    assert len(pool.jobs) == 1
    pool.run_all()
    assert [r.id for r in read_records(tmp_path / FILE_NAME)] == ["1", "2", "3"]
    assert (writes.writes, archive.pending()) == (2, [])


def test_line_cut_short_is_skipped(tmp_path: Path) -> None:
    """A last line cut short (its stanza shorter than its length) is not
    read, and the next append starts on a new line."""
    archive = archive_in(tmp_path)
    archive.add("a@x", b"<m>1</m>")
    with open(tmp_path / FILE_NAME, "ab") as file:
        file.write(b"99\t1000.0\ta@x\t8\tPG0+")
    assert [r.id for r in read_records(tmp_path / FILE_NAME)] == ["1"]
    archive.add("a@x", b"<m>2</m>")
    assert [r.id for r in read_records(tmp_path / FILE_NAME)] == ["1", "2"]


def test_bound_and_unusable_jid(tmp_path: Path) -> None:
    """Past max_bytes nothing more is archived; a JID with a tab is not stored."""
    archive = archive_in(tmp_path, max_bytes=100)
    assert archive.add("a@x", b"<m>1</m>") is not None
    assert archive.add("a@x", b"x" * 100) is None
    assert archive.add("a\t@x", b"<m/>") is None
    assert len(read_records(tmp_path / FILE_NAME)) == 1


def test_missing_file_reads_empty(tmp_path: Path) -> None:
    """An account that never chatted has an empty archive."""
    assert read_records(tmp_path / FILE_NAME) == []


def test_line_length_is_that_of_the_formatted_line() -> None:
    """The size an append adds is counted without formatting the line."""
    for size in range(0, 7):
        for stamp in (1700000000.5, 999999999.25, 12345678901.0, 9999999999.9999996):
            for jid in ("bob@example.com/é", "bob@example.com"):
                for stanza in (b"x" * size, b"<" + b"x" * size, b"<m>\n" + b"x" * size):
                    record = Record("id1", stamp, jid, stanza)
                    assert _line_length(record) == len(format_record(record))


def test_one_line_stanzas_are_stored_as_they_are(tmp_path: Path) -> None:
    """A stanza of one line is written as it is (a tab in it included);
    one with a line end, or one that is no element, in base64; lines of
    both forms, and lines written before the raw form, read back."""
    archive = archive_in(tmp_path)
    archive.add("a@x/r", b"<message><body>tab\there</body></message>")
    archive.add("a@x/r", b"<message><body>two\r\nlines</body></message>")
    archive.add("a@x/r", b"no element")
    with open(tmp_path / FILE_NAME, "ab") as file:
        # As the first version wrote every line: the stanza in base64.
        file.write(b"4\t1000.000000\ta@x/r\t20\tPG1lc3NhZ2U+MjwvbWVzc2FnZT4=\n")
    lines = (tmp_path / FILE_NAME).read_bytes().split(b"\n")
    assert lines[0] == b"1\t1000.000000\ta@x/r\t40\t<message><body>tab\there</body></message>"
    assert lines[1].endswith(b"\tPG1lc3NhZ2U+PGJvZHk+dHdvDQpsaW5lczwvYm9keT48L21lc3NhZ2U+")
    assert lines[2].endswith(b"\tbm8gZWxlbWVudA==")
    assert [r.stanza for r in read_records(tmp_path / FILE_NAME)] == [
        b"<message><body>tab\there</body></message>",
        b"<message><body>two\r\nlines</body></message>",
        b"no element",
        b"<message>2</message>",
    ]


def test_raw_line_cut_short_is_skipped(tmp_path: Path) -> None:
    """A raw stanza shorter than its length says (an append a crash cut
    short) is not read; the next append starts on a new line."""
    archive = archive_in(tmp_path)
    with open(tmp_path / FILE_NAME, "ab") as file:
        file.write(b"9\t1000.000000\ta@x\t20\t<message>2</mes")
    archive.add("a@x", b"<m>1</m>")
    assert [(r.id, r.stanza) for r in read_records(tmp_path / FILE_NAME)] == [("1", b"<m>1</m>")]


def test_waiting_append_grows_in_place(tmp_path: Path) -> None:
    """Messages arriving while an append runs join one waiting batch (no
    copy of what waits per message) whose size the limit counts."""
    writes, pool = writer()
    archive = archive_in(tmp_path, writes=writes, max_bytes=400)
    archive.add("a@x", b"<m>0</m>")
    archive.add("a@x", b"<m>1</m>")
    waiting = writes.queue(tmp_path / FILE_NAME)[1]
    added = [archive.add("a@x", b"<m>%d</m>" % n) for n in range(2, 20)]
    assert writes.queue(tmp_path / FILE_NAME)[1] is waiting
    stored = [record for record in added if record is not None]
    assert 0 < len(stored) < len(added)
    pool.run_all()
    assert os.path.getsize(tmp_path / FILE_NAME) <= 400
