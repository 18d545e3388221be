"""The thread pool for blocking work, its threads below the reactor's priority.

Password hashing (bcrypt, crypt, PBKDF2), PAM, fsync and other blocking work
run in one :class:`~twisted.python.threadpool.ThreadPool`.  Key stretching
is meant to be costly: a burst of logins with hashed passwords keeps every
pool thread busy on the CPU, and on a small machine the reactor thread,
which answers every session, would wait for a core behind them (a NOOP's
round trip rose from under a millisecond to tens).  So each pool thread
lowers its own scheduling priority when it starts (Linux schedules threads
one by one: ``setpriority`` on a thread's id changes only that thread):
when the reactor has work it gets the core, and the hashing goes on with
what is left, as it would on a busier machine.  Elsewhere, or when the
priority cannot be changed, the threads run as before.

A lower priority is not enough on a machine of few cores: every core then
runs a hash, and the reactor thread still waits for one to reach the end
of its time slice.  So the password checks go through a
:class:`HashingLane` of the pool, which runs at most one fewer of them at
once than the process has cores (at least one): a core always stays free
for the sessions, as in Dovecot, whose one auth process hashes while the
mail processes answer.  PAM checks and the re-hashing of a password take
the same lane; the pool's other work (fsync of mail and files, the LDAP
refresh) does not wait behind them.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.python.threadpool import ThreadPool

#: How much lower (in nice steps) pool threads run than the reactor.
BACKGROUND_NICENESS = 5


def lower_this_thread(steps: int = BACKGROUND_NICENESS) -> bool:
    """Lower the calling thread's priority by ``steps``; whether it worked."""
    native = getattr(threading, "get_native_id", None)
    if native is None or not hasattr(os, "setpriority"):
        return False
    thread = native()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + steps))
    except OSError:
        return False
    return True


class _BackgroundThread(threading.Thread):
    """A pool thread that lowers its priority before it takes work."""

    def run(self) -> None:
        lower_this_thread()
        super().run()


class BackgroundPool(ThreadPool):
    """A thread pool whose threads run below the reactor's priority."""

    threadFactory: Any = _BackgroundThread


def hashing_width() -> int:
    """How many password hashes may run at once: one fewer than the cores
    this process may use, at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


class HashingLane(ThreadPool):
    """Runs work in a thread pool, at most ``width`` jobs at once, the
    others waiting in order without holding a pool thread.  Stands in for
    the pool wherever one is given (:func:`~twisted.internet.threads.deferToThreadPool`,
    ``callInThread``); it has no threads of its own and is never started."""

    def __init__(self, pool: ThreadPool, width: int | None = None) -> None:
        super().__init__(0, 1, f"{getattr(pool, 'name', None)}-hashing")
        self.pool = pool
        self.width = max(1, width if width is not None else hashing_width())
        self.running = 0
        self._waiting: deque[tuple[Callable[..., Any], Callable[..., Any], Any, Any]] = deque()
        self._lock = threading.Lock()

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, Any], object] | None,
        func: Callable[..., Any],
        *args: Any,
        **kw: Any,
    ) -> None:
        """Run ``func`` in the pool once fewer than ``width`` run;
        ``onResult(success, result)`` as the pool would call it."""

        def finished(success: bool, result: Any) -> None:
            try:
                if onResult is not None:
                    onResult(success, result)
            finally:
                self._next()

        with self._lock:
            if self.running >= self.width:
                self._waiting.append((finished, func, args, kw))
                return
            self.running += 1
        self.pool.callInThreadWithCallback(finished, func, *args, **kw)

    def _next(self) -> None:
        """A job ended (in its pool thread): start the oldest waiting one."""
        with self._lock:
            if not self._waiting:
                self.running -= 1
                return
            finished, function, args, kwargs = self._waiting.popleft()
        self.pool.callInThreadWithCallback(finished, function, *args, **kwargs)

    def __len__(self) -> int:
        """How many jobs wait for their turn."""
        return len(self._waiting)
