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
mail processes answer.  The lane keeps at least one pool thread for the
pool's other work (fsync of mail and files, directory writes, the LDAP
refresh, PAM, whose checks mostly wait), which never waits behind hashes.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

log = Logger()

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


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, bounded by a
    cgroup (v2) CPU quota when one is set (a container's ``--cpus``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores


def hashing_width() -> int:
    """How many password hashes may run at once: one fewer than the cores
    this process may use, at least one."""
    return max(1, usable_cores() - 1)


class HashingLane(ThreadPool):
    """Runs work in a thread pool, at most ``width`` jobs at once, the
    others waiting in order without holding a pool thread.  Stands in for
    the pool wherever one is given (:func:`~twisted.internet.threads.deferToThreadPool`,
    ``callInThread``); it has no threads of its own and is never started."""

    def __init__(self, pool: ThreadPool, width: int | None = None) -> None:
        super().__init__(0, 1, f"{getattr(pool, 'name', None)}-hashing")
        self.pool = pool
        self.width = max(1, width if width is not None else hashing_width())
        # One pool thread always stays for the pool's other work.
        threads = getattr(pool, "max", None)
        if isinstance(threads, int):
            self.width = max(1, min(self.width, threads - 1))
        self.running = 0
        self._waiting: deque[
            tuple[Callable[[bool, Any], object] | None, Callable[..., Any], Any, Any]
        ] = deque()
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
        with self._lock:
            if self.running >= self.width:
                self._waiting.append((onResult, func, args, kw))
                return
            self.running += 1
        self._start(onResult, func, args, kw)

    def _start(
        self,
        onResult: Callable[[bool, Any], object] | None,
        func: Callable[..., Any],
        args: Any,
        kw: Any,
    ) -> None:
        def finished(success: bool, result: Any) -> None:
            try:
                if onResult is not None:
                    onResult(success, result)
            finally:
                self._next()

        self.pool.callInThreadWithCallback(finished, func, *args, **kw)

    def _next(self) -> None:
        """A job ended (in its pool thread): start the oldest waiting one.
        Once the pool is stopping it would drop a new job, so the waiting
        ones run here, in the thread finishing its last job, as the pool
        finishes the work it already holds."""
        while True:
            with self._lock:
                if not self._waiting:
                    self.running -= 1
                    return
                onResult, func, args, kw = self._waiting.popleft()
            if not getattr(self.pool, "joined", False):
                self._start(onResult, func, args, kw)
                return
            try:
                success, result = True, func(*args, **kw)
            except BaseException:
                success, result = False, Failure()
            if onResult is not None:
                try:
                    onResult(success, result)
                except Exception:
                    log.failure("a hashing job's result could not be delivered")

    def __len__(self) -> int:
        """How many jobs wait for their turn."""
        return len(self._waiting)
