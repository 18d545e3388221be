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
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from communigate.store import temporaries
from communigate.store.atomic import fsync_directory
from communigate.store.directory import IDirectory

UPLOADS = "uploads.tmp"


class QuotaExceeded(Exception):
    """The upload would take the storage over its ``MaxWebSize``."""


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
        self.temporary = folder / temporaries.temporary_name()
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
        fsync_directory(self.final.parent)

    def abort(self) -> None:
        """Drop what was received; the old file stays as it was."""
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        if not self.done:
            self.temporary.unlink(missing_ok=True)
        self.done = True


def remove_stale(account_path: Path) -> int:
    """Remove the upload temporaries a dead process left; how many."""
    return temporaries.remove_stale(Path(account_path) / UPLOADS)


def remove_stale_everywhere(directory: IDirectory) -> int:
    """:func:`remove_stale` for every account of every domain."""
    removed = 0
    for domain in directory.domain_names():
        for name in directory.account_names(domain):
            removed += remove_stale(directory.account_path(domain, name))
    return removed
