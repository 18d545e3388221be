"""An account's blocked JIDs (XEP-0191 Blocking Command), kept in its folder.

The list is ``<account folder>/blocklist.settings`` in CommuniGate's
settings syntax (``{Items = (...); }``), replaced atomically on every
change (through a :class:`~communigate.store.writes.FileWrites`: a new list
counts at once, :meth:`BlockList.written` says when it is on disk) and
re-read when another process changed it.  Callers pass prepared
JIDs (:func:`communigate.protocols.xmpp.jid.parse`); the list is bounded
(:data:`MAX_ITEMS`).

An item blocks addresses by the JID matching rules XEP-0191 takes from
XEP-0016 §2.1 (the protocol layer names the candidates of an address):
``user@domain/resource`` only that full JID, ``user@domain`` any resource
of that user, ``domain/resource`` only that
resource of the domain itself, ``domain`` the domain and every user and
resource at it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import cast

from twisted.internet.defer import Deferred

from communigate.store import settingsformat
from communigate.store.atomic import write_atomic
from communigate.store.filecache import CachedFile, Clock
from communigate.store.writes import INLINE, FileWrites, done_ticket

FILE_NAME = "blocklist.settings"
MAX_ITEMS = 1000


class BlockListFull(ValueError):
    """Blocking more would pass :data:`MAX_ITEMS` (XEP-0191 lets the server
    answer ``resource-constraint``)."""


def _parse(data: bytes) -> tuple[str, ...]:
    """The items written in a block list file."""
    settings = settingsformat.loads_dictionary(data.decode("utf-8"))
    return tuple(dict.fromkeys(settingsformat.as_string_list(settings.get("Items", []))))


def _save(path: Path, items: tuple[str, ...]) -> None:
    """Write a block list file holding ``items`` (in the writer's thread)."""
    text = settingsformat.dumps_dictionary({"Items": list(items)})
    write_atomic(path, text.encode("utf-8"))


class BlockList:
    """The JIDs one account blocks."""

    def __init__(
        self, folder: Path, clock: Clock = time.monotonic, writes: FileWrites = INLINE
    ) -> None:
        self.path = Path(folder) / FILE_NAME
        self._file: CachedFile[tuple[str, ...]] = CachedFile(self.path, _parse, (), clock)
        self._set: frozenset[str] = frozenset()
        self._of: tuple[str, ...] = ()
        self._writes = writes
        self._ticket = done_ticket()
        self._pending = False
        #: The writer's pending state of the file, as of its count of
        #: changes (looked up again only once that moved: every message
        #: asks two block lists).
        self._latest: object = None
        self._changes = -1

    def _items(self) -> tuple[str, ...]:
        """The newest list: one waiting to be written, else the file's."""
        writes = self._writes
        if writes.changes != self._changes:
            self._latest, self._changes = writes.latest(self.path), writes.changes
        waiting = self._latest
        if waiting is not None:
            self._pending = True
            return cast(tuple[str, ...], waiting)
        if self._pending:
            self._pending = False
            self._file.invalidate()
        return self._file.get()

    def items(self) -> list[str]:
        """Every blocked JID, in the order they were blocked."""
        return list(self._items())

    def written(self) -> Deferred[None]:
        """Fires once the last change made through this object is on disk;
        fails with the ``OSError`` that stopped it."""
        return self._ticket.watch()

    def blocks(self, candidates: Iterable[str]) -> bool:
        """Whether one of ``candidates`` is on the list: the items that
        would block a JID (:func:`communigate.protocols.xmpp.jid.block_candidates`
        gives them for a prepared bare or full JID)."""
        items = self._items()
        if not items:
            return False
        if items is not self._of:
            self._set, self._of = frozenset(items), items
        return any(candidate in self._set for candidate in candidates)

    def block(self, jids: Iterable[str]) -> list[str]:
        """Add JIDs to the list; the ones that were not on it.  Raise
        :class:`BlockListFull` (nothing added) past :data:`MAX_ITEMS`."""
        current = self._fresh()
        added = [jid for jid in dict.fromkeys(jids) if jid not in current]
        if not added:
            return []
        if len(current) + len(added) > MAX_ITEMS:
            raise BlockListFull(f"at most {MAX_ITEMS} JIDs can be blocked")
        self._write((*current, *added))
        return added

    def unblock(self, jids: Iterable[str] | None = None) -> list[str]:
        """Remove JIDs from the list (every one for None); the ones that
        were on it."""
        current = self._fresh()
        if jids is None:
            removed = list(current)
        else:
            wanted = set(jids)
            removed = [jid for jid in current if jid in wanted]
        if removed:
            gone = set(removed)
            self._write(tuple(jid for jid in current if jid not in gone))
        return removed

    def _fresh(self) -> tuple[str, ...]:
        """The newest list, for a read-modify-write (the file looked at now
        unless a newer list waits to be written)."""
        if self._writes.latest(self.path) is None:
            self._file.invalidate()
        return self._items()

    def _write(self, items: tuple[str, ...]) -> None:
        self._ticket = self._writes.replace(self.path, items, _save)
        self._file.invalidate()
