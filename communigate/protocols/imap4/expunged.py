"""Messages expunged by one IMAP session, kept readable for the others.

RFC 2180 §4.1.2 lets a server keep an expunged message available to the
sessions that have not yet been told of the expunge.  Before a session of
this process removes messages, it opens each file once if another session
of this process has the mailbox selected; the open descriptor keeps the
data (and its modification time, the internal date) after the unlink, and
``/proc/self/fd/<n>`` reaches it by path, so FETCH reads it like any other
message.  Descriptors are closed after :data:`KEEP_SECONDS` or when more
than :data:`MAX_KEPT` are held (oldest first), so the disk space comes back
soon.  Linux only (elsewhere nothing is kept and such a FETCH answers
``NO [EXPUNGEISSUED]``); messages removed by other processes are not
covered.
"""

from __future__ import annotations

import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable

from communigate.store.changes import mailbox_key
from communigate.store.mailbox import MessageInfo

#: Seconds an expunged message stays readable.
KEEP_SECONDS = 120.0
#: Descriptors held at most by one process.
MAX_KEPT = 1024
_FD_FOLDER = "/proc/self/fd"


class ExpungedFiles:
    """Open descriptors of expunged messages, by mailbox and UID."""

    def __init__(
        self,
        keep: float = KEEP_SECONDS,
        limit: int = MAX_KEPT,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool | None = None,
    ) -> None:
        self._keep = keep
        self._limit = limit
        self._clock = clock
        self._enabled = os.path.isdir(_FD_FOLDER) if enabled is None else enabled
        self._holders: dict[str, weakref.WeakSet[object]] = {}
        self._kept: OrderedDict[tuple[str, int], tuple[int, float]] = OrderedDict()

    def hold(self, path: str | os.PathLike[str], holder: object) -> None:
        """``holder`` (a selected mailbox) has the mailbox open; it is
        forgotten when it is garbage."""
        key = mailbox_key(path)
        self._holders.setdefault(key, weakref.WeakSet()).add(holder)
        weakref.finalize(holder, self._forget_if_unheld, key)

    def _forget_if_unheld(self, key: str) -> None:
        holders = self._holders.get(key)
        # Iteration skips the dying holder, whose reference may still be
        # in the set while this runs.
        if holders is not None and not any(True for _ in holders):
            del self._holders[key]

    def release(self, path: str | os.PathLike[str], holder: object) -> None:
        """``holder`` no longer has the mailbox open."""
        key = mailbox_key(path)
        holders = self._holders.get(key)
        if holders is not None:
            holders.discard(holder)
            if not holders:
                del self._holders[key]

    def retain(
        self, path: str | os.PathLike[str], remover: object, infos: Iterable[MessageInfo]
    ) -> None:
        """Keep messages about to be removed readable, if a session other
        than ``remover`` has the mailbox open."""
        self._expire()
        key = mailbox_key(path)
        holders = self._holders.get(key)
        if not self._enabled or holders is None or not any(h is not remover for h in holders):
            return
        deadline = self._clock() + self._keep
        for info in infos:
            try:
                descriptor = os.open(info.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            old = self._kept.pop((key, info.uid), None)
            if old is not None:
                os.close(old[0])
            self._kept[(key, info.uid)] = (descriptor, deadline)
            while len(self._kept) > self._limit:
                _, (oldest, _) = self._kept.popitem(last=False)
                os.close(oldest)

    def path(self, path: str | os.PathLike[str], uid: int) -> str | None:
        """A path that still reads the expunged message, or None."""
        self._expire()
        kept = self._kept.get((mailbox_key(path), uid))
        return f"{_FD_FOLDER}/{kept[0]}" if kept is not None else None

    def _expire(self) -> None:
        now = self._clock()
        while self._kept:
            key, (descriptor, deadline) = next(iter(self._kept.items()))
            if deadline > now:
                return
            del self._kept[key]
            os.close(descriptor)

    def close(self) -> None:
        """Close every descriptor."""
        while self._kept:
            _, (descriptor, _) = self._kept.popitem()
            os.close(descriptor)

    def __len__(self) -> int:
        return len(self._kept)


#: The expunged messages of this process's IMAP sessions.
EXPUNGED = ExpungedFiles()
