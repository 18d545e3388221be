"""The avatar XMPP logs in for, and the directory as XMPP routing sees it.

An XMPP session (RFC 6120, RFC 6121) needs the account's name and domain
and the account's XMPP data kept in its folder like the rest of the store:
the roster (:mod:`communigate.store.roster`), the offline messages
(:mod:`communigate.store.offline`), the vCard
(:mod:`communigate.store.vcard`), the block list
(:mod:`communigate.store.blocklist`) and the message archive
(:mod:`communigate.store.archive`).  :class:`AccountStores` opens them for
one account; :class:`XMPPDirectory` answers what routing between local
accounts asks (is this a local domain, is this an account, open the stores
of the account a stanza goes to), so the XMPP code never reads the
directory itself.

The stores write their files through the process's
:class:`~communigate.portal.durablefiles.DurableFiles` (the server's thread
pool): :class:`XMPPDirectory` holds it and hands it to every account's
stores it opens, and to the stores of each avatar that logs in
(:meth:`XMPPDirectory.attach`).  A state waiting to be written is what
every reader sees.  Stores opened without it write at once.

Access: logging in over XMPP needs the ``XMPP`` service (``AccessModes``,
capped by ``DomainAccessModes``; the checker maps the protocol ``xmpp`` to
it, :data:`communigate.portal.accounts.SERVICES`).
"""

from __future__ import annotations

import weakref
from functools import cached_property
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface, implementer

from communigate.portal.durablefiles import DurableFiles
from communigate.portal.sessions import LiveSession
from communigate.store.directory import IDirectory, ObjectKind


class AccountStores:
    """The XMPP stores of one account, opened when first used.

    One object per account folder in the process (:meth:`of`): the
    account's own sessions and the sessions writing to it (a subscription
    request, an offline message) share its cached roster, so none reads a
    state older than what another just wrote."""

    _open: weakref.WeakValueDictionary[Path, AccountStores] = weakref.WeakValueDictionary()

    def __init__(self, folder: Path, writes: DurableFiles | None = None) -> None:
        self.folder = Path(folder)
        self.writes = writes or DurableFiles()

    @classmethod
    def of(cls, folder: Path, writes: DurableFiles | None = None) -> AccountStores:
        """The stores of the account in ``folder`` (shared while in use),
        writing through ``writes`` when given (see :meth:`use`)."""
        key = Path(folder)
        stores = cls._open.get(key)
        if stores is None:
            stores = cls._open[key] = cls(key, writes)
        elif writes is not None:
            stores.use(writes)
        return stores

    def use(self, writes: DurableFiles) -> None:
        """Write through ``writes`` from now on.  Stores opened with the
        default writer switch (it writes at once, so nothing is pending);
        stores already given one keep it: one writer per file."""
        if self.writes is writes or self.writes.pool is not None or not self.writes.idle():
            return
        self.writes = writes
        for name in ("roster", "offline", "blocklist", "archive"):
            self.__dict__.pop(name, None)

    @cached_property
    def roster(self) -> Any:
        """The account's roster (RFC 6121 §2)."""
        from communigate.store.roster import FILE_NAME, Roster

        return Roster(self.folder / FILE_NAME, writes=self.writes)

    @cached_property
    def offline(self) -> Any:
        """The messages kept while no resource was available (§8.5.2)."""
        from communigate.store.offline import OfflineStore

        return OfflineStore(self.folder, writes=self.writes)

    def vcard(self) -> bytes | None:
        """The account's vCard element (XEP-0054), or None."""
        from communigate.store import vcard

        return vcard.get(self.folder, self.writes)

    def set_vcard(self, xml: bytes) -> Deferred[None]:
        """Replace the account's vCard (``ValueError`` when too large); fires
        once it is on disk (fails with the ``OSError`` that stopped it)."""
        from communigate.store import vcard

        return vcard.set(self.folder, xml, self.writes).watch()

    @cached_property
    def archive(self) -> Any:
        """The archive of the account's chat messages (XEP-0313)."""
        from communigate.store.archive import Archive

        return Archive(self.folder, writes=self.writes)

    @cached_property
    def blocklist(self) -> Any:
        """The JIDs the account blocks (XEP-0191)."""
        from communigate.store.blocklist import BlockList

        return BlockList(self.folder, writes=self.writes)


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

    def __init__(self, directory: IDirectory, writes: DurableFiles | None = None) -> None:
        self.directory = directory
        #: The process's writer of account files (at once without a pool).
        self.writes = writes or DurableFiles()

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
        return AccountStores.of(self.directory.account_path(domain, name), self.writes)

    def attach(self, avatar: Any) -> None:
        """Make a logged-in avatar's stores write through this process's
        writer (the realm opens them without it)."""
        stores = getattr(avatar, "stores", None)
        if isinstance(stores, AccountStores):
            stores.use(self.writes)
