"""Mailbox change notifications: the in-process bus, the notifier that
coalesces and polls where it must, and the inotify watch."""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from zope.interface import implementer
from zope.interface.verify import verifyObject

from communigate.store import changes
from communigate.store.changes import (
    ChangeBus,
    EventSink,
    IFolderWatch,
    IMailboxChanges,
    InotifyWatch,
    ISubscription,
    MailboxNotifier,
    mailbox_key,
)
from communigate.store.mailbox import Mailbox

inotify_only = pytest.mark.skipif(
    not os.path.exists("/proc/sys/fs/inotify"), reason="needs Linux inotify"
)


@implementer(IFolderWatch)
class FakeWatch:
    """A kernel watch the test drives; refuses the keys in ``refused``."""

    def __init__(self, sink: EventSink, refused: set[str] | None = None) -> None:
        self.sink = sink
        self.refused = refused or set()
        self.watched: set[str] = set()
        self.closed = False
        self.reports_entries = False

    def watch(self, key: str) -> bool:
        if key in self.refused:
            return False
        self.watched.add(key)
        return True

    def ignore(self, key: str) -> None:
        self.watched.discard(key)

    def close(self) -> None:
        self.closed = True


class Recorder:
    """Counts callbacks."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.fixture
def mailbox(tmp_path: Path) -> Mailbox:
    box = Mailbox(tmp_path / "INBOX.mdir")
    box.create()
    return box


def notifier_with_fake(
    clock: Clock, bus: ChangeBus, refused: set[str] | None = None
) -> tuple[MailboxNotifier, list[FakeWatch]]:
    made: list[FakeWatch] = []

    def kernel(sink: EventSink) -> FakeWatch:
        made.append(FakeWatch(sink, refused))
        return made[-1]

    return MailboxNotifier(clock, kernel=kernel, bus=bus), made


def test_interfaces(mailbox: Mailbox) -> None:
    """The notifier, its subscriptions and the inotify watch provide their
    interfaces."""
    notifier = MailboxNotifier(Clock(), bus=ChangeBus())
    assert verifyObject(IMailboxChanges, notifier)
    subscription = notifier.subscribe(mailbox.path, Recorder())
    assert verifyObject(ISubscription, subscription)
    subscription.cancel()
    if os.path.exists("/proc/sys/fs/inotify"):
        watch = InotifyWatch(MemoryReactor(), notifier)
        assert verifyObject(IFolderWatch, watch)
        watch.close()


def test_bus_without_listeners_does_nothing(tmp_path: Path) -> None:
    """Publishing with nobody listening is a no-op; listeners get the
    absolute folder name."""
    bus = ChangeBus()
    bus.publish(tmp_path)
    seen: list[str] = []
    bus.listen(seen.append)
    bus.publish(tmp_path / "x" / "..")
    assert seen == [mailbox_key(tmp_path)]
    bus.forget(seen.append)
    bus.publish(tmp_path)
    assert len(seen) == 1


def test_store_changes_are_published(mailbox: Mailbox) -> None:
    """Delivery, a flag change and an expunge each publish the mailbox on
    the process bus."""
    seen: list[str] = []
    changes.BUS.listen(seen.append)
    try:
        mailbox.deliver(b"Subject: x\r\n\r\nbody\r\n")
        [info] = mailbox.messages()
        flagged = mailbox.set_flags(info, {"\\Flagged"})
        assert flagged is not None
        mailbox.remove([flagged])
    finally:
        changes.BUS.forget(seen.append)
    assert seen == [mailbox_key(mailbox.path)] * 3


def test_bus_changes_are_coalesced(mailbox: Mailbox) -> None:
    """A burst of changes in this process wakes each subscriber once, on
    the next reactor turn, not during the change."""
    clock, bus = Clock(), ChangeBus()
    notifier = MailboxNotifier(clock, bus=bus)
    first, second = Recorder(), Recorder()
    notifier.subscribe(mailbox.path, first)
    notifier.subscribe(mailbox.path, second)
    for _ in range(5):
        bus.publish(mailbox.path)
    assert first.calls == 0
    clock.advance(0)
    assert (first.calls, second.calls) == (1, 1)


def test_other_mailboxes_are_not_heard(mailbox: Mailbox, tmp_path: Path) -> None:
    """Only subscribers of the changed mailbox are woken."""
    clock, bus = Clock(), ChangeBus()
    notifier = MailboxNotifier(clock, bus=bus)
    recorder = Recorder()
    notifier.subscribe(mailbox.path, recorder)
    bus.publish(tmp_path / "Other.mdir")
    clock.advance(0)
    assert recorder.calls == 0


def test_publish_from_a_thread_goes_through_the_reactor(mailbox: Mailbox) -> None:
    """A change published in a worker thread is handed to the reactor
    thread (callFromThread)."""
    handed: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    class ThreadAwareClock(Clock):
        def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
            handed.append((f, args))

    clock, bus = ThreadAwareClock(), ChangeBus()
    notifier = MailboxNotifier(clock, bus=bus)
    recorder = Recorder()
    notifier.subscribe(mailbox.path, recorder)
    worker = threading.Thread(target=bus.publish, args=(mailbox.path,))
    worker.start()
    worker.join()
    assert len(handed) == 1 and recorder.calls == 0
    function, args = handed[0]
    function(*args)
    clock.advance(0)
    assert recorder.calls == 1


def test_kernel_watched_mailboxes_skip_the_bus(mailbox: Mailbox) -> None:
    """Where the kernel watches a mailbox its events are used and the bus
    is not (one wake-up per change, not two); the watch ends with the last
    subscriber and no timer runs."""
    clock, bus = Clock(), ChangeBus()
    notifier, made = notifier_with_fake(clock, bus)
    recorder = Recorder()
    subscription = notifier.subscribe(mailbox.path, recorder)
    [watch] = made
    key = mailbox_key(mailbox.path)
    assert watch.watched == {key} and notifier.watched(mailbox.path)
    assert clock.getDelayedCalls() == []
    bus.publish(mailbox.path)
    clock.advance(0)
    assert recorder.calls == 0
    watch.sink.changed(key)
    clock.advance(0)
    assert recorder.calls == 1
    subscription.cancel()
    assert watch.watched == set()
    watch.sink.changed(key)
    clock.advance(0)
    assert recorder.calls == 1


def test_overflow_wakes_everybody(mailbox: Mailbox, tmp_path: Path) -> None:
    """Lost kernel events (queue overflow) wake every subscriber."""
    clock = Clock()
    notifier, made = notifier_with_fake(clock, ChangeBus())
    other = Mailbox(tmp_path / "Other.mdir")
    other.create()
    first, second = Recorder(), Recorder()
    notifier.subscribe(mailbox.path, first)
    notifier.subscribe(other.path, second)
    made[0].sink.everything_changed()
    clock.advance(0)
    assert (first.calls, second.calls) == (1, 1)


def test_fallback_poll_where_the_kernel_refuses(mailbox: Mailbox) -> None:
    """A mailbox the kernel cannot watch is polled every 30 s; a change by
    another process is reported at the next poll, and nothing when none."""
    clock = Clock()
    key = mailbox_key(mailbox.path)
    notifier, _ = notifier_with_fake(clock, ChangeBus(), refused={key})
    recorder = Recorder()
    subscription = notifier.subscribe(mailbox.path, recorder)
    clock.advance(30)
    assert recorder.calls == 0
    # The process bus is not this notifier's: as if another process wrote.
    mailbox.deliver(b"Subject: elsewhere\r\n\r\nbody\r\n")
    clock.advance(29)
    assert recorder.calls == 0
    clock.advance(1)
    clock.advance(0)
    assert recorder.calls == 1
    subscription.cancel()
    assert clock.getDelayedCalls() == []


@inotify_only
def test_inotify_sees_another_process(mailbox: Mailbox) -> None:
    """inotify reports a delivery, a flag change and an expunge in a
    watched mailbox; a deleted mailbox folder does not stop the watch of
    the others (Twisted's INotify would close its descriptor)."""
    reactor = MemoryReactor()
    woken: list[str] = []

    class Sink:
        def changed(self, key: str) -> None:
            woken.append(key)

        def everything_changed(self) -> None:
            woken.append("*")

        def entry(self, key: str, sub: str, name: str, present: bool, cookie: int) -> None:
            entries.append((sub, name.split(",")[0], present, bool(cookie)))

        def drained(self) -> None:
            pass

    entries: list[tuple[str, str, bool, bool]] = []
    watch = InotifyWatch(reactor, Sink())
    key = mailbox_key(mailbox.path)
    doomed = Mailbox(mailbox.path.parent / "Doomed.mdir")
    doomed.create()
    assert watch.watch(key) and watch.watch(mailbox_key(doomed.path))
    reader = watch._notify
    assert reader in reactor.readers
    mailbox.deliver(b"Subject: x\r\n\r\nbody\r\n")
    reader.doRead()
    assert woken and set(woken) == {key}
    # The new file is named (the shared listing follows names).
    assert entries == [("new", "1", True, True)]
    woken.clear()
    for sub in ("tmp", "new", "cur"):
        os.rmdir(doomed.path / sub)
    reader.doRead()
    assert reader.connected and mailbox_key(doomed.path) in woken
    [info] = mailbox.messages()
    entries.clear()
    mailbox.set_flags(info, {"\\Seen"})
    reader.doRead()
    assert key in woken
    # A rename: both halves, paired by their cookie.
    assert entries == [("new", "1", False, True), ("cur", "1", True, True)]
    watch.ignore(mailbox_key(doomed.path))
    watch.ignore(key)
    watch.close()


@inotify_only
def test_inotify_overflow_is_reported() -> None:
    """An overflow event (watch descriptor -1) is not dropped."""
    woken: list[str] = []

    class Sink:
        def changed(self, key: str) -> None:
            woken.append(key)

        def everything_changed(self) -> None:
            woken.append("*")

    watch = InotifyWatch(MemoryReactor(), Sink())
    event = struct.pack("=iIII", -1, 0x4000, 0, 0)
    watch._notify._doRead(event[:10])
    assert woken == []
    watch._notify._doRead(event[10:])
    assert woken == ["*"]
    watch.close()


def test_a_new_subscriber_does_not_hide_a_change_from_the_others(mailbox: Mailbox) -> None:
    """Where mailboxes are polled, a change made since the last poll is
    still told to those already waiting when another session subscribes."""
    clock = Clock()
    notifier = MailboxNotifier(clock, bus=ChangeBus())
    waiting = Recorder()
    notifier.subscribe(mailbox.path, waiting)
    mailbox.deliver(b"Subject: x\r\n\r\nbody\r\n")
    notifier.subscribe(mailbox.path, Recorder())
    clock.advance(0)
    assert waiting.calls == 1
