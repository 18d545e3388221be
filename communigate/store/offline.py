"""Messages kept for an account while none of its resources is online.

RFC 6121 §8.5.2.2.1 (and §8.5.3.2.1) let a server store a message for a
user who is offline and deliver it at the next login (Prosody's
``mod_offline``).  Each stanza is its own file in
``<account folder>/offline/``, written durably with
:func:`~communigate.store.atomic.write_atomic`, named by a sequence number
so the oldest comes first.  The store is bounded in messages and bytes;
past the bound :meth:`OfflineStore.add` refuses and the caller bounces the
message (``service-unavailable``).

Pure file code, no reactor: call it from the thread that owns the
account's state.
"""

from __future__ import annotations

import os
from pathlib import Path

from communigate.store.atomic import fsync_directory, write_atomic

FOLDER_NAME = "offline"
SUFFIX = ".xml"
MAX_MESSAGES = 1000
MAX_BYTES = 10 * 1024 * 1024


class OfflineStore:
    """The stored stanzas of one account, oldest first."""

    def __init__(
        self, folder: Path, max_messages: int = MAX_MESSAGES, max_bytes: int = MAX_BYTES
    ) -> None:
        self.folder = Path(folder) / FOLDER_NAME
        self.max_messages = max_messages
        self.max_bytes = max_bytes

    def _entries(self) -> list[tuple[int, Path, int]]:
        """(sequence number, path, size) of each stored stanza, in order."""
        found: list[tuple[int, Path, int]] = []
        try:
            scan = os.scandir(self.folder)
        except FileNotFoundError:
            return found
        with scan:
            for entry in scan:
                stem = entry.name[: -len(SUFFIX)]
                # write_atomic's temporaries start with a dot: not ours yet.
                if entry.name.endswith(SUFFIX) and stem.isascii() and stem.isdigit():
                    try:
                        size = entry.stat().st_size
                    except FileNotFoundError:
                        continue
                    found.append((int(stem), Path(entry.path), size))
        found.sort()
        return found

    def count(self) -> int:
        """How many stanzas are stored."""
        return len(self._entries())

    def size(self) -> int:
        """How many bytes the stored stanzas take."""
        return sum(size for _, _, size in self._entries())

    def add(self, stanza: bytes) -> bool:
        """Store one stanza durably; False (nothing stored) if that would
        pass the bound in messages or bytes.  ``OSError`` if it cannot be
        written (the account's folder is never created here)."""
        entries = self._entries()
        total = sum(size for _, _, size in entries)
        if len(entries) >= self.max_messages or total + len(stanza) > self.max_bytes:
            return False
        if not entries:
            try:
                self.folder.mkdir(mode=0o700)
            except FileExistsError:
                pass
        number = entries[-1][0] + 1 if entries else 1
        write_atomic(self.folder / f"{number:010d}{SUFFIX}", stanza)
        return True

    def peek(self) -> list[bytes]:
        """Every stored stanza, oldest first, leaving them stored."""
        return [data for _, data in self._read()]

    def take(self) -> list[bytes]:
        """Every stored stanza, oldest first, removed from the store."""
        read = self._read()
        for path, _ in read:
            path.unlink(missing_ok=True)
        if read:
            fsync_directory(self.folder)
        return [data for _, data in read]

    def _read(self) -> list[tuple[Path, bytes]]:
        read: list[tuple[Path, bytes]] = []
        for _, path, _ in self._entries():
            try:
                read.append((path, path.read_bytes()))
            except FileNotFoundError:
                continue
        return read
