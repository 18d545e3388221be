"""One listing of a mailbox per process, shared by the sessions that have
it open, kept up to date change by change.

Without it every IMAP session listed its mailbox folders again after every
change (a 100-message mailbox with three sessions listed three times per
APPEND, STORE or EXPUNGE; a 1,000,000-message one took seconds each time).
A :class:`MailboxIndex` lists the folders once and then follows them:

- **watched** (the server watches the mailbox with inotify, see
  :mod:`communigate.store.changes`): the kernel reports every file created,
  renamed or removed in ``new/`` and ``cur/``, by any process, with its
  name, which is all a listing holds (UID, size, flags).  The owner reads
  the kernel's queue before a session looks (:meth:`MailboxIndex.sync`),
  so a change made elsewhere before a client's command is seen by that
  command, whatever order the events reach the reactor in;
- **unwatched** (no inotify, watch limit reached, unit tests): the folders'
  stamps are compared at each look and the listing is made again when they
  differ, as each session did before.

Each change appends the UID it touched to a log; a session remembers its
:meth:`~MailboxIndex.position` and looks only at the UIDs changed since
(:meth:`~MailboxIndex.changed_since`).  A new listing (first load, event
queue overflow, stamps changed) starts a new *generation*, after which
sessions compare everything once.

A rename is reported by the kernel as two events (``IN_MOVED_FROM``, then
``IN_MOVED_TO`` with the same cookie); a message is never shown as gone
between them: the first only marks it, and a mark with no second half by
the end of the next read is taken as a removal.

Listing a large mailbox is done in slices (:meth:`MailboxIndex.load_steps`
yields between them) so a server can interleave other sessions' work;
the messages are put in UID order by placing them in a table indexed by
UID where UIDs are dense (they are in any mailbox that was not mostly
expunged), which also works in slices, else by one sort.
"""

from __future__ import annotations

import gc
import os
from bisect import bisect_left
from collections.abc import Iterator
from operator import attrgetter

from communigate.store.changes import folder_stamp, mailbox_key
from communigate.store.mailbox import Mailbox, MessageInfo

#: Directory entries read (or messages placed) between two yields.
SLICE = 1024
#: Dictionaries a listing is spread over (:class:`UIDMap`).
SHARDS = 8
#: UIDs kept in the change log before the oldest are dropped (a session
#: further behind compares everything once).
MAX_LOG = 65536
#: Listings of more messages than this are kept out of the cyclic garbage
#: collector's way (see :func:`_keep_from_collector`).
FREEZE_AT = 8192

_UID = attrgetter("uid")


def _keep_from_collector() -> None:
    """Move every object the cyclic collector tracks now out of its way.

    A full collection walks every tracked object; the listing of a million
    messages is a million of them (160 ms a walk, several walks while it
    grows), so a large listing is frozen as it is made (:func:`gc.freeze`,
    as the server freezes what start-up built): reference counting still
    frees it when it is released.  The young generations are collected
    first, so only cycles that were already old stay uncollected."""
    gc.collect(1)
    gc.freeze()


class UIDMap:
    """Messages by UID, in :data:`SHARDS` dictionaries.

    One dictionary of a million entries grows by copying itself whole (37
    ms, everything else waits); shards grow an eighth of that at a time.
    Only what the index and its users need of a mapping."""

    __slots__ = ("_shards",)

    def __init__(self) -> None:
        self._shards: list[dict[int, MessageInfo]] = [{} for _ in range(SHARDS)]

    def get(self, uid: int) -> MessageInfo | None:
        """The message with this UID, or None."""
        return self._shards[uid % SHARDS].get(uid)

    def __getitem__(self, uid: int) -> MessageInfo:
        return self._shards[uid % SHARDS][uid]

    def __setitem__(self, uid: int, info: MessageInfo) -> None:
        self._shards[uid % SHARDS][uid] = info

    def __delitem__(self, uid: int) -> None:
        del self._shards[uid % SHARDS][uid]

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and uid in self._shards[uid % SHARDS]

    def __len__(self) -> int:
        return sum(len(shard) for shard in self._shards)

    def __bool__(self) -> bool:
        return any(self._shards)

    def __iter__(self) -> Iterator[int]:
        for shard in self._shards:
            yield from shard

    def values(self) -> Iterator[MessageInfo]:
        """Every message (in no order)."""
        for shard in self._shards:
            yield from shard.values()

    def items(self) -> Iterator[tuple[int, MessageInfo]]:
        """Every UID and message (in no order)."""
        for shard in self._shards:
            yield from shard.items()

    def drop_some(self, count: int) -> None:
        """Forget up to ``count`` messages (emptying it in slices)."""
        for shard in self._shards:
            while shard and count > 0:
                shard.popitem()
                count -= 1


class MailboxIndex:
    """The messages of one mailbox, by UID, with a log of changes."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.key = mailbox_key(mailbox.path)
        #: Messages by UID (insertion order is not UID order).
        self.infos = UIDMap()
        #: Whether a kernel watch reports every change (else stamps are
        #: compared at each :meth:`sync`).
        self.watched = False
        #: Bumped by every new listing: positions of older ones are void.
        self.generation = 0
        #: Whether a listing has been made.
        self.loaded = False
        #: Invalidated while a listing in slices was being made.
        self._stale = False
        self._log: list[int] = []
        self._dropped = 0
        self._stamp: tuple[int, ...] | None = None
        self._sorted: list[MessageInfo] | None = []
        self._parse = mailbox.namer()
        #: Kernel events held while a listing is being made.
        self._held: list[tuple[str, str, bool, int]] | None = None
        #: Halves of renames not yet matched: cookie → (uid, path, drains).
        self._moving: dict[int, tuple[int, str, int]] = {}

    # -- listing -----------------------------------------------------------

    def load(self) -> None:
        """List the folders at once (blocking)."""
        for _ in self.load_steps():
            pass

    @property
    def loading(self) -> bool:
        """Whether a listing in slices is under way."""
        return self._held is not None

    def ready_steps(self) -> Iterator[None]:
        """Make sure the index is listed, in slices: waits for a listing
        another session started, or makes one."""
        while self._held is not None:
            yield
        if not self.loaded:
            yield from self.load_steps()

    def load_steps(self) -> Iterator[None]:
        """List the folders, yielding every :data:`SLICE` entries; events
        reported meanwhile are applied afterwards."""
        self._held = []
        try:
            stamp = folder_stamp(self.key)
            fresh = UIDMap()
            for sub in ("new", "cur"):
                try:
                    entries = os.scandir(os.path.join(self.key, sub))
                except FileNotFoundError:
                    continue
                with entries:
                    for count, entry in enumerate(entries, 1):
                        info = self._parse(sub, entry.name)
                        if info is not None:
                            fresh[info.uid] = info
                        if count % SLICE == 0:
                            if len(fresh) > FREEZE_AT:
                                _keep_from_collector()
                            yield
            ordered: list[MessageInfo] = []
            yield from _in_uid_order(fresh, ordered)
        except BaseException:
            # Abandoned (or failed): what was reported meanwhile is lost.
            self._held = None
            self.loaded = False
            raise
        held, self._held = self._held, None
        self.infos = fresh
        self._sorted = ordered
        self._stamp = stamp
        self._moving.clear()
        self.generation += 1
        self._dropped += len(self._log)
        self._log = []
        self.loaded = not self._stale
        self._stale = False
        for sub, name, present, cookie in held:
            self.entry(sub, name, present, cookie)

    def release_steps(self) -> Iterator[None]:
        """Empty the index in slices (freeing a million messages at once
        would hold up everything else); it is no longer used."""
        ordered, self._sorted = self._sorted or [], []
        infos, self.infos = self.infos, UIDMap()
        self.loaded = False
        yield from release_steps(ordered)
        while infos:
            infos.drop_some(SLICE * 8)
            if infos:
                yield

    def listing(self) -> list[MessageInfo]:
        """The messages in UID order (a list the caller may keep)."""
        if self._sorted is None:
            self._sorted = sorted(self.infos.values(), key=_UID)
        return list(self._sorted)

    def __len__(self) -> int:
        return len(self.infos)

    # -- following changes -------------------------------------------------

    def sync(self, force: bool = False) -> None:
        """Bring an unwatched index up to date (list again if the folders'
        stamps changed, or ``force``); a watched one is kept up to date by
        its owner's events.  Lists at once if never listed."""
        if self._held is not None:
            # A listing in slices is under way; it will start a new
            # generation when it ends.
            return
        if not self.loaded:
            self.load()
        elif not self.watched and (force or folder_stamp(self.key) != self._stamp):
            self.load()

    def invalidate(self) -> None:
        """Events were lost: list again at the next look (after the listing
        under way, if one is)."""
        if self._held is not None:
            self._stale = True
        self.loaded = False

    def entry(self, sub: str, name: str, present: bool, cookie: int = 0) -> None:
        """A kernel event: ``name`` appeared in (``present``) or left the
        folder ``sub``; ``cookie`` pairs the halves of a rename."""
        if self._held is not None:
            self._held.append((sub, name, present, cookie))
            return
        info = self._parse(sub, name)
        if info is None:
            return
        current = self.infos.get(info.uid)
        if not present:
            if current is not None and current.path == info.path:
                if cookie:
                    self._moving[cookie] = (info.uid, info.path, 0)
                else:
                    self._remove(info.uid)
            return
        if cookie:
            self._moving.pop(cookie, None)
        if current == info:
            return
        ordered = self._sorted
        if ordered is not None:
            if current is not None:
                ordered[bisect_left(ordered, info.uid, key=_UID)] = info
            elif not ordered or ordered[-1].uid < info.uid:
                ordered.append(info)
            else:
                position = bisect_left(ordered, info.uid, key=_UID)
                ordered.insert(position, info)
        self.infos[info.uid] = info
        self._changed(info.uid)

    def drained(self) -> bool:
        """The owner read everything queued: renames whose second half did
        not come in two reads moved the message out of the mailbox.  Whether
        halves are still waiting."""
        for cookie, (uid, path, drains) in list(self._moving.items()):
            if drains >= 1:
                del self._moving[cookie]
                current = self.infos.get(uid)
                if current is not None and current.path == path:
                    self._remove(uid)
            else:
                self._moving[cookie] = (uid, path, drains + 1)
        return bool(self._moving)

    def _remove(self, uid: int) -> None:
        del self.infos[uid]
        if self._sorted is not None:
            del self._sorted[bisect_left(self._sorted, uid, key=_UID)]
        self._changed(uid)

    def _changed(self, uid: int) -> None:
        self._log.append(uid)
        if len(self._log) > MAX_LOG:
            drop = len(self._log) // 2
            del self._log[:drop]
            self._dropped += drop

    def position(self) -> tuple[int, int]:
        """Where a session that looked now stands in the change log."""
        return self.generation, self._dropped + len(self._log)

    def changed_since(self, position: tuple[int, int]) -> list[int] | None:
        """UIDs changed since ``position`` (in order, maybe repeated), or
        None when a new listing was made or the log no longer reaches back
        (compare everything)."""
        generation, offset = position
        if generation != self.generation or offset < self._dropped:
            return None
        return self._log[offset - self._dropped :]


def release_steps(items: list[MessageInfo]) -> Iterator[None]:
    """Empty a list in slices, yielding between them."""
    while items:
        del items[-SLICE * 8 :]
        if items:
            yield


def _in_uid_order(infos: UIDMap, out: list[MessageInfo]) -> Iterator[None]:
    """Fill ``out`` with ``infos`` in UID order, yielding between slices.

    Dense UIDs go into a table indexed by UID (linear, sliced); sparse ones
    are sorted at once."""
    if not infos:
        return
    low = high = next(iter(infos))
    for count, uid in enumerate(infos, 1):
        if uid < low:
            low = uid
        elif uid > high:
            high = uid
        if count % (SLICE * 8) == 0:
            yield
    if high - low >= 4 * len(infos) + SLICE:
        out.extend(sorted(infos.values(), key=_UID))
        return
    table: list[MessageInfo | None] = [None] * (high - low + 1)
    for count, (uid, info) in enumerate(infos.items(), 1):
        table[uid - low] = info
        if count % SLICE == 0:
            yield
    for start in range(0, len(table), SLICE * 4):
        if start:
            yield
        out.extend(info for info in table[start : start + SLICE * 4] if info is not None)
