"""Messages kept for an account while none of its resources is online.

RFC 6121 §8.5.2.2.1 (and §8.5.3.2.1) let a server store a message for a
user who is offline and deliver it at the next login (Prosody's
``mod_offline``).  Each stanza is its own file in
``<account folder>/offline/``, written durably with
:func:`~communigate.store.atomic.write_atomic`, named by the time it was
stored (nanoseconds, rising within a process) and a random tag, so the
oldest comes first and two front ends storing for one account at the same
moment never pick the same name (names of the earlier form, a bare
sequence number, still sort first).  The store is bounded in messages and
bytes: :meth:`OfflineStore.add` refuses at once when the stanzas still
waiting to be written reach the bound, and the write itself (in the
writer's thread, never on the reactor) lists the folder and refuses with
:class:`StoreFull` when the stored ones do (stanzas whose removal is
pending do not count); either way the sender, if there is one, gets
``service-unavailable``.  Two writes running at once may
each see room for one more: the bound is kept to within the writer's
threads.

Files are written and removed through a
:class:`~communigate.store.writes.FileWrites` (at once by default; in the
server, in its thread pool): a stanza waiting to be written is already
stored for :meth:`OfflineStore.take`, and :meth:`OfflineStore.written`
says when the last one added is on disk.  No reactor here: call it from
the thread that owns the account's state.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, gatherResults

from communigate.store.atomic import fsync_directory, write_atomic
from communigate.store.writes import INLINE, REMOVED, FileWrites, WriteRefused, done_ticket

FOLDER_NAME = "offline"
SUFFIX = ".xml"
MAX_MESSAGES = 1000
MAX_BYTES = 10 * 1024 * 1024


#: Where a stored stanza's file comes in the order: the time it was
#: stored (or the sequence number of an earlier name) and its tag.
Key = tuple[int, str]

_HEX = frozenset("0123456789abcdef")


class StoreFull(WriteRefused):
    """The stored stanzas already reach the bound in messages or bytes."""


def _key(name: str) -> Key | None:
    """Where the stanza file ``name`` comes in the order (``<time>-<tag>.xml``
    or the earlier ``<number>.xml``); None for any other name
    (``write_atomic``'s temporaries start with a dot)."""
    if not name.endswith(SUFFIX):
        return None
    stamp, _, tag = name[: -len(SUFFIX)].partition("-")
    if not (stamp.isascii() and stamp.isdigit()) or not _HEX.issuperset(tag):
        return None
    if "-" in name and not tag:
        return None
    return int(stamp), tag


#: The time the last name given in this process carries: names rise and
#: are never given twice, whichever store object gives them (a store of an
#: offline account lives only while one of its writes runs).
_last_stamp = 0


def _next_stamp() -> int:
    """A time for a new name: now in nanoseconds, past every one given."""
    global _last_stamp
    _last_stamp = max(time.time_ns(), _last_stamp + 1)
    return _last_stamp


def _save(
    max_messages: int, max_bytes: int, removing: frozenset[str], path: Path, stanza: bytes
) -> None:
    """Write one stanza's file (in the writer's thread) unless the stanzas
    already stored reach the bound (:class:`StoreFull`); files whose
    removal was pending when the stanza was added (``removing``: their
    names) do not count.  The ``offline`` folder is made if needed, never
    the account's folder."""
    count = size = 0
    for _, entry in _stanza_files(path.parent):
        if entry.name in removing:
            continue
        try:
            size += entry.stat().st_size
        except FileNotFoundError:
            continue
        count += 1
    if count >= max_messages or size + len(stanza) > max_bytes:
        raise StoreFull(f"{count} stanzas, {size} bytes stored")
    try:
        path.parent.mkdir(mode=0o700)
    except FileExistsError:
        pass
    else:
        fsync_directory(path.parent.parent)
    write_atomic(path, stanza)


def _stanza_files(folder: Path) -> Iterator[tuple[Key, os.DirEntry[str]]]:
    """(order key, entry) of each stanza file in ``folder``."""
    try:
        scan = os.scandir(folder)
    except FileNotFoundError:
        return
    with scan:
        for entry in scan:
            key = _key(entry.name)
            if key is not None:
                yield key, entry


def _read_folder(folder: Path) -> dict[Key, tuple[Path, bytes]]:
    """Order key → (path, stanza) of each stanza file in ``folder`` (in
    the writer's thread)."""
    found: dict[Key, tuple[Path, bytes]] = {}
    for key, entry in _stanza_files(folder):
        try:
            with open(entry.path, "rb") as handle:
                found[key] = (Path(entry.path), handle.read())
        except FileNotFoundError:
            continue
    return found


class OfflineStore:
    """The stored stanzas of one account, oldest first."""

    def __init__(
        self,
        folder: Path,
        max_messages: int = MAX_MESSAGES,
        max_bytes: int = MAX_BYTES,
        writes: FileWrites = INLINE,
    ) -> None:
        self.folder = Path(folder) / FOLDER_NAME
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._writes = writes
        self._ticket = done_ticket()

    def _on_disk(self) -> dict[Key, tuple[Path, int]]:
        """Order key → (path, size) of each stanza file on disk."""
        found: dict[Key, tuple[Path, int]] = {}
        for key, entry in _stanza_files(self.folder):
            try:
                found[key] = (Path(entry.path), entry.stat().st_size)
            except FileNotFoundError:
                continue
        return found

    def _entries(self) -> list[tuple[Path, int, bytes | None]]:
        """(path, size, the stanza if still in memory) of each stored
        stanza in order: the files on disk as the pending writes and
        removals will leave them."""
        entries: dict[Key, tuple[Path, int, bytes | None]] = {
            key: (path, size, None) for key, (path, size) in self._on_disk().items()
        }
        for path, state in self._writes.pending_under(self.folder).items():
            key = _key(path.name)
            if key is None:
                continue
            if state is REMOVED:
                entries.pop(key, None)
            else:
                entries[key] = (path, len(state), bytes(state))
        return [entries[key] for key in sorted(entries)]

    def count(self) -> int:
        """How many stanzas are stored."""
        return len(self._entries())

    def size(self) -> int:
        """How many bytes the stored stanzas take."""
        return sum(size for _, size, _ in self._entries())

    def add(self, stanza: bytes) -> Path | None:
        """Store one stanza (durable once :meth:`written` fires) and return
        the file it goes to; None (nothing stored) if the stanzas waiting
        to be written, or with the default writer those stored, leave no
        room for it.  With another writer, :meth:`written` fails with
        :class:`StoreFull` when the stored ones leave none; the folder is
        listed where that writer writes (the thread pool in the server:
        never on the reactor while the pool runs).  ``OSError`` at once
        from the default writer if it cannot be written (the account's
        folder is never created here)."""
        waiting: list[Any] = []
        removing: set[str] = set()
        for pending, state in self._writes.pending_under(self.folder).items():
            if _key(pending.name) is None:
                continue
            if state is REMOVED:
                removing.add(pending.name)
            else:
                waiting.append(state)
        size = sum(len(state) for state in waiting) + len(stanza)
        if len(waiting) >= self.max_messages or size > self.max_bytes:
            return None
        path = self.folder / f"{_next_stamp():020d}-{secrets.token_hex(4)}{SUFFIX}"
        write = partial(_save, self.max_messages, self.max_bytes, frozenset(removing))
        try:
            self._ticket = self._writes.replace(path, bytes(stanza), write)
        except StoreFull:
            return None
        return path

    def written(self) -> Deferred[None]:
        """Fires once the last stanza added through this object is on disk;
        fails with :class:`StoreFull` if there was no room for it, or with
        the ``OSError`` that stopped it."""
        return self._ticket.watch()

    def taken(self, path: Path) -> bool:
        """Whether the stanza added as ``path`` was taken (delivered) while
        its write ran: its removal is pending.  Asked when that write
        failed, to know whether the stanza was lost."""
        return self._writes.latest(path) is REMOVED

    def peek(self) -> list[bytes]:
        """Every stored stanza, oldest first, leaving them stored."""
        return [data for _, data in self._read()]

    def take(self) -> list[bytes]:
        """Every stored stanza, oldest first, removed from the store."""
        read = self._read()
        self.forget([path for path, _ in read])
        return [data for _, data in read]

    def any(self) -> bool:
        """Whether a stanza may be stored (cheap: a pending write, or the
        first stanza file found in the folder)."""
        if any(state is not REMOVED for state in self._writes.pending_under(self.folder).values()):
            return True
        return next(_stanza_files(self.folder), None) is not None

    def stored(self) -> Deferred[list[tuple[Path, bytes]]]:
        """``(file, stanza)`` of every stored stanza, oldest first, read
        where the writes run (the thread pool: never on the reactor), as
        the pending writes and removals leave them when it fires; nothing
        is removed (:meth:`forget` them once delivered).  A stanza whose
        write finishes while the folder is read may be left for the next
        time; none is lost."""
        return self._writes.read(_read_folder, self.folder).addCallback(self._with_pending)

    def _with_pending(self, disk: dict[Key, tuple[Path, bytes]]) -> list[tuple[Path, bytes]]:
        entries = dict(disk)
        for path, state in self._writes.pending_under(self.folder).items():
            key = _key(path.name)
            if key is None:
                continue
            if state is REMOVED:
                entries.pop(key, None)
            else:
                entries[key] = (path, bytes(state))
        return [entries[key] for key in sorted(entries)]

    def forget(self, paths: list[Path]) -> Deferred[None]:
        """Remove delivered stanzas (their files); fires once they are
        gone from the disk (a failed removal is the writer's to log)."""
        removals = [self._writes.remove(path).watch() for path in paths]
        done: Deferred[None] = gatherResults(removals, consumeErrors=True).addBoth(lambda _: None)
        return done

    def _read(self) -> list[tuple[Path, bytes]]:
        read: list[tuple[Path, bytes]] = []
        for path, _, held in self._entries():
            if held is not None:
                read.append((path, held))
                continue
            try:
                read.append((path, path.read_bytes()))
            except FileNotFoundError:
                continue
        return read
