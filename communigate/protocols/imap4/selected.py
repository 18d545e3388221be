"""The selected mailbox of one IMAP session: message numbers, what the
client has been told, and the untagged updates that bring it up to date
when other sessions change the mailbox (RFC 3501 §5.2, §7.4.1).

The messages come from the mailbox's shared listing
(:mod:`communigate.store.mailboxindex`, one per process, following the
kernel's events), so a change is looked at once per process, not once per
session, and a session compares only the messages that changed since its
last look: a NOOP on an unchanged mailbox costs one read of the kernel's
queue.  A large mailbox is taken in slices (:meth:`SelectedMailbox.open_steps`)
and sets of messages are found by range, so a million messages never hold
up the other sessions.

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

import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from operator import attrgetter

from communigate.portal.avatars import MailboxLocation
from communigate.protocols.imap4.expunged import EXPUNGED
from communigate.protocols.imap4.message import Part
from communigate.protocols.imap4.sequence import SequenceSet
from communigate.protocols.imap4.syntax import flag_list
from communigate.store.changes import IMailboxChanges
from communigate.store.mailbox import MAX_KEYWORDS, Mailbox, MessageInfo
from communigate.store.mailboxindex import SLICE, release_steps

_UID = attrgetter("uid")


@lru_cache(maxsize=4096)
def _local_time(timestamp: float) -> datetime:
    # Messages that arrived in one second share their date: worked out once.
    return datetime.fromtimestamp(timestamp, UTC).astimezone()


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
        """When the message arrived (:meth:`Mailbox.internal_date`)."""
        return _local_time(self._mailbox.internal_date(self.info))

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
    """What one session knows of its selected mailbox.

    The messages come from the mailbox's shared listing
    (:class:`~communigate.store.mailboxindex.MailboxIndex`, one per process,
    from ``changes``); :meth:`open_steps` (or :meth:`open`) takes them, a
    large mailbox in slices; :meth:`close` gives the listing back."""

    def __init__(
        self,
        location: MailboxLocation,
        rights: str,
        read_only: bool,
        changes: IMailboxChanges,
    ) -> None:
        self.location = location
        self.mailbox = location.mailbox
        self.rights = rights
        self.read_only = read_only or not (set(rights) & set("swd"))
        self.messages: list[MessageInfo] = []
        self.recent: set[int] = set()
        self._changes = changes
        self.index = changes.open_index(self.mailbox)
        self._open = True
        self._position = (-1, 0)
        #: Flags the client was told of in the last ``* FLAGS``.
        self._announced: frozenset[str] = SYSTEM_FLAGS | {"\\Recent"}
        #: UIDs found removed but not yet reported (RFC 3501 §7.4.1).
        self._gone: set[int] = set()
        #: The first message without \\Seen when the mailbox was opened.
        self._unseen: int | None = None
        #: This session renamed or removed messages since its last look.
        self._changed_here = False
        EXPUNGED.hold(self.mailbox.path, self)

    def close(self, later: Callable[[Iterator[None]], object] | None = None) -> None:
        """Give the shared listing back (the session left the mailbox).

        What a large mailbox held is freed in slices by ``later`` (which
        runs the steps it is given, such as a cooperator's ``cooperate``),
        so leaving a million messages holds up nobody; without it, or for
        a small mailbox, at once."""
        if not self._open:
            return
        self._open = False
        messages, self.messages = self.messages, []
        EXPUNGED.release(self.mailbox.path, self)
        steps = [release_steps(messages)]
        if self._changes.close_index(self.index):
            steps.append(self.index.release_steps())
        if later is not None and len(messages) > SLICE:
            later(itertools.chain.from_iterable(steps))
            return
        for step in steps:
            for _ in step:
                pass

    def open(self) -> None:
        """Take the messages at once (blocking)."""
        for _ in self.open_steps():
            pass

    def open_steps(self) -> Iterator[None]:
        """Take the messages, yielding between slices of a large mailbox;
        a read-write session takes the \\Recent ones out of ``new/``."""
        yield from self.index.ready_steps()
        self._changes.sync(self.index)
        self._position = self.index.position()
        listing = self.index.listing()
        if not self.read_only:
            yield from self._take_recent(listing)
        self.messages = listing
        self._unseen = None
        for number, info in enumerate(listing, 1):
            if "\\Seen" not in info.flags:
                self._unseen = number
                break
            if number % SLICE == 0:
                yield

    def _take_recent(self, infos: list[MessageInfo], start: int = 0) -> Iterator[None]:
        """Move messages of ``infos[start:]`` out of ``new/`` (in place);
        the ones this session moved first are \\Recent for it alone
        (RFC 3501 §2.3.2)."""
        for position in range(start, len(infos)):
            if position and position % SLICE == 0:
                yield
            info = infos[position]
            if not info.recent:
                continue
            moved = self.mailbox.set_flags(info, info.flags)
            if moved is not None:
                self.recent.add(info.uid)
                infos[position] = moved
                self._changed_here = True
            else:
                # Another session took it; found again by its UID if read.
                infos[position] = info._replace(recent=False)

    @property
    def exists(self) -> int:
        """The number of messages the client knows."""
        return len(self.messages)

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
        unseen = self._unseen
        if unseen is not None:
            lines.append(b"* OK [UNSEEN %d] first unseen message" % unseen)
        return lines

    def largest_uid(self) -> int:
        """The UID ``*`` stands for."""
        return self.messages[-1].uid if self.messages else 0

    def select(self, numbers: SequenceSet, by_uid: bool) -> list[tuple[int, MessageInfo]]:
        """Numbered messages in a set (of sequence numbers or UIDs)."""
        return list(self.select_iter(numbers, by_uid))

    def select_iter(self, numbers: SequenceSet, by_uid: bool) -> Iterator[tuple[int, MessageInfo]]:
        """Numbered messages in a set, in order, found by range (a set of
        a million messages is walked, not tested message by message)."""
        messages = self.messages
        if by_uid:
            for first, last in numbers.spans(self.largest_uid()):
                start = bisect_left(messages, first, key=_UID)
                stop = bisect_right(messages, last, key=_UID)
                yield from zip(range(start + 1, stop + 1), messages[start:stop], strict=True)
            return
        for first, last in numbers.spans(len(messages)):
            yield from zip(range(first, last + 1), messages[first - 1 : last], strict=True)

    def number_of(self, uid: int) -> int | None:
        """The message number of a UID the client knows, or None."""
        position = bisect_left(self.messages, uid, key=_UID)
        if position < len(self.messages) and self.messages[position].uid == uid:
            return position + 1
        return None

    def relocate(self, number: int, info: MessageInfo) -> MessageInfo | None:
        """A message whose file was not where it was listed: found again by
        its UID in the shared listing (another session renamed it to change
        its flags; the flags this session knows are kept until the next
        refresh reports them), or None if it is gone.  A message another
        session of this process expunged is read from the descriptor it
        kept (:mod:`.expunged`)."""
        kept = EXPUNGED.path(self.mailbox.path, info.uid)
        if kept is not None and kept != info.path:
            return self._moved(number, info._replace(path=kept))
        self._changes.sync(self.index)
        fresh = self.index.infos.get(info.uid)
        if fresh is None or fresh.path == info.path:
            return None
        return self._moved(number, info._replace(path=fresh.path))

    def _moved(self, number: int, moved: MessageInfo) -> MessageInfo:
        if 0 < number <= len(self.messages) and self.messages[number - 1].uid == moved.uid:
            self.messages[number - 1] = moved
        return moved

    def on_disk(self, uid: int) -> MessageInfo | None:
        """A message as the shared listing has it now."""
        return self.index.infos.get(uid)

    def view(self, number: int, info: MessageInfo) -> MessageView:
        """A view for SEARCH and FETCH."""
        return MessageView(number, info, self.mailbox, info.uid in self.recent)

    def replace(self, number: int, info: MessageInfo) -> None:
        """Record a message's new state (after this session changed it)."""
        self.messages[number - 1] = info
        self._changed_here = True

    def changed_here(self) -> None:
        """This session changed the mailbox itself in a way the shared
        listing learns of from the kernel's queue (an APPEND)."""
        self._changed_here = True

    def refresh(
        self, expunges: bool = True, changed: bool = False, since: int | None = None
    ) -> list[bytes]:
        """Untagged updates for what others changed since the last look.

        With ``expunges`` False (during FETCH, STORE, SEARCH) removed
        messages are kept for now and reported later (RFC 3501 §7.4.1).
        Only the UIDs the shared listing logged since this session's last
        look are compared, unless it was listed anew (then all are).
        ``changed`` says a notification came: a listing no kernel watch
        follows is made again even if the folders' stamps look the same (a
        change within one tick of the file system's clock).  ``since``: only
        changes made before that mark of the notifier are asked for (see
        :meth:`~communigate.store.changes.MailboxNotifier.sync`) — unless
        this session changed the mailbox itself since its last look: its
        own renames and removals are then read from the queue first, so the
        shared listing never shows it a message's state from before them.
        """
        if not self._open:
            return []
        if self._changed_here:
            since, self._changed_here = None, False
        self._changes.sync(self.index, changed, since)
        uids = self.index.changed_since(self._position)
        self._position = self.index.position()
        if uids is None:
            current = self.index.infos
            self._gone |= {info.uid for info in self.messages if info.uid not in current}
            uids = [info.uid for info in self.messages]
            uids += [uid for uid in self.index.infos if uid > self.largest_uid()]
        elif not uids and not (expunges and self._gone):
            return []
        updates: list[bytes] = []
        current = self.index.infos
        added = []
        largest = self.largest_uid()
        for uid in sorted(set(uids)):
            fresh = current.get(uid)
            if fresh is None:
                if self.number_of(uid) is not None:
                    self._gone.add(uid)
            elif uid > largest:
                added.append(fresh)
            else:
                self._gone.discard(uid)
        if expunges and self._gone:
            for uid in sorted(self._gone, reverse=True):
                number = self.number_of(uid)
                if number is not None:
                    del self.messages[number - 1]
                    updates.append(b"* %d EXPUNGE" % number)
            self._gone.clear()
        for uid in sorted(set(uids)):
            fresh = current.get(uid)
            number = self.number_of(uid) if fresh is not None and uid <= largest else None
            if number is None:
                continue
            known = self.messages[number - 1]
            assert fresh is not None
            self.messages[number - 1] = fresh
            if fresh.flags != known.flags:
                updates.extend(self.announce(fresh.flags))
                updates.append(
                    b"* %d FETCH (UID %d FLAGS %s)"
                    % (number, uid, flag_list(self._with_recent(fresh)))
                )
        if added:
            if not self.read_only:
                for _ in self._take_recent(added):
                    pass
            self.messages.extend(added)
            updates.append(b"* %d EXISTS" % len(self.messages))
            updates.append(b"* %d RECENT" % len(self.recent))
        return updates

    def _with_recent(self, info: MessageInfo) -> frozenset[str]:
        return info.flags | ({"\\Recent"} if info.uid in self.recent else frozenset())

    def expunge(self, uids: SequenceSet | None = None) -> tuple[list[bytes], list[int], list[str]]:
        """Remove \\Deleted messages (only those in ``uids`` if given); the
        EXPUNGE responses, the UIDs removed and the folders to flush to disk
        before the client is told (:meth:`DurableWriter.flush`)."""
        largest = self.largest_uid()
        doomed = [
            (number, info)
            for number, info in enumerate(self.messages, 1)
            if "\\Deleted" in info.flags and (uids is None or uids.contains(info.uid, largest))
        ]
        EXPUNGED.retain(self.mailbox.path, self, [info for _, info in doomed])
        folders = self.mailbox.remove((info for _, info in doomed), flush=False)
        if doomed:
            self._changed_here = True
        responses = []
        for number, _ in reversed(doomed):
            del self.messages[number - 1]
            responses.append(b"* %d EXPUNGE" % number)
        return responses, [info.uid for _, info in doomed], folders
