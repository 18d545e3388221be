"""The mail store: crash-safe delivery, stable UIDs, listings from names."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from communigate.store.mailbox import Mailbox, to_crlf


def test_deliver_and_list(tmp_path: Path) -> None:
    """Delivered messages list in UID order with their CRLF sizes."""
    box = Mailbox(tmp_path / "INBOX.mdir")
    first = box.deliver(b"Subject: a\n\nbody\n")
    second = box.deliver(b"Subject: b\r\n\r\nbody two")
    infos = box.messages()
    assert [info.uid for info in infos] == [first, second] == [1, 2]
    assert infos[0].size == len(b"Subject: a\r\n\r\nbody\r\n")
    with box.open(infos[1]) as handle:
        assert handle.read() == b"Subject: b\r\n\r\nbody two\r\n"


def test_uids_never_reused(tmp_path: Path) -> None:
    """A removed message's UID is not given again; UIDVALIDITY stays."""
    box = Mailbox(tmp_path / "box")
    box.deliver(b"one")
    validity = box.uidvalidity
    box.remove(box.messages())
    assert box.deliver(b"two") == 2
    assert Mailbox(tmp_path / "box").uidvalidity == validity


def test_a_new_keyword_never_makes_a_deleted_mailbox_again(tmp_path: Path) -> None:
    """Setting a new keyword on a message whose mailbox another session
    deleted finds the message gone, and the folder stays gone."""
    box = Mailbox(tmp_path / "box")
    box.deliver(b"one")
    [info] = box.messages()
    shutil.rmtree(box.path)
    assert box.set_flags(info, ["$Important"]) is None
    assert not box.path.exists()


def test_crash_leaves_nothing_visible(tmp_path: Path) -> None:
    """A half-written file in tmp/ is never listed, and is cleaned later."""
    box = Mailbox(tmp_path / "box")
    box.create()
    (box.path / "tmp" / "crashed").write_bytes(b"Subject: half")
    assert box.messages() == []
    box.clean_tmp(now=10**12)
    assert list((box.path / "tmp").iterdir()) == []


def test_remove_twice_is_harmless(tmp_path: Path) -> None:
    """Removing a message another session removed already is fine."""
    box = Mailbox(tmp_path / "box")
    box.deliver(b"x")
    infos = box.messages()
    box.remove(infos)
    box.remove(infos)
    assert box.messages() == []


def test_crlf() -> None:
    """Line ends become CRLF; a missing final line end is added."""
    assert to_crlf(b"a\nb\r\nc") == b"a\r\nb\r\nc\r\n"
    assert to_crlf(b"") == b""


def test_remove_finds_a_reflagged_message(tmp_path: Path) -> None:
    """A message renamed by a flag change elsewhere is still removed by UID."""
    box = Mailbox(tmp_path / "box")
    box.deliver(b"x")
    stale = box.messages()
    box.set_flags(stale[0], {"\\Seen"})
    box.remove(stale)
    assert box.messages() == []


def test_flags_and_keywords_persist(tmp_path: Path) -> None:
    """Flags and keywords are kept in file names and survive a re-read."""
    box = Mailbox(tmp_path / "box")
    uid = box.append(b"Subject: x\r\n\r\n", ["\\Seen", "$Label", "\\Flagged"], 1_000_000_000.0)
    (info,) = Mailbox(tmp_path / "box").messages()
    assert info.uid == uid and info.flags == {"\\Seen", "$Label", "\\Flagged"}
    assert not info.recent and int(info.internal_date) == 1_000_000_000
    box.deliver(b"new one")
    assert [item.recent for item in box.messages()] == [False, True]


def test_flags_of_a_message_kept_open_after_expunge(tmp_path: Path) -> None:
    """A message another session expunged, still read through its open
    descriptor (/proc/self/fd/N), is not renamed: set_flags says it is gone."""
    import os

    box = Mailbox(tmp_path / "INBOX.mdir")
    box.deliver(b"Subject: a\r\n\r\nbody\r\n")
    (info,) = box.messages()
    with open(info.path, "rb") as handle:
        kept = info._replace(path=f"/proc/self/fd/{handle.fileno()}")
        box.remove([info])
        assert box.set_flags(kept, {"\\Seen"}) is None
        assert os.listdir(tmp_path / "INBOX.mdir" / "cur") == []


def test_read_gives_the_whole_file_whatever_its_name_says(tmp_path: Path) -> None:
    """A message file changed by hand (longer or shorter than the size in
    its name) is still read whole."""
    box = Mailbox(tmp_path / "box")
    box.deliver(b"Subject: a\r\n\r\nbody\r\n")
    (info,) = box.messages()
    assert box.read(info) == b"Subject: a\r\n\r\nbody\r\n"
    for data in (b"short", b"x" * (3 << 20)):
        Path(info.path).write_bytes(data)
        assert box.read(info) == data
    # A name claiming an absurd size is read as the file is.
    assert box.read(info._replace(size=10**15)) == data


def test_uid_and_keyword_state_seen_by_every_object_of_a_folder(tmp_path: Path) -> None:
    """What one Mailbox object (or another process) writes, another object
    of the same folder reads at once, though each remembers what it read."""
    from communigate.store import settingsformat
    from communigate.store.atomic import write_atomic

    reader = Mailbox(tmp_path / "box")
    writer = Mailbox(tmp_path / "box")
    writer.deliver(b"one")
    validity = reader.uidvalidity
    assert reader.uidnext == 2 and reader.keywords() == []
    writer.deliver(b"two")
    writer.append(b"three", ["$Work"])
    assert reader.uidnext == 4 and reader.keywords() == ["$Work"]
    # Another process replaces the files: read again, not remembered.
    text = settingsformat.dumps_dictionary({"UIDValidity": validity, "UIDNext": 40})
    write_atomic(reader.path / "uids.settings", text.encode())
    text = settingsformat.dumps_dictionary({"Keywords": ["$Work", "$Home"]})
    write_atomic(reader.path / "keywords.settings", text.encode())
    assert reader.uidnext == 40 and Mailbox(reader.path).uidnext == 40
    assert writer.keywords() == ["$Work", "$Home"]
    assert writer.deliver(b"four") == 40


def test_atomic_write_over_a_crashed_temporary(tmp_path: Path) -> None:
    """A temporary file a crashed process of the same number left is
    replaced, not a reason to fail."""
    from communigate.store.atomic import write_atomic

    target = tmp_path / "uids.settings"
    (tmp_path / f".uids.settings.{os.getpid()}.tmp").write_bytes(b"half")
    write_atomic(target, b"whole")
    assert target.read_bytes() == b"whole"
    assert [path.name for path in tmp_path.iterdir()] == ["uids.settings"]
