"""Mailbox access control lists (spec §8, RFC 4314).

Rights (CommuniGate's, RFC 2086's letters): ``l`` lookup, ``r`` read, ``s``
keep seen, ``w`` write flags, ``i`` insert, ``p`` post, ``c`` create and
delete sub-mailboxes, ``d`` delete (expunge) messages, ``a`` administer.
RFC 4314's ``k`` and ``x`` are read as ``c``, ``t`` and ``e`` as ``d``; the
server does not announce ``RIGHTS=``, so clients use these letters.
Identifiers: ``anyone``, ``anyone@`` (the owner's domain), ``anyone@domain``,
``name`` (in the owner's domain), ``name@domain``, ``#group``,
``#group@domain``, each with an optional ``+`` or ``-``.

The owner has every right.  Anyone else starts with none, adds the rights
of every matching plain or ``+`` entry, then removes those of every matching
``-`` entry.  File Storage access (:mod:`communigate.store.filestorage`)
uses the same identifiers and matching.  Pure code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

ALL_RIGHTS = "lrswipcda"
_ALIASES = {"k": "c", "x": "c", "t": "d", "e": "d"}
RIGHTS_ORDER = ALL_RIGHTS


class ACLError(ValueError):
    """An identifier or rights string that is not valid."""


@dataclass(frozen=True)
class Identity:
    """A logged-in account, as ACL entries see it."""

    domain: str
    name: str


def normalise_rights(rights: str) -> str:
    """Known rights letters in canonical order (k x → c, t e → d)."""
    found: set[str] = set()
    for letter in rights:
        letter = _ALIASES.get(letter, letter)
        if letter not in ALL_RIGHTS:
            raise ACLError(f"unknown right {letter!r}")
        found.add(letter)
    return "".join(letter for letter in RIGHTS_ORDER if letter in found)


def check_identifier(identifier: str) -> str:
    """A valid identifier in lower case, sign kept."""
    sign = identifier[:1] if identifier[:1] in "+-" else ""
    body = identifier[len(sign) :].lower()
    if not body or any(char.isspace() for char in body) or body.count("@") > 1:
        raise ACLError(f"invalid identifier {identifier!r}")
    return sign + body


def matches(
    identifier: str,
    owner_domain: str,
    who: Identity,
    in_group: Callable[[str, str], bool],
) -> bool:
    """Whether an (unsigned) identifier names ``who``."""
    name, _, domain = identifier.partition("@")
    if identifier == "anyone":
        return True
    if name == "anyone":
        return who.domain == (domain or owner_domain)
    if name.startswith("#"):
        return in_group(name[1:], domain or owner_domain)
    return who.name == name and who.domain == (domain or owner_domain)


def effective_rights(
    acl: Mapping[str, str],
    owner: Identity,
    who: Identity,
    in_group: Callable[[str, str], bool] = lambda _group, _domain: False,
) -> str:
    """The rights ``who`` has on a mailbox of ``owner`` with this ACL."""
    if who == owner:
        return ALL_RIGHTS
    granted: set[str] = set()
    revoked: set[str] = set()
    for identifier, rights in acl.items():
        negative = identifier.startswith("-")
        if matches(identifier.lstrip("+-"), owner.domain, who, in_group):
            (revoked if negative else granted).update(normalise_rights(rights))
    return "".join(letter for letter in RIGHTS_ORDER if letter in granted - revoked)
