"""The embedded directory backend: settings files under one base directory.

Layout (spec §10), every name in lower case::

    Settings/Main.settings          server settings, MainDomainName
    Settings/Router.data            the Router table, one record a line
    Accounts/                       the Main Domain
    Domains/<name>/                 every other domain
    <domain>/Settings/Domain.settings     IPAddresses, DomainAliases, ...
    <domain>/Settings/Aliases.settings    { alias = account; }
    <domain>/Settings/Groups.settings     { group = { Members = (...); }; }
    <domain>/Settings/Forwarders.settings { name = address; }
    <domain>/<account>.macnt/account.settings

Reads go through :class:`~communigate.store.filecache.CachedFile`, so a
running server follows changes made by the command line within a second.
Writes are atomic and serialised by a lock file, so two commands run at once
never lose each other's change.

Server, domain and account settings files are checked against
:mod:`communigate.store.schema` each time they are (re)loaded, never per
lookup: a bad value is logged once (one warning per file, key and problem)
and replaced so the default applies (:func:`schema.repair`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from communigate.store import schema, settingsformat
from communigate.store.atomic import write_atomic
from communigate.store.directory import (
    ACCOUNT_DEFAULTS,
    SERVER_DEFAULTS,
    DirectoryError,
    DirectoryObject,
    DomainRecord,
    IDirectory,
    IDirectoryAdmin,
    ObjectKind,
    check_domain_name,
    check_object_name,
    without_stale,
)
from communigate.store.filecache import CachedFile, Clock
from communigate.store.settingsformat import Value

ACCOUNT_SUFFIX = ".macnt"
_MAX_CACHED_ACCOUNTS = 20000
_OBJECT_FILES = {
    ObjectKind.ALIAS: "Aliases",
    ObjectKind.GROUP: "Groups",
    ObjectKind.FORWARDER: "Forwarders",
}


_log = Logger()

#: Which settings files hold which level of settings, by file name.
_LEVELS = {
    "Main.settings": schema.Level.SERVER,
    "Domain.settings": schema.Level.DOMAIN,
    "account.settings": schema.Level.ACCOUNT,
}


def _parse_settings(data: bytes) -> dict[str, Value]:
    return settingsformat.loads_dictionary(data.decode("utf-8"))


class _RepairingParser:
    """Reads one settings file and repairs its bad values at every (re)load
    (:func:`schema.repair`), warning once per file, key and problem."""

    def __init__(self, path: Path, level: schema.Level, warned: set[tuple[str, ...]]) -> None:
        self.path = path
        self.level = level
        self.warned = warned
        self.previous: dict[str, Value] | None = None

    def __call__(self, data: bytes) -> dict[str, Value]:
        """The file's settings as the server should use them."""
        settings, actions = schema.repair(self.level, _parse_settings(data), self.previous)
        self.previous = settings
        for problem, action in actions:
            mark = (str(self.path), problem.key, problem.message)
            if mark in self.warned:
                continue
            self.warned.add(mark)
            _log.warn(
                "{path}: {problem}; {action}",
                path=str(self.path),
                problem=problem.message,
                action=action,
            )
        return settings


class DomainNotEmpty(DirectoryError):
    """A domain to delete still holds accounts or other named objects."""


def canonical_ip(text: str) -> str:
    """An IP address in one spelling (IPv4-mapped IPv6 becomes IPv4)."""
    address = ip_address(text.split("%", 1)[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def domain_record(name: str, settings: Mapping[str, Value]) -> DomainRecord:
    """A domain's record from its settings: its addresses in one spelling
    (one that is no address is left out: ``communigate check`` reports it)
    and its aliases in lower case."""
    addresses = []
    for item in settingsformat.as_string_list(settings.get("IPAddresses")):
        try:
            addresses.append(canonical_ip(item))
        except ValueError:
            continue
    aliases = settingsformat.as_string_list(settings.get("DomainAliases"))
    return DomainRecord(
        name=name,
        settings=settings,
        addresses=tuple(addresses),
        aliases=tuple(item.lower() for item in aliases),
    )


class DomainTable:
    """Domains by name and alias, and the address → domain map."""

    def __init__(self, records: Mapping[str, DomainRecord], main: str) -> None:
        self.records = dict(records)
        self.by_name: dict[str, DomainRecord] = {}
        self.by_address: dict[str, str] = {}
        for record in records.values():
            self.by_name[record.name] = record
            for alias in record.aliases:
                self.by_name.setdefault(alias, record)
            for address in record.addresses:
                self.by_address.setdefault(address, record.name)
        self.main = main


@implementer(IDirectory, IDirectoryAdmin)
class FileDirectory:
    """Domains, accounts and settings kept as files under ``base``."""

    def __init__(self, base: Path, clock: Clock = time.monotonic, repair: bool = True) -> None:
        """``repair=False`` reads settings as they are on disk, bad values
        included (the command line shows and checks them)."""
        self.base = Path(base)
        self._clock = clock
        self._repair = repair
        self._warned: set[tuple[str, ...]] = set()
        self._main = self._cached(self.base / "Settings" / "Main.settings")
        self._router = CachedFile(
            self.base / "Settings" / "Router.data",
            lambda data: data.decode("utf-8"),
            "",
            clock,
        )
        self._files: dict[Path, CachedFile[dict[str, Value]]] = {}
        #: (Main Domain, domain, name) → (the account's folder, its
        #: settings file): every login asks.
        self._paths: dict[tuple[str, str, str], tuple[Path, Path]] = {}
        self._table: DomainTable | None = None
        self._table_checked = float("-inf")

    # -- reading -----------------------------------------------------------

    def _cached(self, path: Path) -> CachedFile[dict[str, Value]]:
        level = _LEVELS.get(path.name)
        if level is None or not self._repair:
            return CachedFile(path, _parse_settings, {}, self._clock)
        return CachedFile(path, _RepairingParser(path, level, self._warned), {}, self._clock)

    def _settings_file(self, path: Path) -> dict[str, Value]:
        return self._file(path).get()

    def _file(self, path: Path) -> CachedFile[dict[str, Value]]:
        """The cached settings file at ``path`` (made on first use)."""
        cached = self._files.get(path)
        if cached is None:
            if len(self._files) > _MAX_CACHED_ACCOUNTS:
                self._files.clear()
            cached = self._files[path] = self._cached(path)
        return cached

    def _account_file(self, domain: str, name: str) -> CachedFile[dict[str, Value]] | None:
        """An account's settings file, None if it has none (no such
        account).  Whether it exists is known under the cached files' rule
        (looked at again at most twice a second), so reading an account's
        settings at every login costs no ``stat`` most of the time."""
        cached = self._file(self._account_paths(domain, name)[1])
        return cached if cached.exists() else None

    def is_initialised(self) -> bool:
        """Whether ``init`` has created this base directory."""
        return (self.base / "Settings" / "Main.settings").exists()

    def main_domain(self) -> str:
        """The name of the Main Domain."""
        name = self._main.get().get("MainDomainName")
        if not isinstance(name, str):
            raise DirectoryError(f"{self.base} is not initialised (no MainDomainName)")
        return name

    def server_settings(self) -> Mapping[str, Value]:
        """Server-wide settings, defaults applied."""
        return {**SERVER_DEFAULTS, **self._main.get()}

    def domain_folder(self, name: str) -> Path:
        """Where a domain's objects live: ``Accounts/`` for the Main Domain."""
        return self._folder_of(name, self.main_domain())

    def _folder_of(self, name: str, main: str) -> Path:
        """:meth:`domain_folder` with the Main Domain's name already known."""
        return self.base / "Accounts" if name == main else self.base / "Domains" / name

    def _domain_settings(self, name: str) -> dict[str, Value]:
        return self._settings_file(self.domain_folder(name) / "Settings" / "Domain.settings")

    def _load_table(self) -> DomainTable:
        now = self._clock()
        if self._table is not None and now - self._table_checked < 0.5:
            return self._table
        self._table_checked = now
        main = self.main_domain()
        names = [main]
        domains_dir = self.base / "Domains"
        if domains_dir.is_dir():
            names += sorted(entry.name for entry in os.scandir(domains_dir) if entry.is_dir())
        records = {name: domain_record(name, self._domain_settings(name)) for name in names}
        self._table = DomainTable(records, main)
        return self._table

    def domain(self, name: str) -> DomainRecord | None:
        """The domain whose real name or alias is ``name``, if any."""
        return self._load_table().by_name.get(name.lower())

    def domain_names(self) -> Sequence[str]:
        """The real names of all domains, the Main Domain first."""
        return list(self._load_table().records)

    def domain_for_address(self, address: str) -> str:
        """The domain that owns a local IP address; else the Main Domain."""
        table = self._load_table()
        try:
            key = canonical_ip(address)
        except ValueError:
            return table.main
        return table.by_address.get(key, table.main)

    def router_table(self) -> str:
        """The text of the Router table."""
        return self._router.get()

    def _objects(self, domain: str, kind: str) -> dict[str, Value]:
        return self._settings_file(self.domain_folder(domain) / "Settings" / f"{kind}.settings")

    def find_object(self, domain: str, name: str) -> DirectoryObject | None:
        """The account, alias, group or forwarder ``name`` in ``domain``
        (None for a name no object can have: nothing is looked up)."""
        if self.domain(domain) is None:
            return None
        try:
            check_object_name(name)
        except DirectoryError:
            return None
        # Looked at now (not under the cached files' rule): the sweep that
        # ends the sessions of deleted accounts relies on it.
        if self._account_paths(domain, name)[1].is_file():
            return DirectoryObject(ObjectKind.ACCOUNT, domain, name)
        target = self._objects(domain, "Aliases").get(name)
        if isinstance(target, str):
            return DirectoryObject(ObjectKind.ALIAS, domain, name, (target,))
        group = self._objects(domain, "Groups").get(name)
        if isinstance(group, dict):
            members = settingsformat.as_string_list(group.get("Members"))
            return DirectoryObject(ObjectKind.GROUP, domain, name, tuple(members))
        target = self._objects(domain, "Forwarders").get(name)
        if isinstance(target, str):
            return DirectoryObject(ObjectKind.FORWARDER, domain, name, (target,))
        return None

    def account_path(self, domain: str, name: str) -> Path:
        """The account's folder."""
        return self._account_paths(domain, name)[0]

    def _account_paths(self, domain: str, name: str) -> tuple[Path, Path]:
        """The account's folder and settings file, made once (again when
        the Main Domain is renamed)."""
        main = self.main_domain()
        key = (main, domain, name)
        paths = self._paths.get(key)
        if paths is None:
            if len(self._paths) >= _MAX_CACHED_ACCOUNTS:
                self._paths.clear()
            folder = self._folder_of(domain, main) / f"{name}{ACCOUNT_SUFFIX}"
            paths = self._paths[key] = (folder, folder / "account.settings")
        return paths

    def ensure_account_folder(self, domain: str, name: str) -> Path:
        """The account's folder, for a logged-in account.  Here the folder
        holds the account itself, so it is never made: one that is missing
        was deleted."""
        return self.account_path(domain, name)

    def access_rights(self, domain: str) -> Mapping[str, Value]:
        """The domain's ``Settings/Access.settings``."""
        return self._settings_file(self.domain_folder(domain) / "Settings" / "Access.settings")

    def update_access_rights(
        self, domain: str, holder: str, change: Callable[[list[str]], list[str]]
    ) -> list[str]:
        """Change one holder's rights in a domain; an empty list removes it."""
        path = self.domain_folder(self._require_domain(domain)) / "Settings" / "Access.settings"
        result: list[str] = []

        def apply(settings: dict[str, Value]) -> None:
            nonlocal result
            result = change(settingsformat.as_string_list(settings.get(holder)))
            if result:
                settings[holder] = list(result)
            else:
                settings.pop(holder, None)

        self._update_file(path, apply)
        return result

    def raw_account_settings(self, domain: str, name: str) -> dict[str, Value]:
        """The settings stored in the account's own file (no defaults)."""
        cached = self._account_file(domain, name)
        if cached is None:
            raise DirectoryError(f"unknown account {name}@{domain}")
        return cached.get()

    def account_settings(self, domain: str, name: str) -> Mapping[str, Value]:
        """Defaults, then server, domain and account values, in that order."""
        own = self.raw_account_settings(domain, name)
        server = self.server_settings().get("AccountDefaults")
        record = self.domain(domain)
        domain_defaults = record.settings.get("AccountDefaults") if record else None
        merged: dict[str, Value] = dict(ACCOUNT_DEFAULTS)
        for layer in (server, domain_defaults):
            if isinstance(layer, dict):
                merged.update(layer)
        merged.update(own)
        return merged

    def account_names(self, domain: str) -> list[str]:
        """The accounts of a domain, sorted."""
        folder = self.domain_folder(domain)
        if not folder.is_dir():
            return []
        return sorted(
            entry.name[: -len(ACCOUNT_SUFFIX)]
            for entry in os.scandir(folder)
            if entry.name.endswith(ACCOUNT_SUFFIX) and entry.is_dir()
        )

    def objects(self, domain: str, kind: ObjectKind) -> dict[str, Value]:
        """The aliases, groups or forwarders of a domain, as stored."""
        return dict(self._objects(domain, _OBJECT_FILES[kind]))

    # -- writing -----------------------------------------------------------

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        settings = self.base / "Settings"
        settings.mkdir(parents=True, exist_ok=True)
        with open(settings / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        self._table = None
        self._main.invalidate()
        self._router.invalidate()
        for cached in self._files.values():
            cached.invalidate()

    @staticmethod
    def _read_file(path: Path) -> dict[str, Value]:
        if not path.exists():
            return {}
        return _parse_settings(path.read_bytes())

    @staticmethod
    def _write_file(path: Path, settings: Mapping[str, Value]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, settingsformat.dumps_dictionary(dict(settings)).encode("utf-8"))

    def _update_file(
        self, path: Path, change: Callable[[dict[str, Value]], None]
    ) -> dict[str, Value]:
        with self._write_lock():
            settings = self._read_file(path)
            change(settings)
            self._write_file(path, settings)
            return settings

    @staticmethod
    def _apply(
        changes: Mapping[str, Value | None],
    ) -> Callable[[dict[str, Value]], None]:
        def change(settings: dict[str, Value]) -> None:
            for key, value in changes.items():
                if value is None:
                    settings.pop(key, None)
                else:
                    settings[key] = value

        return change

    def initialise(self, main_domain: str) -> None:
        """Create the layout with its Main Domain; refuse if it exists."""
        main_domain = check_domain_name(main_domain)
        with self._write_lock():
            if self.is_initialised():
                raise DirectoryError(f"{self.base} is already initialised")
            for folder in ("Settings", "Accounts/Settings", "Domains"):
                (self.base / folder).mkdir(parents=True, exist_ok=True)
            self._write_file(self.base / "Accounts" / "Settings" / "Domain.settings", {})
            write_atomic(self.base / "Settings" / "Router.data", b"")
            self._write_file(
                self.base / "Settings" / "Main.settings",
                {"MainDomainName": main_domain, "HideAccountUnknown": "NO"},
            )

    def update_server_settings(self, changes: Mapping[str, Value | None]) -> dict[str, Value]:
        """Set or remove server settings; ``MainDomainName`` is fixed."""
        if "MainDomainName" in changes:
            raise DirectoryError("MainDomainName cannot be changed")
        return self._update_file(self.base / "Settings" / "Main.settings", self._apply(changes))

    def set_router_table(self, text: str) -> None:
        """Replace the Router table."""
        with self._write_lock():
            write_atomic(self.base / "Settings" / "Router.data", text.encode("utf-8"))

    def _taken_domain_names(self, exclude: str | None = None) -> set[str]:
        """Real names and aliases of every domain but ``exclude``."""
        taken = set()
        for name in self.domain_names():
            record = self.domain(name)
            if name != exclude and record is not None:
                taken.add(name)
                taken.update(record.aliases)
        return taken

    def create_domain(self, name: str, settings: Mapping[str, Value] | None = None) -> str:
        """Create a domain; its name must not be taken by a domain or alias."""
        name = check_domain_name(name)
        self._check_domain_settings(name, settings or {})
        with self._write_lock():
            if name in self._taken_domain_names():
                raise DirectoryError(f"domain {name} already exists")
            folder = self.base / "Domains" / name
            self._write_file(folder / "Settings" / "Domain.settings", dict(settings or {}))
        return name

    def delete_domain(self, name: str, only_if_empty: bool = False) -> None:
        """Delete a domain with everything in it; the Main Domain stays.
        With ``only_if_empty`` a domain that still has accounts, aliases,
        groups or forwarders is refused."""
        name = check_domain_name(name)
        with self._write_lock():
            if name == self.main_domain():
                raise DirectoryError("the Main Domain cannot be deleted")
            folder = self.base / "Domains" / name
            if not folder.is_dir():
                raise DirectoryError(f"unknown domain {name}")
            if only_if_empty:
                self._require_empty(name)
            trash = folder.with_name(f".{name}.deleted.{os.getpid()}")
            os.rename(folder, trash)
            shutil.rmtree(trash)

    def _require_empty(self, name: str) -> None:
        """Refuse a domain that still holds named objects (read from disk)."""
        counts = {"accounts": len(self.account_names(name))}
        for file_name in _OBJECT_FILES.values():
            path = self.domain_folder(name) / "Settings" / f"{file_name}.settings"
            counts[file_name.lower()] = len(self._read_file(path))
        held = [f"{what}: {count}" for what, count in counts.items() if count]
        if held:
            raise DomainNotEmpty(f"domain {name} is not empty: {', '.join(held)}")

    def _check_domain_settings(self, name: str, settings: Mapping[str, Value | None]) -> None:
        for item in settingsformat.as_string_list(settings.get("IPAddresses")):
            try:
                canonical_ip(item)
            except ValueError:
                raise DirectoryError(f"invalid IP address {item!r}") from None
        taken = self._taken_domain_names(exclude=name) | {name}
        for alias in settingsformat.as_string_list(settings.get("DomainAliases")):
            if check_domain_name(alias) in taken:
                raise DirectoryError(f"domain name {alias} is already taken")

    def update_domain_settings(
        self, name: str, changes: Mapping[str, Value | None]
    ) -> dict[str, Value]:
        """Set or remove domain settings (addresses, aliases, defaults, ...)."""
        record = self.domain(name)
        if record is None or record.name != name.lower():
            raise DirectoryError(f"unknown domain {name}")
        self._check_domain_settings(record.name, changes)
        path = self.domain_folder(record.name) / "Settings" / "Domain.settings"
        return self._update_file(path, self._apply(changes))

    def _require_domain(self, domain: str) -> str:
        record = self.domain(domain)
        if record is None:
            raise DirectoryError(f"unknown domain {domain}")
        return record.name

    def _require_free(self, domain: str, name: str) -> None:
        if self.find_object(domain, name) is not None:
            raise DirectoryError(f"{name}@{domain} already exists")

    def create_account(self, domain: str, name: str, settings: Mapping[str, Value]) -> str:
        """Create an account with its settings; the name must be free."""
        domain = self._require_domain(domain)
        name = check_object_name(name)
        with self._write_lock():
            self._require_free(domain, name)
            folder = self.account_path(domain, name)
            folder.mkdir(parents=True)
            self._write_file(folder / "account.settings", dict(settings))
        return f"{name}@{domain}"

    def delete_account(self, domain: str, name: str) -> None:
        """Delete an account, its mail and files, and the aliases to it."""
        domain = self._require_domain(domain)
        name = check_object_name(name)
        with self._write_lock():
            folder = self.account_path(domain, name)
            if not (folder / "account.settings").is_file():
                raise DirectoryError(f"unknown account {name}@{domain}")
            trash = folder.with_name(f".{name}.deleted.{os.getpid()}")
            os.rename(folder, trash)
            shutil.rmtree(trash)
            aliases = self._aliases_path(domain)
            kept = {k: v for k, v in self._read_file(aliases).items() if v != name}
            self._write_file(aliases, kept)

    def rename_account(self, domain: str, name: str, new_name: str) -> None:
        """Rename an account within its domain; aliases follow it."""
        domain = self._require_domain(domain)
        name, new_name = check_object_name(name), check_object_name(new_name)
        with self._write_lock():
            folder = self.account_path(domain, name)
            if not (folder / "account.settings").is_file():
                raise DirectoryError(f"unknown account {name}@{domain}")
            self._require_free(domain, new_name)
            os.rename(folder, self.account_path(domain, new_name))
            aliases = self._aliases_path(domain)
            moved = {k: (new_name if v == name else v) for k, v in self._read_file(aliases).items()}
            self._write_file(aliases, moved)

    def update_account_settings(
        self, domain: str, name: str, changes: Mapping[str, Value | None]
    ) -> dict[str, Value]:
        """Set (or, for ``None``, remove) account settings atomically."""
        domain = self._require_domain(domain)
        name = check_object_name(name)
        path = self.account_path(domain, name) / "account.settings"
        if not path.is_file():
            raise DirectoryError(f"unknown account {name}@{domain}")
        return self._update_file(path, self._apply(without_stale(changes)))

    def _aliases_path(self, domain: str) -> Path:
        return self.domain_folder(domain) / "Settings" / "Aliases.settings"

    def add_object(self, kind: ObjectKind, domain: str, name: str, value: Value) -> None:
        """Add an alias (value: account), group (value: dict) or forwarder."""
        domain = self._require_domain(domain)
        name = check_object_name(name)
        path = self.domain_folder(domain) / "Settings" / f"{_OBJECT_FILES[kind]}.settings"
        with self._write_lock():
            self._require_free(domain, name)
            settings = self._read_file(path)
            settings[name] = value
            self._write_file(path, settings)

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
        path = self.domain_folder(domain) / "Settings" / f"{_OBJECT_FILES[kind]}.settings"
        with self._write_lock():
            settings = self._read_file(path)
            if name not in settings:
                raise DirectoryError(f"no {kind.value} {name}@{domain}")
            value = change(settings[name])
            if value is None:
                del settings[name]
            else:
                settings[name] = value
            self._write_file(path, settings)
