"""What a protocol gets after login: avatar interfaces and implementations.

A protocol never reads account settings or mailbox folders itself; it asks
the portal for an avatar providing the interface it needs and uses only that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from zope.interface import Attribute, Interface, implementer

from communigate.store.acl import ALL_RIGHTS, Identity, effective_rights
from communigate.store.directory import IDirectory, ObjectKind
from communigate.store.mailbox import Mailbox, MessageInfo
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
class POP3Maildrop:
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

    def locate(name: str) -> MailboxLocation:
        """Where a client's mailbox name leads; raises MailboxError."""

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


@implementer(IIMAPAccount)
class IMAPAccount:
    """The IMAP avatar of one account."""

    def __init__(self, directory: IDirectory, domain: str, name: str) -> None:
        self.directory = directory
        self.identity = Identity(domain, name)
        self.full_name = f"{name}@{domain}"
        self.store = MailStore(directory.account_path(domain, name))

    def locate(self, name: str) -> MailboxLocation:
        """``~owner[@domain]/rest`` is another account's mailbox."""
        if not name.startswith("~"):
            local = canonical_name(name)
            return MailboxLocation(self.identity, self.store, local, local)
        owner_text, _, rest = name[1:].partition("/")
        owner_name, _, owner_domain = owner_text.lower().partition("@")
        record = self.directory.domain(owner_domain or self.identity.domain)
        if record is None or not rest:
            raise MailboxError(f"no mailbox {name}")
        found = self.directory.find_object(record.name, owner_name)
        if found is None or found.kind is not ObjectKind.ACCOUNT:
            raise MailboxError(f"no mailbox {name}")
        owner = Identity(record.name, found.name)
        local = canonical_name(rest)
        if owner == self.identity:
            return MailboxLocation(owner, self.store, local, local)
        prefix = f"~{found.name}" if record.name == self.identity.domain else f"~{owner_text}"
        store = MailStore(self.directory.account_path(record.name, found.name))
        return MailboxLocation(owner, store, local, f"{prefix}/{local}")

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
