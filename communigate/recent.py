"""Answers remembered for a moment.

A burst of requests asks the same questions of the file system (which
storage a name leads to, the rights of a folder, whether a domain's
certificate or keytab changed); each answer is kept for :data:`RECENT`
seconds, the time the directory's own settings files are trusted before
they are looked at again, so a change on disk is seen within that time.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

#: Seconds an answer is remembered (the settings files' own recheck time).
RECENT = 0.5
#: Answers kept at most (all are forgotten when there are more).
MAX_ENTRIES = 4096


class Recent:
    """Answers remembered for :data:`RECENT` seconds of ``clock``."""

    def __init__(self, clock: Callable[[], float], seconds: float = RECENT) -> None:
        self._clock = clock
        self._seconds = seconds
        self._entries: dict[Hashable, tuple[float, Any]] = {}

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The remembered answer for ``key``, else ``compute()`` (an
        exception is not remembered)."""
        now = self._clock()
        found = self._entries.get(key)
        if found is not None and now < found[0]:
            return found[1]
        value = compute()
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (now + self._seconds, value)
        return value
