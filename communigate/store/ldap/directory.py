"""The directory in LDAP: several front-end servers, one set of accounts.

:class:`LdapDirectory` keeps domains, accounts (settings, password,
aliases), groups, forwarders, server and domain settings, the Router table
and access rights in an LDAP server (layout: :mod:`.mapping`; schema:
``etc/ldap/communigate.schema.ldif``).  What lives in files stays in the
base directory, which the front ends share: mail, File Storage, domain
certificates, Kerberos keys, trusted CAs, Listeners.settings, the queue.

Reads answer from an in-memory :class:`~.snapshot.Snapshot`, never from
LDAP, so they stay synchronous and cheap; in the server a
:class:`~.refresh.DirectoryRefresher` merges the changes twice a second from
the thread pool, so a change made on any front end is seen by every other
within about two seconds.  Writes (the command line, password changes) go
straight to LDAP and read what they change first, so two front ends
changing the same account never lose each other's change.

When the LDAP server cannot be reached the snapshot ages.  Names still
resolve (mail keeps being delivered, sessions keep going), but once it is
older than :data:`MAX_AGE` seconds account settings — and so logins —
fail with :class:`DirectoryUnavailable`, a temporary failure (``NO
[UNAVAILABLE]``, ``-ERR [SYS/TEMP]``, ``454``), never the wrong-password
text, and not counted towards any lockout.  Service resumes by itself with
the next successful refresh.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ldap3 import LEVEL
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn
from zope.interface import implementer

from communigate.cred.errors import TemporaryFailure
from communigate.store import settingsformat
from communigate.store.directory import (
    SERVER_DEFAULTS,
    DirectoryError,
    DirectoryObject,
    IDirectory,
    IDirectoryAdmin,
    ObjectKind,
    check_domain_name,
    check_object_name,
    without_stale,
)
from communigate.store.files import DomainNotEmpty, DomainTable, FileDirectory, domain_record
from communigate.store.ldap import lookups
from communigate.store.ldap.connection import ConnectionPool, Location
from communigate.store.ldap.entries import Entries
from communigate.store.ldap.mapping import (
    OBJECT_CLASSES,
    Attributes,
    EntryKind,
    Layout,
    account_entry,
    attributes_to_settings,
    restamp,
    rights_from_attribute,
    rights_to_attribute,
    router_to_attribute,
    settings_to_attributes,
)
from communigate.store.ldap.snapshot import (
    FULL_RELOAD,
    OVERLAP,
    SWEEP,
    Fetched,
    Snapshot,
    fetch,
)
from communigate.store.settingsformat import Value

#: Seconds without a successful refresh after which logins fail temporarily.
MAX_AGE = 30.0
#: Managed attributes that are not settings (kept across a settings change).
_NOT_SETTINGS = ("cgpalias", "cgpaccessright", "cgprouterrecord", "cgpdeletionserial")
_KIND_OF = {
    ObjectKind.GROUP: EntryKind.GROUP,
    ObjectKind.FORWARDER: EntryKind.FORWARDER,
}


class DirectoryUnavailable(TemporaryFailure):
    """The LDAP directory has not been reached for too long to trust the
    copy in memory with a login; the client may try again later."""

    kind = "temporary"


def _apply_changes(settings: dict[str, Value], changes: Mapping[str, Value | None]) -> None:
    for key, value in changes.items():
        if value is None:
            settings.pop(key, None)
        else:
            settings[key] = value


@implementer(IDirectory, IDirectoryAdmin)
class LdapDirectory(FileDirectory):
    """Domains, accounts and settings in LDAP; files in ``base``.

    A :class:`FileDirectory` for everything kept as files (``base``,
    ``domain_folder``, ``account_path``); every directory read and change
    is answered here from LDAP.
    """

    def __init__(
        self,
        base: Path,
        location: Location,
        clock: Callable[[], float] = time.monotonic,
        repair: bool = True,
        max_age: float = MAX_AGE,
        connections: ConnectionPool | None = None,
        lazy: bool = False,
    ) -> None:
        """``lazy``: keep only server and domain entries in memory and look
        objects up in LDAP when asked (:mod:`.lookups`; the command line)."""
        super().__init__(base, clock, repair)
        self.location = location
        self.layout = Layout(location.base)
        self.connections = connections or ConnectionPool(location)
        self.entries = Entries(self.connections)
        self.snapshot = Snapshot(repair)
        self.max_age = max_age
        self.lazy = lazy
        #: When the snapshot last matched the LDAP server (``clock`` time).
        self.fresh_at = float("-inf")
        #: When the whole directory was last read.
        self.complete_at = float("-inf")
        #: When every entry's name was last listed (deletions found).
        self.swept_at = float("-inf")
        #: When a look last had an answer from the LDAP server (a long
        #: search counts as it brings pages): what staleness is measured from.
        self.reached_at = float("-inf")
        #: Whether a refresher keeps the copy fresh (a server): only then
        #: is an old copy refused.
        self.refreshed = False
        #: When the newest ``modifyTimestamp`` last moved (see ``settled``).
        self._newest_moved_at = float("-inf")
        #: Seconds between complete reloads and between listings of names:
        #: at least FULL_RELOAD and SWEEP, and many times what the last one
        #: took, so a large directory is not read over and over.
        self._reload_every = FULL_RELOAD
        self._sweep_every = SWEEP
        #: Called after each change made here (the refresher's ``poll``);
        #: None: refresh at once, synchronously (the command line).
        self.on_change: Callable[[], None] | None = None
        self._table_version: tuple[int, int] = (0, -1)

    def __repr__(self) -> str:
        return f"<LdapDirectory {self.location!r} base={self.base}>"

    # -- keeping the snapshot fresh -------------------------------------------

    def fetch(self) -> Fetched:
        """Blocking: what changed in LDAP since the last merge."""
        snapshot = self.snapshot
        # Everything again now and then, as a last resort; every entry's
        # name more often (deletions made by other tools leave no trace).
        now = self._clock()
        incremental = snapshot.loaded and now - self.complete_at < self._reload_every
        try:
            fetched = self._fetch(snapshot, now, incremental)
        except BaseException:
            # Pages that came before the failure prove nothing any more:
            # staleness counts from the last look that worked.
            self.reached_at = float("-inf")
            raise
        if fetched.complete:
            fetched.prepared = snapshot.rebuilt(fetched)
            self._reload_every = max(FULL_RELOAD, 20 * fetched.searched_in)
        else:
            fetched.entries = snapshot.unseen(fetched.entries)
        if fetched.listed_in is not None:
            self._sweep_every = max(SWEEP, 10 * fetched.listed_in)
        return fetched

    def _fetch(self, snapshot: Snapshot, now: float, incremental: bool) -> Fetched:
        return fetch(
            self.connections,
            self.layout,
            snapshot.newest if incremental else "",
            snapshot.serial,
            configuration_only=self.lazy,
            sweep=now - self.swept_at >= self._sweep_every,
            clock=self._clock,
            settled=incremental and now - self._newest_moved_at > OVERLAP + 1,
            reached=self._reached,
        )

    def _reached(self) -> None:
        """The LDAP server answered (called from the searching thread)."""
        self.reached_at = self._clock()

    def merge(self, fetched: Fetched) -> None:
        """Merge a :meth:`fetch` (on the thread that reads the directory)."""
        newest = self.snapshot.newest
        if fetched.prepared is not None:
            self.snapshot = fetched.prepared
        else:
            self.snapshot.apply(fetched)
        self.fresh_at = self._clock()
        if self.snapshot.newest != newest:
            self._newest_moved_at = self.fresh_at
        if fetched.complete:
            self.complete_at = self.fresh_at
        if fetched.complete or fetched.present is not None:
            self.swept_at = self.fresh_at

    def refresh(self) -> None:
        """Blocking: fetch and merge (start-up and the command line)."""
        self.merge(self.fetch())

    def age(self) -> float:
        """Seconds since the LDAP server last answered: the snapshot last
        matched it, or a look (a long reload) is bringing its pages."""
        return self._clock() - max(self.fresh_at, self.reached_at)

    def _require_fresh(self) -> None:
        if not self.refreshed:
            # The command line: it reads what it loaded (or asks LDAP), and
            # nothing keeps the copy fresh, however long the command runs.
            return
        age = self.age()
        if age > self.max_age:
            raise DirectoryUnavailable(
                f"LDAP directory {self.location.host}:{self.location.port} "
                f"not reached for {age:.0f} s"
            )

    # -- reading --------------------------------------------------------------

    def is_initialised(self) -> bool:
        """Whether ``init`` has created the server entry."""
        return bool(self.snapshot.server.get("MainDomainName"))

    def main_domain(self) -> str:
        """The name of the Main Domain."""
        name = self.snapshot.server.get("MainDomainName")
        if not isinstance(name, str):
            raise DirectoryError(f"{self.layout.base} is not initialised (no MainDomainName)")
        return name

    def server_settings(self) -> Mapping[str, Value]:
        """Server-wide settings, defaults applied."""
        return {**SERVER_DEFAULTS, **self.snapshot.server}

    def _load_table(self) -> DomainTable:
        snapshot = self.snapshot
        version = (id(snapshot), snapshot.domains_version)
        if self._table is not None and self._table_version == version:
            return self._table
        main = self.main_domain()
        names = [main, *sorted(name for name in snapshot.domains if name != main)]
        records = {}
        for name in names:
            data = snapshot.domains.get(name)
            records[name] = domain_record(name, data.settings if data else {})
        self._table = DomainTable(records, main)
        self._table_version = version
        return self._table

    def router_table(self) -> str:
        """The text of the Router table."""
        return self.snapshot.router

    def find_object(self, domain: str, name: str) -> DirectoryObject | None:
        """The account, alias, group or forwarder ``name`` in ``domain``,
        as the snapshot has it (even an old one: see :data:`MAX_AGE`)."""
        if self.domain(domain) is None:
            return None
        try:
            check_object_name(name)
        except DirectoryError:
            return None
        if self.lazy:
            return lookups.find(self.entries, self.layout, domain, name)
        snapshot = self.snapshot
        if name in snapshot.accounts.get(domain, {}):
            return DirectoryObject(ObjectKind.ACCOUNT, domain, name)
        target = snapshot.aliases.get(domain, {}).get(name)
        if target is not None:
            return DirectoryObject(ObjectKind.ALIAS, domain, name, (target,))
        group = snapshot.groups.get(domain, {}).get(name)
        if group is not None:
            members = settingsformat.as_string_list(group.get("Members"))
            return DirectoryObject(ObjectKind.GROUP, domain, name, tuple(members))
        forward = snapshot.forwarders.get(domain, {}).get(name)
        if forward is not None:
            return DirectoryObject(ObjectKind.FORWARDER, domain, name, (forward,))
        return None

    def raw_account_settings(self, domain: str, name: str) -> dict[str, Value]:
        """The account's own settings (no defaults); a snapshot older than
        ``max_age`` raises :class:`DirectoryUnavailable`."""
        self._require_fresh()
        try:
            check_object_name(name)
        except DirectoryError:
            raise DirectoryError(f"unknown account {name}@{domain}") from None
        if self.lazy:
            settings = lookups.account(self.entries, self.layout, domain, name)
        else:
            settings = self.snapshot.accounts.get(domain, {}).get(name)
        if settings is None:
            raise DirectoryError(f"unknown account {name}@{domain}")
        return dict(settings)

    def account_names(self, domain: str) -> list[str]:
        """The accounts of a domain, sorted."""
        if self.lazy:
            return lookups.account_names(self.entries, self.layout, domain)
        return sorted(self.snapshot.accounts.get(domain, {}))

    def objects(self, domain: str, kind: ObjectKind) -> dict[str, Value]:
        """The aliases, groups or forwarders of a domain, as stored."""
        if self.lazy and kind in (ObjectKind.ALIAS, ObjectKind.GROUP, ObjectKind.FORWARDER):
            return lookups.objects(self.entries, self.layout, domain, kind)
        snapshot = self.snapshot
        if kind is ObjectKind.ALIAS:
            return dict(snapshot.aliases.get(domain, {}))
        if kind is ObjectKind.GROUP:
            return {name: dict(value) for name, value in snapshot.groups.get(domain, {}).items()}
        if kind is ObjectKind.FORWARDER:
            return dict(snapshot.forwarders.get(domain, {}))
        raise DirectoryError(f"no list of {kind.value}s")

    def access_rights(self, domain: str) -> Mapping[str, Value]:
        """The domain's access rights (``cgpAccessRight`` values)."""
        data = self.snapshot.domains.get(domain)
        return dict(data.rights) if data else {}

    def _settings_change(
        self, kind: EntryKind, changes: Mapping[str, Value | None], result: dict[str, Value]
    ) -> Callable[[Attributes], Attributes]:
        """A ``change`` for :meth:`_update_entry` applying settings
        ``changes``; ``result`` receives the settings after the change."""

        def change(old: Attributes) -> Attributes:
            settings = attributes_to_settings(kind, old)
            _apply_changes(settings, changes)
            result.clear()
            result.update(settings)
            new = settings_to_attributes(kind, settings)
            for attribute in _NOT_SETTINGS:
                if attribute in old:
                    new[attribute] = old[attribute]
            if kind is EntryKind.ACCOUNT and "Password" not in changes:
                # As it was, every value, even one no Password setting
                # stands for (a {SCHEME} only other software reads).
                if old.get("userpassword"):
                    new["userpassword"] = old["userpassword"]
                restamp(new)
            return new

        return change

    def _changed(self, deleted: bool = False) -> None:
        """After a change: tell every front end that something is gone
        (``cgpDeletionSerial``), then refresh this one."""
        if deleted:
            serial = str(time.time_ns())
            self.entries.modify(
                self.layout.server, {"cgpDeletionSerial": [("MODIFY_REPLACE", [serial])]}
            )
        # Its stamp may share a second with the newest seen: the next looks
        # search the overlap again.
        self._newest_moved_at = self._clock()
        if self.on_change is not None:
            self.on_change()
        else:
            self.refresh()

    # -- changing -------------------------------------------------------------

    def _ensure_base(self) -> None:
        """Create the base entry when the LDAP server holds the suffix but
        not yet its top entry (``dc=``, ``o=`` or ``ou=`` bases)."""
        if self.entries.read(self.layout.base) is not None:
            return
        attribute, value, _ = parse_dn(self.layout.base)[0]
        classes = {
            "dc": (["top", "dcObject", "organization"], {"dc": [value], "o": [value]}),
            "o": (["top", "organization"], {"o": [value]}),
            "ou": (["top", "organizationalUnit"], {"ou": [value]}),
        }.get(attribute.lower())
        if classes is None:
            raise DirectoryError(f"create the base entry {self.layout.base} first")
        self.entries.add(self.layout.base, {"objectclass": classes[0], **classes[1]})

    def _add_domain(self, name: str, settings: Mapping[str, Value]) -> None:
        dn = self.layout.domain(name)
        self.entries.add(
            dn,
            {
                "objectclass": list(OBJECT_CLASSES[EntryKind.DOMAIN]),
                "cgpdomainname": [name],
                **settings_to_attributes(EntryKind.DOMAIN, settings),
            },
        )
        for kind in (EntryKind.ACCOUNT, EntryKind.GROUP, EntryKind.FORWARDER):
            container = self.layout.container(name, kind)
            ou = parse_dn(container)[0][1]
            self.entries.add(container, {"objectclass": ["top", "organizationalUnit"], "ou": [ou]})
        (self.domain_folder(name) / "Settings").mkdir(parents=True, exist_ok=True)

    def initialise(self, main_domain: str) -> None:
        """Create the server entry and the Main Domain; refuse if they
        exist.  The base directory gets its folders for files."""
        main_domain = check_domain_name(main_domain)
        if self.entries.read(self.layout.server) is not None:
            raise DirectoryError(f"{self.layout.base} is already initialised")
        self._ensure_base()
        if self.entries.read(self.layout.domains) is None:
            self.entries.add(
                self.layout.domains,
                {"objectclass": ["top", "organizationalUnit"], "ou": ["domains"]},
            )
        for folder in ("Settings", "Accounts/Settings", "Domains"):
            (self.base / folder).mkdir(parents=True, exist_ok=True)
        self.entries.add(
            self.layout.server,
            {
                "objectclass": list(OBJECT_CLASSES[EntryKind.SERVER]),
                "cn": ["server"],
                **settings_to_attributes(
                    EntryKind.SERVER, {"MainDomainName": main_domain, "HideAccountUnknown": "NO"}
                ),
            },
        )
        self.refresh()
        self._add_domain(main_domain, {})
        self._changed()

    def update_server_settings(self, changes: Mapping[str, Value | None]) -> dict[str, Value]:
        """Set or remove server settings; ``MainDomainName`` is fixed."""
        if "MainDomainName" in changes:
            raise DirectoryError("MainDomainName cannot be changed")
        result: dict[str, Value] = {}
        change = self._settings_change(EntryKind.SERVER, changes, result)
        self.entries.update(self.layout.server, EntryKind.SERVER, change, "not initialised")
        self._changed()
        return result

    def set_router_table(self, text: str) -> None:
        """Replace the Router table."""

        def change(old: Attributes) -> Attributes:
            return {**old, "cgprouterrecord": router_to_attribute(text)}

        self.entries.update(self.layout.server, EntryKind.SERVER, change, "not initialised")
        self._changed()

    def create_domain(self, name: str, settings: Mapping[str, Value] | None = None) -> str:
        """Create a domain; its name must not be taken by a domain or alias."""
        name = check_domain_name(name)
        self._check_domain_settings(name, settings or {})
        if name in self._taken_domain_names():
            raise DirectoryError(f"domain {name} already exists")
        self._add_domain(name, settings or {})
        self._changed()
        return name

    def _domain_objects(self, name: str) -> list[tuple[str, Attributes]]:
        return self.entries.search(
            self.layout.domain(name),
            "(|(objectClass=cgpAccount)(objectClass=cgpGroup)(objectClass=cgpForwarder))",
        )

    def delete_domain(self, name: str, only_if_empty: bool = False) -> None:
        """Delete a domain with everything in it (entries, then files); the
        Main Domain stays.  With ``only_if_empty`` a domain that still has
        accounts, aliases, groups or forwarders is refused."""
        name = check_domain_name(name)
        if name == self.main_domain():
            raise DirectoryError("the Main Domain cannot be deleted")
        if self.entries.read(self.layout.domain(name)) is None:
            raise DirectoryError(f"unknown domain {name}")
        if only_if_empty:
            counts = {"accounts": 0, "aliases": 0, "groups": 0, "forwarders": 0}
            for _, attributes in self._domain_objects(name):
                classes = {value.lower() for value in attributes.get("objectclass", [])}
                if "cgpaccount" in classes:
                    counts["accounts"] += 1
                    counts["aliases"] += len(attributes.get("cgpalias", []))
                else:
                    counts["groups" if "cgpgroup" in classes else "forwarders"] += 1
            held = [f"{what}: {count}" for what, count in counts.items() if count]
            if held:
                raise DomainNotEmpty(f"domain {name} is not empty: {', '.join(held)}")
        entries = self.entries.search(self.layout.domain(name), "(objectClass=*)")
        for dn, _ in sorted(entries, key=lambda item: -len(parse_dn(item[0]))):
            self.entries.delete(dn)
        folder = self.domain_folder(name)
        if folder.is_dir():
            trash = folder.with_name(f".{name}.deleted.{os.getpid()}")
            os.rename(folder, trash)
            shutil.rmtree(trash)
        self._changed(deleted=True)

    def update_domain_settings(
        self, name: str, changes: Mapping[str, Value | None]
    ) -> dict[str, Value]:
        """Set or remove domain settings (addresses, aliases, defaults, ...)."""
        record = self.domain(name)
        if record is None or record.name != name.lower():
            raise DirectoryError(f"unknown domain {name}")
        self._check_domain_settings(record.name, changes)
        result: dict[str, Value] = {}
        change = self._settings_change(EntryKind.DOMAIN, changes, result)
        dn = self.layout.domain(record.name)
        self.entries.update(dn, EntryKind.DOMAIN, change, f"unknown domain {name}")
        self._changed()
        return result

    def update_access_rights(
        self, domain: str, holder: str, change: Callable[[list[str]], list[str]]
    ) -> list[str]:
        """Change one holder's rights in a domain; an empty list removes it."""
        domain = self._require_domain(domain)
        result: list[str] = []

        def update(old: Attributes) -> Attributes:
            nonlocal result
            rights = rights_from_attribute(old.get("cgpaccessright", []))
            result = change(settingsformat.as_string_list(rights.get(holder)))
            if result:
                rights[holder] = list(result)
            else:
                rights.pop(holder, None)
            new = {key: values for key, values in old.items()}
            new["cgpaccessright"] = rights_to_attribute(rights)
            return new

        dn = self.layout.domain(domain)
        self.entries.update(dn, EntryKind.DOMAIN, update, f"unknown domain {domain}")
        self._changed()
        return result

    def _require_free(self, domain: str, name: str) -> None:
        """Refuse a name an account, alias, group or forwarder has, as the
        LDAP server says now (not the snapshot)."""
        if self.entries.search(self.layout.domain(domain), lookups.name_query(name)):
            raise DirectoryError(f"{name}@{domain} already exists")

    def create_account(self, domain: str, name: str, settings: Mapping[str, Value]) -> str:
        """Create an account with its settings; the name must be free."""
        domain = self._require_domain(domain)
        name = check_object_name(name)
        self._require_free(domain, name)
        self.entries.add(
            self.layout.object(EntryKind.ACCOUNT, domain, name),
            account_entry(domain, name, settings),
        )
        self.account_path(domain, name).mkdir(parents=True, exist_ok=True)
        self._changed()
        return f"{name}@{domain}"

    def import_account(self, domain: str, name: str, settings: Mapping[str, Value]) -> None:
        """Add an account while a whole directory is copied in: the names
        come from a directory that holds each once and this one was empty,
        so no search for a clash, and no re-reading after each (the copy
        refreshes once at the end).  Safe from several threads at once."""
        self.entries.add(
            self.layout.object(EntryKind.ACCOUNT, domain, name),
            account_entry(domain, name, settings),
        )
        self.account_path(domain, name).mkdir(parents=True, exist_ok=True)

    def ensure_account_folder(self, domain: str, name: str) -> Path:
        """The account's folder, made when missing: the directory holds the
        account, and an account created by another LDAP tool has no folder
        in the base directory until it first logs in."""
        folder = self.account_path(domain, name)
        # Not its parents: a domain whose folder is gone was deleted.
        folder.mkdir(exist_ok=True)
        return folder

    def _require_account(self, domain: str, name: str) -> str:
        dn = self.layout.object(EntryKind.ACCOUNT, domain, name)
        if self.entries.read(dn) is None:
            raise DirectoryError(f"unknown account {name}@{domain}")
        return dn

    def delete_account(self, domain: str, name: str) -> None:
        """Delete an account (its aliases with it), then its mail and files."""
        domain = self._require_domain(domain)
        name = check_object_name(name)
        self.entries.delete(self._require_account(domain, name))
        folder = self.account_path(domain, name)
        if folder.is_dir():
            trash = folder.with_name(f".{name}.deleted.{os.getpid()}")
            os.rename(folder, trash)
            shutil.rmtree(trash)
        self._changed(deleted=True)

    def rename_account(self, domain: str, name: str, new_name: str) -> None:
        """Rename an account within its domain; aliases follow it."""
        domain = self._require_domain(domain)
        name, new_name = check_object_name(name), check_object_name(new_name)
        dn = self._require_account(domain, name)
        self._require_free(domain, new_name)
        self.entries.rename(dn, f"uid={escape_rdn(new_name)}")
        renamed = self.layout.object(EntryKind.ACCOUNT, domain, new_name)
        self.entries.modify(
            renamed,
            {
                "cn": [("MODIFY_REPLACE", [new_name])],
                "sn": [("MODIFY_REPLACE", [new_name])],
                "mail": [("MODIFY_REPLACE", [f"{new_name}@{domain}"])],
            },
        )
        folder = self.account_path(domain, name)
        if folder.is_dir():
            os.rename(folder, self.account_path(domain, new_name))
        self._changed(deleted=True)

    def update_account_settings(
        self, domain: str, name: str, changes: Mapping[str, Value | None]
    ) -> dict[str, Value]:
        """Set (or, for ``None``, remove) account settings atomically."""
        domain = self._require_domain(domain)
        name = check_object_name(name)
        result: dict[str, Value] = {}
        change = self._settings_change(EntryKind.ACCOUNT, without_stale(changes), result)
        dn = self.layout.object(EntryKind.ACCOUNT, domain, name)
        self.entries.update(dn, EntryKind.ACCOUNT, change, f"unknown account {name}@{domain}")
        self._changed()
        return result

    def _alias_holder(self, domain: str, name: str) -> str | None:
        """The account that has alias ``name``, as LDAP says now."""
        found = self.entries.search(
            self.layout.container(domain, EntryKind.ACCOUNT),
            f"(cgpAlias={escape_filter_chars(name)})",
            LEVEL,
        )
        # The account's name is its DN's (uid may have more values).
        for dn, _ in found:
            where = self.layout.locate(dn)
            if where is not None and where[0] is EntryKind.ACCOUNT:
                return where[2]
        return None

    def _set_alias(self, domain: str, account: str, alias: str, present: bool) -> None:
        dn = self._require_account(domain, account)
        operation = "MODIFY_ADD" if present else "MODIFY_DELETE"
        self.entries.modify(dn, {"cgpAlias": [(operation, [alias])]})

    def add_object(self, kind: ObjectKind, domain: str, name: str, value: Value) -> None:
        """Add an alias (value: account), group (value: dict) or forwarder."""
        domain = self._require_domain(domain)
        name = check_object_name(name)
        self._require_free(domain, name)
        if kind is ObjectKind.ALIAS:
            if not isinstance(value, str):
                raise DirectoryError("an alias names one account")
            self._set_alias(domain, value.lower(), name, True)
        elif kind is ObjectKind.GROUP:
            if not isinstance(value, dict):
                raise DirectoryError("a group is a dictionary")
            self.entries.add(
                self.layout.object(EntryKind.GROUP, domain, name),
                {
                    "objectclass": list(OBJECT_CLASSES[EntryKind.GROUP]),
                    "cn": [name],
                    **settings_to_attributes(EntryKind.GROUP, value),
                },
            )
        elif kind is ObjectKind.FORWARDER:
            if not isinstance(value, str) or not value:
                raise DirectoryError("a forwarder forwards to one address")
            self.entries.add(
                self.layout.object(EntryKind.FORWARDER, domain, name),
                {
                    "objectclass": list(OBJECT_CLASSES[EntryKind.FORWARDER]),
                    "cn": [name],
                    "cgpforwardto": [value],
                },
            )
        else:
            raise DirectoryError(f"cannot add a {kind.value} this way")
        self._changed()

    def change_object(
        self,
        kind: ObjectKind,
        domain: str,
        name: str,
        change: Callable[[Any], Value | None],
    ) -> None:
        """Replace (or, when ``change`` returns ``None``, remove) an object."""
        domain = self._require_domain(domain)
        name = name.lower()
        missing = f"no {kind.value} {name}@{domain}"
        if kind is ObjectKind.ALIAS:
            holder = self._alias_holder(domain, name)
            if holder is None:
                raise DirectoryError(missing)
            target = change(holder)
            if target == holder:
                return
            self._set_alias(domain, holder, name, False)
            if isinstance(target, str):
                self._set_alias(domain, target.lower(), name, True)
            self._changed(deleted=True)
            return
        entry_kind = _KIND_OF.get(kind)
        if entry_kind is None:
            raise DirectoryError(f"cannot change a {kind.value} this way")
        dn = self.layout.object(entry_kind, domain, name)
        old = self.entries.read(dn)
        if old is None:
            raise DirectoryError(missing)
        if entry_kind is EntryKind.GROUP:
            value = change(attributes_to_settings(EntryKind.GROUP, old))
        else:
            value = change(old.get("cgpforwardto", [""])[0])
        if value is None:
            self.entries.delete(dn)
            self._changed(deleted=True)
            return
        if entry_kind is EntryKind.GROUP:
            if not isinstance(value, dict):
                raise DirectoryError("a group is a dictionary")
            new = settings_to_attributes(EntryKind.GROUP, value)
        else:
            new = {"cgpforwardto": [str(value)]}
        self.entries.update(dn, entry_kind, lambda _old: new, missing)
        self._changed()
