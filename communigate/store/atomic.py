"""Atomic file writes: a reader sees the old file or the new one, never half.

Every settings file and index in the base directory is written through
:func:`write_atomic` (temporary file in the same directory, ``fsync``,
``rename``, then ``fsync`` of the directory so the rename survives a crash).
:func:`read_range` is the matching cheap read for the hot paths.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_range(
    path: str | os.PathLike[str], offset: int = 0, size: int = -1
) -> tuple[bytes, os.stat_result]:
    """``size`` bytes of a file from ``offset`` (all the rest when ``size``
    is negative; fewer at its end), and the status of the file read.

    One ``open``, ``fstat``, the reads and a ``close``: a buffered file
    object would add ``ioctl`` and ``lseek`` calls and its own allocation,
    which the per-command reads of a mailbox's small files cannot afford."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        status = os.fstat(fd)
        if size < 0:
            size = max(0, status.st_size - offset)
        chunks = []
        while size > 0:
            chunk = os.pread(fd, size, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks), status


def write_durable(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` (it must not exist) with ``data``, flushed to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        Path(path).unlink(missing_ok=True)
        raise
    os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that no reader ever sees a partial file."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_durable(temporary, data, mode)
    except FileExistsError:
        # Left by a crash of an earlier process with the same number.
        temporary.unlink(missing_ok=True)
        write_durable(temporary, data, mode)
    os.replace(temporary, path)
    fsync_directory(path.parent)
