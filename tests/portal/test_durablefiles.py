"""Whole-file writes in the thread pool: one writer per file, newer states
replacing waiting ones, never an older state after a newer, failures to
the tickets and one log line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure

from communigate.portal.durablefiles import DurableFiles, DurableFilesService
from communigate.store.atomic import write_atomic
from communigate.store.writes import REMOVED, FileWrites, Ticket
from tests.conftest import SyncReactor

#: A job given to the pool: its result callback, the function, its arguments.
Job = tuple[Callable[[bool, Any], None], Callable[..., Any], tuple[Any, ...]]


class HeldPool:
    """A thread pool whose jobs run when the test says so."""

    def __init__(self) -> None:
        self.jobs: list[
            tuple[Callable[[bool, Any], None], Callable[..., Any], tuple[Any, ...]]
        ] = []

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, Any], None], f: Callable[..., Any], *a: Any
    ) -> None:
        self.jobs.append((onResult, f, a))

    def run(self, index: int = 0) -> None:
        """Run the job at ``index`` (the oldest by default)."""
        onResult, f, a = self.jobs.pop(index)
        try:
            result = f(*a)
        except BaseException as error:
            onResult(False, error)
        else:
            onResult(True, result)

    def run_all(self) -> None:
        """Run jobs until none is left (jobs may start more)."""
        while self.jobs:
            self.run()


def save(path: Path, state: bytes) -> None:
    """The write function of these tests: the state is the file's bytes."""
    write_atomic(path, state)


def outcomes(ticket: Ticket) -> list[Any]:
    """What the ticket's watcher got (None, or the failure)."""
    found: list[Any] = []
    ticket.watch().addBoth(found.append)
    return found


def logged() -> tuple[Logger, list[dict[str, Any]]]:
    """A logger whose events land in a list."""
    events: list[dict[str, Any]] = []
    return Logger(observer=cast(ILogObserver, events.append)), events


def test_is_a_file_writer() -> None:
    """DurableFiles has every method stores call on a FileWrites."""
    writer: FileWrites = DurableFiles()
    assert callable(writer.replace) and callable(writer.pending_under)


def test_write_runs_in_the_pool_and_is_visible_before(tmp_path: Path) -> None:
    """A state is pending (latest) until the pool wrote it; then on disk."""
    pool = HeldPool()
    writer = DurableFiles(SyncReactor(), pool)
    path = tmp_path / "f"
    done = outcomes(writer.replace(path, b"one", save))
    assert writer.latest(path) == b"one"
    assert not path.exists() and done == []
    pool.run()
    assert path.read_bytes() == b"one"
    assert done == [None]
    assert writer.latest(path) is None and writer.idle()


def test_one_writer_per_file_and_coalescing(tmp_path: Path) -> None:
    """While a file is written, newer states wait as one: the newest; the
    older waiting one is never written, and its ticket fires with it."""
    pool = HeldPool()
    writer = DurableFiles(SyncReactor(), pool)
    path = tmp_path / "f"
    first = outcomes(writer.replace(path, b"1", save))
    second = outcomes(writer.replace(path, b"2", save))
    third = outcomes(writer.replace(path, b"3", save))
    assert len(pool.jobs) == 1
    assert writer.latest(path) == b"3"
    pool.run()
    assert path.read_bytes() == b"1"
    assert (first, second, third) == ([None], [], [])
    assert len(pool.jobs) == 1
    pool.run()
    assert path.read_bytes() == b"3"
    assert (second, third) == ([None], [None])
    assert (writer.writes, writer.coalesced) == (2, 1)
    assert not pool.jobs


def test_files_are_written_in_parallel(tmp_path: Path) -> None:
    """Different files do not wait for each other."""
    pool = HeldPool()
    writer = DurableFiles(SyncReactor(), pool)
    writer.replace(tmp_path / "a", b"a", save)
    writer.replace(tmp_path / "b", b"b", save)
    assert len(pool.jobs) == 2
    pool.run(1)
    assert (tmp_path / "b").exists() and not (tmp_path / "a").exists()


def test_never_an_older_state_after_a_newer(tmp_path: Path) -> None:
    """Whatever the order jobs finish in, the file ends with the newest state."""
    pool = HeldPool()
    writer = DurableFiles(SyncReactor(), pool)
    path = tmp_path / "f"
    for n in range(10):
        writer.replace(path, b"%d" % n, save)
        if n % 3 == 0:
            pool.run_all()
    pool.run_all()
    assert path.read_bytes() == b"9"


def test_remove_waits_for_the_write(tmp_path: Path) -> None:
    """A removal scheduled while the file is written runs after it."""
    pool = HeldPool()
    writer = DurableFiles(SyncReactor(), pool)
    path = tmp_path / "f"
    writer.replace(path, b"x", save)
    writer.remove(path)
    assert writer.latest(path) is REMOVED
    assert writer.pending_under(tmp_path) == {path: REMOVED}
    pool.run()
    assert path.exists()
    pool.run()
    assert not path.exists() and writer.idle()


def test_failure_goes_to_the_ticket_and_one_log_line(tmp_path: Path) -> None:
    """A failed write fails its ticket with the OSError, logs one line
    naming the file, and the next state is still written."""
    pool = HeldPool()
    writer = DurableFiles(SyncReactor(), pool)
    writer.log, events = logged()
    gone = tmp_path / "gone" / "f"
    failed = outcomes(writer.replace(gone, b"x", save))
    pool.run()
    assert isinstance(failed[0], Failure) and failed[0].check(FileNotFoundError)
    assert len(events) == 1 and str(gone) in events[0]["path"]
    assert "Traceback" not in str(events[0])
    (tmp_path / "gone").mkdir()
    assert outcomes(writer.replace(gone, b"y", save)) == []
    pool.run()
    assert gone.read_bytes() == b"y"


def test_failure_with_a_newer_state_waiting(tmp_path: Path) -> None:
    """When a write fails, the waiting newer state is still written."""
    pool = HeldPool()
    writer = DurableFiles(SyncReactor(), pool)
    writer.log, _ = logged()
    path = tmp_path / "f"
    calls: list[bytes] = []

    def flaky(target: Path, state: bytes) -> None:
        calls.append(state)
        if state == b"bad":
            raise OSError(28, "No space left on device")
        save(target, state)

    bad = outcomes(writer.replace(path, b"bad", flaky))
    good = outcomes(writer.replace(path, b"good", flaky))
    pool.run()
    assert isinstance(bad[0], Failure) and good == []
    assert writer.latest(path) == b"good"
    pool.run()
    assert good == [None] and path.read_bytes() == b"good"
    assert calls == [b"bad", b"good"]


def test_without_a_pool_writes_at_once(tmp_path: Path) -> None:
    """Without a pool the write is done when replace returns; a failure
    goes to the ticket (and the log), not to the caller."""
    writer = DurableFiles()
    writer.log, events = logged()
    ticket = writer.replace(tmp_path / "f", b"x", save)
    assert (tmp_path / "f").read_bytes() == b"x" and ticket.done
    failed = outcomes(writer.replace(tmp_path / "no" / "f", b"x", save))
    assert isinstance(failed[0], Failure) and len(events) == 1
    assert writer.idle()


def test_stopped_pool_runs_the_rest_at_once(tmp_path: Path) -> None:
    """Once the pool has stopped (it drops new jobs), a waiting state is
    written at once when the running one ends, and drained() fires."""
    pool = HeldPool()
    writer = DurableFiles(SyncReactor(), pool)
    path = tmp_path / "f"
    writer.replace(path, b"1", save)
    writer.replace(path, b"2", save)
    drained: list[object] = []
    writer.drained().addCallback(drained.append)
    pool.joined = True  # type: ignore[attr-defined]
    pool.run()
    assert path.read_bytes() == b"2" and not pool.jobs
    assert drained == [None] and writer.idle()


def test_service_stop_waits_for_the_writes(tmp_path: Path) -> None:
    """Stopping DurableFilesService fires only when the pending writes are done."""
    pool = HeldPool()
    writer = DurableFiles(SyncReactor(), pool)
    service = DurableFilesService(writer)
    service.startService()
    writer.replace(tmp_path / "f", b"x", save)
    stopped: list[object] = []
    service.stopService().addCallback(stopped.append)
    assert stopped == []
    pool.run()
    assert stopped == [None]


def test_changes_count_every_change_of_what_is_pending(tmp_path: Path) -> None:
    """A state queued, replaced, started or finished moves ``changes``: an
    answer of latest or waiting kept with it is never stale."""
    pool = HeldPool()
    writer = DurableFiles(SyncReactor(), pool)
    path = tmp_path / "f"
    seen = [writer.changes]

    def moved() -> bool:
        seen.append(writer.changes)
        return seen[-1] > seen[-2]

    writer.replace(path, b"1", save)
    assert moved() and writer.waiting(path) is None
    writer.replace(path, b"2", save)
    assert moved() and writer.waiting(path) == b"2"
    writer.replace(path, b"3", save)
    assert moved() and writer.waiting(path) == b"3"
    pool.run()
    assert moved() and writer.waiting(path) is None and writer.latest(path) == b"3"
    pool.run()
    assert moved() and writer.latest(path) is None
    assert not moved()
