"""Uploads into File Storage that are either complete or absent.

An upload is written to a temporary file in ``<account>.macnt/uploads.tmp/``
— beside the storage, never inside it, so no protocol can list, read or
count a half-received file — and renamed over its target only when the
protocol says the transfer ended cleanly (:meth:`Upload.commit`: flush,
fsync, rename, fsync of the folder).  Anything else (:meth:`Upload.abort`)
removes the temporary and leaves the old file as it was.

Resumed uploads (FTP REST, APPE) copy the kept part of the old file into the
temporary first, so they are all-or-nothing too.  Temporaries are named
``<host>.<pid>.<random>``: :func:`remove_stale` deletes those of this host
whose process is gone (a crash, ``kill -9``), at server start, without
touching uploads that another front end sharing the storage is running.

The blocking steps (:meth:`Upload.prepare`, :meth:`Upload.commit`) are
meant for a thread pool; :meth:`Upload.write` is a buffered append.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from communigate.store.directory import IDirectory

UPLOADS = "uploads.tmp"
_HOST = socket.gethostname().replace(".", "_")


class QuotaExceeded(Exception):
    """The upload would take the storage over its ``MaxWebSize``."""


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class Upload:
    """One file being received.

    ``limit`` computes, when the upload is prepared, how large the file may
    grow (None: no quota); ``keep`` bytes of the existing file are kept
    (resume or append).
    """

    def __init__(
        self,
        account_path: Path,
        final: Path,
        keep: int = 0,
        limit: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.final = final
        self.keep = keep
        self._limit = limit
        self.limit: int | None = None
        folder = Path(account_path) / UPLOADS
        self.temporary = folder / f"{_HOST}.{os.getpid()}.{secrets.token_hex(8)}"
        self.handle: BinaryIO | None = None
        self.size = 0
        self.done = False

    def prepare(self) -> None:
        """Create the temporary (with the kept part of the old file) and
        work out the quota.  Blocking."""
        self.limit = self._limit()
        self.temporary.parent.mkdir(mode=0o700, exist_ok=True)
        handle = open(self.temporary, "xb")
        try:
            if self.keep:
                with open(self.final, "rb") as source:
                    shutil.copyfileobj(source, handle, 1024 * 1024)
                handle.truncate(self.keep)
                handle.seek(self.keep)
        except BaseException:
            handle.close()
            self.temporary.unlink(missing_ok=True)
            raise
        self.size = self.keep
        self.handle = handle

    def write(self, data: bytes) -> None:
        """Append received bytes; QuotaExceeded past the limit (nothing of
        ``data`` is written then)."""
        if self.handle is None:
            raise ValueError("upload is not open")
        if self.limit is not None and self.size + len(data) > self.limit:
            raise QuotaExceeded(f"storage quota of {self.limit} bytes exceeded")
        self.handle.write(data)
        self.size += len(data)

    def commit(self) -> None:
        """Make the upload the file's content, durably.  Blocking."""
        if self.handle is None:
            raise ValueError("upload is not open")
        handle, self.handle = self.handle, None
        try:
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            handle.close()
        try:
            os.replace(self.temporary, self.final)
        except BaseException:
            self.temporary.unlink(missing_ok=True)
            raise
        self.done = True
        _fsync_folder(self.final.parent)

    def abort(self) -> None:
        """Drop what was received; the old file stays as it was."""
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        if not self.done:
            self.temporary.unlink(missing_ok=True)
        self.done = True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(account_path: Path) -> int:
    """Remove the temporaries of this host's dead processes; how many."""
    folder = Path(account_path) / UPLOADS
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    for name in names:
        host, _, rest = name.partition(".")
        pid_text = rest.partition(".")[0]
        if host != _HOST or not (pid_text.isascii() and pid_text.isdigit()):
            continue
        pid = int(pid_text)
        # Linux pids stay below 2**22; a larger one is no process of ours.
        if pid != os.getpid() and pid < 2**22 and _alive(pid):
            continue
        try:
            (folder / name).unlink()
        except FileNotFoundError:
            continue
        removed += 1
    return removed


def remove_stale_everywhere(directory: IDirectory) -> int:
    """:func:`remove_stale` for every account of every domain."""
    removed = 0
    for domain in directory.domain_names():
        for name in directory.account_names(domain):
            removed += remove_stale(directory.account_path(domain, name))
    return removed
