"""File Storage as a logged-in account sees it: the avatar of FTP (and of
any protocol that moves files for a user).

Paths are tuples of segments.  ``()`` is the top of the account's own
storage; a first segment ``~name`` or ``~name@domain`` is the top of another
account's storage, reachable as that account's per-directory rights allow
(``r`` to list and download, ``w`` to change; spec §9).

One failure for everything that could name another account: an unknown
account, an account that granted nothing, and a missing file all give
:attr:`Problem.NOT_FOUND` with the same text, so names cannot be harvested.

Methods are synchronous and cheap (a few ``stat`` calls); the blocking parts
of an upload (:class:`~communigate.store.uploads.Upload`'s ``prepare`` and
``commit``) are left to the caller's thread pool.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from zope.interface import Attribute, Interface, implementer

from communigate.portal.avatars import IMAPAccount
from communigate.portal.sessions import LiveSession
from communigate.store.acl import Identity
from communigate.store.directory import (
    DirectoryError,
    IDirectory,
    ObjectKind,
    check_domain_name,
    check_object_name,
)
from communigate.store.filestorage import FileStorage, StorageError, parse_size
from communigate.store.uploads import Upload

Segments = tuple[str, ...]


class Problem(enum.Enum):
    """Why a file operation failed, for each protocol to word its way."""

    NOT_FOUND = "no such file or directory"
    DENIED = "permission denied"
    EXISTS = "file exists"
    NOT_EMPTY = "directory not empty"
    IS_DIRECTORY = "is a directory"
    NOT_DIRECTORY = "not a directory"
    INVALID = "invalid name"
    NO_SPACE = "no space left on the server"


class FileError(Exception):
    """A refused file operation."""

    def __init__(self, problem: Problem, text: str | None = None) -> None:
        super().__init__(text or problem.value)
        self.problem = problem
        self.text = text or problem.value


_ERRNO = {
    errno.ENOENT: Problem.NOT_FOUND,
    errno.EEXIST: Problem.EXISTS,
    errno.ENOTEMPTY: Problem.NOT_EMPTY,
    errno.EISDIR: Problem.IS_DIRECTORY,
    errno.ENOTDIR: Problem.NOT_DIRECTORY,
    errno.ENAMETOOLONG: Problem.INVALID,
    errno.EINVAL: Problem.INVALID,
    errno.EILSEQ: Problem.INVALID,
    errno.ENOSPC: Problem.NO_SPACE,
    errno.EDQUOT: Problem.NO_SPACE,
}


def from_os_error(error: OSError) -> FileError:
    """The problem an OSError means (anything unexpected: DENIED)."""
    return FileError(_ERRNO.get(error.errno or 0, Problem.DENIED))


def _open_without_waiting(path: str, flags: int) -> int:
    """Open for ``open()`` without waiting for a writer: a FIFO placed in
    a File Storage would otherwise hold the caller (the reactor) until one
    came; it is then found not to be a regular file."""
    return os.open(path, flags | os.O_NONBLOCK)


def _kind(local: Path) -> str | None:
    """``"dir"``, ``"file"`` (anything else) or None when nothing is there;
    FileError for a name the file system refuses (too long...)."""
    try:
        mode = local.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise from_os_error(error) from None
    return "dir" if (mode & 0o170000) == 0o040000 else "file"


@dataclass(frozen=True)
class Entry:
    """One file or directory in a listing."""

    name: str
    directory: bool
    size: int
    modified: float


def _entry(name: str, stat: os.stat_result) -> Entry:
    directory = (stat.st_mode & 0o170000) == 0o040000
    return Entry(name, directory, 0 if directory else stat.st_size, stat.st_mtime)


@dataclass(frozen=True)
class Place:
    """Where a path lands: its storage, storage path and file system path."""

    storage: FileStorage
    inner: str
    local: Path


class IFileSession(Interface):
    """An account's File Storage, for a logged-in session."""

    identity = Attribute("The Identity of the logged-in account.")

    def check_directory(path: Segments) -> None:
        """Raise FileError unless ``path`` is a directory the account may read."""

    def listing(path: Segments) -> list[Entry]:
        """The entries of a directory (or the one entry of a file)."""

    def entry(path: Segments) -> Entry:
        """Facts of one file or directory."""

    def make_directory(path: Segments) -> None:
        """Create a directory."""

    def remove_directory(path: Segments) -> None:
        """Remove an empty directory."""

    def remove_file(path: Segments) -> None:
        """Delete a file."""

    def rename(source: Segments, target: Segments) -> None:
        """Rename within one storage."""

    def open_download(path: Segments) -> tuple[BinaryIO, int]:
        """An open file and its size."""

    def open_upload(path: Segments, offset: int = 0, append: bool = False) -> Upload:
        """An upload (not yet prepared) that will replace or extend a file."""


@implementer(IFileSession)
class FileSession(LiveSession):
    """The File Storage view of one logged-in account."""

    def __init__(self, directory: IDirectory, domain: str, name: str) -> None:
        self.directory = directory
        self.identity = Identity(domain, name)
        self._groups = IMAPAccount(directory, domain, name)
        self.own = FileStorage(directory.account_path(domain, name), self.identity)
        self.own.create()

    # -- locating ----------------------------------------------------------------

    def _storage(self, path: Segments) -> tuple[FileStorage, Segments]:
        if not path or not path[0].startswith("~"):
            return self.own, path
        owner, _, domain = path[0][1:].lower().partition("@")
        try:
            check_object_name(owner)
            if domain:
                check_domain_name(domain)
        except DirectoryError:
            raise FileError(Problem.NOT_FOUND) from None
        record = self.directory.domain(domain or self.identity.domain)
        found = self.directory.find_object(record.name, owner) if record else None
        if record is None or found is None or found.kind is not ObjectKind.ACCOUNT:
            raise FileError(Problem.NOT_FOUND)
        storage = FileStorage(
            self.directory.account_path(record.name, found.name), Identity(record.name, found.name)
        )
        return storage, path[1:]

    def _rights(self, storage: FileStorage, folder: str) -> str:
        return storage.rights(folder, self.identity, self._groups.in_group)

    def _place(self, path: Segments, right: str, itself: bool = False) -> Place:
        """Locate ``path`` and check ``right`` on the directory holding it
        (``itself``: on the directory ``path`` names)."""
        storage, inner = self._storage(path)
        try:
            local = storage.local("/".join(inner))
        except StorageError:
            raise FileError(Problem.NOT_FOUND) from None
        folder = "/" + "/".join(inner if itself else inner[:-1])
        rights = self._rights(storage, folder)
        if right not in rights:
            # Without "r" nothing there may be seen: the same answer as an
            # unknown account or a missing file.
            raise FileError(Problem.NOT_FOUND if "r" not in rights else Problem.DENIED)
        return Place(storage, "/" + "/".join(inner), local)

    @staticmethod
    def _stat(local: Path) -> os.stat_result:
        try:
            return local.stat()
        except OSError as error:
            raise from_os_error(error) from None

    # -- reading -------------------------------------------------------------------

    def check_directory(self, path: Segments) -> None:
        """CWD: a directory with ``r``."""
        place = self._place(path, "r", itself=True)
        kind = _kind(place.local)
        if kind != "dir":
            raise FileError(Problem.NOT_FOUND if kind is None else Problem.NOT_DIRECTORY)

    def listing(self, path: Segments) -> list[Entry]:
        """A directory's entries (``r`` on it), or a file's own entry."""
        storage, inner = self._storage(path)
        try:
            local = storage.local("/".join(inner))
        except StorageError:
            raise FileError(Problem.NOT_FOUND) from None
        if _kind(local) == "dir":
            place = self._place(path, "r", itself=True)
            if place.storage is self.own and not inner:
                storage.create()
            entries = []
            try:
                with os.scandir(place.local) as scan:
                    for item in scan:
                        try:
                            entries.append(_entry(item.name, item.stat()))
                        except OSError:
                            continue
            except OSError as error:
                raise from_os_error(error) from None
            return sorted(entries, key=lambda entry: entry.name)
        return [self.entry(path)]

    def entry(self, path: Segments) -> Entry:
        """Facts of a file or directory (``r`` on its directory)."""
        top = not path or (len(path) == 1 and path[0].startswith("~"))
        place = self._place(path, "r", itself=top)
        return _entry(path[-1] if path else "/", self._stat(place.local))

    def open_download(self, path: Segments) -> tuple[BinaryIO, int]:
        """RETR: ``r`` on the file's directory; a regular file."""
        place = self._place(path, "r")
        try:
            handle = open(place.local, "rb", opener=_open_without_waiting)
        except OSError as error:
            raise from_os_error(error) from None
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            handle.close()
            # A FIFO, a device, a socket: nothing to download.
            directory = stat.S_ISDIR(status.st_mode)
            raise FileError(Problem.IS_DIRECTORY if directory else Problem.DENIED)
        return handle, status.st_size

    # -- changing ----------------------------------------------------------------------

    def _changeable(self, path: Segments) -> Place:
        place = self._place(path, "w")
        if place.inner == "/":
            raise FileError(Problem.DENIED, "the top of a File Storage cannot be changed")
        return place

    def make_directory(self, path: Segments) -> None:
        """MKD: ``w`` where it is made."""
        place = self._changeable(path)
        try:
            place.local.mkdir()
        except OSError as error:
            raise from_os_error(error) from None

    def remove_directory(self, path: Segments) -> None:
        """RMD: an empty directory, ``w`` where it is."""
        place = self._changeable(path)
        try:
            place.local.rmdir()
        except OSError as error:
            raise from_os_error(error) from None

    def remove_file(self, path: Segments) -> None:
        """DELE: a file, ``w`` where it is."""
        place = self._changeable(path)
        if _kind(place.local) == "dir":
            raise FileError(Problem.IS_DIRECTORY)
        try:
            place.local.unlink()
        except OSError as error:
            raise from_os_error(error) from None

    def rename(self, source: Segments, target: Segments) -> None:
        """RNFR/RNTO within one storage: ``r`` and ``w`` where the source
        is, ``w`` where it goes.  A directory takes its privacy and rights
        entries along, so renaming never exposes what they closed."""
        old = self._changeable(source)
        self._place(source, "r")
        new = self._changeable(target)
        if old.storage.root != new.storage.root:
            raise FileError(Problem.DENIED, "files cannot move between storages")
        if not os.path.lexists(old.local):
            raise FileError(Problem.NOT_FOUND)
        moving_folder = _kind(old.local) == "dir"
        try:
            os.rename(old.local, new.local)
        except OSError as error:
            raise from_os_error(error) from None
        if moving_folder:
            old.storage.move_access(old.inner, new.inner)

    def open_upload(self, path: Segments, offset: int = 0, append: bool = False) -> Upload:
        """STOR (from a REST offset) or APPE: ``w`` where the file is; the
        target's folder must exist and the target must not be a folder."""
        place = self._changeable(path)
        local = place.local
        kind = _kind(local)
        if kind == "dir":
            raise FileError(Problem.IS_DIRECTORY)
        if _kind(local.parent) != "dir":
            raise FileError(Problem.NOT_FOUND)
        existing = local.stat().st_size if kind == "file" else 0
        keep = existing if append else min(offset, existing)
        storage = place.storage
        owner = storage.owner
        settings = self.directory.account_settings(owner.domain, owner.name)
        try:
            quota = parse_size(settings.get("MaxWebSize"))
        except StorageError:
            quota = None
        if quota is None:
            return Upload(storage.account_path, local, keep)

        def limit() -> int:
            # The new file replaces the old one: its bytes are not counted.
            return max(0, quota - storage.usage() + existing)

        return Upload(storage.account_path, local, keep, limit)
