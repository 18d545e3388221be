"""File Storage as an anonymous web visitor sees it (spec §9).

An account's File Storage is its personal web site: anyone may read the
files of a directory that is not private, over HTTP, even where logins from
non-client addresses are prohibited (the Account Access chapter).  This view
serves only ``~name`` and ``~name@domain`` paths (a bare name belongs to
the domain the request's Host header named), reads with the rights of an
anonymous reader (``r`` unless private) and can change nothing.  The owner
must have the ``WebSite`` service, as for TFTP.  Every refusal that could
tell which accounts exist is :attr:`~.filesession.Problem.NOT_FOUND`.

A web site is read by many visitors at once: where a :class:`Recent` is
given, which storage a ``~name`` leads to and the rights of a folder are
remembered for a moment (as the directory's own settings files are, half a
second), so a burst of requests does not read the same settings for each;
so is the real path of a storage's root folder (every file's real path is
still found, and must lie inside it, on each request).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, cast

from communigate.portal.accounts import access_modes
from communigate.portal.filesession import FileError, FileSession, Problem, Segments
from communigate.recent import MAX_ENTRIES, Recent
from communigate.store.acl import Identity
from communigate.store.directory import DirectoryError, IDirectory
from communigate.store.filestorage import FileStorage, normalise


class SiteStorage(FileStorage):
    """A File Storage as a web site's visitors read it.

    The object lives :data:`~communigate.recent.RECENT` seconds (see :class:`AnonymousFiles`).
    The real path of its root is found once; a path inside is then looked
    up from that real root, each of its components checked not to be a
    symbolic link (one ``lstat`` each, where a full real-path search costs
    one per component from ``/``).  The folders found to be real ones are
    remembered for the object's life, so a burst of requests for the files
    of one folder checks just each file.  Where a component is a link, or
    the real root is no longer a folder (moved, replaced by a link), the
    full check of :meth:`FileStorage.local` decides.  The path returned is
    the real one that was checked.
    """

    def __init__(self, account_path: Path, owner: Identity) -> None:
        super().__init__(account_path, owner)
        self._real_root = os.path.realpath(self.root)
        #: Real folders below the root (relative paths; "" is the root).
        self._folders: set[str] = set()

    def local(self, path: str) -> Path:
        """The file system path of a storage path, never outside the root."""
        relative = normalise(path).lstrip("/")
        folder = relative.rpartition("/")[0]
        if folder in self._folders:
            return Path(self._checked(os.path.join(self._real_root, relative), path))
        if not self._root_is_folder():
            # The root is gone or was replaced by a link: look afresh.
            return super().local(path)
        parts = relative.split("/") if relative else []
        target = self._real_root
        for index, part in enumerate(parts):
            target = os.path.join(target, part)
            try:
                mode = os.lstat(target).st_mode
            except OSError:
                # Missing (or under a file): nothing deeper exists either.
                return Path(os.path.join(target, *parts[index + 1 :]))
            if stat.S_ISLNK(mode):
                return super().local(path)
            if stat.S_ISDIR(mode) and index < len(parts) - 1 and len(self._folders) < MAX_ENTRIES:
                self._folders.add("/".join(parts[: index + 1]))
        return Path(target)

    def _root_is_folder(self) -> bool:
        """Whether the root is (still) a real folder; remembered if so."""
        try:
            real = stat.S_ISDIR(os.lstat(self._real_root).st_mode)
        except OSError:
            return False
        if real:
            self._folders.add("")
        return real

    def _checked(self, target: str, path: str) -> str:
        """``target`` in a known real folder, unless it is itself a link."""
        try:
            if stat.S_ISLNK(os.lstat(target).st_mode):
                return str(super().local(path))
        except OSError:
            pass
        return target


class AnonymousFiles(FileSession):
    """A read-only :class:`FileSession` without an account."""

    def __init__(self, directory: IDirectory, domain: str, recent: Recent | None = None) -> None:
        # No own storage and no groups: nothing of FileSession's account
        # state exists for a visitor.
        self.directory = directory
        self.identity = Identity(domain, "")
        # Never the storage a listing is in: a visitor has none of its own.
        self.own = cast(FileStorage, None)
        self._recent = recent

    def _remembered(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        return compute() if self._recent is None else self._recent.get(key, compute)

    def _storage(self, path: Segments) -> tuple[FileStorage, Segments]:
        """Only another account's storage, and only one shared as a web site."""
        if not path or not path[0].startswith("~"):
            raise FileError(Problem.NOT_FOUND)
        key = ("storage", path[0], self.identity.domain)
        storage = self._remembered(key, lambda: self._shared(path[0]))
        if storage is None:
            raise FileError(Problem.NOT_FOUND)
        return storage, path[1:]

    def _shared(self, top: str) -> FileStorage | None:
        try:
            storage, _ = super()._storage((top,))
        except FileError:
            return None
        owner = storage.owner
        try:
            settings = self.directory.account_settings(owner.domain, owner.name)
        except DirectoryError:
            return None
        modes = access_modes(settings.get("AccessModes", "All"))
        if modes is not None and "website" not in modes:
            return None
        return SiteStorage(storage.account_path, owner)

    def _rights(self, storage: FileStorage, folder: str) -> str:
        """An anonymous reader's: ``r`` where nothing above is private."""
        key = ("rights", storage.root, folder)
        rights: str = self._remembered(key, lambda: storage.rights(folder, None))
        return rights

    def readable_folder(self, path: Segments) -> str | None:
        """The file system path of the folder ``path`` if a visitor may
        read the files in it (``r`` there, and it is a folder), else None.
        A file in it is the visitor's to read when it is a regular file
        and not a link (the check :meth:`SiteStorage.local` makes)."""
        try:
            place = self._place(path, "r", itself=True)
        except FileError:
            return None
        local = str(place.local)
        try:
            if not stat.S_ISDIR(os.stat(local).st_mode):
                return None
        except OSError:
            return None
        return local
