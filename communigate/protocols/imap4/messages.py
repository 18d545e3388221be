"""IMAP commands of the selected state (RFC 3501 §6.4, RFC 4315, RFC 6851).

CHECK, CLOSE, UNSELECT, EXPUNGE, SEARCH, FETCH, STORE, COPY, MOVE and their
UID forms.  Rights: FETCH needs ``r`` (granted at SELECT) and sets \\Seen only
with ``s``; STORE needs ``s`` for \\Seen (else it is not kept), ``d`` for
\\Deleted and ``w`` for other flags; EXPUNGE needs ``d``; COPY and MOVE need
``i`` on the target (MOVE also ``d`` here).

A FETCH response showing a keyword the client has not been told of comes
after new ``* FLAGS`` and ``PERMANENTFLAGS`` (:meth:`SelectedMailbox.announce`).
A message another session expunged is served until the session may be told
(RFC 2180 §4.1.2): from the descriptor kept when a session of this process
expunged it (:mod:`.expunged`), else from what is known of it (UID, FLAGS,
RFC822.SIZE); only items that need a vanished file end the FETCH with
``NO [EXPUNGEISSUED]`` (RFC 5530).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.python.failure import Failure

from communigate.protocols.imap4 import fetch, search
from communigate.protocols.imap4.expunged import EXPUNGED
from communigate.protocols.imap4.reader import Argument
from communigate.protocols.imap4.selected import SelectedMailbox
from communigate.protocols.imap4.sequence import SequenceError, SequenceSet
from communigate.protocols.imap4.states import SELECTED, CommandFailed, SessionBase, State
from communigate.protocols.imap4.syntax import flag_list
from communigate.store.mailbox import INBOX, MessageInfo, StagedMessage
from communigate.store.mailboxindex import SLICE

#: What a handler that works in slices returns (the server runs it).
Steps = Generator[None, None, None]
Result = TypeVar("Result")

#: Messages fetched or stored between two slices.
FETCH_SLICE = 128


def _uid_ranges(uids: list[int]) -> str:
    """``1:3,7`` for [1, 2, 3, 7]."""
    parts: list[str] = []
    start = previous = None
    for uid in uids:
        if previous is not None and uid == previous + 1:
            previous = uid
            continue
        if start is not None:
            parts.append(f"{start}:{previous}" if start != previous else str(start))
        start = previous = uid
    if start is not None:
        parts.append(f"{start}:{previous}" if start != previous else str(start))
    return ",".join(parts)


class MessageCommands(SessionBase):
    """Mixed into the IMAP server."""

    COMMANDS = {
        name: (SELECTED, f"do_{name}")
        for name in (
            "CHECK",
            "CLOSE",
            "UNSELECT",
            "EXPUNGE",
            "SEARCH",
            "FETCH",
            "STORE",
            "COPY",
            "MOVE",
            "UID",
        )
    }

    def current(self) -> SelectedMailbox:
        """The selected mailbox."""
        if self.selected is None:
            raise CommandFailed("no mailbox selected", "BAD")
        return self.selected

    def sequence(self, argument: Argument) -> SequenceSet:
        """A sequence-set argument."""
        if not isinstance(argument, str):
            raise CommandFailed("expected a sequence set", "BAD")
        try:
            return SequenceSet(argument)
        except SequenceError as error:
            raise CommandFailed(str(error), "BAD") from None

    def do_UID(self, tag: str, arguments: list[Argument]) -> Steps | None:
        """UID FETCH/STORE/SEARCH/COPY/MOVE/EXPUNGE (RFC 3501 §6.4.8)."""
        if not arguments or not isinstance(arguments[0], str):
            raise CommandFailed("UID needs a command", "BAD")
        name, rest = arguments[0].upper(), arguments[1:]
        handlers: dict[str, Callable[[str, list[Argument], bool], Steps | None]] = {
            "FETCH": self._fetch,
            "STORE": self._store,
            "SEARCH": self._search,
            "COPY": self._copy,
            "MOVE": self._move,
            "EXPUNGE": self._uid_expunge,
        }
        if name not in handlers:
            raise CommandFailed(f"UID {name[:20]} is not a command", "BAD")
        return handlers[name](tag, rest, True)

    def do_CHECK(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.4.1: everything is on disk already."""
        self.updates()
        self.tagged(tag, "OK", "CHECK completed")

    def _leave(self) -> None:
        self.selected = None
        self.state = State.AUTHENTICATED

    def do_CLOSE(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.4.2: expunge silently (with ``d``), then unselect."""
        selected = self.current()
        folders: list[str] = []
        if not selected.read_only and "d" in selected.rights:
            _, _, folders = selected.expunge()
        self._leave()
        self._when_flushed(tag, folders, [], "CLOSE completed")

    def do_UNSELECT(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3691: unselect without expunging."""
        self._leave()
        self.tagged(tag, "OK", "UNSELECT completed")

    def do_EXPUNGE(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.4.3 (needs ``d``)."""
        self._expunge(tag, None)

    def _uid_expunge(self, tag: str, arguments: list[Argument], uid: bool) -> None:
        """RFC 4315 §2.1."""
        self.arguments(arguments, 1)
        self._expunge(tag, self.sequence(arguments[0]))

    def _expunge(self, tag: str, uids: SequenceSet | None) -> None:
        selected = self.current()
        if selected.read_only or "d" not in selected.rights:
            raise CommandFailed("[NOPERM] no right to expunge in this mailbox")
        self.updates()
        lines, _, folders = selected.expunge(uids)
        self._when_flushed(tag, folders, lines, "EXPUNGE completed")

    def _when_flushed(self, tag: str, folders: list[str], lines: list[bytes], text: str) -> None:
        """Send ``lines`` and the tagged OK once the folders an expunge
        changed are flushed to disk (in the thread pool), so what the
        client is told survives a crash."""
        flushing = self.factory.writer.flush(folders)
        self._answer_when(tag, flushing.addCallback(lambda _: (lines, text)))

    def _answer_when(self, tag: str, work: Deferred[tuple[list[bytes], str]]) -> None:
        """Answer a command once ``work`` (durable writes in the thread
        pool) fires with the untagged lines and the OK text; later commands
        wait.  A failure answers NO."""

        def answer(result: tuple[list[bytes], str] | Failure) -> None:
            if not self.connected:
                return
            if isinstance(result, Failure):
                failure = (
                    result.value.subFailure if isinstance(result.value, FirstError) else result
                )
                if isinstance(failure.value, CommandFailed):
                    self.tagged(tag, failure.value.status, str(failure.value))
                elif isinstance(failure.value, FileNotFoundError):
                    self.tagged(tag, "NO", "[NONEXISTENT] the mailbox is gone")
                else:
                    self.log.failure("IMAP command {tag} failed", failure, tag=tag)
                    self.tagged(tag, "NO", "[SERVERBUG] internal error")
                return
            lines, text = result
            for line in lines:
                self.send(line)
            self.tagged(tag, "OK", text)

        self.busy = True
        work.addBoth(answer)
        work.addBoth(lambda _: self._resume())

    # -- SEARCH and FETCH -------------------------------------------------

    def do_SEARCH(self, tag: str, arguments: list[Argument]) -> Steps:
        """RFC 3501 §6.4.4."""
        return self._search(tag, arguments, False)

    def _search(self, tag: str, arguments: list[Argument], uid: bool) -> Steps:
        selected = self.current()
        try:
            predicate = search.parse(arguments)
        except search.SearchError as error:
            raise CommandFailed(str(error), "BAD") from None
        self.updates(expunges=False)
        largest, largest_uid = selected.exists, selected.largest_uid()
        found = []
        for number, info in enumerate(list(selected.messages), 1):
            view = selected.view(number, info)
            try:
                if predicate(view, largest, largest_uid):
                    found.append(info.uid if uid else number)
            except FileNotFoundError:
                continue
            if number % SLICE == 0:
                yield
        self.factory.flush_soon(selected.mailbox.cache)
        self.send(b"* SEARCH" + b"".join(b" %d" % value for value in found))
        self.tagged(tag, "OK", "SEARCH completed")

    def do_FETCH(self, tag: str, arguments: list[Argument]) -> Steps:
        """RFC 3501 §6.4.5."""
        return self._fetch(tag, arguments, False)

    def _fetch(self, tag: str, arguments: list[Argument], uid: bool) -> Steps:
        self.arguments(arguments, 2)
        selected = self.current()
        numbers = self.sequence(arguments[0])
        try:
            attributes = fetch.parse(arguments[1])
        except fetch.FetchError as error:
            raise CommandFailed(str(error), "BAD") from None
        if uid and not any(item.name == "UID" for item in attributes):
            attributes.insert(0, fetch.Attribute("UID"))
        marks_seen = (
            any(item.sets_seen for item in attributes)
            and not selected.read_only
            and "s" in selected.rights
        )
        if marks_seen and not any(item.name == "FLAGS" for item in attributes):
            attributes.append(fetch.Attribute("FLAGS"))
        self.updates(expunges=False)
        shows_flags = any(item.name == "FLAGS" for item in attributes)
        gone = False
        # Responses are written in batches: one write per message costs more
        # than building the response when thousands are fetched.
        batch: list[bytes] = []
        for count, (number, info) in enumerate(selected.select_iter(numbers, uid), 1):
            if marks_seen and "\\Seen" not in info.flags:
                changed = self._set_flags(selected, number, info, info.flags | {"\\Seen"})
                if changed is not None:
                    info = changed
                    selected.replace(number, info)
            data = self._fetch_one(selected, number, info, attributes)
            if data is None:
                gone = True
                continue
            if shows_flags:
                # A keyword another session created is announced first.
                batch.extend(line + b"\r\n" for line in selected.announce(info.flags))
            batch.append(b"* %d FETCH %s\r\n" % (number, data))
            if len(batch) >= 256:
                self.write(b"".join(batch))
                batch.clear()
            if count % FETCH_SLICE == 0:
                self.write(b"".join(batch))
                batch.clear()
                yield
        self.write(b"".join(batch))
        self.factory.flush_soon(selected.mailbox.cache)
        if gone:
            # RFC 2180 §4.1.3 for what cannot be served; RFC 5530 §3.
            self.tagged(tag, "NO", "[EXPUNGEISSUED] some of the requested messages no longer exist")
        else:
            self.tagged(tag, "OK", "FETCH completed")

    @staticmethod
    def _fetch_one(
        selected: SelectedMailbox, number: int, info: MessageInfo, attributes: list[fetch.Attribute]
    ) -> bytes | None:
        """One message's FETCH data, or None if what was asked needs a file
        that is gone.

        A message another session expunged is still served from what is
        known of it (UID, FLAGS, RFC822.SIZE) until this session may report
        the expunge (RFC 2180 §4.1.2); one whose file another session
        renamed (a flag change) is found again by its UID."""
        return _found_again(
            selected,
            number,
            info,
            lambda found: fetch.response(selected.view(number, found), attributes, found.flags),
        )

    @staticmethod
    def _set_flags(
        selected: SelectedMailbox, number: int, info: MessageInfo, flags: frozenset[str]
    ) -> MessageInfo | None:
        """Give a message these flags; None if it is gone.  One another
        session renamed is found again by its UID and gets this change
        applied to the flags it has now, so the other session's change is
        not undone."""
        changed = selected.mailbox.set_flags(info, flags)
        if changed is None:
            moved = selected.relocate(number, info)
            fresh = selected.on_disk(info.uid)
            if moved is not None and fresh is not None:
                wanted = (fresh.flags | (flags - info.flags)) - (info.flags - flags)
                changed = selected.mailbox.set_flags(moved, wanted)
        return changed

    # -- STORE --------------------------------------------------------------

    def do_STORE(self, tag: str, arguments: list[Argument]) -> Steps:
        """RFC 3501 §6.4.6."""
        return self._store(tag, arguments, False)

    def _store(self, tag: str, arguments: list[Argument], uid: bool) -> Steps:
        self.arguments(arguments, 3)
        selected = self.current()
        numbers = self.sequence(arguments[0])
        action = self.text(arguments[1]).decode("ascii", "replace").upper()
        silent = action.endswith(".SILENT")
        action = action.removesuffix(".SILENT")
        if action not in ("FLAGS", "+FLAGS", "-FLAGS"):
            raise CommandFailed("STORE takes FLAGS, +FLAGS or -FLAGS", "BAD")
        value = arguments[2]
        items = value if isinstance(value, list) else [value]
        flags = {self.text(item).decode("utf-8", "replace") for item in items}
        if any(flag.lower() == "\\recent" for flag in flags):
            raise CommandFailed("\\Recent cannot be stored", "BAD")
        if selected.read_only:
            raise CommandFailed("[READ-ONLY] mailbox is read-only")
        rights = selected.rights
        if any(flag.lower() == "\\deleted" for flag in flags) and "d" not in rights:
            raise CommandFailed("[NOPERM] no right to mark messages \\Deleted")
        if any(flag.lower() not in ("\\deleted", "\\seen") for flag in flags) and "w" not in rights:
            raise CommandFailed("[NOPERM] no right to change flags")
        kept = {flag for flag in flags if flag.lower() != "\\seen" or "s" in rights}
        canonical = {_canonical(flag) for flag in kept}
        self.updates(expunges=False)
        for count, (number, info) in enumerate(selected.select_iter(numbers, uid), 1):
            if count % FETCH_SLICE == 0:
                yield
            protected = {flag for flag in info.flags if not self.flag_allowed(flag, rights)}
            wanted: frozenset[str]
            if action == "FLAGS":
                wanted = frozenset(canonical | protected)
            elif action == "+FLAGS":
                wanted = info.flags | canonical
            else:
                wanted = info.flags - canonical
            current = info
            if wanted != info.flags:
                changed = self._set_flags(selected, number, info, wanted)
                if changed is None:
                    continue
                current = changed
                selected.replace(number, current)
            if not silent:
                for line in selected.announce(current.flags):
                    self.send(line)
                shown = current.flags | ({"\\Recent"} if current.uid in selected.recent else set())
                uid_part = b"UID %d " % current.uid if uid else b""
                self.send(b"* %d FETCH (%sFLAGS %s)" % (number, uid_part, flag_list(shown)))
        self.tagged(tag, "OK", "STORE completed")

    # -- COPY and MOVE -------------------------------------------------------

    def do_COPY(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.4.7 with COPYUID (RFC 4315)."""
        self._copy(tag, arguments, False)

    def do_MOVE(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 6851."""
        self._move(tag, arguments, False)

    def _copy_messages(
        self, arguments: list[Argument], uid: bool
    ) -> Deferred[tuple[list[tuple[int, MessageInfo]], str, list[int]]]:
        """Copy messages with their flags (those the target's rights keep)
        into another mailbox: staged now, made durable in the thread pool
        (:class:`~communigate.portal.durable.DurableWriter`, one commit for
        the lot).  Fires with the messages chosen, the COPYUID code and the
        UIDs copied; a message gone meanwhile is left out."""
        self.arguments(arguments, 2)
        selected = self.current()
        numbers = self.sequence(arguments[0])
        target = self.locate(arguments[1])
        if not target.mailbox.exists() and target.local != INBOX:
            raise CommandFailed(f"[TRYCREATE] no mailbox {target.public}")
        rights = self.require(target, "i")
        chosen = selected.select(numbers, uid)
        mailbox = target.mailbox
        staged: list[tuple[int, StagedMessage]] = []
        try:
            for number, info in chosen:
                found = self._read(selected, number, info)
                if found is None:
                    continue
                data, when = found
                kept = frozenset(flag for flag in info.flags if self.flag_allowed(flag, rights))
                staged.append((info.uid, mailbox.stage(data, kept, when)))
        except FileNotFoundError:
            mailbox.discard(message for _, message in staged)
            raise CommandFailed(f"[NONEXISTENT] no mailbox {target.public}") from None
        commits = [self.factory.writer.commit(mailbox, message) for _, message in staged]

        def copied(new_uids: list[int]) -> tuple[list[tuple[int, MessageInfo]], str, list[int]]:
            source_uids = [source for source, _ in staged]
            code = ""
            if source_uids:
                code = (
                    f"[COPYUID {mailbox.uidvalidity} {_uid_ranges(source_uids)} "
                    f"{_uid_ranges(new_uids)}] "
                )
            return chosen, code, source_uids

        return gatherResults(commits, consumeErrors=True).addCallback(copied)

    @staticmethod
    def _read(
        selected: SelectedMailbox, number: int, info: MessageInfo
    ) -> tuple[bytes, float] | None:
        """A message's bytes and internal date (found again if another
        session renamed it), or None if it is gone."""
        return _found_again(
            selected,
            number,
            info,
            lambda found: (selected.mailbox.read(found), selected.mailbox.internal_date(found)),
        )

    def _copy(self, tag: str, arguments: list[Argument], uid: bool) -> None:
        def answer(
            result: tuple[list[tuple[int, MessageInfo]], str, list[int]],
        ) -> tuple[list[bytes], str]:
            return self._refreshed(expunges=False), f"{result[1]}COPY completed"

        self._answer_when(tag, self._copy_messages(arguments, uid).addCallback(answer))

    def _refreshed(self, expunges: bool = True) -> list[bytes]:
        """What other sessions changed, as lines to send."""
        return self.selected.refresh(expunges) if self.selected is not None else []

    def _move(self, tag: str, arguments: list[Argument], uid: bool) -> None:
        selected = self.current()
        if selected.read_only or "d" not in selected.rights:
            raise CommandFailed("[NOPERM] no right to remove messages from this mailbox")

        def remove(
            result: tuple[list[tuple[int, MessageInfo]], str, list[int]],
        ) -> Deferred[tuple[list[bytes], str]]:
            # The copies are durable: the originals may go.
            chosen, code, source_uids = result
            if not self.connected or self.selected is not selected:
                # The session left meanwhile: remove, tell nobody.
                moved_uids = set(source_uids)
                done = [info for _, info in chosen if info.uid in moved_uids]
                flushed = self.factory.writer.flush(selected.mailbox.remove(done, flush=False))
                return flushed.addCallback(lambda _: ([], "MOVE completed"))
            lines = []
            if code:
                lines.append(b"* OK " + code.strip().encode("utf-8") + b" moved")
            moved = set(source_uids)
            gone = [info for _, info in chosen if info.uid in moved]
            EXPUNGED.retain(selected.mailbox.path, selected, gone)
            folders = selected.mailbox.remove(gone, flush=False)
            for number in range(len(selected.messages), 0, -1):
                if selected.messages[number - 1].uid in moved:
                    del selected.messages[number - 1]
                    lines.append(b"* %d EXPUNGE" % number)
            lines.extend(selected.refresh())
            flushing = self.factory.writer.flush(folders)
            return flushing.addCallback(lambda _: (lines, "MOVE completed"))

        self._answer_when(tag, self._copy_messages(arguments, uid).addCallback(remove))


def _found_again(
    selected: SelectedMailbox,
    number: int,
    info: MessageInfo,
    work: Callable[[MessageInfo], Result],
) -> Result | None:
    """``work`` on a message's file; if the file is not where it was
    listed, once more where the message is now (another session renamed it
    to change its flags, or kept it open after an expunge); None if it is
    gone."""
    for _ in range(2):
        try:
            return work(info)
        except FileNotFoundError:
            moved = selected.relocate(number, info)
            if moved is None:
                return None
            info = moved
    return None


_SYSTEM = {"\\seen", "\\answered", "\\flagged", "\\deleted", "\\draft"}


def _canonical(flag: str) -> str:
    """System flags in their usual spelling; keywords as given."""
    lower = flag.lower()
    if lower in _SYSTEM:
        return "\\" + lower[1:].capitalize()
    return flag
