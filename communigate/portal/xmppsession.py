"""The avatar XMPP logs in for, and the directory as XMPP routing sees it.

An XMPP session (RFC 6120, RFC 6121) needs the account's name and domain
and the account's XMPP data kept in its folder like the rest of the store:
the roster (:mod:`communigate.store.roster`), the offline messages
(:mod:`communigate.store.offline`), the vCard
(:mod:`communigate.store.vcard`) and the block list
(:mod:`communigate.store.blocklist`).  :class:`AccountStores` opens them for
one account; :class:`XMPPDirectory` answers what routing between local
accounts asks (is this a local domain, is this an account, open the stores
of the account a stanza goes to), so the XMPP code never reads the
directory itself.

Access: logging in over XMPP needs the ``XMPP`` service (``AccessModes``,
capped by ``DomainAccessModes``; the checker maps the protocol ``xmpp`` to
it, :data:`communigate.portal.accounts.SERVICES`).
"""

from __future__ import annotations

import weakref
from functools import cached_property
from pathlib import Path
from typing import Any

from zope.interface import Attribute, Interface, implementer

from communigate.portal.sessions import LiveSession
from communigate.store.directory import IDirectory, ObjectKind


class AccountStores:
    """The XMPP stores of one account, opened when first used.

    One object per account folder in the process (:meth:`of`): the
    account's own sessions and the sessions writing to it (a subscription
    request, an offline message) share its cached roster, so none reads a
    state older than what another just wrote."""

    _open: weakref.WeakValueDictionary[Path, AccountStores] = weakref.WeakValueDictionary()

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def of(cls, folder: Path) -> AccountStores:
        """The stores of the account in ``folder`` (shared while in use)."""
        key = Path(folder)
        stores = cls._open.get(key)
        if stores is None:
            stores = cls._open[key] = cls(key)
        return stores

    @cached_property
    def roster(self) -> Any:
        """The account's roster (RFC 6121 §2)."""
        from communigate.store.roster import FILE_NAME, Roster

        return Roster(self.folder / FILE_NAME)

    @cached_property
    def offline(self) -> Any:
        """The messages kept while no resource was available (§8.5.2)."""
        from communigate.store.offline import OfflineStore

        return OfflineStore(self.folder)

    def vcard(self) -> bytes | None:
        """The account's vCard element (XEP-0054), or None."""
        from communigate.store import vcard

        return vcard.get(self.folder)

    def set_vcard(self, xml: bytes) -> None:
        """Replace the account's vCard (``ValueError`` when too large)."""
        from communigate.store import vcard

        vcard.set(self.folder, xml)

    @cached_property
    def blocklist(self) -> Any:
        """The JIDs the account blocks (XEP-0191)."""
        from communigate.store.blocklist import BlockList

        return BlockList(self.folder)


class IXMPPAccount(Interface):
    """An account as an XMPP session sees it."""

    name = Attribute("The account's name (the JID's localpart).")
    domain = Attribute("The account's domain (the JID's domainpart).")
    account = Attribute("name@domain.")
    stores = Attribute("The account's AccountStores.")


@implementer(IXMPPAccount)
class XMPPAccount(LiveSession):
    """The XMPP avatar of one account."""

    def __init__(self, directory: IDirectory, domain: str, name: str) -> None:
        self.name = name
        self.domain = domain
        self.account = f"{name}@{domain}"
        self.stores = AccountStores.of(directory.account_path(domain, name))


class XMPPDirectory:
    """Local domains and accounts, as XMPP routing asks about them."""

    def __init__(self, directory: IDirectory) -> None:
        self.directory = directory

    def domain(self, name: str) -> str | None:
        """The real name of a local domain or domain alias, else None."""
        record = self.directory.domain(name.lower())
        return record.name if record is not None else None

    def is_account(self, domain: str, name: str) -> bool:
        """Whether ``name@domain`` is a local account."""
        try:
            found = self.directory.find_object(domain, name)
        except Exception:  # a name the directory cannot hold is no account
            return False
        return found is not None and found.kind is ObjectKind.ACCOUNT

    def stores(self, domain: str, name: str) -> AccountStores:
        """The stores of a local account."""
        return AccountStores.of(self.directory.account_path(domain, name))
