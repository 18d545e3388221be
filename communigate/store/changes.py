"""Notifications of mailbox changes, for IMAP IDLE (RFC 2177).

Three sources tell a waiting session that its mailbox changed:

- the **bus** of this process (:data:`BUS`): every :class:`Mailbox` that adds,
  removes or re-flags a message publishes its folder here (APPEND, COPY,
  MOVE, STORE, EXPUNGE, LMTP delivery, POP3 DELE);
- **inotify** (Linux, :mod:`twisted.internet.inotify`) on the ``new/`` and
  ``cur/`` folders of the mailboxes someone waits on, for changes made by
  other processes (``communigate deliver``, another front end on shared
  storage).  Where the kernel watches a mailbox, its events cover this
  process's changes too, so the bus is not listened to for it (one re-listing
  per change, not two);
- a slow **poll** (:data:`FALLBACK_POLL`) of the folders' stamps, only for the
  mailboxes inotify cannot watch (no inotify, watch limit reached).

A waiting session costs nothing between changes: no timer, no ``stat``.  A
session that is not waiting subscribes to nothing; it looks at two ``stat``
results at its next command (as Dovecot syncs on NOOP).

The bus is process-wide on purpose: mailboxes are opened in many places
(IMAP, POP3, LMTP, the portal's delivery) and all of them must be heard; it
holds no reactor and costs one list test per change while nobody listens
(the command-line tool).  :class:`MailboxNotifier` is the reactor side: it
coalesces a burst of changes into one callback per mailbox, on the reactor
thread, whatever thread published.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

if TYPE_CHECKING:
    from communigate.store.mailbox import Mailbox
    from communigate.store.mailboxindex import MailboxIndex

#: Seconds between stamp checks of mailboxes inotify cannot watch.
FALLBACK_POLL = 30.0

#: The folders of a mailbox whose entries change with its messages.
MESSAGE_FOLDERS = ("new", "cur")

#: inotify's masks of events that name a folder entry.
_ENTRY_EVENTS = 0x100 | 0x200 | 0x40 | 0x80  # CREATE, DELETE, MOVED_FROM, MOVED_TO


def mailbox_key(path: str | os.PathLike[str]) -> str:
    """The name under which a mailbox folder is published and watched."""
    return os.path.abspath(os.fspath(path))


def folder_stamp(key: str) -> tuple[int, ...]:
    """Modification times and link counts of a mailbox's message folders."""
    stamp: list[int] = []
    for sub in MESSAGE_FOLDERS:
        try:
            status = os.stat(os.path.join(key, sub))
        except OSError:
            stamp += [0, 0]
            continue
        stamp += [status.st_mtime_ns, status.st_nlink]
    return tuple(stamp)


class ChangeBus:
    """Publish/subscribe of mailbox folders changed in this process.

    Listeners are called at once, in the publishing thread, with the
    mailbox's key; they must be quick and thread-safe (a
    :class:`MailboxNotifier` hands the work to its reactor)."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[str], None]] = []

    def listen(self, listener: Callable[[str], None]) -> None:
        """Call ``listener`` with every key published from now on."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def forget(self, listener: Callable[[str], None]) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def publish(self, path: str | os.PathLike[str]) -> None:
        """The mailbox folder ``path`` changed (messages or flags)."""
        if not self._listeners:
            return
        key = mailbox_key(path)
        for listener in tuple(self._listeners):
            listener(key)


#: The bus of this process; :mod:`communigate.store.mailbox` publishes here.
BUS = ChangeBus()


class ISubscription(Interface):
    """Interest in one mailbox's changes."""

    key = Attribute("The mailbox's key (:func:`mailbox_key`).")

    def cancel() -> None:
        """Stop the notifications (idempotent)."""


class IMailboxChanges(Interface):
    """Tells a waiting session when its mailbox changed."""

    def subscribe(path: str | os.PathLike[str], callback: Callable[[], None]) -> ISubscription:
        """Call ``callback`` (on the reactor thread, coalesced) whenever the
        mailbox folder ``path`` changes, until the subscription is cancelled."""

    def open_index(mailbox: Mailbox) -> MailboxIndex:
        """The shared listing of ``mailbox`` (:mod:`.mailboxindex`), kept
        up to date while held; give it back with ``close_index``."""

    def close_index(index: MailboxIndex) -> bool:
        """One holder of ``index`` is done with it; whether it was the
        last (the index is no longer followed and may be emptied)."""

    def mark() -> int:
        """A mark of this moment, for :meth:`sync`'s ``since``."""

    def sync(index: MailboxIndex, force: bool = False, since: int | None = None) -> None:
        """Bring ``index`` up to date with every change made so far, or
        with ``since`` (a :meth:`mark`), every change made before it."""

    def find_index(path: str | os.PathLike[str]) -> MailboxIndex | None:
        """The shared listing of a mailbox if one is held, up to date."""


class EventSink(Protocol):
    """What a kernel watch reports to."""

    def changed(self, key: str) -> None:
        """A watched mailbox changed."""

    def everything_changed(self) -> None:
        """Events were lost: every watched mailbox may have changed."""

    def entry(self, key: str, sub: str, name: str, present: bool, cookie: int) -> None:
        """A file ``name`` appeared in (``present``) or left the folder
        ``sub`` of a watched mailbox; ``cookie`` pairs a rename's halves."""

    def drained(self) -> None:
        """Everything queued so far was reported."""


class IFolderWatch(Interface):
    """Watches mailbox folders for changes made by any process."""

    reports_entries = Attribute(
        "Whether every change is also reported with the file's name "
        "(``EventSink.entry``), so a shared listing can follow it."
    )

    def watch(key: str) -> bool:
        """Start watching a mailbox; False if it cannot be watched."""

    def ignore(key: str) -> None:
        """Stop watching a mailbox."""

    def close() -> None:
        """Stop watching everything."""

    def drain() -> None:
        """Report every event queued so far, now."""


@implementer(ISubscription)
class Subscription:
    """One session's interest in one mailbox."""

    def __init__(self, notifier: MailboxNotifier, key: str, callback: Callable[[], None]) -> None:
        self.key = key
        self.callback = callback
        self._notifier: MailboxNotifier | None = notifier

    def cancel(self) -> None:
        """Stop the notifications."""
        if self._notifier is not None:
            self._notifier._unsubscribe(self)
            self._notifier = None

    def __repr__(self) -> str:
        return f"<Subscription {self.key}>"


@implementer(IMailboxChanges)
class MailboxNotifier:
    """Notifications for the sessions of one reactor.

    ``kernel`` builds the folder watch (given this notifier as the sink of
    its events), e.g. :func:`inotify_watch`; without one, or where it
    refuses a mailbox, the mailbox's stamp is polled every ``fallback``
    seconds instead.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        kernel: Callable[[EventSink], Any] | None = None,
        fallback: float = FALLBACK_POLL,
        bus: ChangeBus = BUS,
    ) -> None:
        self._reactor = reactor
        self._bus = bus
        self._thread = threading.get_ident()
        self._kernel_factory = kernel
        self._kernel: Any = None
        self._fallback = fallback
        self._subscriptions: dict[str, list[Subscription]] = {}
        #: Shared listings (:mod:`.mailboxindex`) and how many hold each.
        self._indexes: dict[str, tuple[MailboxIndex, int]] = {}
        #: Listings holding the first half of a rename.
        self._unpaired: set[str] = set()
        self._watched: set[str] = set()
        self._polled: dict[str, tuple[int, ...]] = {}
        self._poll: LoopingCall | None = None
        self._pending: set[str] = set()
        self._flush: IDelayedCall | None = None
        self._listening = False
        #: How many times :meth:`sync` read the kernel's queue.
        self._drains = 0

    # -- subscriptions -----------------------------------------------------

    def subscribe(self, path: str | os.PathLike[str], callback: Callable[[], None]) -> Subscription:
        """See :class:`IMailboxChanges`."""
        key = mailbox_key(path)
        subscription = Subscription(self, key, callback)
        if key in self._polled:
            # Those already waiting hear of a change made since the last
            # poll; the new subscriber looks at the mailbox itself now.
            fresh = folder_stamp(key)
            if fresh != self._polled[key]:
                self._polled[key] = fresh
                self.changed(key)
        existing = self._subscriptions.setdefault(key, [])
        existing.append(subscription)
        if len(existing) == 1 and key not in self._indexes:
            self._start_watching(key)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        key = subscription.key
        existing = self._subscriptions.get(key, [])
        if subscription in existing:
            existing.remove(subscription)
        if existing:
            return
        self._subscriptions.pop(key, None)
        self._pending.discard(key)
        if key not in self._indexes:
            self._stop_watching(key)

    # -- shared listings ---------------------------------------------------

    def open_index(self, mailbox: Mailbox) -> MailboxIndex:
        """The shared listing of ``mailbox`` (not yet loaded the first
        time: see :meth:`MailboxIndex.load_steps`); give it back with
        :meth:`close_index`.  A mailbox with an open index is watched."""
        from communigate.store.mailboxindex import MailboxIndex

        key = mailbox_key(mailbox.path)
        found = self._indexes.get(key)
        if found is not None:
            self._indexes[key] = (found[0], found[1] + 1)
            return found[0]
        index = MailboxIndex(mailbox)
        self._indexes[key] = (index, 1)
        if key not in self._subscriptions:
            self._start_watching(key)
        index.watched = key in self._watched and getattr(self._kernel, "reports_entries", False)
        return index

    def close_index(self, index: MailboxIndex) -> bool:
        """One holder of ``index`` is done with it; whether it was the last
        (the index is no longer followed and may be emptied)."""
        found = self._indexes.get(index.key)
        if found is None or found[0] is not index:
            return False
        if found[1] > 1:
            self._indexes[index.key] = (index, found[1] - 1)
            return False
        del self._indexes[index.key]
        self._unpaired.discard(index.key)
        if index.key not in self._subscriptions:
            self._stop_watching(index.key)
        return True

    def mark(self) -> int:
        """A mark of this moment: how many times :meth:`sync` read the
        kernel's queue so far."""
        return self._drains

    def sync(self, index: MailboxIndex, force: bool = False, since: int | None = None) -> None:
        """Bring ``index`` up to date now: read the kernel's queue (changes
        made before this call are in it), or compare stamps (``force``: list
        an unwatched one again whatever they say).

        ``since``, a :meth:`mark`, asks only for the changes made before
        it: when the queue was read after it, what that read found is in
        the listings already, and the queue is not read again.  A session
        marks the moment a client's bytes arrive, so the commands a client
        pipelined share one read (a change the client could have known of
        before sending them was made before the mark)."""
        if index.watched and self._kernel is not None and (since is None or since >= self._drains):
            self._kernel.drain()
            self._drains += 1
        index.sync(force)

    def _stop_watching(self, key: str) -> None:
        if key in self._watched:
            self._watched.discard(key)
            self._kernel.ignore(key)
        self._polled.pop(key, None)
        if not self._polled and self._poll is not None and self._poll.running:
            self._poll.stop()
        if not self._subscriptions and not self._indexes and self._listening:
            self._bus.forget(self.published)
            self._listening = False

    def _start_watching(self, key: str) -> None:
        if not self._listening:
            self._bus.listen(self.published)
            self._listening = True
        kernel = self._kernel_watch()
        if kernel is not None and kernel.watch(key):
            self._watched.add(key)
            return
        self._polled[key] = folder_stamp(key)
        if self._poll is None:
            self._poll = LoopingCall(self.poll)
            self._poll.clock = self._reactor
        if not self._poll.running:
            self._poll.start(self._fallback, now=False)

    def _kernel_watch(self) -> Any:
        """The folder watch, built at first use."""
        if self._kernel is None and self._kernel_factory is not None:
            factory, self._kernel_factory = self._kernel_factory, None
            try:
                self._kernel = factory(self)
            except Exception:
                self.log.failure("cannot watch mailbox folders; polling instead")
        return self._kernel

    def watched(self, path: str | os.PathLike[str]) -> bool:
        """Whether the kernel watches the mailbox (no polling needed)."""
        return mailbox_key(path) in self._watched

    def close(self) -> None:
        """Stop every watch and timer (at server shutdown)."""
        for subscriptions in list(self._subscriptions.values()):
            for subscription in list(subscriptions):
                subscription.cancel()
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        if self._kernel is not None:
            self._kernel.close()
            self._kernel = None

    # -- events --------------------------------------------------------------

    def changed(self, key: str) -> None:
        """A mailbox changed (from the bus, in any thread, or the kernel)."""
        if threading.get_ident() != self._thread:
            self._reactor.callFromThread(self.changed, key)
            return
        if key not in self._subscriptions:
            return
        self._pending.add(key)
        if self._flush is None:
            self._flush = self._reactor.callLater(0, self._deliver)

    def published(self, key: str) -> None:
        """A change published on the bus: the kernel reports its own; an
        unwatched shared listing is made again at its next look (its stamps
        may not show a change made within one tick of the last listing).
        Called in the publishing thread: handled on the reactor thread."""
        if threading.get_ident() != self._thread:
            self._reactor.callFromThread(self.published, key)
            return
        if key not in self._watched:
            found = self._indexes.get(key)
            if found is not None:
                found[0].invalidate()
            self.changed(key)

    def everything_changed(self) -> None:
        """Events were lost (inotify queue overflow): tell everybody, list
        every shared listing again."""
        for index, _ in list(self._indexes.values()):
            index.invalidate()
        for key in list(self._subscriptions):
            self.changed(key)

    def entry(self, key: str, sub: str, name: str, present: bool, cookie: int) -> None:
        """A kernel event with a file name: the shared listing follows it."""
        found = self._indexes.get(key)
        if found is not None:
            found[0].entry(sub, name, present, cookie)
            if cookie and not present:
                self._unpaired.add(key)

    def drained(self) -> None:
        """The kernel's queue was read to its end: listings with the first
        half of a rename and no second one settle it."""
        for key in list(self._unpaired):
            found = self._indexes.get(key)
            if found is None:
                self._unpaired.discard(key)
            elif not found[0].drained() and not found[0].loading:
                # (A listing being made replays its held halves later.)
                self._unpaired.discard(key)

    def find_index(self, path: str | os.PathLike[str]) -> MailboxIndex | None:
        """The shared listing of a mailbox if some session holds one (up to
        date: the kernel's queue is read first), else None."""
        found = self._indexes.get(mailbox_key(path))
        if found is None:
            return None
        self.sync(found[0])
        return found[0]

    def poll(self) -> None:
        """Compare the stamps of the mailboxes inotify does not watch."""
        for key, stamp in list(self._polled.items()):
            fresh = folder_stamp(key)
            if fresh != stamp:
                self._polled[key] = fresh
                self.changed(key)

    def _deliver(self) -> None:
        self._flush = None
        pending, self._pending = self._pending, set()
        for key in pending:
            for subscription in list(self._subscriptions.get(key, ())):
                try:
                    subscription.callback()
                except Exception:
                    self.log.failure("mailbox change callback failed for {key}", key=key)


@implementer(IFolderWatch)
class InotifyWatch:
    """Watches the message folders of mailboxes with inotify (Linux).

    Twisted's :class:`~twisted.internet.inotify.INotify` has two defects
    guarded against here: a watched folder that is deleted
    (``IN_DELETE_SELF``) closes the whole inotify descriptor, so every other
    watch goes silent; and a queue overflow (``IN_Q_OVERFLOW``, watch
    descriptor -1) is dropped without a word.  Events are therefore parsed
    here; only the descriptor, ``watch`` and ``ignore`` of Twisted's class
    are used.
    """

    log = Logger()
    reports_entries = True

    def __init__(self, reactor: Any, sink: EventSink) -> None:
        from twisted.internet import inotify

        self._inotify_module = inotify
        self._sink = sink
        self._descriptors: dict[int, tuple[str, str]] = {}
        self._folders: dict[str, list[Path]] = {}
        self._notify = _reader(reactor, self)

    def watch(self, key: str) -> bool:
        """Watch ``new/`` and ``cur/`` of the mailbox."""
        from twisted.python.filepath import FilePath

        inotify = self._inotify_module
        mask = (
            inotify.IN_CREATE
            | inotify.IN_DELETE
            | inotify.IN_MOVED_FROM
            | inotify.IN_MOVED_TO
            | inotify.IN_DELETE_SELF
            | inotify.IN_MOVE_SELF
        )
        folders = []
        try:
            for sub in MESSAGE_FOLDERS:
                folder = Path(key, sub)
                descriptor = self._notify.watch(FilePath(os.fsencode(folder)), mask=mask)
                self._descriptors[descriptor] = (key, sub)
                folders.append(folder)
        except Exception as error:
            self.log.info(
                "cannot watch mailbox {key} with inotify ({error}); polling it",
                key=key,
                error=error,
            )
            self._forget(key, folders)
            return False
        self._folders[key] = folders
        return True

    def ignore(self, key: str) -> None:
        """Stop watching a mailbox."""
        self._forget(key, self._folders.pop(key, []))

    def _forget(self, key: str, folders: list[Path]) -> None:
        from twisted.python.filepath import FilePath

        for folder in folders:
            try:
                self._notify.ignore(FilePath(os.fsencode(folder)))
            except Exception:
                # The kernel already dropped it (folder deleted).
                self._notify.drop(FilePath(os.fsencode(folder)))
        for descriptor, (owner, _) in list(self._descriptors.items()):
            if owner == key:
                del self._descriptors[descriptor]

    def close(self) -> None:
        """Close the inotify descriptor."""
        self._notify.loseConnection()

    def drain(self) -> None:
        """Read and report every event queued so far."""
        self._notify.drain()

    def drained(self) -> None:
        """The reader reached the end of the queue."""
        self._sink.drained()

    def event(self, descriptor: int, mask: int, cookie: int = 0, name: bytes = b"") -> None:
        """One event read from the descriptor."""
        inotify = self._inotify_module
        if mask & inotify.IN_Q_OVERFLOW:
            self._sink.everything_changed()
            return
        found = self._descriptors.get(descriptor)
        if found is None:
            return
        key, sub = found
        if name and mask & _ENTRY_EVENTS:
            present = bool(mask & (inotify.IN_CREATE | inotify.IN_MOVED_TO))
            moved = mask & (inotify.IN_MOVED_FROM | inotify.IN_MOVED_TO)
            self._sink.entry(key, sub, os.fsdecode(name), present, cookie if moved else 0)
        self._sink.changed(key)


#: Bytes one read of the inotify descriptor asks for, and the longest event
#: (its header and a name of NAME_MAX bytes): a read returning less than
#: their difference emptied the queue.
_READ_SIZE = 65536
_LONGEST_EVENT = 16 + 256


def _reader_class() -> type:
    from twisted.internet.inotify import IN_IGNORED, INotify

    class Reader(INotify):
        """Twisted's INotify with our own event parsing (see InotifyWatch)."""

        def __init__(self, reactor: Any, owner: InotifyWatch) -> None:
            super().__init__(reactor)
            self._owner = owner
            self._pending_bytes = b""
            self.startReading()

        def doRead(self) -> None:
            """Readable: report everything queued."""
            self.drain()

        def drain(self) -> None:
            """Read the descriptor until it is empty (it does not block).
            A read that returns less than it could holds every event
            queued when it was made: no second read (a system call and an
            exception) to learn that the queue is empty."""
            while True:
                try:
                    data = os.read(self._fd, _READ_SIZE)
                except InterruptedError:
                    continue
                except OSError:
                    # Empty (EAGAIN), or closed.
                    break
                if not data:
                    break
                self._doRead(data)
                if len(data) < _READ_SIZE - _LONGEST_EVENT:
                    break
            self._owner.drained()

        def _doRead(self, data: bytes) -> None:
            buffer = self._pending_bytes + data
            offset = 0
            while len(buffer) - offset >= 16:
                descriptor, mask, cookie, size = struct.unpack_from("=iIII", buffer, offset)
                if len(buffer) - offset < 16 + size:
                    break
                name = buffer[offset + 16 : offset + 16 + size].rstrip(b"\0")
                offset += 16 + size
                self._owner.event(descriptor, mask, cookie, name)
                if mask & IN_IGNORED:  # the kernel dropped the watch
                    self._drop_descriptor(descriptor)
            self._pending_bytes = buffer[offset:]

        def _drop_descriptor(self, descriptor: int) -> None:
            watch = self._watchpoints.pop(descriptor, None)
            if watch is not None:
                self._watchpaths.pop(watch.path, None)

        def drop(self, path: Any) -> None:
            """Forget a watch the kernel already removed."""
            descriptor = self._isWatched(path)
            if descriptor is not None:
                self._drop_descriptor(descriptor)

    return Reader


def _reader(reactor: Any, owner: InotifyWatch) -> Any:
    """Build the inotify reader (imported lazily: Linux only)."""
    return _reader_class()(reactor, owner)


def inotify_watch(reactor: Any) -> Callable[[EventSink], InotifyWatch | None]:
    """A ``kernel`` factory for :class:`MailboxNotifier`: inotify where the
    platform has it, else nothing (the notifier polls)."""

    def build(sink: EventSink) -> InotifyWatch | None:
        from twisted.python.runtime import platform

        if not platform.supportsINotify():
            return None
        return InotifyWatch(reactor, sink)

    return build
