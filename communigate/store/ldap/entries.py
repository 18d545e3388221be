"""Reading and writing single LDAP entries (blocking), as the directory's
changes need them: LDAP result codes (RFC 4511 §4.1.9) become
:class:`~communigate.store.directory.DirectoryError` with their text."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ldap3 import BASE, SUBTREE
from ldap3.core.exceptions import (
    LDAPAttributeOrValueExistsResult,
    LDAPNoSuchAttributeResult,
    LDAPNoSuchObjectResult,
    LDAPOperationResult,
)

from communigate.store.directory import DirectoryError
from communigate.store.ldap.connection import ConnectionPool, DirectoryUnreachable
from communigate.store.ldap.mapping import Attributes, EntryKind, modifications

#: Attempts of a read-modify-write that met a concurrent change.
ATTEMPTS = 3
#: Entries a search returns per page (RFC 2696).
PAGE_SIZE = 500

#: A modify request in ldap3's form: attribute → [(operation, values)].
Changes = Mapping[str, list[tuple[str, list[str]]]]


class ConcurrentChange(DirectoryError):
    """A value to delete was gone or a value to add was there: someone
    else changed the entry between our read and our write."""


def decode(raw: Mapping[str, list[bytes]]) -> Attributes:
    """Raw attribute values as text, names in lower case."""
    return {
        name.lower(): [
            value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            for value in values
        ]
        for name, values in raw.items()
    }


class BlockingRefused(DirectoryError):
    """A blocking LDAP call was made where it must not block (the
    reactor thread of a running server)."""


def require_complete(connection: Any) -> None:
    """Raise unless the search just made on ``connection`` returned every
    entry: ldap3 does not raise for sizeLimitExceeded or
    timeLimitExceeded (RFC 4511 §4.1.9), and a cut-off answer taken for
    the whole would make accounts vanish from the copy in memory."""
    code = (connection.result or {}).get("result")
    if code == 4:
        raise DirectoryError(
            "LDAP: sizeLimitExceeded: give the bind DN unlimited size limits "
            "(olcLimits: dn.exact=... size=unlimited)"
        )
    if code == 3:
        raise DirectoryUnreachable("LDAP: timeLimitExceeded")


def _anywhere() -> bool:
    return True


class Entries:
    """Entry operations over a :class:`ConnectionPool`."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        #: Whether the calling thread may block on LDAP; a running server
        #: says no for its reactor thread (see :mod:`.refresh`).
        self.may_block: Callable[[], bool] = _anywhere

    def call(self, operation: Callable[[Any], Any]) -> Any:
        """Run ``operation(connection)`` with LDAP errors made directory
        errors; refused on a thread that must not block."""
        if not self.may_block():
            raise BlockingRefused("LDAP call refused on the reactor thread: run it in the pool")
        try:
            return self.pool.call(operation)
        except (LDAPNoSuchAttributeResult, LDAPAttributeOrValueExistsResult) as error:
            raise ConcurrentChange(f"LDAP: {error.description}: {error.message}") from None
        except LDAPOperationResult as error:
            raise DirectoryError(f"LDAP: {error.description}: {error.message}") from None

    def read(self, dn: str) -> Attributes | None:
        """An entry's attributes, None if it is absent."""

        def run(connection: Any) -> Attributes | None:
            try:
                connection.search(dn, "(objectClass=*)", BASE, attributes=["*"])
            except LDAPNoSuchObjectResult:
                return None
            if not connection.response:
                return None
            return decode(connection.response[0]["raw_attributes"])

        result: Attributes | None = self.call(run)
        return result

    def search(self, base: str, query: str, scope: str = SUBTREE) -> list[tuple[str, Attributes]]:
        """The DNs and attributes of the entries ``query`` finds under
        ``base`` (none when ``base`` itself is absent)."""

        def run(connection: Any) -> list[tuple[str, Attributes]]:
            try:
                results = connection.extend.standard.paged_search(
                    base, query, scope, attributes=["*"], paged_size=PAGE_SIZE, generator=False
                )
            except LDAPNoSuchObjectResult:
                return []
            require_complete(connection)
            return [
                (result["dn"], decode(result["raw_attributes"]))
                for result in results
                if result.get("type") == "searchResEntry"
            ]

        found: list[tuple[str, Attributes]] = self.call(run)
        return found

    def add(self, dn: str, attributes: Attributes) -> None:
        """Add an entry."""
        self.call(lambda connection: connection.add(dn, attributes=attributes))

    def modify(self, dn: str, changes: Changes) -> None:
        """Modify an entry."""
        self.call(lambda connection: connection.modify(dn, dict(changes)))

    def rename(self, dn: str, rdn: str) -> None:
        """Give an entry another RDN under the same parent."""
        self.call(lambda connection: connection.modify_dn(dn, rdn))

    def delete(self, dn: str) -> None:
        """Delete an entry (it must have no children)."""
        self.call(lambda connection: connection.delete(dn))

    def update(
        self,
        dn: str,
        kind: EntryKind,
        change: Callable[[Attributes], Attributes],
        missing: str,
    ) -> Attributes:
        """Read an entry, compute its new managed attributes with ``change``
        and write the difference; again if a concurrent change got in.  An
        absent entry raises :class:`DirectoryError` with ``missing``."""
        for attempt in range(ATTEMPTS):
            old = self.read(dn)
            if old is None:
                raise DirectoryError(missing)
            new = change(old)
            changes = modifications(kind, old, new)
            if not changes:
                return new
            try:
                self.modify(dn, changes)
            except ConcurrentChange:
                if attempt == ATTEMPTS - 1:
                    raise DirectoryError(f"{dn} keeps changing; try again") from None
                continue
            return new
        raise AssertionError("unreachable")
