"""Messages kept for an account while none of its resources is online.

RFC 6121 §8.5.2.2.1 (and §8.5.3.2.1) let a server store a message for a
user who is offline and deliver it at the next login (Prosody's
``mod_offline``).  Each stanza is its own file in
``<account folder>/offline/``, written durably with
:func:`~communigate.store.atomic.write_atomic`, named by a sequence number
so the oldest comes first.  The store is bounded in messages and bytes;
past the bound :meth:`OfflineStore.add` refuses and the caller bounces the
message (``service-unavailable``).

Files are written and removed through a
:class:`~communigate.store.writes.FileWrites` (at once by default; in the
server, in its thread pool): a stanza waiting to be written is already
stored for :meth:`OfflineStore.take`, and :meth:`OfflineStore.written`
says when the last one added is on disk.  No reactor here: call it from
the thread that owns the account's state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from twisted.internet.defer import Deferred, gatherResults

from communigate.store.atomic import fsync_directory, write_atomic
from communigate.store.writes import INLINE, REMOVED, FileWrites, done_ticket

FOLDER_NAME = "offline"
SUFFIX = ".xml"
MAX_MESSAGES = 1000
MAX_BYTES = 10 * 1024 * 1024


def _number(name: str) -> int | None:
    """The sequence number of a stored stanza's file name, None for any
    other name (``write_atomic``'s temporaries start with a dot)."""
    stem = name[: -len(SUFFIX)]
    if name.endswith(SUFFIX) and stem.isascii() and stem.isdigit():
        return int(stem)
    return None


def _save(path: Path, stanza: bytes) -> None:
    """Write one stanza's file (in the writer's thread); the ``offline``
    folder is made if needed, never the account's folder."""
    try:
        path.parent.mkdir(mode=0o700)
    except FileExistsError:
        pass
    else:
        fsync_directory(path.parent.parent)
    write_atomic(path, stanza)


def _stanza_files(folder: Path) -> Iterator[tuple[int, os.DirEntry[str]]]:
    """(sequence number, entry) of each stanza file in ``folder``."""
    try:
        scan = os.scandir(folder)
    except FileNotFoundError:
        return
    with scan:
        for entry in scan:
            number = _number(entry.name)
            if number is not None:
                yield number, entry


def _read_folder(folder: Path) -> dict[int, tuple[Path, bytes]]:
    """Sequence number → (path, stanza) of each stanza file in ``folder``
    (in the writer's thread)."""
    found: dict[int, tuple[Path, bytes]] = {}
    for number, entry in _stanza_files(folder):
        try:
            with open(entry.path, "rb") as handle:
                found[number] = (Path(entry.path), handle.read())
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
        #: The next sequence number this object gives at least: a number
        #: is never used twice while it lives, even once every file was
        #: removed (a read still in flight names the old files).
        self._next = 1

    def _on_disk(self) -> dict[int, tuple[Path, int]]:
        """Sequence number → (path, size) of each stanza file on disk."""
        found: dict[int, tuple[Path, int]] = {}
        for number, entry in _stanza_files(self.folder):
            try:
                found[number] = (Path(entry.path), entry.stat().st_size)
            except FileNotFoundError:
                continue
        return found

    def _entries(self) -> tuple[list[tuple[int, Path, int, bytes | None]], int]:
        """(sequence number, path, size, the stanza if still in memory) of
        each stored stanza in order (the files on disk as the pending writes
        and removals will leave them), and the highest number in use."""
        disk = self._on_disk()
        entries: dict[int, tuple[Path, int, bytes | None]] = {
            number: (path, size, None) for number, (path, size) in disk.items()
        }
        highest = max(disk, default=0)
        held: dict[int, tuple[Path, int, bytes | None]] = {}
        for path, state in self._writes.pending_under(self.folder).items():
            number = _number(path.name)
            if number is None:
                continue
            highest = max(highest, number)
            if state is REMOVED:
                entries.pop(number, None)
            else:
                held[number] = (path, len(state), bytes(state))
        entries.update(held)
        ordered = [(number, *entries[number]) for number in sorted(entries)]
        return ordered, highest

    def count(self) -> int:
        """How many stanzas are stored."""
        return len(self._entries()[0])

    def size(self) -> int:
        """How many bytes the stored stanzas take."""
        return sum(size for _, _, size, _ in self._entries()[0])

    def add(self, stanza: bytes) -> Path | None:
        """Store one stanza (durable once :meth:`written` fires) and return
        the file it goes to; None (nothing stored) if that would pass the
        bound in messages or bytes.  ``OSError`` at once from the default
        writer if it cannot be written (the account's folder is never
        created here)."""
        entries, highest = self._entries()
        total = sum(size for _, _, size, _ in entries)
        if len(entries) >= self.max_messages or total + len(stanza) > self.max_bytes:
            return None
        number = max(highest + 1, self._next)
        self._next = number + 1
        path = self.folder / f"{number:010d}{SUFFIX}"
        self._ticket = self._writes.replace(path, bytes(stanza), _save)
        return path

    def written(self) -> Deferred[None]:
        """Fires once the last stanza added through this object is on disk;
        fails with the ``OSError`` that stopped it."""
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

    def _with_pending(self, disk: dict[int, tuple[Path, bytes]]) -> list[tuple[Path, bytes]]:
        entries = dict(disk)
        for path, state in self._writes.pending_under(self.folder).items():
            number = _number(path.name)
            if number is None:
                continue
            if state is REMOVED:
                entries.pop(number, None)
            else:
                entries[number] = (path, bytes(state))
        return [entries[number] for number in sorted(entries)]

    def forget(self, paths: list[Path]) -> Deferred[None]:
        """Remove delivered stanzas (their files); fires once they are
        gone from the disk (a failed removal is the writer's to log)."""
        for path in paths:
            # Their numbers are not given again while this object lives.
            self._next = max(self._next, (_number(path.name) or 0) + 1)
        removals = [self._writes.remove(path).watch() for path in paths]
        done: Deferred[None] = gatherResults(removals, consumeErrors=True).addBoth(lambda _: None)
        return done

    def _read(self) -> list[tuple[Path, bytes]]:
        read: list[tuple[Path, bytes]] = []
        for _, path, _, held in self._entries()[0]:
            if held is not None:
                read.append((path, held))
                continue
            try:
                read.append((path, path.read_bytes()))
            except FileNotFoundError:
                continue
        return read
