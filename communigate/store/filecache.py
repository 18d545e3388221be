"""Parsed files that follow changes on disk without a restart.

The command line changes settings files while the server runs; the server
must see those changes "within a second".  A :class:`CachedFile` keeps the
parsed content and re-reads the file when its identity (inode, size,
modification time) changes.  To keep ``stat`` calls off the hot path of every
login it looks at the file at most once per ``recheck`` seconds of the
injected clock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

Clock = Callable[[], float]


class CachedFile(Generic[T]):
    """The parsed content of one file, re-read when the file changes."""

    def __init__(
        self,
        path: Path,
        parse: Callable[[bytes], T],
        missing: T,
        clock: Clock = time.monotonic,
        recheck: float = 0.5,
    ) -> None:
        self.path = path
        self._parse = parse
        self._missing = missing
        self._clock = clock
        self._recheck = recheck
        self._identity: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self._value = missing

    def get(self) -> T:
        """Return the current content, reading the file again if it changed."""
        now = self._clock()
        if now - self._checked < self._recheck:
            return self._value
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            self._identity = None
            self._value = self._missing
            self._checked = now
            return self._value
        identity = (status.st_ino, status.st_size, status.st_mtime_ns)
        if identity != self._identity:
            self._value = self._parse(self.path.read_bytes())
            self._identity = identity
        # Only now: a reader in another thread that comes while this one
        # reads must not take the value from before as checked.
        self._checked = now
        return self._value

    def exists(self) -> bool:
        """Whether the file was there at the last look (looking again under
        the same rule as :meth:`get`): an existence test that costs no
        ``stat`` on most calls."""
        self.get()
        return self._identity is not None

    def invalidate(self) -> None:
        """Forget the last check, so the next :meth:`get` looks at the file."""
        self._checked = float("-inf")
