"""The selected mailbox of one IMAP session: message numbers, what the
client has been told, and the untagged updates that bring it up to date
when other sessions change the mailbox (RFC 3501 §5.2, §7.4.1).

A mailbox is re-listed only when its folders changed (two ``stat`` calls),
so a NOOP or an IDLE poll on an unchanged mailbox reads nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property

from communigate.portal.avatars import MailboxLocation
from communigate.protocols.imap4.message import Part
from communigate.protocols.imap4.sequence import SequenceSet
from communigate.protocols.imap4.syntax import flag_list
from communigate.store.mailbox import Mailbox, MessageInfo


class MessageView:
    """One message as SEARCH and FETCH see it; reads the file once, lazily."""

    def __init__(self, number: int, info: MessageInfo, mailbox: Mailbox, recent: bool) -> None:
        self.number = number
        self.info = info
        self.uid = info.uid
        self.flags = info.flags
        self.recent = recent
        self.size = info.size
        self._mailbox = mailbox

    def internal_date(self) -> datetime:
        """When the message arrived."""
        return datetime.fromtimestamp(self.info.internal_date, UTC).astimezone()

    @cached_property
    def _data(self) -> bytes:
        return self._mailbox.read(self.info)

    def data(self) -> bytes:
        """The whole message."""
        return self._data

    @cached_property
    def _part(self) -> Part:
        return Part.parse(self._data)

    def part(self) -> Part:
        """The parsed MIME structure."""
        return self._part


class SelectedMailbox:
    """What one session knows of its selected mailbox."""

    def __init__(self, location: MailboxLocation, rights: str, read_only: bool) -> None:
        self.location = location
        self.mailbox = location.mailbox
        self.rights = rights
        self.read_only = read_only or not (set(rights) & set("swd"))
        self.messages: list[MessageInfo] = []
        self.recent: set[int] = set()
        self._stamp: tuple[int, ...] | None = None
        self.messages = self._load()

    def _load(self) -> list[MessageInfo]:
        self._stamp = self.mailbox.change_stamp()
        listing = self.mailbox.messages()
        if not self.read_only and any(info.recent for info in listing):
            self.recent |= self.mailbox.take_recent(listing)
            self._stamp = self.mailbox.change_stamp()
            listing = self.mailbox.messages()
        return listing

    @property
    def exists(self) -> int:
        """The number of messages the client knows."""
        return len(self.messages)

    def first_unseen(self) -> int | None:
        """The number of the first message without \\Seen."""
        for number, info in enumerate(self.messages, 1):
            if "\\Seen" not in info.flags:
                return number
        return None

    def select_responses(self, permanent: bytes) -> list[bytes]:
        """The untagged data of SELECT/EXAMINE (RFC 3501 §6.3.1)."""
        keywords = set(self.mailbox.keywords())
        flags = {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"} | keywords
        lines = [
            b"* FLAGS " + flag_list(flags),
            b"* OK [PERMANENTFLAGS " + permanent + b"] flags permitted",
            b"* %d EXISTS" % self.exists,
            b"* %d RECENT" % len(self.recent),
            b"* OK [UIDVALIDITY %d] UIDs valid" % self.mailbox.uidvalidity,
            b"* OK [UIDNEXT %d] predicted next UID" % self.mailbox.uidnext,
        ]
        unseen = self.first_unseen()
        if unseen is not None:
            lines.append(b"* OK [UNSEEN %d] first unseen message" % unseen)
        return lines

    def largest_uid(self) -> int:
        """The UID ``*`` stands for."""
        return self.messages[-1].uid if self.messages else 0

    def select(self, numbers: SequenceSet, by_uid: bool) -> list[tuple[int, MessageInfo]]:
        """Numbered messages in a set (of sequence numbers or UIDs)."""
        if by_uid:
            largest = self.largest_uid()
            return [
                (number, info)
                for number, info in enumerate(self.messages, 1)
                if numbers.contains(info.uid, largest)
            ]
        count = len(self.messages)
        return [
            (number, info)
            for number, info in enumerate(self.messages, 1)
            if numbers.contains(number, count)
        ]

    def view(self, number: int, info: MessageInfo) -> MessageView:
        """A view for SEARCH and FETCH."""
        return MessageView(number, info, self.mailbox, info.uid in self.recent)

    def replace(self, number: int, info: MessageInfo) -> None:
        """Record a message's new state (after this session changed it)."""
        self.messages[number - 1] = info

    def refresh(self, expunges: bool = True) -> list[bytes]:
        """Untagged updates for what others changed since the last look.

        With ``expunges`` False (during FETCH, STORE, SEARCH) removed
        messages are kept for now and reported later (RFC 3501 §7.4.1).
        """
        if self.mailbox.change_stamp() == self._stamp:
            return []
        listing = self._load()
        current = {info.uid: info for info in listing}
        updates: list[bytes] = []
        if expunges:
            for number in range(len(self.messages), 0, -1):
                if self.messages[number - 1].uid not in current:
                    del self.messages[number - 1]
                    updates.append(b"* %d EXPUNGE" % number)
        known = {info.uid for info in self.messages}
        for number, info in enumerate(self.messages, 1):
            fresh = current.get(info.uid)
            if fresh is not None and fresh.flags != info.flags:
                self.messages[number - 1] = fresh
                updates.append(
                    b"* %d FETCH (UID %d FLAGS %s)"
                    % (number, info.uid, flag_list(self._with_recent(fresh)))
                )
            elif fresh is not None:
                self.messages[number - 1] = fresh
        added = [
            info for info in listing if info.uid not in known and info.uid > self.largest_uid()
        ]
        if added:
            self.messages.extend(added)
            updates.append(b"* %d EXISTS" % len(self.messages))
            updates.append(b"* %d RECENT" % len(self.recent))
        return updates

    def _with_recent(self, info: MessageInfo) -> frozenset[str]:
        return info.flags | ({"\\Recent"} if info.uid in self.recent else frozenset())

    def expunge(self, uids: SequenceSet | None = None) -> tuple[list[bytes], list[int]]:
        """Remove \\Deleted messages (only those in ``uids`` if given); the
        EXPUNGE responses and the UIDs removed."""
        largest = self.largest_uid()
        doomed = [
            (number, info)
            for number, info in enumerate(self.messages, 1)
            if "\\Deleted" in info.flags and (uids is None or uids.contains(info.uid, largest))
        ]
        self.mailbox.remove(info for _, info in doomed)
        responses = []
        for number, _ in reversed(doomed):
            del self.messages[number - 1]
            responses.append(b"* %d EXPUNGE" % number)
        self._stamp = self.mailbox.change_stamp()
        return responses, [info.uid for _, info in doomed]
