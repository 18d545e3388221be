"""Mailboxes: one folder per mailbox, one file per message.

Layout of a mailbox folder (``<account>.macnt/INBOX.mdir/``)::

    tmp/                              messages being written
    new/<uid>,S=<size>[,N]            delivered, not yet seen by an IMAP
                                      session (they are \\Recent)
    cur/<uid>,S=<size>[,N]:2,<flags>  the others, with their flags
    uids.settings        { UIDValidity = #…; UIDNext = #…; }
    keywords.settings    { Keywords = (kw0, kw1, …); }  letters a, b, …
    cache.index          what FETCH and SEARCH need of each message
                         (:mod:`communigate.store.messagecache`)
    acl.settings         the mailbox's access control list
    <child>.mdir/        sub-mailboxes (hierarchy separator "/")
    .lock                serialises UID and keyword assignment

``,N`` says no line starts with a dot, so POP3 can send the file as it is.
Flags are Maildir letters: D \\Draft, F \\Flagged, R \\Answered, S \\Seen,
T \\Deleted, and ``a``–``z`` for keywords.  The UID, size and flags are in
the file name, so listing a mailbox (SELECT, STATUS, FETCH FLAGS) never
reads message bodies; a flag change is one rename.  The internal date is the
file's modification time.

Delivery (:meth:`Mailbox.commit`, in a thread in the server, several
messages of one mailbox at once, after :meth:`Mailbox.stage`) writes the
message to ``tmp/``, flushes it to disk, takes the next UID under the lock
(recording the new UIDNext before the message appears) and renames the
file into place.  A crash at any point leaves either no
message or a whole one: at worst a UID is skipped and a file is left in
``tmp/`` (removed by :meth:`Mailbox.clean_tmp`).  A message a protocol
spooled as it arrived (:mod:`communigate.store.spool`) is hard-linked into
``tmp/`` instead of written again.

Messages are stored with CRLF line ends, so the size on disk is the size a
client is told (POP3 LIST, IMAP RFC822.SIZE).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, NamedTuple, TypeVar

from communigate.store import settingsformat
from communigate.store.atomic import fsync_directory, read_range, write_atomic
from communigate.store.changes import BUS as CHANGES
from communigate.store.messagecache import (
    MAX_HEADER,
    MessageCache,
    append_records,
    cache_of,
    read_header,
    split_header,
)
from communigate.store.spool import CRLFWriter, SpooledMessage
from communigate.store.spool import to_crlf as to_crlf

INBOX = "INBOX"
MAILBOX_SUFFIX = ".mdir"
_NAME = re.compile(r"(\d+),S=(\d+)(,N)?(?::2,([A-Za-z]*))?\Z")
_TMP_MAX_AGE = 36 * 3600
MAX_KEYWORDS = 26

#: Maildir flag letters and the IMAP system flags they stand for.
SYSTEM_FLAGS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
_LETTER_OF = {flag.lower(): letter for letter, flag in SYSTEM_FLAGS.items()}


#: Makes temporary names unique within this process.
_SEQUENCE = itertools.count()
_T = TypeVar("_T")


class MessageInfo(NamedTuple):
    """A message as listed: UID, size, file, flags (as IMAP names).

    A named tuple with a ``str`` path: listing a 100 000-message mailbox
    builds one per message, and this is the cheapest form."""

    uid: int
    size: int
    path: str
    dot_free: bool = False
    flags: frozenset[str] = frozenset()
    recent: bool = False

    @property
    def internal_date(self) -> float:
        """When the message arrived (the file's modification time)."""
        return os.stat(self.path).st_mtime


class StagedMessage(NamedTuple):
    """A message written to ``tmp/`` by :meth:`Mailbox.stage`, waiting for
    :meth:`Mailbox.commit`."""

    path: str
    size: int
    dot_free: bool
    #: Flag letters for ``cur/``; None for ``new/`` (\\Recent).
    letters: str | None
    #: The message's header, for the cache.
    header: bytes
    #: The internal date to give it (None: when it is written).
    when: float | None
    #: The message, to be written by :meth:`Mailbox.commit` (None when
    #: the file is already there: a linked spool).
    data: bytes | None


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) with ``data``, not yet flushed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _flush(path: str) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def flush_folders(folders: Iterable[str]) -> None:
    """Flush folders whose entries changed to disk (blocking)."""
    for folder in folders:
        fsync_directory(Path(folder))


#: What this process last read of each mailbox's ``uids.settings`` and
#: ``keywords.settings``: path → (the file's identity, the values).  Shared
#: by every :class:`Mailbox` of a folder (a session makes one for each
#: command), so a command that needs them costs one ``stat``.  Every write
#: renames a new file in, so a file with the same identity holds the same
#: values.  Read and written from the reactor and pool threads alike: each
#: entry is replaced whole.
_UIDS_READ: dict[str, tuple[tuple[int, int, int], tuple[int, int]]] = {}
_KEYWORDS_READ: dict[str, tuple[tuple[int, int, int], list[str]]] = {}
#: Folders remembered at most in each; all are forgotten beyond that.
_READ_LIMIT = 20000
#: Messages up to this size are read on the size their name gives (a
#: damaged name cannot make :meth:`Mailbox.read` allocate more).
_SMALL_MESSAGE = 1024 * 1024


def _identity(status: os.stat_result) -> tuple[int, int, int]:
    return (status.st_ino, status.st_mtime_ns, status.st_size)


def _remember(memo: dict[str, _T], path: str, entry: _T) -> None:
    if len(memo) >= _READ_LIMIT:
        memo.clear()
    memo[path] = entry


class Mailbox:
    """One mailbox folder; safe to use from several processes at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._cache: MessageCache | None = None

    @property
    def cache(self) -> MessageCache:
        """What FETCH and SEARCH need of each message (:mod:`.messagecache`)."""
        if self._cache is None:
            self._cache = cache_of(self.path, self.uidvalidity)
        return self._cache

    @classmethod
    def of_account(cls, account_path: Path, name: str = INBOX) -> Mailbox:
        """The mailbox ``name`` (``/``-separated) of an account's folder."""
        folder = Path(account_path)
        for part in name.split("/"):
            folder = folder / f"{part}{MAILBOX_SUFFIX}"
        return cls(folder)

    def exists(self) -> bool:
        """Whether the mailbox has been created."""
        return (self.path / "uids.settings").exists()

    def create(self) -> None:
        """Create the folders and the UID file if they are missing.  The
        account's folder (and a parent mailbox) must exist: a mailbox never
        brings a deleted account back (FileNotFoundError).

        The UID file is made last, so when it is there the rest is: the
        common case (every login, every delivery) costs one ``stat``."""
        if os.path.exists(os.path.join(self.path, "uids.settings")):
            return
        self.path.mkdir(exist_ok=True)
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(exist_ok=True)
        if not (self.path / "uids.settings").exists():
            with self._locked():
                if not (self.path / "uids.settings").exists():
                    self._write_uids(int(time.time()), 1)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the mailbox's lock (FileNotFoundError if its folder is
        gone: a lock never makes a deleted mailbox again)."""
        fd = os.open(
            os.path.join(self.path, ".lock"),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            0o600,
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            # Closing the descriptor releases the lock.
            os.close(fd)

    def _read_uids(self, fresh: bool = False) -> tuple[int, int]:
        """UIDVALIDITY and UIDNEXT; read again only when the file was
        replaced (every write renames a new file in), or always when
        ``fresh`` (under the lock, before new UIDs are given: what is
        remembered is not trusted with the UIDs)."""
        path = os.path.join(self.path, "uids.settings")
        if not fresh:
            try:
                status = os.stat(path)
            except FileNotFoundError:
                return 0, 1
            known = _UIDS_READ.get(path)
            if known is not None and known[0] == _identity(status):
                return known[1]
        try:
            data, status = read_range(path)
        except FileNotFoundError:
            return 0, 1
        values = settingsformat.loads_dictionary(data.decode("utf-8"))
        validity, next_uid = values.get("UIDValidity"), values.get("UIDNext")
        found = (
            validity if isinstance(validity, int) else 0,
            next_uid if isinstance(next_uid, int) else 1,
        )
        _remember(_UIDS_READ, path, (_identity(status), found))
        return found

    def _write_uids(self, validity: int, next_uid: int) -> None:
        text = settingsformat.dumps_dictionary({"UIDValidity": validity, "UIDNext": next_uid})
        path = self.path / "uids.settings"
        write_atomic(path, text.encode("utf-8"))
        # Known here: readers of this process need not read the file again.
        with contextlib.suppress(OSError):
            _remember(_UIDS_READ, str(path), (_identity(os.stat(path)), (validity, next_uid)))

    @property
    def uidvalidity(self) -> int:
        """The UIDVALIDITY of the mailbox (RFC 3501 §2.3.1.1)."""
        return self._read_uids()[0]

    @property
    def uidnext(self) -> int:
        """The UID the next message will get."""
        return self._read_uids()[1]

    # -- keywords ----------------------------------------------------------

    def keywords(self, fresh: bool = False) -> list[str]:
        """Keyword names by letter index (a = 0); read again only when the
        file was replaced, or always when ``fresh`` (under the lock, before
        a keyword is added)."""
        path = os.path.join(self.path, "keywords.settings")
        if not fresh:
            try:
                status = os.stat(path)
            except FileNotFoundError:
                return []
            known = _KEYWORDS_READ.get(path)
            if known is not None and known[0] == _identity(status):
                return list(known[1])
        try:
            data, status = read_range(path)
        except FileNotFoundError:
            return []
        values = settingsformat.loads_dictionary(data.decode("utf-8"))
        known = (_identity(status), settingsformat.as_string_list(values.get("Keywords")))
        _remember(_KEYWORDS_READ, path, known)
        return list(known[1])

    def _letters(self, flags: Iterable[str]) -> str:
        return self._letters_and_keywords(flags)[0]

    def _letters_and_keywords(self, flags: Iterable[str]) -> tuple[str, list[str]]:
        """The flag letters of ``flags`` (new keywords added), and the
        keyword list they were taken from."""
        letters = set()
        keywords: list[str] | None = None
        for flag in flags:
            letter = _LETTER_OF.get(flag.lower())
            if letter:
                letters.add(letter)
            elif not flag.startswith("\\"):
                if keywords is None:
                    keywords = self.keywords()
                if flag not in keywords:
                    keywords = self._add_keyword(flag)
                if flag in keywords:
                    letters.add(chr(ord("a") + keywords.index(flag)))
        return "".join(sorted(letters)), keywords or []

    def _add_keyword(self, keyword: str) -> list[str]:
        with self._locked():
            keywords = self.keywords(fresh=True)
            if keyword not in keywords and len(keywords) < MAX_KEYWORDS:
                keywords.append(keyword)
                text = settingsformat.dumps_dictionary({"Keywords": list(keywords)})
                path = self.path / "keywords.settings"
                write_atomic(path, text.encode("utf-8"))
                with contextlib.suppress(OSError):
                    _remember(_KEYWORDS_READ, str(path), (_identity(os.stat(path)), list(keywords)))
            return keywords

    def can_add_keywords(self) -> bool:
        """Whether a new keyword still fits (PERMANENTFLAGS ``\\*``)."""
        return len(self.keywords()) < MAX_KEYWORDS

    # -- messages ----------------------------------------------------------

    def stage(
        self,
        message: bytes | SpooledMessage,
        flags: Iterable[str] | None = None,
        when: float | None = None,
    ) -> StagedMessage:
        """Make a new message ready for :meth:`commit`, which delivers it.
        ``flags`` None makes it \\Recent (delivery); a list is APPEND's.

        A spooled message is linked into ``tmp/`` now, so the spool may be
        discarded once this returns; bytes are written by :meth:`commit`
        (in a thread in the server)."""
        self.create()
        temporary = self.path / "tmp" / f"{time.time_ns()}.{os.getpid()}.{next(_SEQUENCE)}"
        letters = self._letters(flags) if flags is not None else None
        if not isinstance(message, SpooledMessage):
            lines = CRLFWriter()
            data = lines.feed(message) + lines.finish()
            return StagedMessage(
                str(temporary),
                lines.size,
                lines.dot_free,
                letters,
                split_header(data),
                when,
                data,
            )
        # A spooled message is already CRLF and on disk: link it in.
        message.link(temporary)
        try:
            header = read_header(temporary)
        except OSError:
            temporary.unlink(missing_ok=True)
            raise
        return StagedMessage(
            str(temporary), message.size, message.dot_free, letters, header, when, None
        )

    def commit(self, staged: list[StagedMessage]) -> list[int | OSError]:
        """Deliver staged messages together; each one's UID, or the error
        that stopped it.  Blocks on disk flushes: a server calls it in a
        thread (see :mod:`communigate.portal.durable`).

        Each file is flushed, then, under the lock, the UIDs are taken
        (the new UIDNext recorded durably before any message appears), the
        files renamed into place and each target folder flushed once: a
        crash leaves every message either whole or absent."""
        results: list[int | OSError] = []
        ready: list[tuple[int, StagedMessage, float]] = []
        for index, message in enumerate(staged):
            try:
                if message.data is not None:
                    _write_new(Path(message.path), message.data)
                if message.when is not None:
                    os.utime(message.path, (message.when, message.when))
                stamp = os.stat(message.path).st_mtime
                _flush(message.path)
            except OSError as error:
                Path(message.path).unlink(missing_ok=True)
                results.append(error)
                continue
            results.append(0)
            ready.append((index, message, stamp))
        if not ready:
            return results
        folders: set[Path] = set()
        cached: list[tuple[int, str, bytes]] = []
        try:
            with self._locked():
                validity, uid = self._read_uids(fresh=True)
                validity = validity or int(time.time())
                self._write_uids(validity, uid + len(ready))
                for index, message, stamp in ready:
                    base = f"{uid},S={message.size}{',N' if message.dot_free else ''}"
                    if message.letters is None:
                        target = self.path / "new" / base
                    else:
                        target = self.path / "cur" / f"{base}:2,{message.letters}"
                    try:
                        os.rename(message.path, target)
                    except OSError as error:
                        Path(message.path).unlink(missing_ok=True)
                        results[index] = error
                    else:
                        folders.add(target.parent)
                        results[index] = uid
                        if len(message.header) <= MAX_HEADER:
                            cached.append((uid, "header", message.header))
                        cached.append((uid, "date", b"%r" % stamp))
                    uid += 1
                if cached:
                    try:
                        append_records(self.path, validity, cached)
                    except OSError:
                        # The cache is filled again on first use.
                        pass
        except OSError as error:
            for index, message, _ in ready:
                Path(message.path).unlink(missing_ok=True)
                results[index] = error
            return results
        for folder in folders:
            fsync_directory(folder)
        if folders:
            CHANGES.publish(self.path)
        return results

    def discard(self, staged: Iterable[StagedMessage]) -> None:
        """Drop staged messages that will not be committed."""
        for message in staged:
            Path(message.path).unlink(missing_ok=True)

    def _store(
        self, message: bytes | SpooledMessage, flags: Iterable[str] | None, when: float | None
    ) -> int:
        """Stage and commit one message at once (blocking)."""
        result = self.commit([self.stage(message, flags, when)])[0]
        if isinstance(result, OSError):
            raise result
        return result

    def deliver(self, message: bytes | SpooledMessage) -> int:
        """Store a whole new (\\Recent) message and return its UID; a spooled
        one is linked in (the caller discards the spool afterwards)."""
        return self._store(message, None, None)

    def append(
        self,
        message: bytes | SpooledMessage,
        flags: Iterable[str] = (),
        internal_date: float | None = None,
    ) -> int:
        """Store a message with flags and a date (IMAP APPEND); its UID.  A
        spooled message is linked in: the date applies to the spool file too,
        so a spool is appended once."""
        return self._store(message, flags, internal_date)

    def _flags_of(self, letters: str, keywords: list[str]) -> frozenset[str]:
        flags = set()
        for letter in letters:
            if letter in SYSTEM_FLAGS:
                flags.add(SYSTEM_FLAGS[letter])
            elif letter.islower() and ord(letter) - ord("a") < len(keywords):
                flags.add(keywords[ord(letter) - ord("a")])
        return frozenset(flags)

    def namer(self) -> Callable[[str, str], MessageInfo | None]:
        """A parser of message file names: ``(sub, name)`` (``sub`` is
        ``new`` or ``cur``) to the message's listing, or None for a name that
        is no message.  Flag sets are shared between messages; the keyword
        list is read again when a letter beyond it appears."""
        keywords = self.keywords()
        flag_sets: dict[str, frozenset[str]] = {}
        match_name = _NAME.match
        folders = {sub: os.path.join(self.path, sub) for sub in ("new", "cur")}

        def parse(sub: str, name: str) -> MessageInfo | None:
            nonlocal keywords
            match = match_name(name)
            if not match:
                return None
            uid, size, dot_free, letters = match.groups()
            letters = letters or ""
            flags = flag_sets.get(letters)
            if flags is None:
                if any(
                    letter.islower() and ord(letter) - 97 >= len(keywords) for letter in letters
                ):
                    keywords = self.keywords()
                flags = flag_sets[letters] = self._flags_of(letters, keywords)
            return MessageInfo(
                int(uid), int(size), f"{folders[sub]}/{name}", bool(dot_free), flags, sub == "new"
            )

        return parse

    def messages(self) -> list[MessageInfo]:
        """The messages in UID order, read from file names only."""
        found = []
        parse = self.namer()
        for sub in ("new", "cur"):
            try:
                names = os.listdir(os.path.join(self.path, sub))
            except FileNotFoundError:
                continue
            for name in names:
                info = parse(sub, name)
                if info is not None:
                    found.append(info)
        found.sort()
        return found

    def change_stamp(self) -> tuple[int, ...]:
        """Changes whenever a message is added, removed or re-flagged."""
        stamp = []
        for sub in ("new", "cur"):
            try:
                status = os.stat(self.path / sub)
            except FileNotFoundError:
                stamp += [0, 0]
                continue
            stamp += [status.st_mtime_ns, status.st_nlink]
        return tuple(stamp)

    def open(self, info: MessageInfo) -> BinaryIO:
        """The message's bytes, for reading."""
        return open(info.path, "rb")

    def read(self, info: MessageInfo) -> bytes:
        """The whole message: three system calls for one that has the size
        its name gives (as every message written here has) up to
        :data:`_SMALL_MESSAGE`; a larger one, or one of another size
        (changed by hand), is read as its file's size says."""
        if info.size <= _SMALL_MESSAGE:
            fd = os.open(info.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = os.read(fd, info.size + 1)
            finally:
                os.close(fd)
            if len(data) == info.size:
                return data
        with open(info.path, "rb") as handle:
            return handle.read()

    def internal_date(self, info: MessageInfo) -> float:
        """When a message arrived: the date the cache took at delivery (the
        file's modification time then), else the file's (then cached)."""
        stamp = self.cache.value(info.uid, "date", lambda: b"%r" % info.internal_date)
        try:
            return float(stamp)
        except ValueError:
            return info.internal_date

    def set_flags(self, info: MessageInfo, flags: Iterable[str]) -> MessageInfo | None:
        """Give a message exactly these flags (one rename); None if another
        session removed it."""
        wanted = frozenset(flags)
        try:
            letters, keywords = self._letters_and_keywords(wanted)
        except FileNotFoundError:
            # A new keyword, and the mailbox deleted meanwhile.
            return None
        stem = os.path.basename(info.path).split(":", 1)[0]
        target = f"{self.path}/cur/{stem}:2,{letters}"
        if target != info.path:
            if not str(info.path).startswith(f"{self.path}/"):
                # Expunged by another session, kept open only to be read.
                return None
            try:
                os.rename(info.path, target)
            except (FileNotFoundError, NotADirectoryError):
                return None
            CHANGES.publish(self.path)
        known = {flag for flag in wanted if flag.startswith("\\") or flag in keywords}
        return MessageInfo(info.uid, info.size, target, info.dot_free, frozenset(known), False)

    def take_recent(self, infos: Iterable[MessageInfo]) -> set[int]:
        """Move messages out of ``new/``; the UIDs this session got first
        (they are \\Recent for it alone, RFC 3501 §2.3.2)."""
        taken = set()
        for info in infos:
            if info.recent:
                moved = self.set_flags(info, info.flags)
                if moved is not None:
                    taken.add(info.uid)
        return taken

    def remove(self, infos: Iterable[MessageInfo], flush: bool = True) -> list[str]:
        """Expunge messages by UID.  A message another session re-flagged
        (renamed) is found again by its UID; one already removed is fine.

        The folders the files left are flushed to disk (so an expunge
        survives a crash), or, with ``flush`` False, returned for the caller
        to flush off the reactor thread (:func:`flush_folders`)."""
        folders = set()
        moved = set()
        expunged = []
        for info in infos:
            expunged.append(info.uid)
            try:
                os.unlink(info.path)
            except FileNotFoundError:
                moved.add(info.uid)
                continue
            folders.add(os.path.dirname(info.path))
        if moved:
            for current in self.messages():
                if current.uid in moved:
                    try:
                        os.unlink(current.path)
                    except FileNotFoundError:
                        continue
                    folders.add(os.path.dirname(current.path))
        if flush:
            flush_folders(folders)
        if folders:
            CHANGES.publish(self.path)
        self.cache.forget(expunged)
        return [] if flush else sorted(folders)

    def clean_tmp(self, now: float | None = None) -> None:
        """Remove files left in ``tmp/`` by deliveries that crashed."""
        limit = (now if now is not None else time.time()) - _TMP_MAX_AGE
        try:
            entries = list(os.scandir(self.path / "tmp"))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.stat().st_mtime < limit:
                os.unlink(entry.path)
