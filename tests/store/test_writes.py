"""The XMPP stores with a queued writer: a state waiting to be written is
what every reader sees, however many store objects there are."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure

from communigate.portal.durablefiles import DurableFiles
from communigate.store import offline, vcard
from communigate.store.blocklist import BlockList
from communigate.store.offline import OfflineStore, StoreFull
from communigate.store.roster import FILE_NAME, Roster, RosterItem
from tests.conftest import SyncReactor
from tests.portal.test_durablefiles import HeldPool, logged


def writer() -> tuple[DurableFiles, HeldPool]:
    """A writer whose jobs wait for the test, logging nowhere."""
    pool = HeldPool()
    writes = DurableFiles(SyncReactor(), pool)
    writes.log, _ = logged()
    return writes, pool


def test_roster_pending_state_is_shared(tmp_path: Path) -> None:
    """A second Roster object on the file sees (and builds on) the pending state."""
    writes, pool = writer()
    first = Roster(tmp_path / FILE_NAME, writes=writes)
    first.set(RosterItem("a@x"))
    second = Roster(tmp_path / FILE_NAME, writes=writes)
    assert second.get("a@x") == RosterItem("a@x")
    assert second.set(RosterItem("b@x")) == 2
    pool.run_all()
    assert [item.jid for item in Roster.load(tmp_path).items()] == ["a@x", "b@x"]
    assert [item.jid for item in first.items()] == ["a@x", "b@x"]


def test_roster_failed_write_reads_disk_again(tmp_path: Path) -> None:
    """When the only pending write fails, the roster is what the file holds."""
    writes, pool = writer()
    Roster.load(tmp_path).set(RosterItem("old@x"))
    roster = Roster(tmp_path / FILE_NAME, writes=writes)
    roster.set(RosterItem("new@x"))
    assert roster.get("new@x") is not None
    failed: list[object] = []
    roster.written().addErrback(failed.append)
    onResult, _, _ = pool.jobs.pop()
    onResult(False, OSError(28, "No space left on device"))
    assert failed and roster.get("new@x") is None and roster.get("old@x") is not None


def test_blocklist_and_vcard_pending(tmp_path: Path) -> None:
    """Block list and vCard answer the pending state, then the file's."""
    writes, pool = writer()
    BlockList(tmp_path, writes=writes).block(["a@x"])
    assert BlockList(tmp_path, writes=writes).items() == ["a@x"]
    vcard.set(tmp_path, b"<vCard/>", writes)
    assert vcard.get(tmp_path, writes) == b"<vCard/>"
    assert vcard.get(tmp_path) is None
    pool.run_all()
    assert BlockList(tmp_path).items() == ["a@x"]
    assert vcard.get(tmp_path) == b"<vCard/>"


def test_offline_numbering_and_take_while_pending(tmp_path: Path) -> None:
    """Stanzas still being written are stored, numbered after each other,
    taken from memory, and their files removed after being written."""
    writes, pool = writer()
    store = OfflineStore(tmp_path, writes=writes)
    first = store.add(b"one")
    second = OfflineStore(tmp_path, writes=writes).add(b"two")
    assert first is not None and second is not None and first != second
    assert store.count() == 2 and store.size() == 6
    assert store.take() == [b"one", b"two"]
    assert store.count() == 0 and store.taken(first)
    pool.run_all()
    assert writes.idle()
    assert OfflineStore(tmp_path).count() == 0
    third = store.add(b"three")
    assert third is not None
    pool.run_all()
    assert OfflineStore(tmp_path).take() == [b"three"]


def test_offline_names_from_two_front_ends_never_meet(tmp_path: Path, monkeypatch: Any) -> None:
    """Two servers (each its own writer) storing for one account in the
    same nanosecond, neither write yet on disk: two files, nothing
    replaced, both read back."""
    monkeypatch.setattr(offline.time, "time_ns", lambda: 1_764_000_000_000_000_000)
    first_writes, first_pool = writer()
    second_writes, second_pool = writer()
    first = OfflineStore(tmp_path, writes=first_writes).add(b"one")
    second = OfflineStore(tmp_path, writes=second_writes).add(b"two")
    assert first is not None and second is not None and first != second
    first_pool.run_all()
    second_pool.run_all()
    assert sorted(OfflineStore(tmp_path).peek()) == [b"one", b"two"]


def test_offline_bound_is_checked_by_the_write(tmp_path: Path, monkeypatch: Any) -> None:
    """add() never lists the folder on the calling thread; the write
    finds the store full, fails with StoreFull, logs nothing, writes
    nothing; stanzas still waiting count at once."""
    writes, pool = writer()
    events: list[dict[str, Any]] = []
    writes.log = Logger(observer=cast(ILogObserver, events.append))
    OfflineStore(tmp_path, max_messages=2).add(b"old")
    OfflineStore(tmp_path, max_messages=2).add(b"older")
    store = OfflineStore(tmp_path, max_messages=2, writes=writes)

    def no_listing(path: Any) -> Any:
        raise AssertionError("listed on the calling thread")

    with monkeypatch.context() as patched:
        patched.setattr(offline.os, "scandir", no_listing)
        path = store.add(b"new")
    assert path is not None
    failures: list[Failure] = []
    store.written().addErrback(failures.append)
    pool.run_all()
    assert failures and failures[0].check(StoreFull)
    assert events == [] and not path.exists()
    assert OfflineStore(tmp_path).peek() == [b"old", b"older"]
    waiting = OfflineStore(tmp_path / "other", max_messages=2, writes=writes)
    assert waiting.add(b"1") and waiting.add(b"2")
    assert waiting.add(b"3") is None


def test_offline_pending_removals_leave_room(tmp_path: Path) -> None:
    """Delivered stanzas whose removal has not run yet do not fill the
    store: a new one is written even if its write runs first."""
    OfflineStore(tmp_path, max_messages=2).add(b"one")
    OfflineStore(tmp_path, max_messages=2).add(b"two")
    writes, pool = writer()
    store = OfflineStore(tmp_path, max_messages=2, writes=writes)
    found: list[tuple[Path, bytes]] = []
    store.stored().addCallback(found.extend)
    pool.run_all()
    store.forget([path for path, _ in found])
    path = store.add(b"new")
    assert path is not None
    failures: list[Failure] = []
    store.written().addErrback(failures.append)
    index = next(i for i, job in enumerate(pool.jobs) if job[2][-2] == path)
    pool.run(index)
    assert failures == [] and path.read_bytes() == b"new"
    pool.run_all()
    assert OfflineStore(tmp_path).peek() == [b"new"]


def test_offline_names_rise_when_the_clock_steps_back(tmp_path: Path, monkeypatch: Any) -> None:
    """Each message to an offline account may get a store object of its
    own; the order still follows arrival when the clock steps back."""
    times = iter([2_000_000_000_000_000_000, 1_000_000_000_000_000_000])
    monkeypatch.setattr(offline.time, "time_ns", lambda: next(times))
    OfflineStore(tmp_path).add(b"first")
    OfflineStore(tmp_path).add(b"second")
    assert OfflineStore(tmp_path).peek() == [b"first", b"second"]
