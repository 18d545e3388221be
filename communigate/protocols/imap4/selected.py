"""The selected mailbox of one IMAP session: message numbers, what the
client has been told, and the untagged updates that bring it up to date
when other sessions change the mailbox (RFC 3501 §5.2, §7.4.1).

A mailbox is re-listed only when its folders changed (two ``stat`` calls),
so a NOOP on an unchanged mailbox reads nothing; during IDLE the session
re-lists only when notified (:mod:`communigate.store.changes`).

Keywords: the client is told ``* FLAGS`` and ``* OK [PERMANENTFLAGS]``
again before any FETCH response that shows a keyword it has not been told
of (one another session created), as RFC 3501 §7.2.6 requires of the flags
"defined in the mailbox".

Messages another session expunged stay here, with the flags, size and UID
last seen, until this session may report the expunge (RFC 3501 §7.4.1),
and their data stays readable for a while when a session of this process
expunged them (:mod:`.expunged`); one whose file was only renamed (another
session changed its flags) is found again by its UID.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property

from communigate.portal.avatars import MailboxLocation
from communigate.protocols.imap4.expunged import EXPUNGED
from communigate.protocols.imap4.message import Part
from communigate.protocols.imap4.sequence import SequenceSet
from communigate.protocols.imap4.syntax import flag_list
from communigate.store.mailbox import MAX_KEYWORDS, Mailbox, MessageInfo


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

    def header(self) -> bytes:
        """The message's header, from the mailbox's cache when it has it
        (:mod:`communigate.store.messagecache`)."""
        return self._mailbox.cache.header(self.uid, self.info.path)

    def cached(self, name: str, compute: Callable[[], bytes]) -> bytes:
        """A value worked out from the message, kept in the mailbox's cache."""
        return self._mailbox.cache.value(self.uid, name, compute)

    @cached_property
    def _part(self) -> Part:
        return Part.parse(self._data)

    def part(self) -> Part:
        """The parsed MIME structure."""
        return self._part


#: The system flags every mailbox has (RFC 3501 §2.3.2).
SYSTEM_FLAGS = frozenset({"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"})


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
        #: Flags the client was told of in the last ``* FLAGS``.
        self._announced: frozenset[str] = SYSTEM_FLAGS | {"\\Recent"}
        #: The listing made to find renamed messages, until the next refresh.
        self._relisted: dict[int, MessageInfo] | None = None
        #: Messages found removed but not yet reported (RFC 3501 §7.4.1).
        self._unreported = False
        self.messages = self._load()
        EXPUNGED.hold(self.mailbox.path, self)

    def _load(self) -> list[MessageInfo]:
        self._relisted = None
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

    def permanent_flags(self, keywords: list[str]) -> set[str]:
        """The flags this session may store (RFC 3501 §7.1, PERMANENTFLAGS)."""
        permanent = set()
        if "w" in self.rights:
            permanent |= {"\\Answered", "\\Flagged", "\\Draft", *keywords}
            if len(keywords) < MAX_KEYWORDS:
                permanent.add("\\*")
        if "s" in self.rights:
            permanent.add("\\Seen")
        if "d" in self.rights:
            permanent.add("\\Deleted")
        return permanent

    def flag_responses(self, extra: frozenset[str] = frozenset()) -> list[bytes]:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` for the mailbox's
        keywords now (and ``extra`` ones a message shows)."""
        keywords = list(dict.fromkeys([*self.mailbox.keywords(), *sorted(extra)]))
        flags = SYSTEM_FLAGS | set(keywords)
        self._announced = flags | {"\\Recent"}
        return [
            b"* FLAGS " + flag_list(flags),
            b"* OK [PERMANENTFLAGS "
            + flag_list(self.permanent_flags(keywords))
            + b"] flags permitted",
        ]

    def announce(self, flags: frozenset[str]) -> list[bytes]:
        """What must precede a FETCH response showing ``flags``: nothing,
        or new ``* FLAGS``/``PERMANENTFLAGS`` when one is a keyword the
        client has not been told of."""
        if flags <= self._announced:
            return []
        return self.flag_responses(flags - self._announced - {"\\Recent"})

    def select_responses(self) -> list[bytes]:
        """The untagged data of SELECT/EXAMINE (RFC 3501 §6.3.1)."""
        lines = [
            *self.flag_responses(),
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

    def relocate(self, number: int, info: MessageInfo) -> MessageInfo | None:
        """A message whose file was not where it was listed: found again by
        its UID (another session renamed it to change its flags; the flags
        this session knows are kept until the next refresh reports them),
        or None if it is gone.  A message another session of this process
        expunged is read from the descriptor it kept (:mod:`.expunged`).
        The mailbox is listed once per refresh."""
        kept = EXPUNGED.path(self.mailbox.path, info.uid)
        if kept is not None and kept != info.path:
            return self._moved(number, info._replace(path=kept))
        if self._relisted is None:
            self._relisted = {fresh.uid: fresh for fresh in self.mailbox.messages()}
        fresh = self._relisted.get(info.uid)
        if fresh is None or fresh.path == info.path:
            return None
        return self._moved(number, info._replace(path=fresh.path))

    def _moved(self, number: int, moved: MessageInfo) -> MessageInfo:
        if 0 < number <= len(self.messages) and self.messages[number - 1].uid == moved.uid:
            self.messages[number - 1] = moved
        return moved

    def on_disk(self, uid: int) -> MessageInfo | None:
        """A message as the last :meth:`relocate` listed it."""
        return self._relisted.get(uid) if self._relisted is not None else None

    def view(self, number: int, info: MessageInfo) -> MessageView:
        """A view for SEARCH and FETCH."""
        return MessageView(number, info, self.mailbox, info.uid in self.recent)

    def replace(self, number: int, info: MessageInfo) -> None:
        """Record a message's new state (after this session changed it)."""
        self.messages[number - 1] = info

    def refresh(self, expunges: bool = True, changed: bool = False) -> list[bytes]:
        """Untagged updates for what others changed since the last look.

        With ``expunges`` False (during FETCH, STORE, SEARCH) removed
        messages are kept for now and reported later (RFC 3501 §7.4.1).
        ``changed`` says a notification came: the folders are listed even if
        their stamps look the same (a change within one tick of the file
        system's clock leaves the modification time as it was).
        """
        unchanged = not changed and self.mailbox.change_stamp() == self._stamp
        if unchanged and not (expunges and self._unreported):
            return []
        listing = self._load()
        current = {info.uid: info for info in listing}
        updates: list[bytes] = []
        if expunges:
            self._unreported = False
            for number in range(len(self.messages), 0, -1):
                if self.messages[number - 1].uid not in current:
                    del self.messages[number - 1]
                    updates.append(b"* %d EXPUNGE" % number)
        elif len(current) < len(self.messages) or any(
            info.uid not in current for info in self.messages
        ):
            self._unreported = True
        known = {info.uid for info in self.messages}
        for number, info in enumerate(self.messages, 1):
            fresh = current.get(info.uid)
            if fresh is not None and fresh.flags != info.flags:
                self.messages[number - 1] = fresh
                updates.extend(self.announce(fresh.flags))
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
        EXPUNGED.retain(self.mailbox.path, self, [info for _, info in doomed])
        self.mailbox.remove(info for _, info in doomed)
        responses = []
        for number, _ in reversed(doomed):
            del self.messages[number - 1]
            responses.append(b"* %d EXPUNGE" % number)
        self._stamp = self.mailbox.change_stamp()
        return responses, [info.uid for _, info in doomed]
