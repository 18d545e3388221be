"""IMAP commands of the authenticated state: mailboxes and their ACLs.

SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB,
NAMESPACE, STATUS, APPEND (RFC 3501 §6.3) and GETACL, SETACL, DELETEACL,
LISTRIGHTS, MYRIGHTS (RFC 4314).  Other accounts' mailboxes are named
``~name/Box`` or ``~name@domain/Box`` and every command checks the rights
the mailbox's ACL gives (spec §8).
"""

from __future__ import annotations

import re
from collections.abc import Generator
from email.utils import parsedate_to_datetime

from twisted.python.failure import Failure

from communigate.portal.avatars import HiddenMailbox, MailboxLocation
from communigate.protocols.imap4.mutf7 import mailbox_name
from communigate.protocols.imap4.reader import Argument
from communigate.protocols.imap4.selected import SelectedMailbox
from communigate.protocols.imap4.states import AUTHENTICATED, CommandFailed, SessionBase, State
from communigate.protocols.imap4.syntax import astring
from communigate.store.acl import ALL_RIGHTS, ACLError, check_identifier, normalise_rights
from communigate.store.mailbox import INBOX
from communigate.store.mailstore import MailboxError
from communigate.store.spool import SpooledMessage

_DATE_TIME = re.compile(r"\s?\d{1,2}-[A-Za-z]{3}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}\Z")


def _pattern(reference: str, pattern: str) -> re.Pattern[str]:
    """LIST wildcards: ``*`` anything, ``%`` anything but the separator."""
    text = reference + pattern
    regex = "".join(
        ".*" if char == "*" else "[^/]*" if char == "%" else re.escape(char) for char in text
    )
    return re.compile(regex + r"\Z", re.IGNORECASE if text.upper().startswith("INBOX") else 0)


class MailboxCommands(SessionBase):
    """Mixed into the IMAP server."""

    COMMANDS = {
        name: (AUTHENTICATED, f"do_{name}")
        for name in (
            "SELECT",
            "EXAMINE",
            "CREATE",
            "DELETE",
            "RENAME",
            "SUBSCRIBE",
            "UNSUBSCRIBE",
            "LIST",
            "LSUB",
            "NAMESPACE",
            "STATUS",
            "APPEND",
            "GETACL",
            "SETACL",
            "DELETEACL",
            "LISTRIGHTS",
            "MYRIGHTS",
        )
    }

    # -- locating and rights -----------------------------------------------

    def locate(self, argument: Argument, visible: bool = True) -> MailboxLocation:
        """Where a mailbox argument leads (one of this account's may not
        exist; another account's must exist and be visible, unless
        ``visible`` is off)."""
        try:
            return self.find(mailbox_name(self.text(argument)), visible)
        except MailboxError as error:
            raise CommandFailed(str(error)) from None

    def find(self, name: str, visible: bool = True) -> MailboxLocation:
        """:meth:`locate` for a decoded name.  An owner that is no account
        and another account's hidden mailbox get one answer, the one
        :meth:`require` gives, so no command tells which accounts exist."""
        try:
            return self.account.locate(name, visible)
        except HiddenMailbox as hidden:
            raise CommandFailed(f"[NONEXISTENT] {hidden}") from None
        except MailboxError as error:
            raise CommandFailed(str(error)) from None

    def require(self, location: MailboxLocation, rights: str) -> str:
        """The account's rights there; NO unless it has all of ``rights``.

        A mailbox the account may not even see (no ``l``) is reported as
        missing, so ACLs reveal nothing (RFC 4314 §6).
        """
        held = self.account.rights(location)
        exists = location.mailbox.exists() or location.local == INBOX
        if not exists or ("l" not in held and "r" not in held):
            raise CommandFailed(f"[NONEXISTENT] no mailbox {location.public}")
        missing = [right for right in rights if right not in held]
        if missing:
            raise CommandFailed(f"[NOPERM] missing rights {''.join(missing)} on {location.public}")
        return str(held)

    # -- selection -----------------------------------------------------------

    def do_SELECT(self, tag: str, arguments: list[Argument]) -> Generator[None, None, None]:
        """RFC 3501 §6.3.1."""
        return self._open(tag, arguments, read_only=False)

    def do_EXAMINE(self, tag: str, arguments: list[Argument]) -> Generator[None, None, None]:
        """RFC 3501 §6.3.2."""
        return self._open(tag, arguments, read_only=True)

    def _open(
        self, tag: str, arguments: list[Argument], read_only: bool
    ) -> Generator[None, None, None]:
        """Select a mailbox; a large one is listed in slices."""
        self.arguments(arguments, 1)
        # The previous mailbox is given back only once the new one holds
        # its listing: selecting the same mailbox again keeps it listed.
        previous = self.detach_selected()
        if previous is not None:
            self.state = State.AUTHENTICATED
            self.send(b"* OK [CLOSED] previous mailbox closed")
        later = self.factory.cooperator.cooperate
        try:
            location = self.locate(arguments[0])
            rights = self.require(location, "r")
            if location.local == INBOX:
                location.mailbox.create()
            selected = SelectedMailbox(location, rights, read_only, self.factory.changes)
        finally:
            if previous is not None:
                previous.close(later)
        try:
            yield from selected.open_steps()
            lines = selected.select_responses()
        except BaseException:
            selected.close(later)
            raise
        for line in lines:
            self.send(line)
        self.selected = selected
        self.state = State.SELECTED
        mode = "READ-ONLY" if selected.read_only else "READ-WRITE"
        self.tagged(tag, "OK", f"[{mode}] {'EXAMINE' if read_only else 'SELECT'} completed")

    # -- hierarchy -------------------------------------------------------------

    def do_CREATE(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.3.3; in another account, ``c`` on the parent (an
        owner that is no account is answered as one whose parent is hidden)."""
        self.arguments(arguments, 1)
        try:
            location = self.account.locate(mailbox_name(self.text(arguments[0])))
        except HiddenMailbox as hidden:
            self.may_create_in(hidden.public, hidden.local)
            raise CommandFailed(f"[NONEXISTENT] {hidden}") from None
        except MailboxError as error:
            raise CommandFailed(str(error)) from None
        if location.owner != self.account.identity:
            self.may_create_in(location.public, location.local)
        try:
            location.store.create(location.local)
        except MailboxError as error:
            raise CommandFailed(f"[ALREADYEXISTS] {error}") from None
        self.tagged(tag, "OK", "CREATE completed")

    def may_create_in(self, public: str, local: str) -> None:
        """NO unless this account holds ``c`` on the parent of another
        account's mailbox ``public``."""
        if not local.rpartition("/")[0]:
            raise CommandFailed("[NOPERM] cannot create top-level mailboxes there")
        self.require(self.find(public.rpartition("/")[0]), "c")

    def do_DELETE(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.3.4; needs ``c`` for another account's mailbox."""
        self.arguments(arguments, 1)
        location = self.locate(arguments[0])
        self.require(location, "c")
        if self.selected is not None and self.selected.location == location:
            raise CommandFailed("[INUSE] mailbox is selected")
        try:
            location.store.delete(location.local)
        except MailboxError as error:
            raise CommandFailed(str(error)) from None
        self.tagged(tag, "OK", "DELETE completed")

    def do_RENAME(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.3.5, within one account."""
        self.arguments(arguments, 2)
        old, new = self.locate(arguments[0]), self.locate(arguments[1])
        self.require(old, "c")
        if old.owner != new.owner:
            raise CommandFailed("cannot move a mailbox to another account")
        try:
            old.store.rename(old.local, new.local)
        except MailboxError as error:
            raise CommandFailed(str(error)) from None
        self.tagged(tag, "OK", "RENAME completed")

    def do_SUBSCRIBE(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.3.6."""
        self.arguments(arguments, 1)
        location = self.locate(arguments[0])
        self.account.store.subscribe(location.public, True)
        self.tagged(tag, "OK", "SUBSCRIBE completed")

    def do_UNSUBSCRIBE(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.3.7."""
        self.arguments(arguments, 1)
        try:
            self.account.store.subscribe(mailbox_name(self.text(arguments[0])), False)
        except MailboxError as error:
            raise CommandFailed(str(error)) from None
        self.tagged(tag, "OK", "UNSUBSCRIBE completed")

    # -- listing ---------------------------------------------------------------

    def visible(self, pattern: re.Pattern[str], raw: str) -> list[tuple[str, bool]]:
        """(public name, has children) of mailboxes the account may see."""
        found: list[tuple[str, bool]] = []
        store = self.account.store
        if not raw.startswith("~"):
            for name in store.names():
                if pattern.match(name):
                    found.append((name, store.has_children(name)))
            return found
        owner_part = raw[1:].split("/", 1)[0]
        domain = owner_part.partition("@")[2] or None
        if domain and any(char in domain for char in "*%"):
            return found
        owner_pattern = _pattern("", owner_part)
        for owner in self.account.other_owners(domain):
            if owner.domain == self.account.identity.domain:
                prefix = f"~{owner.name}"
            else:
                prefix = f"~{owner.name}@{owner.domain}"
            if not owner_pattern.match(prefix[1:]):
                continue
            try:
                location = self.account.locate(prefix + "/" + INBOX)
            except MailboxError:
                continue
            for name in location.store.names():
                public = f"{prefix}/{name}"
                if not pattern.match(public):
                    continue
                other = self.account.locate(public)
                if "l" in self.account.rights(other) and other.mailbox.exists():
                    found.append((public, location.store.has_children(name)))
        return found

    def do_LIST(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.3.8 with CHILDREN attributes (RFC 3348)."""
        self._list(tag, arguments, "LIST")

    def do_LSUB(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.3.9."""
        self._list(tag, arguments, "LSUB")

    def _list(self, tag: str, arguments: list[Argument], kind: str) -> None:
        self.arguments(arguments, 2)
        reference = self.text(arguments[0]).decode("utf-8", "replace")
        raw = self.text(arguments[1]).decode("utf-8", "replace")
        if not raw:
            self.send(b'* %s (\\Noselect) "/" ""' % kind.encode())
            self.tagged(tag, "OK", f"{kind} completed")
            return
        full = reference + raw
        pattern = _pattern("", full)
        entries = self.visible(pattern, full)
        if kind == "LSUB":
            subscribed = set(self.account.store.subscriptions())
            entries = [(name, children) for name, children in entries if name in subscribed]
        for name, children in entries:
            flags = "\\HasChildren" if children else "\\HasNoChildren"
            self.send(
                b'* %s (%s) "/" %s' % (kind.encode(), flags.encode(), astring(name.encode("utf-8")))
            )
        self.tagged(tag, "OK", f"{kind} completed")

    def do_NAMESPACE(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 2342: personal "", other users "~", no shared namespace."""
        self.send(b'* NAMESPACE (("" "/")) (("~" "/")) NIL')
        self.tagged(tag, "OK", "NAMESPACE completed")

    def do_STATUS(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.3.10 (needs ``r``)."""
        self.arguments(arguments, 2)
        location = self.locate(arguments[0])
        self.require(location, "r")
        items = arguments[1]
        if not isinstance(items, list) or not items:
            raise CommandFailed("STATUS needs a list of items", "BAD")
        mailbox = location.mailbox
        if location.local == INBOX:
            mailbox.create()
        # A mailbox some session has selected is counted from its shared
        # listing, not listed again (nor copied).
        index = self.factory.changes.find_index(mailbox.path)
        listing = index.infos.values() if index is not None and index.loaded else None
        infos = mailbox.messages() if listing is None else listing
        count = recent = unseen = 0
        for info in infos:
            count += 1
            recent += info.recent
            unseen += "\\Seen" not in info.flags
        names = [self.text(item).decode("ascii", "replace").upper() for item in items]
        values = {"MESSAGES": count, "RECENT": recent, "UNSEEN": unseen}
        if "UIDNEXT" in names or "UIDVALIDITY" in names:
            values["UIDNEXT"], values["UIDVALIDITY"] = mailbox.uidnext, mailbox.uidvalidity
        out = []
        for name in names:
            if name not in values:
                raise CommandFailed(f"unknown STATUS item {name}", "BAD")
            out.append(f"{name} {values[name]}")
        self.send(
            b"* STATUS %s (%s)" % (astring(location.public.encode("utf-8")), " ".join(out).encode())
        )
        self.tagged(tag, "OK", "STATUS completed")

    def do_APPEND(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.3.11 with APPENDUID (RFC 4315); needs ``i``."""
        self.arguments(arguments, 2, 4)
        location = self.locate(arguments[0])
        message = arguments[-1]
        # A large message was spooled to disk as it arrived (reader.py).
        if not isinstance(message, (bytes, SpooledMessage)):
            raise CommandFailed("APPEND needs the message as a literal", "BAD")
        flags: list[str] = []
        when: float | None = None
        for extra in arguments[1:-1]:
            if isinstance(extra, list):
                flags = [self.text(flag).decode("utf-8", "replace") for flag in extra]
            else:
                when = self.parse_date_time(self.text(extra).decode("ascii", "replace"))
        if not location.mailbox.exists() and location.local != INBOX:
            raise CommandFailed(f"[TRYCREATE] no mailbox {location.public}")
        rights = self.require(location, "i")
        flags = [flag for flag in flags if self.flag_allowed(flag, rights)]
        mailbox = location.mailbox
        try:
            # In tmp/ now (a spooled message is linked: the spool may go);
            # flushed to disk and given its UID in the thread pool.
            staged = mailbox.stage(message, flags, when)
        except FileNotFoundError:
            # The account (or mailbox) was deleted meanwhile: it stays so.
            raise CommandFailed(f"[NONEXISTENT] no mailbox {location.public}") from None
        # Later commands wait: the tagged OK comes once the message is durable.
        self.busy = True
        committing = self.factory.writer.commit(mailbox, staged)
        committing.addCallbacks(
            self._appended,
            self._append_failed,
            callbackArgs=(tag, location),
            errbackArgs=(tag, location),
        )
        committing.addBoth(lambda _: self._resume())

    def _appended(self, uid: int, tag: str, location: MailboxLocation) -> None:
        """The APPENDed message is on disk: APPENDUID (RFC 4315 §3)."""
        if not self.connected:
            return
        if self.selected is not None:
            # Its own new message is reported at once (RFC 3501 §6.3.11),
            # whichever mailbox it went to (one read of the queue at most).
            self.selected.changed_here()
        self.updates()
        validity = location.mailbox.uidvalidity
        self.tagged(tag, "OK", f"[APPENDUID {validity} {uid}] APPEND completed")

    def _append_failed(self, failure: Failure, tag: str, location: MailboxLocation) -> None:
        """The message could not be stored; nothing of it is in the mailbox."""
        if not self.connected:
            return
        if failure.check(FileNotFoundError):
            self.tagged(tag, "NO", f"[NONEXISTENT] no mailbox {location.public}")
            return
        self.log.failure("IMAP APPEND to {mailbox} failed", failure, mailbox=location.public)
        self.tagged(tag, "NO", "[SERVERBUG] internal error")

    @staticmethod
    def parse_date_time(text: str) -> float:
        """``"17-Jul-1996 02:44:25 -0700"`` as a timestamp."""
        if not _DATE_TIME.match(text):
            raise CommandFailed("invalid date-time", "BAD")
        day, month, year_time = text.strip().split("-", 2)
        try:
            return parsedate_to_datetime(f"{day} {month} {year_time}").timestamp()
        except (TypeError, ValueError):
            raise CommandFailed("invalid date-time", "BAD") from None

    @staticmethod
    def flag_allowed(flag: str, rights: str) -> bool:
        """Whether rights allow setting a flag (\\Seen: s, \\Deleted: d, others w)."""
        lower = flag.lower()
        if lower == "\\seen":
            return "s" in rights
        if lower == "\\deleted":
            return "d" in rights
        if lower == "\\recent":
            return False
        return "w" in rights

    # -- ACL (RFC 4314) ----------------------------------------------------------

    def _acl_target(self, argument: Argument) -> MailboxLocation:
        location = self.locate(argument)
        self.require(location, "")
        if "a" not in self.account.rights(location):
            raise CommandFailed(f"[NOPERM] no right to administer {location.public}")
        return location

    def do_GETACL(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 4314 §3.3."""
        self.arguments(arguments, 1)
        location = self._acl_target(arguments[0])
        entries = {location.owner.name: ALL_RIGHTS}
        entries.update(location.store.acl(location.local))
        parts = [astring(location.public.encode("utf-8"))]
        for identifier, rights in entries.items():
            parts += [astring(identifier.encode("utf-8")), astring(rights.encode("ascii"))]
        self.send(b"* ACL " + b" ".join(parts))
        self.tagged(tag, "OK", "GETACL completed")

    def do_SETACL(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 4314 §3.1: ``+rights`` adds, ``-rights`` removes, else replaces."""
        self.arguments(arguments, 3)
        location = self._acl_target(arguments[0])
        identifier = self.text(arguments[1]).decode("utf-8", "replace")
        change = self.text(arguments[2]).decode("ascii", "replace")
        try:
            identifier = check_identifier(identifier)
            acl = location.store.acl(location.local)
            current = set(acl.get(identifier, ""))
            if change.startswith("+"):
                current |= set(normalise_rights(change[1:]))
            elif change.startswith("-"):
                current -= set(normalise_rights(change[1:]))
            else:
                current = set(normalise_rights(change))
        except ACLError as error:
            raise CommandFailed(str(error), "BAD") from None
        rights = "".join(letter for letter in ALL_RIGHTS if letter in current)
        if rights:
            acl[identifier] = rights
        else:
            acl.pop(identifier, None)
        location.store.set_acl(location.local, acl)
        self.tagged(tag, "OK", "SETACL completed")

    def do_DELETEACL(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 4314 §3.2."""
        self.arguments(arguments, 2)
        location = self._acl_target(arguments[0])
        identifier = self.text(arguments[1]).decode("utf-8", "replace").lower()
        acl = location.store.acl(location.local)
        acl.pop(identifier, None)
        location.store.set_acl(location.local, acl)
        self.tagged(tag, "OK", "DELETEACL completed")

    def do_LISTRIGHTS(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 4314 §3.4: nothing is always granted; each right alone."""
        self.arguments(arguments, 2)
        location = self._acl_target(arguments[0])
        identifier = self.text(arguments[1])
        groups = b" ".join(letter.encode() for letter in ALL_RIGHTS)
        self.send(
            b'* LISTRIGHTS %s %s "" %s'
            % (astring(location.public.encode("utf-8")), astring(identifier), groups)
        )
        self.tagged(tag, "OK", "LISTRIGHTS completed")

    def do_MYRIGHTS(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 4314 §3.5."""
        self.arguments(arguments, 1)
        location = self.locate(arguments[0])
        rights = self.require(location, "")
        self.send(
            b"* MYRIGHTS %s %s"
            % (astring(location.public.encode("utf-8")), astring(rights.encode("ascii")))
        )
        self.tagged(tag, "OK", "MYRIGHTS completed")
