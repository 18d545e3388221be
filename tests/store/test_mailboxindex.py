"""The shared listing of a mailbox: made once, then following kernel
events by name (real inotify), or stamps where nothing watches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactor

from communigate.store import mailboxindex
from communigate.store.changes import ChangeBus, MailboxNotifier, inotify_watch, mailbox_key
from communigate.store.mailbox import Mailbox
from communigate.store.mailboxindex import MailboxIndex

inotify_only = pytest.mark.skipif(
    not os.path.exists("/proc/sys/fs/inotify"), reason="needs Linux inotify"
)


@pytest.fixture
def mailbox(tmp_path: Path) -> Mailbox:
    box = Mailbox(tmp_path / "INBOX.mdir")
    box.create()
    return box


def uids(index: MailboxIndex) -> list[int]:
    return [info.uid for info in index.listing()]


def test_unwatched_index_follows_stamps(mailbox: Mailbox) -> None:
    """Listed once; listed again only when the folders' stamps change, and
    then in a new generation."""
    mailbox.deliver(b"Subject: 1\r\n\r\nx\r\n")
    index = MailboxIndex(mailbox)
    index.sync()
    assert uids(index) == [1] and index.loaded
    generation = index.generation
    index.sync()
    assert index.generation == generation
    mailbox.deliver(b"Subject: 2\r\n\r\ny\r\n")
    index.sync()
    assert uids(index) == [1, 2] and index.generation == generation + 1
    assert index.changed_since((generation, 0)) is None


def test_events_change_the_listing_and_are_logged(mailbox: Mailbox) -> None:
    """Entries appear, are renamed (both halves of a rename, one cookie)
    and leave; the log names each UID touched, and a rename is never seen
    as a removal."""
    mailbox.deliver(b"Subject: 1\r\n\r\nx\r\n")
    index = MailboxIndex(mailbox)
    index.watched = True
    index.load()
    start = index.position()
    [info] = mailbox.messages()
    name = os.path.basename(info.path)
    index.entry("new", name, False, 7)
    assert uids(index) == [1]  # first half: not gone
    index.entry("cur", name + ":2,S", True, 7)
    assert index.infos[1].flags == {"\\Seen"} and not index.infos[1].recent
    index.entry("new", "2,S=10", True, 9)
    index.entry("cur", "3,S=10:2,", True)
    assert uids(index) == [1, 2, 3]
    index.entry("cur", "3,S=10:2,", False)
    assert uids(index) == [1, 2]
    assert index.changed_since(start) == [1, 2, 3, 3]


def test_an_unmatched_rename_is_a_removal_after_two_reads(mailbox: Mailbox) -> None:
    """A file renamed out of the watched folders (only the first half) is
    gone once two reads of the queue brought no second half."""
    index = MailboxIndex(mailbox)
    index.watched = True
    index.load()
    index.entry("cur", "5,S=3:2,", True)
    index.entry("cur", "5,S=3:2,", False, 11)
    index.drained()
    assert uids(index) == [5]
    index.drained()
    assert uids(index) == []


def test_events_during_a_listing_are_applied_after_it(
    mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing made in slices holds the events reported meanwhile and
    applies them to the new listing."""
    monkeypatch.setattr(mailboxindex, "SLICE", 1)
    for number in range(3):
        mailbox.deliver(b"Subject: %d\r\n\r\nx\r\n" % number)
    index = MailboxIndex(mailbox)
    index.watched = True
    steps = index.load_steps()
    next(steps)
    assert index.loading
    index.entry("cur", "9,S=1:2,", True)
    index.sync()  # a look meanwhile does not start another listing
    assert index.loading
    for _ in steps:
        pass
    assert uids(index) == [1, 2, 3, 9]
    assert not index.loading


def test_large_listing_yields_and_sorts_dense_and_sparse(
    mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing of more entries than a slice yields between slices and
    comes out in UID order, dense or sparse UIDs alike."""
    monkeypatch.setattr(mailboxindex, "SLICE", 8)
    for uid in [*range(40, 0, -1), 1000, 5000]:
        (mailbox.path / "cur" / f"{uid},S=1:2,").write_bytes(b"x")
    index = MailboxIndex(mailbox)
    yields = sum(1 for _ in index.load_steps())
    assert yields >= 5
    assert uids(index) == [*range(1, 41), 1000, 5000]
    sparse = {uid: info for uid, info in index.infos.items() if uid % 10 == 0 or uid > 40}
    out: list = []
    list(mailboxindex._in_uid_order(sparse, out))
    assert [info.uid for info in out] == sorted(sparse)


def test_an_abandoned_listing_is_made_again(
    mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing in slices that is abandoned (its session left) leaves the
    index unlisted, so the next look lists it."""
    monkeypatch.setattr(mailboxindex, "SLICE", 2)
    for number in range(6):
        mailbox.deliver(b"Subject: %d\r\n\r\nx\r\n" % number)
    index = MailboxIndex(mailbox)
    steps = index.load_steps()
    next(steps)
    assert index.loading
    steps.close()
    assert not index.loading and not index.loaded
    index.sync()
    assert uids(index) == [1, 2, 3, 4, 5, 6]


def test_log_too_far_behind_means_compare_everything(
    mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the log dropped entries a session has not seen, it is told to
    compare everything."""
    monkeypatch.setattr(mailboxindex, "MAX_LOG", 4)
    index = MailboxIndex(mailbox)
    index.watched = True
    index.load()
    start = index.position()
    for uid in range(1, 7):
        index.entry("cur", f"{uid},S=1:2,", True)
    assert index.changed_since(start) is None
    assert index.changed_since(index.position()) == []


@inotify_only
def test_watched_index_sees_another_process_at_the_next_look(mailbox: Mailbox) -> None:
    """With real inotify, a delivery, a flag change and an expunge made by
    another process are in the listing at the next look (the kernel's queue
    is read then), without listing the folders again."""
    reactor = MemoryReactor()
    notifier = MailboxNotifier(reactor, kernel=inotify_watch(reactor), bus=ChangeBus())
    mailbox.deliver(b"Subject: 1\r\n\r\nx\r\n")
    index = notifier.open_index(mailbox)
    assert index.watched
    notifier.sync(index)
    generation = index.generation
    script = (
        "import sys; from communigate.store.mailbox import Mailbox; "
        "box = Mailbox(sys.argv[1]); box.deliver(b'Subject: 2\\r\\n\\r\\ny\\r\\n'); "
        "[first, second] = box.messages(); box.set_flags(first, {'\\\\Seen'}); "
        "box.remove([second])"
    )
    subprocess.run([sys.executable, "-c", script, str(mailbox.path)], check=True)
    notifier.sync(index)
    assert uids(index) == [1] and index.infos[1].flags == {"\\Seen"}
    assert index.generation == generation
    notifier.close_index(index)
    notifier.close()


@inotify_only
def test_indexes_are_shared_and_watched_while_held(mailbox: Mailbox) -> None:
    """Two holders share one index; the watch ends with the last one."""
    reactor = MemoryReactor()
    notifier = MailboxNotifier(reactor, kernel=inotify_watch(reactor), bus=ChangeBus())
    first = notifier.open_index(mailbox)
    second = notifier.open_index(Mailbox(mailbox.path))
    assert first is second
    notifier.close_index(first)
    assert notifier.watched(mailbox.path)
    notifier.close_index(second)
    assert not notifier.watched(mailbox_key(mailbox.path))
    notifier.close()


def test_lost_events_during_a_listing_list_again_after_it(
    mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events lost (queue overflow) while a listing is made in slices make
    the next look list again, not trust the listing made meanwhile."""
    monkeypatch.setattr(mailboxindex, "SLICE", 1)
    for number in range(3):
        mailbox.deliver(b"Subject: %d\r\n\r\nx\r\n" % number)
    index = MailboxIndex(mailbox)
    index.watched = True
    steps = index.load_steps()
    next(steps)
    index.invalidate()
    for _ in steps:
        pass
    assert not index.loaded
    generation = index.generation
    index.sync()
    assert index.loaded and index.generation == generation + 1


@inotify_only
def test_a_mark_skips_the_queue_only_when_it_was_read_after(mailbox: Mailbox) -> None:
    """sync(since=mark) reads the kernel's queue unless it was read after
    the mark: a change made before a mark is always seen, one made after
    the mark may wait for a later mark."""
    reactor = MemoryReactor()
    notifier = MailboxNotifier(reactor, kernel=inotify_watch(reactor), bus=ChangeBus())
    index = notifier.open_index(mailbox)
    notifier.sync(index)
    script = (
        "import sys; from communigate.store.mailbox import Mailbox; "
        "Mailbox(sys.argv[1]).deliver(b'Subject: x\\r\\n\\r\\ny\\r\\n')"
    )
    subprocess.run([sys.executable, "-c", script, str(mailbox.path)], check=True)
    arrival = notifier.mark()
    notifier.sync(index, since=arrival)
    assert uids(index) == [1]
    subprocess.run([sys.executable, "-c", script, str(mailbox.path)], check=True)
    notifier.sync(index, since=arrival)
    assert uids(index) == [1]
    notifier.sync(index, since=notifier.mark())
    assert uids(index) == [1, 2]
    subprocess.run([sys.executable, "-c", script, str(mailbox.path)], check=True)
    notifier.sync(index)
    assert uids(index) == [1, 2, 3]
    notifier.close_index(index)
    notifier.close()
