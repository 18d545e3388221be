"""The Router: where an address leads (spec §1.4–1.6).

A login name goes through the same Router as a mail address.  The Router
table holds one record a line::

    [Access:|Mail:|Signal:|Relay:] <left> = right      address record
    [prefix:] left.dom = right.dom                     domain-level record

``<name>`` matches that local part in the Main Domain, ``<name@domain>`` that
address; ``*`` on the left matches any text and on the right is replaced by
it.  The right side is an address, a bare name (in the Main Domain), a
domain (for domain-level records), ``null`` (discard) or ``error`` /
``error: text`` (reject).  The first record that matches wins and its result
is routed again, up to :data:`HOP_LIMIT` times.  With no record left to
apply, domain aliases are replaced by the real domain and the name is looked
up in the domain: an account is the end; an alias leads on; a group,
forwarder or a non-local domain ends somewhere that is not an account.

Pure code: the directory is passed in.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from communigate.portal.names import FullName
from communigate.store.directory import DirectoryObject, IDirectory, ObjectKind

HOP_LIMIT = 10


class RouteKind(enum.Enum):
    """What an address is routed for; records may be limited to one kind."""

    ACCESS = "access"
    MAIL = "mail"
    SIGNAL = "signal"
    RELAY = "relay"


class RouterTableError(ValueError):
    """A line of the Router table that is not a record."""


@dataclass(frozen=True)
class LocalAccount:
    """The address leads to this account."""

    domain: str
    name: str

    def __str__(self) -> str:
        return f"{self.name}@{self.domain}"


@dataclass(frozen=True)
class Unknown:
    """The domain is local but has no object of that name."""

    address: FullName


@dataclass(frozen=True)
class NotAccount:
    """The address leads to a group, forwarder, remote host or nowhere."""

    what: str
    address: FullName | None
    target: DirectoryObject | None = None


@dataclass(frozen=True)
class Rejected:
    """A record (``error``) or a loop rejects the address."""

    reason: str


Route = LocalAccount | Unknown | NotAccount | Rejected


@dataclass(frozen=True)
class RouterRecord:
    """One parsed line of the Router table."""

    kinds: frozenset[RouteKind] | None
    domain_level: bool
    whole_address: bool
    pattern: re.Pattern[str]
    target: str

    def apply(self, address: FullName, main_domain: str) -> str | None:
        """The record's right side for ``address``, or None if no match."""
        if self.domain_level:
            subject = address.domain
        elif self.whole_address:
            subject = str(address)
        elif address.domain == main_domain:
            subject = address.local
        else:
            return None
        return self._substitute(self.pattern.fullmatch(subject))

    def _substitute(self, match: re.Match[str] | None) -> str | None:
        if match is None:
            return None
        wildcard = match.group(1) if match.groups() else ""
        return self.target.replace("*", wildcard)


_RECORD = re.compile(r"\s*(?:(access|mail|signal|relay)\s*:\s*)?(.+?)\s*=\s*(.*?)\s*\Z", re.I)


def _wildcard_pattern(text: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in text.split("*")]
    return re.compile("(.*?)".join(parts[:2]) + ".*?".join(["", *parts[2:]]))


def _is_final(target: str) -> bool:
    """Whether a right side ends routing (``null``, ``error``) instead of
    naming an address."""
    return target == "null" or target == "error" or target.startswith("error:")


def parse_record(line: str) -> RouterRecord | None:
    """Parse one line; blank lines and ``;`` comments give None."""
    if not line.strip() or line.lstrip().startswith(";"):
        return None
    match = _RECORD.match(line)
    if match is None:
        raise RouterTableError(f"not a Router record: {line.strip()!r}")
    prefix, left, right = match.groups()
    if not right:
        raise RouterTableError(f"Router record without a right side: {line.strip()!r}")
    kinds = frozenset({RouteKind(prefix.lower())}) if prefix else None
    left = left.lower()
    if left.startswith("<") and left.endswith(">"):
        pattern = left[1:-1]
        return RouterRecord(kinds, False, "@" in pattern, _wildcard_pattern(pattern), right.lower())
    if "<" in left or ">" in left or "@" in left:
        raise RouterTableError(f"bad left side in Router record: {line.strip()!r}")
    return RouterRecord(kinds, True, False, _wildcard_pattern(left), right.lower())


def parse_table(text: str, strict: bool = True) -> list[RouterRecord]:
    """Parse a whole Router table.

    ``strict`` raises on the first bad line (the command line refuses to
    store one); otherwise bad lines are skipped, so a hand-edited table with
    one typo still routes everything else."""
    records = []
    for line in text.splitlines():
        try:
            record = parse_record(line)
        except RouterTableError:
            if strict:
                raise
            continue
        if record is not None:
            records.append(record)
    return records


class Router:
    """Routes addresses against the directory and its Router table."""

    def __init__(self, directory: IDirectory) -> None:
        self._directory = directory
        self._table_text: str | None = None
        self._records: list[RouterRecord] = []

    def _table(self) -> list[RouterRecord]:
        text = self._directory.router_table()
        if text != self._table_text:
            self._records, self._table_text = parse_table(text, strict=False), text
        return self._records

    def _rewrite(self, address: FullName, kind: RouteKind, main: str) -> str | None:
        for record in self._table():
            if record.kinds is not None and kind not in record.kinds:
                continue
            target = record.apply(address, main)
            if target is not None:
                if record.domain_level and not _is_final(target):
                    return f"{address.local}@{target}"
                return target
        return None

    def login_page_domain(self, name: str) -> str | None:
        """The local domain ``LoginPage@name`` is routed to (spec §5: how a
        Kerberos service's host name finds its domain, Router records and
        domain aliases included); None if it leads to no local domain."""
        try:
            route = self.route(FullName("loginpage", name.lower()))
        except ValueError:
            return None
        if isinstance(route, LocalAccount):
            return route.domain
        address = getattr(route, "address", None)
        if isinstance(route, Unknown | NotAccount) and address is not None:
            record = self._directory.domain(address.domain)
            return record.name if record is not None else None
        return None

    def route(self, address: FullName, kind: RouteKind = RouteKind.ACCESS) -> Route:
        """Follow records, domain aliases and object aliases to the end."""
        main = self._directory.main_domain()
        for _hop in range(HOP_LIMIT):
            target = self._rewrite(address, kind, main)
            if target is not None:
                if target == "null":
                    return NotAccount("discarded", address)
                if target == "error" or target.startswith("error:"):
                    reason = target.partition(":")[2].strip() or "rejected by the Router"
                    return Rejected(reason)
                address = FullName.parse(target, main)
                continue
            domain = self._directory.domain(address.domain)
            if domain is None:
                return NotAccount("remote", address)
            found = self._directory.find_object(domain.name, address.local)
            if found is None:
                return Unknown(FullName(address.local, domain.name))
            if found.kind is ObjectKind.ACCOUNT:
                return LocalAccount(domain.name, found.name)
            if found.kind is ObjectKind.ALIAS:
                address = FullName.parse(found.targets[0].lower(), domain.name)
                continue
            return NotAccount(found.kind.value, FullName(found.name, domain.name), found)
        return Rejected("routing loop")
