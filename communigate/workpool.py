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
"""

from __future__ import annotations

import os
import threading
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
