"""Lookups straight in LDAP, for the command line.

A command changes or shows a few objects; loading a copy of every account
first (what a running server does) would cost it seconds in a large
directory.  An :class:`LdapDirectory` opened ``lazy`` keeps only the server
and domain entries in memory and asks these functions (blocking, one
search each) for accounts, aliases, groups and forwarders.
"""

from __future__ import annotations

from ldap3 import LEVEL
from ldap3.utils.conv import escape_filter_chars

from communigate.store import settingsformat
from communigate.store.directory import (
    DirectoryError,
    DirectoryObject,
    ObjectKind,
    check_object_name,
)
from communigate.store.ldap.entries import Entries
from communigate.store.ldap.mapping import EntryKind, Layout, attributes_to_settings, login_filter
from communigate.store.settingsformat import Value

_KINDS = {
    ObjectKind.ALIAS: EntryKind.ACCOUNT,
    ObjectKind.GROUP: EntryKind.GROUP,
    ObjectKind.FORWARDER: EntryKind.FORWARDER,
}


def name_query(name: str) -> str:
    """The filter finding whatever has ``name`` in a domain: an account by
    name or alias, a group or a forwarder."""
    escaped = escape_filter_chars(name)
    others = f"(&(|(objectClass=cgpGroup)(objectClass=cgpForwarder))(cn={escaped}))"
    return f"(|{login_filter(name)}{others})"


def _named(name: str) -> bool:
    """Whether ``name`` can name an object (spec §1.7): anything else is
    looked up nowhere, whatever the escaping would make of it."""
    try:
        return check_object_name(name) == name
    except DirectoryError:
        return False


def find(entries: Entries, layout: Layout, domain: str, name: str) -> DirectoryObject | None:
    """The object ``name`` (canonical) names in ``domain``, as LDAP has it now."""
    if not _named(name):
        return None
    found = []
    for dn, attributes in entries.search(layout.domain(domain), name_query(name)):
        where = layout.locate(dn)
        if where is not None:
            found.append((where, attributes))
    # An account's own name wins over another account's alias (as in memory).
    found.sort(key=lambda item: (item[0][0] is not EntryKind.ACCOUNT, item[0][2] != name))
    for (kind, _, own), attributes in found:
        if kind is EntryKind.ACCOUNT:
            if own == name:
                return DirectoryObject(ObjectKind.ACCOUNT, domain, name)
            return DirectoryObject(ObjectKind.ALIAS, domain, name, (own,))
        if kind is EntryKind.GROUP:
            members = attributes_to_settings(kind, attributes).get("Members")
            targets = tuple(settingsformat.as_string_list(members))
            return DirectoryObject(ObjectKind.GROUP, domain, name, targets)
        forward = attributes.get("cgpforwardto", [""])[0]
        return DirectoryObject(ObjectKind.FORWARDER, domain, name, (forward,))
    return None


def account(entries: Entries, layout: Layout, domain: str, name: str) -> dict[str, Value] | None:
    """An account's own settings, None if there is no such account."""
    if not _named(name):
        return None
    attributes = entries.read(layout.object(EntryKind.ACCOUNT, domain, name))
    if attributes is None:
        return None
    return attributes_to_settings(EntryKind.ACCOUNT, attributes)


def account_names(entries: Entries, layout: Layout, domain: str) -> list[str]:
    """The accounts of a domain, sorted."""
    container = layout.container(domain, EntryKind.ACCOUNT)
    found = entries.search(container, "(objectClass=cgpAccount)", LEVEL)
    names = (layout.locate(dn) for dn, _ in found)
    return sorted(where[2] for where in names if where is not None)


def objects(entries: Entries, layout: Layout, domain: str, kind: ObjectKind) -> dict[str, Value]:
    """A domain's aliases (alias → account), groups or forwarders."""
    entry_kind = _KINDS[kind]
    container = layout.container(domain, entry_kind)
    result: dict[str, Value] = {}
    if kind is ObjectKind.ALIAS:
        for dn, attributes in entries.search(container, "(cgpAlias=*)", LEVEL):
            where = layout.locate(dn)
            if where is None:
                continue
            holder = where[2]
            for alias in attributes.get("cgpalias", []):
                result[alias.lower()] = holder
        return result
    for dn, attributes in entries.search(container, "(cn=*)", LEVEL):
        located = layout.locate(dn)
        if located is None:
            continue
        name = located[2]
        if kind is ObjectKind.GROUP:
            result[name] = attributes_to_settings(entry_kind, attributes)
        else:
            result[name] = attributes.get("cgpforwardto", [""])[0]
    return result
