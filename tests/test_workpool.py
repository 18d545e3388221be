"""The pool for blocking work runs below the reactor's priority."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from communigate.workpool import BACKGROUND_NICENESS, BackgroundPool, lower_this_thread


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_pool_threads_run_below_the_callers_priority() -> None:
    """Work in the pool sees a higher nice value than the thread that
    started the pool, which keeps its own."""
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    pool = BackgroundPool(minthreads=1, maxthreads=1, name="test-background")
    seen: list[int] = []
    done = threading.Event()

    def work() -> None:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        done.set()

    pool.start()
    try:
        pool.callInThread(work)
        assert done.wait(10)
    finally:
        pool.stop()
    assert seen == [min(19, before + BACKGROUND_NICENESS)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_lowering_never_raises() -> None:
    """A thread already at the lowest priority stays there without error."""
    result: list[bool] = []

    def run() -> None:
        lower_this_thread(40)
        result.append(lower_this_thread(5))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert result == [True]
