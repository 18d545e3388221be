"""How the directory's objects are laid out as LDAP entries (pure code).

The schema is ``etc/ldap/communigate.schema.ldif``.  Under the base DN::

    cn=server,BASE                       cgpServer: server settings, the
                                         Main Domain's name, Router records
    ou=domains,BASE
    cgpDomainName=D,ou=domains,BASE      cgpDomain: settings, access rights
    uid=N,ou=accounts,<domain entry>     inetOrgPerson + cgpAccount
    cn=N,ou=groups,<domain entry>        cgpGroup
    cn=N,ou=forwarders,<domain entry>    cgpForwarder

Settings with an attribute of their own (standard where one fits:
``userPassword`` (RFC 2307 / RFC 3112 ``{SCHEME}`` values), ``displayName``
(RFC 2798)) are stored there; every other setting is one ``cgpSetting``
value ``Key=Value`` with the value in CommuniGate's text syntax
(:mod:`communigate.store.settingsformat`), so ``ldapsearch`` shows it as an
administrator would type it.  Multi-valued attributes are unordered (RFC
4512 §2.3): lists kept in them (``DomainAliases``, ``IPAddresses``, group
``Members``) come back sorted.

Entries travel as :data:`Attributes`: lower-case attribute name → list of
text values.  Nothing here talks to a server.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from communigate.cred import passwords
from communigate.store import settingsformat
from communigate.store.directory import (
    DERIVED_FROM_PASSWORD,
    DirectoryError,
    check_domain_name,
    check_object_name,
)
from communigate.store.settingsformat import Value

#: An entry's attributes: lower-case name → its values as text.
Attributes = dict[str, list[str]]

SERVER_RDN = "cn=server"
DOMAINS_RDN = "ou=domains"
ACCOUNTS_OU, GROUPS_OU, FORWARDERS_OU = "accounts", "groups", "forwarders"
#: Width of the position prefix of a ``cgpRouterRecord`` value.
ROUTER_POSITION = 6


class EntryKind(enum.Enum):
    """What an entry under the base DN is."""

    SERVER = "server"
    DOMAIN = "domain"
    ACCOUNT = "account"
    GROUP = "group"
    FORWARDER = "forwarder"


class _Form(enum.Enum):
    """How a dedicated attribute holds a setting's value."""

    #: The string as it is (standard attributes read by other software).
    TEXT = "text"
    #: The value in CommuniGate syntax (one value).
    CGP = "cgp"
    #: A list of strings, one value each (unordered, read back sorted).
    LIST = "list"


#: Settings with attributes of their own, by entry kind.
DEDICATED: Mapping[EntryKind, Mapping[str, tuple[str, _Form]]] = {
    EntryKind.ACCOUNT: {
        "RealName": ("displayname", _Form.TEXT),
        "PasswordEncryption": ("cgppasswordencryption", _Form.TEXT),
        "AccessModes": ("cgpaccessmodes", _Form.CGP),
        "SCRAM-SHA-1": ("cgpscramsha1", _Form.TEXT),
        "SCRAM-SHA-256": ("cgpscramsha256", _Form.TEXT),
        "NTHash": ("cgpnthash", _Form.TEXT),
    },
    EntryKind.DOMAIN: {
        "DomainAliases": ("cgpdomainalias", _Form.LIST),
        "IPAddresses": ("cgpipaddress", _Form.LIST),
    },
    EntryKind.SERVER: {"MainDomainName": ("cgpmaindomainname", _Form.TEXT)},
    EntryKind.GROUP: {"Members": ("cgpmember", _Form.LIST)},
    EntryKind.FORWARDER: {},
}

#: Attributes the mapping writes, per kind: a change rewrites only these.
MANAGED: Mapping[EntryKind, frozenset[str]] = {
    kind: frozenset(
        [attribute for attribute, _ in table.values()]
        + ["cgpsetting"]
        + {
            EntryKind.ACCOUNT: ["userpassword", "cgpalias", "cgppasswordstamp"],
            EntryKind.DOMAIN: ["cgpaccessright"],
            EntryKind.SERVER: ["cgprouterrecord", "cgpdeletionserial"],
            EntryKind.GROUP: [],
            EntryKind.FORWARDER: ["cgpforwardto"],
        }[kind]
    )
    for kind, table in DEDICATED.items()
}

OBJECT_CLASSES: Mapping[EntryKind, list[str]] = {
    EntryKind.SERVER: ["top", "cgpServer"],
    EntryKind.DOMAIN: ["top", "cgpDomain"],
    EntryKind.ACCOUNT: ["top", "person", "organizationalPerson", "inetOrgPerson", "cgpAccount"],
    EntryKind.GROUP: ["top", "cgpGroup"],
    EntryKind.FORWARDER: ["top", "cgpForwarder"],
}


class MappingError(ValueError):
    """An entry or value the mapping cannot read."""


# -- distinguished names ------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """The DNs of every object under one base DN."""

    base: str

    @property
    def server(self) -> str:
        """The server entry."""
        return f"{SERVER_RDN},{self.base}"

    @property
    def domains(self) -> str:
        """The container of the domain entries."""
        return f"{DOMAINS_RDN},{self.base}"

    def domain(self, name: str) -> str:
        """A domain's entry."""
        return f"cgpDomainName={escape_rdn(name)},{self.domains}"

    def container(self, domain: str, kind: EntryKind) -> str:
        """The ``ou=`` holding a domain's accounts, groups or forwarders."""
        ou = {
            EntryKind.ACCOUNT: ACCOUNTS_OU,
            EntryKind.GROUP: GROUPS_OU,
            EntryKind.FORWARDER: FORWARDERS_OU,
        }[kind]
        return f"ou={ou},{self.domain(domain)}"

    def object(self, kind: EntryKind, domain: str, name: str) -> str:
        """An account's, group's or forwarder's entry."""
        naming = "uid" if kind is EntryKind.ACCOUNT else "cn"
        return f"{naming}={escape_rdn(name)},{self.container(domain, kind)}"

    @cached_property
    def _base_parts(self) -> list[tuple[str, str]]:
        return [(attr.lower(), value.lower()) for attr, value, _ in parse_dn(self.base)]

    def locate(self, dn: str) -> tuple[EntryKind, str, str] | None:
        """What ``dn`` is: (kind, domain, name) — the domain's name for a
        domain, empty strings for the server; None for containers and
        entries the layout does not know."""
        base = self._base_parts
        if _PLAIN_DN.match(dn):
            # Nothing escaped, quoted or multi-valued (every name the
            # naming rules allow): split as parse_dn would, many times faster.
            parts = [_plain_rdn(rdn) for rdn in dn.split(",")]
        else:
            try:
                parts = [(attr.lower(), value) for attr, value, _ in parse_dn(dn, escape=False)]
            except Exception:  # ldap3 raises several types for a malformed DN
                return None
        if len(parts) <= len(base) or [(a, v.lower()) for a, v in parts[-len(base) :]] != base:
            return None
        own = parts[: -len(base)]
        if [(attr, value.lower()) for attr, value in own] == [("cn", "server")]:
            return EntryKind.SERVER, "", ""
        if not own or own[-1][0] != "ou" or own[-1][1].lower() != "domains":
            return None
        if len(own) == 2 and own[0][0] == "cgpdomainname":
            domain = _valid(check_domain_name, own[0][1])
            return None if domain is None else (EntryKind.DOMAIN, domain, domain)
        if len(own) != 4 or own[2][0] != "cgpdomainname" or own[1][0] != "ou":
            return None
        kinds = {
            ACCOUNTS_OU: (EntryKind.ACCOUNT, "uid"),
            GROUPS_OU: (EntryKind.GROUP, "cn"),
            FORWARDERS_OU: (EntryKind.FORWARDER, "cn"),
        }
        found = kinds.get(own[1][1].lower())
        if found is None or own[0][0] != found[1]:
            return None
        domain = _valid(check_domain_name, own[2][1])
        name = _valid(check_object_name, own[0][1])
        if domain is None or name is None:
            return None
        return found[0], domain, name


#: A DN of ``attr=value`` parts whose values need no escaping.
_PLAIN_DN = re.compile(
    r"[A-Za-z][A-Za-z0-9-]*=[A-Za-z0-9._-]+(?:,[A-Za-z][A-Za-z0-9-]*=[A-Za-z0-9._-]+)*\Z"
)


def _plain_rdn(rdn: str) -> tuple[str, str]:
    attr, _, value = rdn.partition("=")
    return attr.lower(), value


def _valid(check: Callable[[str], str], value: str) -> str | None:
    """``value`` (an RDN value as the server wrote it) in canonical form,
    None unless it is a valid name: a name that needs escaping in a DN
    (``a,ou=x``) or was made by another tool outside the naming rules
    (spec §1.7) names no object, so it can never shadow one."""
    try:
        canonical = check(value)
    except DirectoryError:
        return None
    # check_domain_name drops a trailing dot, which a DN value must not have.
    return canonical if canonical == value.lower() else None


def login_filter(name: str) -> str:
    """The one search that finds the account a login name opens in a
    domain's ``ou=accounts``: by its name or by one of its aliases."""
    escaped = escape_filter_chars(name)
    return f"(|(uid={escaped})(cgpAlias={escaped}))"


# -- settings <-> attributes ----------------------------------------------------


def _password_to_ldap(stored: str) -> str:
    """A stored ``Password`` as a ``userPassword`` value: crypt hashes
    (``$2b$``, ``$6$``, ...) get the ``{CRYPT}`` scheme (RFC 2307) so LDAP
    servers and other software read them; ``{SCHEME}`` and clear values
    stay as they are (a clear value is never dressed up as a hash)."""
    if stored.startswith("$") and passwords.is_one_way(stored):
        return "{CRYPT}" + stored
    return stored


def _password_from_ldap(value: str) -> str | None:
    """A ``userPassword`` value as the ``Password`` setting
    (:mod:`communigate.cred.passwords` reads every form it knows); None
    for a ``{SCHEME}`` it does not know (``{ARGON2}``, ``{SASL}``, ...),
    which would otherwise be taken for a clear password — and the hash
    itself would open the account."""
    if value[:7].upper() == "{CRYPT}" and value[7:8] == "$":
        return value[7:]
    if _SCHEME.match(value) and not (
        passwords.is_one_way(value) or value.upper().startswith(_CLEAR_SCHEMES)
    ):
        return None
    return value


#: A ``userPassword`` value's ``{SCHEME}`` prefix (RFC 2307 §5.3, RFC 3112).
_SCHEME = re.compile(r"\{[A-Za-z0-9._-]+\}")
_CLEAR_SCHEMES = ("{PLAIN}", "{CLEAR}")


#: Settings derived from ``Password``, by their attributes.
_DERIVED = {DEDICATED[EntryKind.ACCOUNT][key][0]: key for key in DERIVED_FROM_PASSWORD}


def password_stamp(attributes: Attributes) -> str | None:
    """What ties the derived secrets (SCRAM keys, NT hash) to the
    ``userPassword`` they were made from (``cgpPasswordStamp``): a digest
    of that value and of the secrets; None when there are no secrets.

    A password changed by another tool (``ldappasswd``, ``ldapmodify``)
    leaves the stamp behind, so the old secrets, which would still open
    the account with the old password, are dropped on reading
    (:func:`attributes_to_settings`), as ``without_stale``
    (:mod:`communigate.store.directory`) drops them on a change made here.  The
    secrets (salted SCRAM keys) salt the digest; it reveals no more than
    they do — protect every ``cgp*`` secret attribute with the same ACL
    as ``userPassword``."""
    secrets = [attributes.get(attribute, [""])[0] for attribute in sorted(_DERIVED)]
    if not any(secrets):
        return None
    password = attributes.get("userpassword", [""])[0]
    material = "\0".join([password, *secrets]).encode("utf-8")
    return hashlib.sha256(b"cgpPasswordStamp\0" + material).hexdigest()[:32]


def _stamp_matches(attributes: Attributes) -> bool:
    """Whether the derived secrets were made from the ``userPassword``
    the entry holds now (see :func:`password_stamp`)."""
    expected = password_stamp(attributes)
    stored = attributes.get("cgppasswordstamp", [""])[0]
    return expected is None or hmac.compare_digest(expected, stored)


def settings_to_attributes(kind: EntryKind, settings: Mapping[str, Value]) -> Attributes:
    """The managed attributes holding ``settings`` (no DN, no objectClass)."""
    table = DEDICATED[kind]
    result: Attributes = {}
    rest: list[str] = []
    for key, value in settings.items():
        if "=" in key:
            raise MappingError(f"setting name {key!r} contains '='")
        if kind is EntryKind.ACCOUNT and key == "Password" and isinstance(value, str):
            result["userpassword"] = [_password_to_ldap(value)]
            continue
        dedicated = table.get(key)
        if dedicated is not None:
            attribute, form = dedicated
            if form is _Form.TEXT and isinstance(value, str) and value:
                result[attribute] = [value]
                continue
            if form is _Form.CGP and value is not None:
                result[attribute] = [settingsformat.dumps(value)]
                continue
            if form is _Form.LIST and isinstance(value, list):
                items = [item for item in value if isinstance(item, str) and item]
                if len(items) == len(value) and len(set(items)) == len(items):
                    if items:
                        result[attribute] = sorted(items)
                    continue
        rest.append(f"{key}={settingsformat.dumps(value)}")
    if rest:
        result["cgpsetting"] = rest
    if kind is EntryKind.ACCOUNT:
        restamp(result)
    return result


def restamp(attributes: Attributes) -> None:
    """Set (or remove) ``cgpPasswordStamp`` to match the entry's
    ``userPassword`` and derived secrets (:func:`password_stamp`)."""
    stamp = password_stamp(attributes)
    if stamp is None:
        attributes.pop("cgppasswordstamp", None)
    else:
        attributes["cgppasswordstamp"] = [stamp]


def attributes_to_settings(kind: EntryKind, attributes: Attributes) -> dict[str, Value]:
    """The settings an entry holds (the inverse of
    :func:`settings_to_attributes`); a bad ``cgpSetting`` value raises
    :class:`MappingError`."""
    settings: dict[str, Value] = {}
    for item in attributes.get("cgpsetting", []):
        key, sep, text = item.partition("=")
        if not sep or not key:
            # Not the value itself: it may be a secret, and this is logged.
            raise MappingError("a cgpSetting value is not Key=Value")
        try:
            settings[key] = settingsformat.loads(text)
        except settingsformat.SettingsSyntaxError as error:
            raise MappingError(f"cgpSetting {key}: {error}") from None
    for key, (attribute, form) in DEDICATED[kind].items():
        values = attributes.get(attribute)
        if not values:
            continue
        if form is _Form.TEXT:
            settings[key] = values[0]
        elif form is _Form.CGP:
            try:
                settings[key] = settingsformat.loads(values[0])
            except settingsformat.SettingsSyntaxError as error:
                raise MappingError(f"{attribute}: {error}") from None
        else:
            settings[key] = list[Value](sorted(values))
    if kind is EntryKind.ACCOUNT:
        if attributes.get("userpassword"):
            password = _password_from_ldap(attributes["userpassword"][0])
            if password is not None:
                settings["Password"] = password
        if not _stamp_matches(attributes):
            # Changed elsewhere since the secrets were made: they are stale.
            for key in DERIVED_FROM_PASSWORD:
                settings.pop(key, None)
    return settings


def account_entry(domain: str, name: str, settings: Mapping[str, Value]) -> Attributes:
    """A new account's whole entry: ``uid``, ``cn``/``sn`` (required by
    ``person``, RFC 4519), ``mail`` (its address) and its settings."""
    return {
        "objectclass": list(OBJECT_CLASSES[EntryKind.ACCOUNT]),
        "uid": [name],
        "cn": [name],
        "sn": [name],
        "mail": [f"{name}@{domain}"],
        **settings_to_attributes(EntryKind.ACCOUNT, settings),
    }


def rights_to_attribute(rights: Mapping[str, Value]) -> list[str]:
    """``Access.settings`` as ``cgpAccessRight`` values ``holder=(...)``."""
    return [f"{holder}={settingsformat.dumps(value)}" for holder, value in rights.items()]


def rights_from_attribute(values: list[str]) -> dict[str, Value]:
    """``cgpAccessRight`` values as ``Access.settings``."""
    rights: dict[str, Value] = {}
    for item in values:
        holder, sep, text = item.rpartition("=")
        if not sep or not holder:
            raise MappingError(f"cgpAccessRight value {item!r} is not holder=(rights)")
        try:
            rights[holder] = settingsformat.loads(text)
        except settingsformat.SettingsSyntaxError as error:
            raise MappingError(f"cgpAccessRight {holder}: {error}") from None
    return rights


def router_to_attribute(text: str) -> list[str]:
    """The Router table as ``cgpRouterRecord`` values, each prefixed by its
    position so the order survives (LDAP values are unordered)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return [f"{index:0{ROUTER_POSITION}d} {line}" for index, line in enumerate(lines)]


def router_from_attribute(values: list[str]) -> str:
    """The Router table text from its ``cgpRouterRecord`` values."""
    records = []
    for item in values:
        position, _, line = item.partition(" ")
        records.append((int(position) if position.isdigit() else 0, line))
    return "".join(line + "\n" for _, line in sorted(records))


def modifications(
    kind: EntryKind, old: Attributes, new: Attributes
) -> dict[str, list[tuple[str, list[str]]]]:
    """The change turning ``old`` managed attributes into ``new``, in
    ldap3's form: multi-valued attributes by deleting and adding exact
    values (so a concurrent change to the same value fails the whole
    modify instead of being lost), single-valued ones replaced."""
    changes: dict[str, list[tuple[str, list[str]]]] = {}
    for attribute in sorted(MANAGED[kind]):
        before, after = old.get(attribute, []), new.get(attribute, [])
        if before == after:
            continue
        if attribute in _MULTI_VALUED:
            removed = [value for value in before if value not in after]
            added = [value for value in after if value not in before]
            operations: list[tuple[str, list[str]]] = []
            if removed:
                operations.append(("MODIFY_DELETE", removed))
            if added:
                operations.append(("MODIFY_ADD", added))
            if operations:
                changes[attribute] = operations
        else:
            changes[attribute] = [("MODIFY_REPLACE", after)]
    return changes


_MULTI_VALUED = frozenset(
    {
        "cgpsetting",
        "cgpalias",
        "cgpaccessright",
        "cgprouterrecord",
        "cgpdomainalias",
        "cgpipaddress",
        "cgpmember",
    }
)
