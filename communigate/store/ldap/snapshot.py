"""The in-memory copy of the LDAP directory that every lookup reads.

The directory interface is synchronous and cheap (it is called on the
reactor thread), so lookups never reach LDAP: they read a
:class:`Snapshot`.  :func:`fetch` (blocking, run in a thread) brings what
changed since the last look — a search on ``modifyTimestamp`` (RFC 4512
§3.4) — or, the first time and every :data:`FULL_RELOAD` seconds as a
last resort, the whole directory.  :meth:`Snapshot.apply` then
merges changes; it is called on the one thread that reads the snapshot
(the reactor thread in the server), so readers never see it half-changed.
A complete reload is built into a new snapshot in the thread
(:meth:`Snapshot.rebuilt`) and only swapped in on the reactor thread.

``modifyTimestamp`` has a granularity of one second, and an entry can be
committed after a search that already saw a newer one (two writes at
once; a replica receiving changes late), so each look searches again the
last :data:`OVERLAP` seconds before the newest timestamp seen.  Merging an
entry twice changes nothing, and an entry whose change (OpenLDAP's
``entryCSN``, unique per change) was already merged is left out in the
thread (:meth:`Snapshot.unseen`), so the reactor thread merges each change
once.  Deletions leave nothing to search for: a
deletion made through communigate raises ``cgpDeletionSerial``, and then
— and every :data:`SWEEP` seconds anyway, for deletions made by other
tools — a look also lists the names of every entry (no attributes) so the
merge drops what is gone.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ldap3 import NO_ATTRIBUTES, SUBTREE
from ldap3.core.exceptions import LDAPNoSuchObjectResult
from twisted.logger import Logger

from communigate.store import schema
from communigate.store.ldap.connection import ConnectionPool
from communigate.store.ldap.entries import PAGE_SIZE, Entries, decode, require_complete
from communigate.store.ldap.mapping import (
    Attributes,
    EntryKind,
    Layout,
    MappingError,
    attributes_to_settings,
    rights_from_attribute,
    router_from_attribute,
)
from communigate.store.settingsformat import Value

#: Seconds between full reloads (a search and a decode of every entry):
#: a last resort, changes and deletions are found without them.
FULL_RELOAD = 600.0
#: Seconds before the newest ``modifyTimestamp`` seen that each look
#: searches again (late commits, one-second granularity).
OVERLAP = 5
#: Seconds between two listings of every entry's name, which find the
#: entries other tools deleted.
SWEEP = 30.0
#: The form of ``modifyTimestamp`` values (GeneralizedTime, RFC 4517 §3.3.13).
_STAMP = "%Y%m%d%H%M%SZ"
_OBJECTS = (
    "(|(objectClass=cgpServer)(objectClass=cgpDomain)(objectClass=cgpAccount)"
    "(objectClass=cgpGroup)(objectClass=cgpForwarder))"
)
_CONFIGURATION = "(|(objectClass=cgpServer)(objectClass=cgpDomain))"

_log = Logger()

_LEVELS = {
    EntryKind.SERVER: schema.Level.SERVER,
    EntryKind.DOMAIN: schema.Level.DOMAIN,
    EntryKind.ACCOUNT: schema.Level.ACCOUNT,
}


@dataclass(frozen=True)
class Entry:
    """One entry as the layout reads it."""

    kind: EntryKind
    domain: str
    name: str
    attributes: Attributes


@dataclass
class Fetched:
    """What one look at the LDAP server brought."""

    entries: list[Entry]
    #: Whether ``entries`` is the whole directory (else only changes).
    complete: bool
    #: The newest ``modifyTimestamp`` seen (the next look starts there).
    newest: str
    #: For a complete look: the new snapshot, already built in the thread.
    prepared: Snapshot | None = None
    #: Every object entry there is (kind, domain, name), when this look
    #: listed them: the merge forgets the others (deleted since).
    present: set[tuple[EntryKind, str, str]] | None = None
    #: Seconds the search of entries took, and the listing of names (when
    #: there was one): the next long look waits in proportion.
    searched_in: float = 0.0
    listed_in: float | None = None


@dataclass
class DomainData:
    """A domain's own settings and access rights."""

    settings: dict[str, Value] = field(default_factory=dict)
    rights: dict[str, Value] = field(default_factory=dict)


def decode_entry(layout: Layout, dn: str, raw: Mapping[str, list[bytes]]) -> Entry | None:
    """An entry from a search result; None for containers and entries the
    layout does not know."""
    where = layout.locate(dn)
    if where is None:
        return None
    attributes = decode(raw)
    return Entry(where[0], where[1], where[2], attributes)


def _search(
    pool: ConnectionPool,
    layout: Layout,
    query: str,
    clock: Callable[[], float],
    reached: Callable[[], None] = lambda: None,
) -> tuple[list[Entry], str, float]:
    """The entries ``query`` finds, the newest ``modifyTimestamp``
    among them, set back by the seconds the search took, and those seconds: a paged search
    is no snapshot, and an entry changed while it ran (after its page was
    read) carries a stamp at least that much before the newest seen, so
    the next look, starting there, finds it.  ``reached`` is called as
    pages arrive (the LDAP server is there, however long the search)."""
    started = clock()

    def run(connection: Any) -> tuple[list[Entry], str]:
        entries: list[Entry] = []
        newest = ""
        try:
            results = connection.extend.standard.paged_search(
                layout.base,
                query,
                SUBTREE,
                attributes=["*", "modifyTimestamp", "entryCSN"],
                paged_size=PAGE_SIZE,
                generator=True,
            )
            for count, result in enumerate(results, 1):
                if count % PAGE_SIZE == 0:
                    reached()
                if result.get("type") != "searchResEntry":
                    continue
                entry = decode_entry(layout, result["dn"], result["raw_attributes"])
                if entry is None:
                    continue
                stamp = entry.attributes.get("modifytimestamp", [""])[0]
                newest = max(newest, stamp)
                entries.append(entry)
        except LDAPNoSuchObjectResult:
            # The base entry is not there yet: nothing is initialised.
            return [], ""
        require_complete(connection)
        return entries, newest

    entries, newest = Entries(pool).call(run)
    took = clock() - started
    if newest:
        newest = earlier(newest, math.ceil(took))
    return entries, newest, took


def _present(
    pool: ConnectionPool,
    layout: Layout,
    query: str,
    reached: Callable[[], None] = lambda: None,
) -> set[tuple[EntryKind, str, str]]:
    """The (kind, domain, name) of every entry ``query`` finds: DNs only."""

    def run(connection: Any) -> set[tuple[EntryKind, str, str]]:
        found = set()
        try:
            results = connection.extend.standard.paged_search(
                layout.base,
                query,
                SUBTREE,
                attributes=[NO_ATTRIBUTES],
                paged_size=PAGE_SIZE,
                generator=True,
            )
            for count, result in enumerate(results, 1):
                if count % PAGE_SIZE == 0:
                    reached()
                if result.get("type") == "searchResEntry":
                    where = layout.locate(result["dn"])
                    if where is not None:
                        found.add(where)
        except LDAPNoSuchObjectResult:
            return set()
        # A cut-off listing would make the merge forget what it missed.
        require_complete(connection)
        return found

    present: set[tuple[EntryKind, str, str]] = Entries(pool).call(run)
    return present


def earlier(stamp: str, seconds: int) -> str:
    """The ``modifyTimestamp`` ``seconds`` before ``stamp`` (as it is if
    it is not in slapd's form)."""
    try:
        moment = datetime.datetime.strptime(stamp, _STAMP)
    except ValueError:
        return stamp
    return (moment - datetime.timedelta(seconds=seconds)).strftime(_STAMP)


def fetch(
    pool: ConnectionPool,
    layout: Layout,
    since: str,
    serial: str | None,
    configuration_only: bool = False,
    sweep: bool = False,
    clock: Callable[[], float] = time.monotonic,
    settled: bool = False,
    reached: Callable[[], None] = lambda: None,
) -> Fetched:
    """Blocking: the changes since :data:`OVERLAP` seconds before the
    ``modifyTimestamp`` ``since`` — or everything, when ``since`` is
    empty.  ``settled``: nothing newer than ``since`` has appeared for
    longer than the overlap, so every late commit before it was found:
    search only what is newer (else a burst of changes, such as an
    import, would be searched again at every look until the next change).
    The names of every entry too (:attr:`Fetched.present`) with
    ``sweep`` or when the deletion serial differs from ``serial``.
    ``configuration_only``: the server and domain entries alone (no
    accounts, groups, forwarders).  ``clock`` times the searches;
    ``reached`` is called as long searches bring pages."""
    objects = _CONFIGURATION if configuration_only else _OBJECTS
    if not since:
        entries, newest, took = _search(pool, layout, objects, clock, reached)
        return Fetched(entries, True, newest, searched_in=took)
    start = earlier(since, -1) if settled else earlier(since, OVERLAP)
    query = f"(&(modifyTimestamp>={start}){objects})"
    entries, newest, took = _search(pool, layout, query, clock, reached)
    reached()
    server = [entry for entry in entries if entry.kind is EntryKind.SERVER]
    if server and _serial(server[0]) != serial:
        sweep = True
    # Listed after the changes were searched: an entry found changed and
    # deleted since is not listed, so it is forgotten.
    listed_in = None
    present = None
    if sweep:
        listing = clock()
        present = _present(pool, layout, objects, reached)
        listed_in = clock() - listing
    return Fetched(
        entries,
        False,
        max(newest, since),
        present=present,
        searched_in=took,
        listed_in=listed_in,
    )


def _serial(entry: Entry) -> str | None:
    values = entry.attributes.get("cgpdeletionserial")
    return values[0] if values else None


class Snapshot:
    """Domains, accounts, aliases, groups, forwarders and server data as
    last read from LDAP, indexed for the lookups the directory answers."""

    def __init__(self, repair: bool = True) -> None:
        self.repair = repair
        self.loaded = False
        #: The newest ``modifyTimestamp`` merged so far.
        self.newest = ""
        #: Bumped at every change of the domains (names, aliases, addresses).
        self.domains_version = 0
        self._warned: set[tuple[str, ...]] = set()
        self._previous: dict[tuple[str, str], dict[str, Value]] = {}
        #: The changes merged within :data:`OVERLAP` seconds of
        #: :attr:`newest`: (kind, domain, name) → (entryCSN, modifyTimestamp).
        self._recent: dict[tuple[EntryKind, str, str], tuple[str, str]] = {}
        self._reset()

    def _reset(self) -> None:
        """Forget every object (before a complete reload)."""
        self.server: dict[str, Value] = {}
        self.router = ""
        self.serial: str | None = None
        self.domains: dict[str, DomainData] = {}
        self.accounts: dict[str, dict[str, dict[str, Value]]] = {}
        #: Per domain: alias → account; per account: its aliases.
        self.aliases: dict[str, dict[str, str]] = {}
        self.account_aliases: dict[tuple[str, str], list[str]] = {}
        self.groups: dict[str, dict[str, dict[str, Value]]] = {}
        self.forwarders: dict[str, dict[str, str]] = {}

    def unseen(self, entries: list[Entry]) -> list[Entry]:
        """``entries`` without the changes already merged (found again by
        the overlap of two looks); only read, so a thread may call it
        while no merge runs."""
        result = []
        for entry in entries:
            change = entry.attributes.get("entrycsn", [""])[0]
            merged = self._recent.get((entry.kind, entry.domain, entry.name))
            if not change or merged is None or merged[0] != change:
                result.append(entry)
        return result

    def _remember(self, entry: Entry) -> None:
        """Note the change ``entry`` brought (see :meth:`unseen`)."""
        change = entry.attributes.get("entrycsn", [""])[0]
        stamp = entry.attributes.get("modifytimestamp", [""])[0]
        if change and stamp:
            self._recent[(entry.kind, entry.domain, entry.name)] = (change, stamp)

    def _forget_old_changes(self) -> None:
        """Keep :attr:`_recent` to what the next look can find again."""
        oldest = earlier(self.newest, OVERLAP)
        self._recent = {key: value for key, value in self._recent.items() if value[1] >= oldest}

    def apply(self, fetched: Fetched) -> None:
        """Merge what :func:`fetch` brought (replace all when complete)."""
        if fetched.complete:
            self._previous = self._previous_values()
            self._reset()
        self._merge(fetched)

    def rebuilt(self, fetched: Fetched) -> Snapshot:
        """A new snapshot of a complete :func:`fetch`, made without changing
        this one (in a thread, while this one still answers lookups)."""
        fresh = Snapshot(self.repair)
        fresh._warned = self._warned
        fresh.newest = self.newest
        fresh.domains_version = self.domains_version + 1
        fresh._previous = self._previous_values()
        fresh._merge(fetched)
        return fresh

    def _previous_values(self) -> dict[tuple[str, str], dict[str, Value]]:
        """Settings as they are now, for :func:`schema.repair`: after a
        reload a bad value falls back to the last good one."""
        previous: dict[tuple[str, str], dict[str, Value]] = {("", ""): self.server}
        for domain, data in list(self.domains.items()):
            previous[(domain, "")] = data.settings
        for domain, accounts in list(self.accounts.items()):
            for name, settings in list(accounts.items()):
                previous[(domain, name)] = settings
        return previous

    def _merge(self, fetched: Fetched) -> None:
        for entry in fetched.entries:
            self._remember(entry)
            try:
                self._apply(entry)
            except (MappingError, ValueError) as error:
                mark = (entry.kind.value, entry.domain, entry.name, str(error))
                if mark not in self._warned:
                    self._warned.add(mark)
                    _log.warn(
                        "LDAP entry {kind} {name}@{domain} ignored: {error}",
                        kind=entry.kind.value,
                        name=entry.name,
                        domain=entry.domain,
                        error=str(error),
                    )
        if fetched.present is not None:
            self._forget_absent(fetched.present)
        self.newest = max(self.newest, fetched.newest)
        self._forget_old_changes()
        self.loaded = True
        self._previous = {}

    def _forget_absent(self, present: set[tuple[EntryKind, str, str]]) -> None:
        """Drop the domains and objects ``present`` does not list."""
        for domain in list(self.domains):
            if (EntryKind.DOMAIN, domain, domain) not in present:
                del self.domains[domain]
                for table in (self.accounts, self.aliases, self.groups, self.forwarders):
                    table.pop(domain, None)
                for key in [key for key in self.account_aliases if key[0] == domain]:
                    del self.account_aliases[key]
                self.domains_version += 1
        for domain, accounts in self.accounts.items():
            for name in [
                name for name in accounts if (EntryKind.ACCOUNT, domain, name) not in present
            ]:
                del accounts[name]
                self._drop_aliases(domain, name)
        for kind, tables in (
            (EntryKind.GROUP, self.groups),
            (EntryKind.FORWARDER, self.forwarders),
        ):
            for domain, named in tables.items():
                for name in [name for name in named if (kind, domain, name) not in present]:
                    del named[name]

    def _drop_aliases(self, domain: str, name: str) -> None:
        """Forget the aliases account ``name`` had."""
        aliases = self.aliases.get(domain, {})
        for alias in self.account_aliases.pop((domain, name), []):
            if aliases.get(alias) == name:
                del aliases[alias]

    def _repaired(
        self,
        kind: EntryKind,
        settings: dict[str, Value],
        key: tuple[str, str],
        current: dict[str, Value] | None,
    ) -> dict[str, Value]:
        """``settings`` with bad values repaired (:func:`schema.repair`)."""
        previous = current if current is not None else self._previous.get(key)
        level = _LEVELS.get(kind)
        if not self.repair or level is None:
            return settings
        repaired, actions = schema.repair(level, settings, previous)
        for problem, action in actions:
            mark = (kind.value, *key, problem.key, problem.message)
            if mark in self._warned:
                continue
            self._warned.add(mark)
            _log.warn(
                "LDAP {kind} {where}: {problem}; {action}",
                kind=kind.value,
                where="@".join(part for part in reversed(key) if part) or "server",
                problem=problem.message,
                action=action,
            )
        return repaired

    def _apply(self, entry: Entry) -> None:
        kind, domain, name = entry.kind, entry.domain, entry.name
        settings = attributes_to_settings(kind, entry.attributes)
        if kind is EntryKind.SERVER:
            self.server = self._repaired(kind, settings, ("", ""), self.server or None)
            self.router = router_from_attribute(entry.attributes.get("cgprouterrecord", []))
            self.serial = _serial(entry)
            self.domains_version += 1
        elif kind is EntryKind.DOMAIN:
            old = self.domains.get(domain)
            self.domains[domain] = DomainData(
                self._repaired(kind, settings, (domain, ""), old.settings if old else None),
                rights_from_attribute(entry.attributes.get("cgpaccessright", [])),
            )
            self.domains_version += 1
        elif kind is EntryKind.ACCOUNT:
            accounts = self.accounts.setdefault(domain, {})
            accounts[name] = self._repaired(kind, settings, (domain, name), accounts.get(name))
            self._drop_aliases(domain, name)
            aliases = self.aliases.setdefault(domain, {})
            own = [alias.lower() for alias in entry.attributes.get("cgpalias", [])]
            if own:
                self.account_aliases[(domain, name)] = own
                for alias in own:
                    aliases[alias] = name
        elif kind is EntryKind.GROUP:
            self.groups.setdefault(domain, {})[name] = settings
        else:
            target = entry.attributes.get("cgpforwardto", [""])[0]
            self.forwarders.setdefault(domain, {})[name] = target
