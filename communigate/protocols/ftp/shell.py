"""The FTP view of File Storage: an :class:`IFTPShell` over the account's own
storage and, as their rights allow, other accounts' (``~name/``,
``~name@domain/``).

File operations are Twisted's :class:`~twisted.protocols.ftp.FTPShell`
rooted at the right storage, after the rights check (``r`` to list and
download, ``w`` to change).  Reading supports a restart offset (REST) and
uses ``sendfile`` on plain TCP data connections; writing supports REST and
APPE, goes to a temporary file renamed into place when the upload completes,
and stops at the account's ``MaxWebSize`` with the FTP "exceeded storage
allocation" error.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.protocols import ftp
from twisted.python.filepath import FilePath
from zope.interface import implementer

from communigate.portal.acl import Identity
from communigate.portal.avatars import IMAPAccount
from communigate.protocols.ftp.transfer import FileReader, FileWriter
from communigate.store.directory import IDirectory, ObjectKind
from communigate.store.filestorage import FileStorage, StorageError, parse_size


class QuotaExceeded(ftp.FTPCmdError):
    """RFC 959 552: exceeded storage allocation."""

    errorCode = ftp.EXCEEDED_STORAGE_ALLOC


@implementer(ftp.IFTPShell)
class StorageShell:
    """File Storage of one logged-in account, for FTP."""

    def __init__(self, directory: IDirectory, domain: str, name: str) -> None:
        self.directory = directory
        self.identity = Identity(domain, name)
        self.account = IMAPAccount(directory, domain, name)
        self.own = FileStorage(directory.account_path(domain, name), self.identity)
        self.own.create()
        self.restart = 0
        self.append = False

    # -- locating --------------------------------------------------------------

    def _locate(self, path: Sequence[str]) -> tuple[FileStorage, list[str], str]:
        """Storage, segments inside it, and the account's rights on the
        directory holding the last segment."""
        segments = list(path)
        storage = self.own
        if segments and segments[0].startswith("~"):
            owner, _, domain = segments.pop(0)[1:].lower().partition("@")
            record = self.directory.domain(domain or self.identity.domain)
            found = self.directory.find_object(record.name, owner) if record else None
            if record is None or found is None or found.kind is not ObjectKind.ACCOUNT:
                raise ftp.FileNotFoundError("/".join(path))
            storage = FileStorage(
                self.directory.account_path(record.name, found.name),
                Identity(record.name, found.name),
            )
        folder = "/" + "/".join(segments[:-1])
        try:
            storage.local("/".join(segments))
        except StorageError:
            raise ftp.PermissionDeniedError("/".join(path)) from None
        return storage, segments, storage.rights(folder, self.identity, self.account.in_group)

    def _allowed(
        self, path: Sequence[str], right: str, whole: bool = False
    ) -> tuple[FileStorage, list[str]]:
        """Raise PermissionDenied unless ``right`` is held (``whole``: on
        the directory itself, for listing)."""
        storage, segments, rights = self._locate(path)
        if whole:
            rights = storage.rights("/" + "/".join(segments), self.identity, self.account.in_group)
        if right not in rights:
            raise ftp.PermissionDeniedError("/".join(path))
        return storage, segments

    @staticmethod
    def _shell(storage: FileStorage) -> ftp.FTPShell:
        storage.create()
        return ftp.FTPShell(FilePath(str(storage.root)))

    def _run(self, path: Sequence[str], right: str, action: Any, whole: bool = False) -> Any:
        try:
            storage, segments = self._allowed(path, right, whole)
        except ftp.FTPCmdError:
            return fail()
        return action(self._shell(storage), segments)

    # -- IFTPShell -------------------------------------------------------------

    def makeDirectory(self, path: Sequence[str]) -> Deferred[None]:
        """MKD needs ``w`` where the directory is made."""
        return self._run(path, "w", lambda shell, seg: shell.makeDirectory(seg))

    def removeDirectory(self, path: Sequence[str]) -> Deferred[None]:
        """RMD needs ``w``."""
        return self._run(path, "w", lambda shell, seg: shell.removeDirectory(seg))

    def removeFile(self, path: Sequence[str]) -> Deferred[None]:
        """DELE needs ``w``."""
        return self._run(path, "w", lambda shell, seg: shell.removeFile(seg))

    def rename(self, fromPath: Sequence[str], toPath: Sequence[str]) -> Deferred[None]:
        """RNFR/RNTO within one storage, ``w`` on both sides."""
        try:
            source, old = self._allowed(fromPath, "w")
            target, new = self._allowed(toPath, "w")
        except ftp.FTPCmdError:
            return fail()
        if source.root != target.root:
            return fail(ftp.PermissionDeniedError("cannot move between storages"))
        return self._shell(source).rename(old, new)

    def access(self, path: Sequence[str]) -> Deferred[None]:
        """CWD: the directory must be readable."""
        return self._run(path, "r", lambda shell, seg: shell.access(seg), whole=True)

    def stat(self, path: Sequence[str], keys: Sequence[str] = ()) -> Deferred[list[Any]]:
        """SIZE, MDTM, MLST."""
        return self._run(path, "r", lambda shell, seg: shell.stat(seg, keys))

    def list(self, path: Sequence[str], keys: Sequence[str] = ()) -> Deferred[list[Any]]:
        """LIST, NLST, MLSD: the directory must be readable."""
        return self._run(path, "r", lambda shell, seg: shell.list(seg, keys), whole=True)

    def openForReading(self, path: Sequence[str]) -> Deferred[Any]:
        """RETR from the REST offset."""
        offset, self.restart = self.restart, 0
        try:
            storage, segments = self._allowed(path, "r")
            local = storage.local("/".join(segments))
        except (ftp.FTPCmdError, StorageError):
            return fail(ftp.PermissionDeniedError("/".join(path)))
        if local.is_dir():
            return fail(ftp.IsADirectoryError("/".join(path)))
        try:
            handle = open(local, "rb")
        except FileNotFoundError:
            return fail(ftp.FileNotFoundError("/".join(path)))
        return succeed(FileReader(handle, offset))

    def openForWriting(self, path: Sequence[str]) -> Deferred[Any]:
        """STOR (from the REST offset) or APPE."""
        offset, self.restart = self.restart, 0
        append, self.append = self.append, False
        try:
            storage, segments = self._allowed(path, "w")
            local = storage.local("/".join(segments))
        except (ftp.FTPCmdError, StorageError):
            return fail(ftp.PermissionDeniedError("/".join(path)))
        if local.is_dir() or not local.parent.is_dir():
            return fail(ftp.FileNotFoundError("/".join(path)))
        owner = storage.owner
        settings = self.directory.account_settings(owner.domain, owner.name)
        quota = parse_size(settings.get("MaxWebSize"))
        existing = local.stat().st_size if local.is_file() else 0
        limit = None if quota is None else max(0, quota - storage.usage() + existing)
        temporary = local.with_name(f".{local.name}.{secrets.token_hex(6)}.upload")
        if (append or offset) and local.is_file():
            # Resume or append in the file itself, from the offset or its end.
            start = existing if append else min(offset, existing)
            return succeed(FileWriter(temporary, local, start, limit, QuotaExceeded, True))
        return succeed(FileWriter(temporary, local, 0, limit, QuotaExceeded))
