"""What a protocol gets after login: avatar interfaces and implementations.

A protocol never reads account settings or mailbox folders itself; it asks
the portal for an avatar providing the interface it needs and uses only that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from zope.interface import Attribute, Interface, implementer

from communigate.portal.sessions import LiveSession
from communigate.store.acl import ALL_RIGHTS, Identity, effective_rights
from communigate.store.directory import (
    DirectoryError,
    IDirectory,
    ObjectKind,
    check_domain_name,
    check_object_name,
)
from communigate.store.mailbox import INBOX, Mailbox, MessageInfo
from communigate.store.mailstore import MailboxError, MailStore, canonical_name


class IPOP3Maildrop(Interface):
    """An account's INBOX as POP3 sees it (RFC 1939): a fixed listing taken
    at login, messages to read, and deletions applied at QUIT."""

    account = Attribute("The account's full name, name@domain.")

    def listing() -> list[MessageInfo]:
        """The messages present at login, in order (message numbers are
        positions in this list, starting at 1)."""

    def unique_id(info: MessageInfo) -> str:
        """The message's UIDL: stable across sessions (RFC 1939 §7)."""

    def open(info: MessageInfo) -> BinaryIO:
        """The message's bytes (CRLF line ends)."""

    def delete(infos: list[MessageInfo]) -> None:
        """Remove messages for good (at the end of a session's UPDATE state)."""


@implementer(IPOP3Maildrop)
class POP3Maildrop(LiveSession):
    """The INBOX of one account, from the mail store."""

    def __init__(self, account: str, mailbox: Mailbox) -> None:
        self.account = account
        self._mailbox = mailbox
        self._validity = mailbox.uidvalidity

    def listing(self) -> list[MessageInfo]:
        """The messages present now."""
        return self._mailbox.messages()

    def unique_id(self, info: MessageInfo) -> str:
        """``<uidvalidity>.<uid>``: unique while the mailbox lives."""
        return f"{self._validity}.{info.uid}"

    def open(self, info: MessageInfo) -> BinaryIO:
        """The message file, opened for reading."""
        return self._mailbox.open(info)

    def delete(self, infos: list[MessageInfo]) -> None:
        """Expunge the messages."""
        self._mailbox.remove(infos)


class IIMAPAccount(Interface):
    """An account as IMAP sees it: its own mailboxes and, through ACLs,
    other accounts' mailboxes (``~name/Box``, ``~name@domain/Box``)."""

    identity = Attribute("The account's Identity (domain, name).")
    full_name = Attribute("name@domain.")

    def locate(name: str, visible: bool = False) -> MailboxLocation:
        """Where a client's mailbox name leads; raises MailboxError.  With
        ``visible``, another account's mailbox must exist and show to this
        account, else :class:`HiddenMailbox`, as for an owner that does not
        exist."""

    def rights(location: MailboxLocation) -> str:
        """The account's effective rights on that mailbox."""

    def other_owners(pattern_domain: str | None) -> list[Identity]:
        """Accounts whose mailboxes may be listed under ``~`` (same domain,
        or ``pattern_domain``)."""


@dataclass(frozen=True)
class MailboxLocation:
    """A mailbox as named by a client: its owner, store and local name."""

    owner: Identity
    store: MailStore
    local: str
    public: str

    @property
    def mailbox(self) -> Mailbox:
        """The mailbox folder."""
        return self.store.mailbox(self.local)


class HiddenMailbox(MailboxError):
    """Another account's mailbox this account may not know of: the owner is
    no account, or the mailbox is missing or gives this account neither
    ``l`` nor ``r``.  One failure whatever the cause (RFC 4314 §6), so
    mailbox names cannot be used to find out which accounts exist."""

    def __init__(self, public: str, local: str) -> None:
        super().__init__(f"no mailbox {public}")
        self.public = public
        self.local = local


@implementer(IIMAPAccount)
class IMAPAccount(LiveSession):
    """The IMAP avatar of one account."""

    def __init__(self, directory: IDirectory, domain: str, name: str) -> None:
        self.directory = directory
        self.identity = Identity(domain, name)
        self.full_name = f"{name}@{domain}"
        self.store = MailStore(directory.account_path(domain, name))

    def locate(self, name: str, visible: bool = False) -> MailboxLocation:
        """``~owner[@domain]/rest`` is another account's mailbox.

        The name is checked and made canonical before the owner is looked
        up, and an owner that is no account fails as a hidden mailbox does,
        with the same public name, so the answer tells nothing about which
        accounts exist."""
        if not name.startswith("~"):
            local = canonical_name(name)
            return MailboxLocation(self.identity, self.store, local, local)
        owner_text, _, rest = name[1:].partition("/")
        if not rest:
            raise MailboxError(f"no mailbox {name}")
        local = canonical_name(rest)
        owner_name, _, owner_domain = owner_text.lower().partition("@")
        try:
            domain = check_domain_name(owner_domain) if owner_domain else self.identity.domain
            owner_name = check_object_name(owner_name)
        except DirectoryError:
            raise HiddenMailbox(f"~{owner_text.lower()}/{local}", local) from None
        record = self.directory.domain(domain)
        if record is not None:
            domain = record.name
        public = f"~{owner_name}/{local}"
        if domain != self.identity.domain:
            public = f"~{owner_name}@{domain}/{local}"
        found = self.directory.find_object(domain, owner_name) if record else None
        if found is None or found.kind is not ObjectKind.ACCOUNT:
            raise HiddenMailbox(public, local)
        owner = Identity(domain, found.name)
        if owner == self.identity:
            return MailboxLocation(owner, self.store, local, local)
        store = MailStore(self.directory.account_path(domain, found.name))
        location = MailboxLocation(owner, store, local, public)
        if visible and not self.sees(location):
            raise HiddenMailbox(public, local)
        return location

    def sees(self, location: MailboxLocation) -> bool:
        """Whether the mailbox exists (INBOX always does) and this account
        holds ``l`` or ``r`` on it."""
        if not (location.local == INBOX or location.mailbox.exists()):
            return False
        held = self.rights(location)
        return "l" in held or "r" in held

    def in_group(self, group: str, domain: str) -> bool:
        """Whether this account is a member of ``#group@domain``."""
        found = self.directory.find_object(domain, group.lower())
        if found is None or found.kind is not ObjectKind.GROUP:
            return False
        names = {self.full_name}
        if domain == self.identity.domain:
            names.add(self.identity.name)
        return any(member.lower() in names for member in found.targets)

    def rights(self, location: MailboxLocation) -> str:
        """Owner: everything; others: the mailbox ACL (spec §8)."""
        if location.owner == self.identity:
            return ALL_RIGHTS
        return effective_rights(
            location.store.acl(location.local), location.owner, self.identity, self.in_group
        )

    def other_owners(self, pattern_domain: str | None) -> list[Identity]:
        """Accounts of a domain other than this one."""
        domain = pattern_domain or self.identity.domain
        record = self.directory.domain(domain)
        if record is None:
            return []
        return [
            Identity(record.name, name)
            for name in self.directory.account_names(record.name)
            if Identity(record.name, name) != self.identity
        ]
