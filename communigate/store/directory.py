"""The directory: what domains, accounts and other named objects exist.

This module holds the interface every directory backend implements (the
embedded files backend now, LDAP later), the records it returns, the rules
for valid names (spec §1.7) and the built-in defaults of account settings.
Nothing here touches the disk.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zope.interface import Attribute, Interface

from communigate.store.settingsformat import Value

MAX_OBJECT_NAME = 128
_OBJECT_NAME = re.compile(r"[a-z0-9_\-](?:[a-z0-9_.\-]*[a-z0-9_\-])?\Z")
_DOMAIN_NAME = re.compile(
    r"[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\Z"
)

#: Account settings every account has unless the server, its domain or the
#: account itself says otherwise (CommuniGate's key names, spec §2).
ACCOUNT_DEFAULTS: Mapping[str, Value] = {
    "UseAppPassword": "YES",
    "UseSysPassword": "NO",
    "UseExtPassword": "NO",
    "PasswordEncryption": "clear",
    "AccessModes": "All",
    "PWDAllowed": "YES",
    "RequireAPOP": "NO",
}

#: Server settings (``Settings/Main.settings``) with their defaults.
SERVER_DEFAULTS: Mapping[str, Value] = {
    "HideAccountUnknown": "NO",
}


class DirectoryError(Exception):
    """A directory operation refused: bad name, duplicate, unknown object."""


class ObjectKind(enum.Enum):
    """The kinds of named objects that share one namespace per domain."""

    ACCOUNT = "account"
    ALIAS = "alias"
    GROUP = "group"
    FORWARDER = "forwarder"


@dataclass(frozen=True)
class DomainRecord:
    """A domain: its real name, its settings, addresses and alias names."""

    name: str
    settings: Mapping[str, Value] = field(default_factory=dict)
    addresses: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class DirectoryObject:
    """A named object in a domain.

    ``targets`` is what the object points at: for an alias the account name,
    for a forwarder the address, for a group its members' addresses.
    """

    kind: ObjectKind
    domain: str
    name: str
    targets: tuple[str, ...] = ()


def check_object_name(name: str) -> str:
    """Return the canonical (lower-case) form of an object name, or raise."""
    canonical = name.lower()
    if len(canonical) > MAX_OBJECT_NAME or not _OBJECT_NAME.match(canonical):
        raise DirectoryError(
            f"invalid name {name!r}: letters, digits, '_', '-' and '.' only, "
            f"not starting or ending with '.', at most {MAX_OBJECT_NAME} characters"
        )
    return canonical


def check_domain_name(name: str) -> str:
    """Return the canonical (lower-case) form of a domain name, or raise."""
    canonical = name.lower().rstrip(".")
    if len(canonical) > 255 or not _DOMAIN_NAME.match(canonical):
        raise DirectoryError(f"invalid domain name {name!r}")
    return canonical


def split_address(address: str) -> tuple[str, str | None]:
    """Split ``name@domain`` into its parts; a bare name has no domain."""
    local, sep, domain = address.rpartition("@")
    if not sep:
        return address, None
    return local, domain


class IDirectory(Interface):
    """Read access to domains, objects and settings, as the portal needs it.

    Names given to these methods are canonical (lower case); the methods are
    synchronous and cheap (backed by caches that follow changes within a
    second), so they may be called on the reactor thread.
    """

    def main_domain() -> str:
        """The name of the Main Domain."""

    def server_settings() -> Mapping[str, Value]:
        """Server-wide settings, defaults applied."""

    def domain(name: str) -> DomainRecord | None:
        """The domain whose real name or alias is ``name``, if any."""

    def domain_names() -> Sequence[str]:
        """The real names of all domains, the Main Domain included."""

    def domain_for_address(address: str) -> str:
        """The domain that owns a local IP address; else the Main Domain."""

    def router_table() -> str:
        """The text of the Router table (one record a line)."""

    def find_object(domain: str, name: str) -> DirectoryObject | None:
        """The account, alias, group or forwarder ``name`` in ``domain``."""

    def account_settings(domain: str, name: str) -> Mapping[str, Value]:
        """An account's effective settings: defaults, then server, domain and
        account values.  Raises :class:`DirectoryError` for no such account."""

    def account_names(domain: str) -> list[str]:
        """The accounts of a domain, sorted."""

    def domain_folder(domain: str) -> Path:
        """The domain's folder (its ``Settings/`` and accounts live there)."""

    def account_path(domain: str, name: str) -> Path:
        """The account's folder (mailboxes and File Storage live there)."""

    def ensure_account_folder(domain: str, name: str) -> Path:
        """The folder of an account that just logged in, made when the
        directory holds accounts apart from their folders (LDAP: one
        created by another tool has none yet)."""

    def access_rights(domain: str) -> Mapping[str, Value]:
        """The domain's ``Access.settings``: holder → list of rights
        (spec §6); in the Main Domain it also holds server rights."""


class IDirectoryAdmin(Interface):
    """Changes to the directory, as the command line makes them."""

    base = Attribute("The base directory, a Path.")

    def update_account_settings(
        domain: str, name: str, changes: Mapping[str, Value | None]
    ) -> dict[str, Value]:
        """Set (or, for ``None``, remove) account settings atomically; return
        the account's own settings after the change."""


#: Account settings derived from ``Password`` (stored SCRAM secrets, the NT
#: hash: :mod:`communigate.cred.derived`).
DERIVED_FROM_PASSWORD = ("SCRAM-SHA-1", "SCRAM-SHA-256", "NTHash")


def without_stale(changes: Mapping[str, Value | None]) -> dict[str, Value | None]:
    """``changes`` as a directory applies them: a new ``Password`` given
    without its derived secrets removes the old ones, which would still
    open the account with the old password."""
    result = dict(changes)
    if "Password" in changes:
        for key in DERIVED_FROM_PASSWORD:
            result.setdefault(key, None)
    return result
