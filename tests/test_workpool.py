"""The pool for blocking work runs below the reactor's priority."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import pytest

from communigate.workpool import (
    BACKGROUND_NICENESS,
    BackgroundPool,
    HashingLane,
    hashing_width,
    lower_this_thread,
    usable_cores,
)
from tests.portal.test_durablefiles import HeldPool


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


def test_hashing_lane_runs_at_most_width_jobs_in_order() -> None:
    """Past ``width`` running jobs the others wait, holding no pool thread,
    and start oldest first as jobs end; results and failures reach their
    callers; a job without a callback (callInThread) runs as well."""
    pool = HeldPool()
    lane = HashingLane(pool, width=2)  # type: ignore[arg-type]
    results: list[tuple[str, bool, object]] = []

    def record(name: str) -> Any:
        return lambda success, result: results.append((name, success, result))

    def fail() -> None:
        raise ValueError("bad hash")

    lane.callInThreadWithCallback(record("a"), lambda: 1)
    lane.callInThreadWithCallback(record("b"), fail)
    lane.callInThreadWithCallback(record("c"), lambda: 3)
    lane.callInThread(lambda: results.append(("d", True, 4)))
    assert (len(pool.jobs), len(lane), lane.running) == (2, 2, 2)
    pool.run(1)  # b fails: c starts
    assert results[0][:2] == ("b", False) and isinstance(results[0][2], ValueError)
    assert (len(pool.jobs), len(lane)) == (2, 1)
    pool.run_all()
    assert [name for name, _, _ in results] == ["b", "a", "c", "d"]
    assert (len(pool.jobs), len(lane), lane.running) == (0, 0, 0)


def test_hashing_lane_leaves_a_core_to_the_sessions_and_a_thread_to_the_pool() -> None:
    """By default one fewer hash at once than the cores, at least one; never
    every thread of the pool."""
    assert hashing_width() == max(1, usable_cores() - 1)
    assert usable_cores() <= len(os.sched_getaffinity(0))
    assert HashingLane(BackgroundPool(0, 64), 0).width == 1
    assert HashingLane(BackgroundPool(0, 64)).width == hashing_width()
    assert HashingLane(BackgroundPool(0, 4), 7).width == 3
    assert HashingLane(BackgroundPool(0, 1), 7).width == 1


def test_hashing_lane_finishes_waiting_jobs_when_the_pool_stops() -> None:
    """Jobs waiting their turn when the pool stops still run and report
    (the pool itself finishes what it holds), and the lane is left idle."""
    pool = BackgroundPool(minthreads=1, maxthreads=2, name="test-lane")
    lane = HashingLane(pool, width=1)
    results: list[tuple[int, bool]] = []
    pool.start()
    for index in range(3):
        lane.callInThreadWithCallback(
            lambda success, result: results.append((result, success)),
            lambda index=index: time.sleep(0.1) or index,
        )
    time.sleep(0.02)
    pool.stop()
    assert sorted(results) == [(0, True), (1, True), (2, True)]
    assert (len(lane), lane.running) == (0, 0)
