"""The per-mailbox message cache: filled at delivery, read by other
processes, robust against torn appends, emptied by expunge."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from communigate.store.atomic import read_range
from communigate.store.mailbox import Mailbox
from communigate.store.messagecache import (
    CACHE_FILE,
    PENDING_RECORDS,
    MessageCache,
    append_records,
    read_header,
    split_header,
)

MESSAGE = b"From: Ann <ann@example.org>\r\nSubject: hello\r\n\r\nbody\r\n"


@pytest.fixture
def mailbox(tmp_path: Path) -> Mailbox:
    box = Mailbox(tmp_path / "INBOX.mdir")
    box.create()
    return box


def fresh(mailbox: Mailbox) -> MessageCache:
    """The cache as another process would read it."""
    return MessageCache(mailbox.path, mailbox.uidvalidity)


def test_delivery_fills_header_and_date(mailbox: Mailbox) -> None:
    """A delivered message's header and internal date are cached at once."""
    uid = mailbox.deliver(MESSAGE)
    (info,) = mailbox.messages()
    values = fresh(mailbox).get(uid)
    assert values["header"] == b"From: Ann <ann@example.org>\r\nSubject: hello\r\n\r\n"
    assert float(values["date"]) == info.internal_date


def test_cached_header_needs_no_file(mailbox: Mailbox) -> None:
    """Once cached, a header is served without the message file."""
    uid = mailbox.append(MESSAGE, ["\\Seen"], 1_000_000.0)
    (info,) = mailbox.messages()
    os.unlink(info.path)
    assert fresh(mailbox).header(uid, info.path).startswith(b"From: Ann")


def test_value_is_computed_once_and_shared(mailbox: Mailbox) -> None:
    """A value worked out on first use is kept for this and other readers."""
    uid = mailbox.deliver(MESSAGE)
    calls: list[int] = []

    def compute() -> bytes:
        calls.append(1)
        return b"(ENVELOPE-DATA)"

    first = fresh(mailbox)
    assert first.value(uid, "imap.envelope", compute) == b"(ENVELOPE-DATA)"
    assert first.value(uid, "imap.envelope", compute) == b"(ENVELOPE-DATA)"
    first.flush()
    assert fresh(mailbox).value(uid, "imap.envelope", compute) == b"(ENVELOPE-DATA)"
    assert calls == [1]


def test_values_of_a_command_are_appended_together(mailbox: Mailbox) -> None:
    """Values added while a command runs reach the file in one append at
    flush, or as soon as PENDING_RECORDS wait."""
    uids = [mailbox.deliver(MESSAGE) for _ in range(3)]
    cache = fresh(mailbox)
    size = os.path.getsize(mailbox.path / CACHE_FILE)
    for uid in uids:
        cache.add(uid, {"imap.envelope": b"E%d" % uid})
    assert os.path.getsize(mailbox.path / CACHE_FILE) == size
    assert "imap.envelope" not in fresh(mailbox).get(uids[0])
    cache.flush()
    assert [fresh(mailbox).get(uid)["imap.envelope"] for uid in uids] == [
        b"E%d" % uid for uid in uids
    ]
    for number in range(PENDING_RECORDS):
        cache.add(uids[0], {f"imap.x{number}": b"v"})
    assert fresh(mailbox).get(uids[0])[f"imap.x{PENDING_RECORDS - 1}"] == b"v"


def test_header_read_from_file_on_a_miss(mailbox: Mailbox) -> None:
    """Without a cache file the header comes from the file and is then cached."""
    uid = mailbox.deliver(MESSAGE)
    os.unlink(mailbox.path / CACHE_FILE)
    (info,) = mailbox.messages()
    reader = fresh(mailbox)
    assert reader.header(uid, info.path) == split_header(MESSAGE)
    reader.flush()
    assert fresh(mailbox).get(uid)["header"] == split_header(MESSAGE)


def test_torn_append_is_dropped_and_later_records_kept(mailbox: Mailbox) -> None:
    """A record cut short by a crash is skipped; the file is rewritten."""
    uid = mailbox.deliver(MESSAGE)
    with open(mailbox.path / CACHE_FILE, "ab") as handle:
        handle.write(b"99 imap.envelope 10 123\nshort")
    append_records(mailbox.path, mailbox.uidvalidity, [(uid, "imap.body", b"(BODY)")])
    reader = fresh(mailbox)
    assert "header" in reader.get(uid)
    assert reader.get(99) == {}
    # The damaged part is gone from the file: records appended now are read.
    append_records(mailbox.path, mailbox.uidvalidity, [(uid, "imap.x", b"X")])
    assert fresh(mailbox).get(uid)["imap.x"] == b"X"
    assert b"short" not in (mailbox.path / CACHE_FILE).read_bytes()


def test_expunge_removes_entries(mailbox: Mailbox) -> None:
    """Expunged messages leave the cache, for every reader."""
    first = mailbox.deliver(MESSAGE)
    second = mailbox.deliver(MESSAGE)
    mailbox.remove([info for info in mailbox.messages() if info.uid == first])
    reader = fresh(mailbox)
    assert reader.get(first) == {}
    assert "header" in reader.get(second)


def test_other_uidvalidity_is_ignored(mailbox: Mailbox) -> None:
    """A cache file made for another UIDVALIDITY holds nothing."""
    uid = mailbox.deliver(MESSAGE)
    assert MessageCache(mailbox.path, mailbox.uidvalidity + 1).get(uid) == {}


def test_read_header_of_long_and_headerless_files(tmp_path: Path) -> None:
    """Reading the start of a file splits the header as the whole message does."""
    long = b"X: " + b"y" * 40_000 + b"\r\n\r\nbody\r\n"
    huge = b"X: " + b"y" * 3_000_000 + b"\r\n\r\nbody\r\n"
    bare = b"no blank line\r\n"
    exact = b"X: " + b"y" * (16384 - 7) + b"\r\n\r\nbody"
    for data in (long, huge, bare, exact, b"\r\nbody only\r\n", b""):
        path = tmp_path / "m"
        path.write_bytes(data)
        assert read_header(path) == split_header(data)


def test_read_range(tmp_path: Path) -> None:
    """A part of a file, the rest of it, or less at its end; with the
    status of the file that was read."""
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    assert read_range(path, 2, 3)[0] == b"234"
    assert read_range(path, 4)[0] == b"456789"
    assert read_range(path, 8, 100)[0] == b"89"
    assert read_range(path, 20, 5)[0] == b""
    data, status = read_range(path)
    assert data == b"0123456789" and status.st_size == 10
    assert status.st_ino == path.stat().st_ino
    with pytest.raises(FileNotFoundError):
        read_range(tmp_path / "missing")


def test_mailbox_made_again_starts_afresh(tmp_path: Path) -> None:
    """A mailbox deleted and made again (same UIDVALIDITY second) never
    shows the old messages' cached values."""
    folder = tmp_path / "Box.mdir"
    old = Mailbox(folder)
    old.create()
    uid = old.deliver(MESSAGE)
    assert "header" in old.cache.get(uid)
    validity = old.uidvalidity
    shutil.rmtree(folder)
    again = Mailbox(folder)
    again.create()
    (folder / "uids.settings").write_text(f"{{ UIDValidity = #{validity}; UIDNext = #1; }}")
    assert again.deliver(b"Subject: other\r\n\r\nx\r\n") == uid
    assert again.cache.header(uid, "/nonexistent").startswith(b"Subject: other")


def test_cold_values_wait_for_the_flush(mailbox: Mailbox) -> None:
    """Values worked out on misses (each miss reads the file again) still
    reach it in one append at the flush."""
    uids = [mailbox.deliver(MESSAGE) for _ in range(5)]
    os.unlink(mailbox.path / CACHE_FILE)
    cache = fresh(mailbox)
    for uid in uids:
        assert cache.value(uid, "imap.envelope", lambda: b"E") == b"E"
    assert not (mailbox.path / CACHE_FILE).exists()
    cache.flush()
    assert [fresh(mailbox).get(uid)["imap.envelope"] for uid in uids] == [b"E"] * 5


@pytest.mark.parametrize("look", [False, True])
def test_pending_values_never_reach_a_mailbox_made_again(tmp_path: Path, look: bool) -> None:
    """Values pending for a mailbox that was deleted and made again (a new
    cache file, maybe the same UIDVALIDITY) are dropped, not appended to the
    new file where they would describe other messages; also when a look at
    the file (another session's command) came between."""
    box = Mailbox(tmp_path / "INBOX.mdir")
    box.create()
    uid = box.deliver(MESSAGE)
    old = fresh(box)
    old.get(uid)
    old.add(uid, {"imap.envelope": b"OLD secret"})
    validity = box.uidvalidity
    shutil.rmtree(box.path)
    again = Mailbox(tmp_path / "INBOX.mdir")
    again.create()
    (again.path / "uids.settings").write_text(f"{{ UIDValidity = #{validity}; UIDNext = #1; }}")
    new_uid = again.deliver(b"Subject: new\r\n\r\nbody\r\n")
    assert new_uid == uid
    if look:
        old.check()
    old.flush()
    assert "imap.envelope" not in MessageCache(again.path, validity).get(uid)


def test_own_appends_are_not_read_back(mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a cache appended itself, with nothing appended before it since
    its last look, is not read and parsed again; when another process
    appended in between, both are read (the other's values are seen)."""
    first = mailbox.deliver(MESSAGE)
    second = mailbox.deliver(MESSAGE)
    cache = fresh(mailbox)
    cache.get(first)
    parsed: list[int] = []
    real_parse = MessageCache._parse

    def counting(self: MessageCache, data: bytes) -> tuple[int, bool]:
        parsed.append(len(data))
        return real_parse(self, data)

    monkeypatch.setattr(MessageCache, "_parse", counting)
    cache.add(first, {"imap.envelope": b"(ONE)"})
    cache.flush()
    cache.forget([second])
    cache.refresh()
    assert parsed == [] and cache.get(first)["imap.envelope"] == b"(ONE)"
    other = fresh(mailbox)
    other.add(first, {"imap.body": b"(BODY)"})
    other.flush()
    cache.add(first, {"imap.bodystructure": b"(BS)"})
    cache.flush()
    cache.refresh()
    assert len(parsed) == 1
    assert cache.get(first) == {
        **fresh(mailbox).get(first),
        "imap.body": b"(BODY)",
        "imap.bodystructure": b"(BS)",
    }
    assert second not in cache.entries and fresh(mailbox).get(second) == {}
