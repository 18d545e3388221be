"""The MAM archive file: append-only lines, appends grouped while one runs,
a line cut short skipped, bounded."""

from __future__ import annotations

import gc
import os
import weakref
from itertools import count
from pathlib import Path

from communigate.store.archive import (
    FILE_NAME,
    MAX_BYTES,
    Archive,
    Record,
    format_record,
    parse_record,
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


def test_lines_read_back_format_the_same() -> None:
    """A line read back is formatted again to the same bytes, whatever the
    stamp, the JID and the form the stanza is stored in."""
    for size in range(0, 7):
        for stamp in (1700000000.5, 999999999.25, 12345678901.0, 9999999999.9999996):
            for jid in ("bob@example.com/é", "bob@example.com"):
                for stanza in (b"x" * size, b"<" + b"x" * size, b"<m>\n" + b"x" * size):
                    line = format_record(Record("id1", stamp, jid, stanza))
                    record = parse_record(line[:-1])
                    assert record is not None and record.stanza == stanza
                    assert format_record(record) == line


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


def test_one_message_in_two_archives(tmp_path: Path) -> None:
    """The sender's and the recipient's archive take the same stanza one
    after the other (sharing the end of its line): each holds it whole,
    and the next message is not taken for it."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sender, recipient = archive_in(tmp_path / "a"), archive_in(tmp_path / "b")
    for text in (b"<m>one</m>", b"<m>two\n</m>"):
        sender.add("b@x/r", text)
        recipient.add("a@x/r", text)
    for folder, other in (("a", "b@x/r"), ("b", "a@x/r")):
        records = read_records(tmp_path / folder / FILE_NAME)
        assert [(r.with_jid, r.stanza) for r in records] == [
            (other, b"<m>one</m>"),
            (other, b"<m>two\n</m>"),
        ]


def test_same_stanza_later_gets_its_own_stamp(tmp_path: Path) -> None:
    """The recipient's record shares the sender's stamp only at the same
    moment: the same bytes archived again later are stamped anew."""
    now = [1000.0]
    archive = Archive(tmp_path, INLINE, lambda: now[0])
    stanza = b"<m>again</m>"
    archive.add("a@x", stanza)
    now[0] = 1000.2
    archive.add("b@x", stanza)
    now[0] = 2000.0
    archive.add("c@x", stanza)
    stamps = [r.stamp for r in read_records(tmp_path / FILE_NAME)]
    assert stamps == [1000.0, 1000.0, 2000.0]


def test_zero_hole_in_a_raw_line_is_skipped(tmp_path: Path) -> None:
    """A raw line whose middle a crash left as zeros is not read (XML has
    no NUL); a stanza holding NUL or not ending its element is written in
    base64 and reads back whole."""
    archive = archive_in(tmp_path)
    archive.add("a@x", b"<m>one</m>")
    archive.add("a@x", b"<m>a\0b</m>")
    archive.add("a@x", b"<m>open")
    line = b"<m>" + b"\0" * 10 + b"</m>"
    with open(tmp_path / FILE_NAME, "ab") as file:
        file.write(b"9\t1000.000000\ta@x\t%d\t%s\n" % (len(line), line))
    data = (tmp_path / FILE_NAME).read_bytes()
    assert b"a\0b" not in data and b"<m>open" not in data
    assert [r.stanza for r in read_records(tmp_path / FILE_NAME)] == [
        b"<m>one</m>",
        b"<m>a\0b</m>",
        b"<m>open",
    ]


def test_no_usable_time_is_not_archived(tmp_path: Path) -> None:
    """A clock before the epoch (or past what is read back) archives
    nothing, so what waits to be written always reads back."""
    writes, pool = writer()
    for stamp in (-1.0, 2e11, float("nan")):
        archive = Archive(tmp_path, writes, lambda stamp=stamp: stamp)
        assert archive.add("a@x", b"<m>" + str(stamp).encode() + b"</m>") is None
        assert archive.pending() == []
    assert pool.jobs == []


def test_started_batch_takes_no_more_records(tmp_path: Path) -> None:
    """Once the batch that waited starts (its thread may be joining its
    lines), a new record goes into a new waiting batch, never into it."""
    writes, pool = writer()
    archive = archive_in(tmp_path, writes=writes)
    path = tmp_path / FILE_NAME
    archive.add("a@x", b"<m>1</m>")  # written at once
    archive.add("a@x", b"<m>2</m>")  # waits
    pool.run()  # the first ends, the second starts
    (running,) = writes.queue(path)
    archive.add("a@x", b"<m>3</m>")
    assert writes.queue(path)[0] is running and len(running) == 1
    assert len(writes.queue(path)[1]) == 1
    pool.run_all()
    assert [r.id for r in read_records(path)] == ["1", "2", "3"]


def test_a_second_archive_object_sees_what_the_first_queued(tmp_path: Path) -> None:
    """Two objects on one file (stores opened again while a write is
    pending) append to one waiting batch: each record once, in order."""
    writes, pool = writer()
    first = archive_in(tmp_path, writes=writes)
    second = Archive(tmp_path, writes, lambda: 1000.0, lambda: "b", MAX_BYTES)
    first.add("a@x", b"<m>1</m>")
    first.add("a@x", b"<m>2</m>")
    second.add("a@x", b"<m>3</m>")
    first.add("a@x", b"<m>4</m>")
    assert len(writes.queue(tmp_path / FILE_NAME)) == 2
    pool.run_all()
    assert [r.stanza for r in read_records(tmp_path / FILE_NAME)] == [
        b"<m>1</m>",
        b"<m>2</m>",
        b"<m>3</m>",
        b"<m>4</m>",
    ]


def test_written_batch_is_not_kept(tmp_path: Path) -> None:
    """Once written, a batch is freed: the archive's look at the writer
    does not keep it (and its lines) until the account's next message."""
    writes, pool = writer()
    archive = archive_in(tmp_path, writes=writes)
    for n in (1, 2, 3):  # the third joins the batch the second began
        archive.add("a@x", b"<m>%d</m>" % n)
    waiting = weakref.ref(writes.queue(tmp_path / FILE_NAME)[1])
    pool.run_all()
    gc.collect()
    assert waiting() is None
    assert [r.id for r in read_records(tmp_path / FILE_NAME)] == ["1", "2", "3"]
