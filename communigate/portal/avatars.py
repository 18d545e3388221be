"""What a protocol gets after login: avatar interfaces and implementations.

A protocol never reads account settings or mailbox folders itself; it asks
the portal for an avatar providing the interface it needs and uses only that.
"""

from __future__ import annotations

from typing import BinaryIO

from zope.interface import Attribute, Interface, implementer

from communigate.store.mailbox import Mailbox, MessageInfo


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
