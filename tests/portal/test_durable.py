"""Durable writes in the thread pool: grouped per mailbox, answered only
once on disk, nothing visible before."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from communigate.portal.durable import DurableWriter
from communigate.store.mailbox import Mailbox
from tests.conftest import SyncReactor
from tests.portal.test_durablefiles import HeldPool


def results(deferreds: list[Any]) -> list[Any]:
    found: list[Any] = []
    for deferred in deferreds:
        deferred.addBoth(found.append)
    return found


def test_commit_waits_for_the_pool_and_groups(tmp_path: Path) -> None:
    """Messages waiting while a commit runs go together in the next one."""
    mailbox = Mailbox(tmp_path / "INBOX.mdir")
    pool = HeldPool()
    writer = DurableWriter(SyncReactor(), pool)
    first = writer.commit(mailbox, mailbox.stage(b"Subject: 1\r\n\r\nx\r\n"))
    later = [writer.commit(mailbox, mailbox.stage(b"Subject: %d\r\n\r\nx\r\n" % n)) for n in (2, 3)]
    done = results([first, *later])
    # Staged is not delivered: nobody sees the messages, nothing answered.
    assert mailbox.messages() == []
    assert done == []
    assert len(pool.jobs) == 1
    pool.run()
    assert done == [1]
    assert len(pool.jobs) == 1
    pool.run()
    assert done == [1, 2, 3]
    assert (writer.commits, writer.committed) == (2, 3)
    assert [info.uid for info in mailbox.messages()] == [1, 2, 3]
    assert list((mailbox.path / "tmp").iterdir()) == []


def test_mailboxes_commit_in_parallel(tmp_path: Path) -> None:
    """Two mailboxes do not wait for each other."""
    one, two = Mailbox(tmp_path / "A.mdir"), Mailbox(tmp_path / "B.mdir")
    pool = HeldPool()
    writer = DurableWriter(SyncReactor(), pool)
    writer.commit(one, one.stage(b"a\r\n"))
    writer.commit(two, two.stage(b"b\r\n"))
    assert len(pool.jobs) == 2


def test_failed_commit_reports_and_leaves_nothing(tmp_path: Path) -> None:
    """A message whose mailbox went away fails; no half message stays."""
    mailbox = Mailbox(tmp_path / "INBOX.mdir")
    pool = HeldPool()
    writer = DurableWriter(SyncReactor(), pool)
    staged = mailbox.stage(b"Subject: x\r\n\r\nx\r\n")
    done = results([writer.commit(mailbox, staged)])
    shutil.rmtree(mailbox.path / "tmp")
    pool.run()
    assert len(done) == 1 and done[0].check(FileNotFoundError)
    assert mailbox.messages() == []


def test_without_a_pool_commits_at_once(tmp_path: Path) -> None:
    """The command line's writer (no pool) delivers before it returns."""
    mailbox = Mailbox(tmp_path / "INBOX.mdir")
    done = results([DurableWriter().commit(mailbox, mailbox.stage(b"x\r\n", ["\\Seen"]))])
    assert done == [1]
    (info,) = mailbox.messages()
    assert info.flags == frozenset({"\\Seen"})
