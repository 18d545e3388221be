"""One account's XMPP roster (RFC 6121 §2), kept in the account's folder.

The roster is ``<account folder>/roster.settings`` in CommuniGate's
settings syntax, rewritten whole and atomically on every change::

    {
      Version = #7;
      Known = #0;
      Items = (
        {JID = juliet@example.com; Name = Juliet; Subscription = both;
         Groups = (Friends); Version = #5; },
      );
      Removed = ({JID = nurse@example.com; Version = #7; });
    }

Versioning (RFC 6121 §2.6): every change increments ``Version``; each item
remembers the version that last changed it and each removal leaves a
tombstone, so :meth:`Roster.changes_since` can answer with only what
changed.  Tombstones are bounded; ``Known`` is the oldest version from
which the changes are still complete.

Items carry the subscription state as its wire form (see
:mod:`communigate.protocols.xmpp.subscriptions`); ``listed`` is false for
an item the server keeps only to remember a contact's pending request
(RFC 6121 §3.1.3: not part of the roster the user sees until approved).

JIDs are stored as given: callers pass prepared bare JIDs.  The file is
re-read when another process changed it.  Writes go through a
:class:`~communigate.store.writes.FileWrites` (at once by default; in the
server, queued to its thread pool): a new state counts at once for every
reader in the process, and :meth:`Roster.written` says when it is on disk.
No reactor here: call it from the thread that owns the account's state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

from twisted.internet.defer import Deferred

from communigate.store import settingsformat
from communigate.store.atomic import write_atomic
from communigate.store.filecache import CachedFile, Clock
from communigate.store.settingsformat import Value
from communigate.store.writes import INLINE, FileWrites, Ticket, done_ticket

FILE_NAME = "roster.settings"
#: At most this many items in one roster.
MAX_ITEMS = 5000
#: Removals remembered for versioning; older ones make a client refetch.
MAX_REMOVED = 1000
#: RFC 6121 §2.3.3 lets a server limit names and groups; these are ours.
MAX_NAME = 1023
MAX_GROUPS = 64
SUBSCRIPTIONS = ("none", "to", "from", "both")


class RosterError(ValueError):
    """A roster change that cannot be made (RFC 6121 §2.3.3
    ``not-acceptable``); the message says why."""


class RosterFull(RosterError):
    """The roster has :data:`MAX_ITEMS` items already (RFC 6121 §2.5.2
    ``resource-constraint``)."""


@dataclass(frozen=True)
class RosterItem:
    """One contact: its bare JID, the user's name and groups for it, and
    the subscription state (``subscription`` attribute, ``ask`` for the
    user's pending request, ``pending_in`` for the contact's).

    ``approved`` records a pre-approval (RFC 6121 §3.4); ``listed`` is
    false for an item kept only for a pending inbound request.  In answers
    of :meth:`Roster.changes_since` a removed item has ``subscription``
    ``"remove"``.
    """

    jid: str
    name: str | None = None
    subscription: str = "none"
    ask: bool = False
    pending_in: bool = False
    groups: tuple[str, ...] = ()
    approved: bool = False
    listed: bool = True

    def check(self) -> None:
        """Raise :class:`RosterError` if this item cannot be stored."""
        if not self.jid or len(self.jid) > 3071:
            raise RosterError("invalid contact address")
        if self.subscription not in SUBSCRIPTIONS:
            raise RosterError(f"invalid subscription {self.subscription!r}")
        if self.name is not None and len(self.name) > MAX_NAME:
            raise RosterError(f"name longer than {MAX_NAME} characters")
        if len(self.groups) > MAX_GROUPS:
            raise RosterError(f"more than {MAX_GROUPS} groups")
        if len(set(self.groups)) != len(self.groups):
            raise RosterError("a group is named twice")
        for group in self.groups:
            if not group or len(group) > MAX_NAME:
                raise RosterError(f"group names must have 1 to {MAX_NAME} characters")


@dataclass(frozen=True)
class _State:
    """What one reading of the file holds; never changed once made."""

    version: int
    known: int
    items: dict[str, tuple[RosterItem, int]]
    removed: dict[str, int]


_EMPTY = _State(0, 0, {}, {})


def _int(value: Value, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _item_from(entry: Value, default: int) -> tuple[RosterItem, int] | None:
    """An item and its version from the file (None for a malformed one);
    an item written without a version (by hand) counts as ``default``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("JID"), str):
        return None
    name = entry.get("Name")
    subscription = entry.get("Subscription", "none")
    item = RosterItem(
        jid=str(entry["JID"]),
        name=name if isinstance(name, str) else None,
        subscription=subscription
        if isinstance(subscription, str) and subscription in SUBSCRIPTIONS
        else "none",
        ask=settingsformat.as_bool(entry.get("Ask")),
        pending_in=settingsformat.as_bool(entry.get("PendingIn")),
        groups=tuple(settingsformat.as_string_list(entry.get("Groups", []))),
        approved=settingsformat.as_bool(entry.get("Approved")),
        listed=settingsformat.as_bool(entry.get("Listed"), default=True),
    )
    return item, _int(entry.get("Version"), default)


def _parse(data: bytes) -> _State:
    """The state written in a roster file."""
    settings = settingsformat.loads_dictionary(data.decode("utf-8"))
    version = _int(settings.get("Version"))
    items: dict[str, tuple[RosterItem, int]] = {}
    entries = settings.get("Items", [])
    for entry in entries if isinstance(entries, list) else []:
        found = _item_from(entry, version)
        if found is not None:
            items[found[0].jid] = found
    removed: dict[str, int] = {}
    tombstones = settings.get("Removed", [])
    for entry in tombstones if isinstance(tombstones, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("JID"), str):
            removed[str(entry["JID"])] = _int(entry.get("Version"), version)
    # A hand-edited file must not make versions go backwards.
    version = max([version, *(seen for _, seen in items.values()), *removed.values()])
    return _State(version, _int(settings.get("Known")), items, removed)


def _format(state: _State) -> bytes:
    """The text of a roster file holding ``state``."""
    entries: list[Value] = []
    for item, version in state.items.values():
        entry: dict[str, Value] = {"JID": item.jid}
        if item.name is not None:
            entry["Name"] = item.name
        entry["Subscription"] = item.subscription
        for key, flag in (("Ask", item.ask), ("PendingIn", item.pending_in)):
            if flag:
                entry[key] = "YES"
        if item.approved:
            entry["Approved"] = "YES"
        if not item.listed:
            entry["Listed"] = "NO"
        if item.groups:
            entry["Groups"] = list(item.groups)
        entry["Version"] = version
        entries.append(entry)
    removed: list[Value] = [
        {"JID": jid, "Version": version} for jid, version in state.removed.items()
    ]
    settings: dict[str, Value] = {
        "Version": state.version,
        "Known": state.known,
        "Items": entries,
        "Removed": removed,
    }
    return settingsformat.dumps_dictionary(settings).encode("utf-8")


def _save(path: Path, state: _State) -> None:
    """Write ``state`` to the roster file (in the writer's thread)."""
    write_atomic(path, _format(state))


class Roster:
    """The roster of one account, read from and written to its folder."""

    def __init__(
        self, path: Path, clock: Clock = time.monotonic, writes: FileWrites = INLINE
    ) -> None:
        self.path = Path(path)
        self._file = CachedFile(self.path, _parse, _EMPTY, clock)
        self._writes = writes
        self._ticket = done_ticket()
        #: Whether the last read took a state not yet on disk.
        self._pending = False

    @classmethod
    def load(cls, folder: Path, clock: Clock = time.monotonic) -> Roster:
        """The roster in an account's folder (empty if it has none yet);
        a file that cannot be parsed raises ``ValueError``."""
        roster = cls(Path(folder) / FILE_NAME, clock)
        roster._file.get()
        return roster

    def _state(self) -> _State:
        """The current state: the newest one waiting to be written, else
        the file's."""
        waiting = self._writes.latest(self.path)
        if waiting is not None:
            self._pending = True
            return cast(_State, waiting)
        if self._pending:
            # Written (or failed) since: what the file holds now counts.
            self._pending = False
            self._file.invalidate()
        return self._file.get()

    @property
    def version(self) -> int:
        """The current roster version; 0 for a roster never changed."""
        return self._state().version

    def items(self) -> list[RosterItem]:
        """Every item, in the order they were added."""
        return [item for item, _ in self._state().items.values()]

    def get(self, jid: str) -> RosterItem | None:
        """The item for a bare JID, or None."""
        found = self._state().items.get(jid)
        return None if found is None else found[0]

    def __len__(self) -> int:
        """How many items the roster has."""
        return len(self._state().items)

    def written(self) -> Deferred[None]:
        """Fires once the last change made through this object is on disk;
        fails with the ``OSError`` that stopped it."""
        return self._ticket.watch()

    def set(self, item: RosterItem) -> int:
        """Add or replace the item for ``item.jid`` and return the new
        version (the current one if nothing changed).  Raise
        :class:`RosterError` for an item that cannot be stored,
        :class:`RosterFull` past :data:`MAX_ITEMS`, ``OSError`` if the
        file cannot be written."""
        item.check()
        state = self._fresh()
        current = state.items.get(item.jid)
        if current is not None and current[0] == item:
            return state.version
        if current is None and len(state.items) >= MAX_ITEMS:
            raise RosterFull(f"the roster already has {MAX_ITEMS} items")
        version = state.version + 1
        items = dict(state.items)
        items[item.jid] = (item, version)
        removed = dict(state.removed)
        removed.pop(item.jid, None)
        return self._write(_State(version, state.known, items, removed))

    def remove(self, jid: str) -> int:
        """Remove the item for ``jid`` and return the new version (the
        current one if there was no such item)."""
        state = self._fresh()
        if jid not in state.items:
            return state.version
        version = state.version + 1
        items = dict(state.items)
        del items[jid]
        removed = dict(state.removed)
        removed[jid] = version
        known = state.known
        while len(removed) > MAX_REMOVED:
            oldest = min(removed, key=removed.__getitem__)
            # Changes since before the forgotten removal are incomplete now.
            known = max(known, removed.pop(oldest))
        return self._write(_State(version, known, items, removed))

    def changes_since(self, version: int) -> list[RosterItem] | None:
        """The items changed after ``version``, oldest change first, with
        removed ones as ``subscription="remove"`` (RFC 6121 §2.6.3); None
        when ``version`` is unknown or too old, and the client must get the
        whole roster."""
        state = self._state()
        if version > state.version or version < state.known or version < 0:
            return None
        changed = [(seen, item) for item, seen in state.items.values() if seen > version]
        changed += [
            (seen, RosterItem(jid, subscription="remove"))
            for jid, seen in state.removed.items()
            if seen > version
        ]
        changed.sort(key=lambda pair: pair[0])
        return [item for _, item in changed]

    def update(self, jid: str, **changes: object) -> int:
        """Change some fields of the item for ``jid`` (made with only its
        JID if there is none) and return the new version."""
        current = self.get(jid) or RosterItem(jid)
        return self.set(replace(current, **changes))  # type: ignore[arg-type]

    def _fresh(self) -> _State:
        """The newest state, for a read-modify-write: one waiting to be
        written, else the file's as it is now."""
        if self._writes.latest(self.path) is None:
            self._file.invalidate()
        return self._state()

    def _write(self, state: _State) -> int:
        ticket: Ticket = self._writes.replace(self.path, state, _save)
        self._ticket = ticket
        self._file.invalidate()
        return state.version
