"""Durable message writes off the reactor thread, grouped per mailbox.

A protocol stages a message (:meth:`~communigate.store.mailbox.Mailbox.stage`:
cheap, a spool is linked into ``tmp/``) on the reactor thread and hands it
to :meth:`DurableWriter.commit`, which runs
:meth:`~communigate.store.mailbox.Mailbox.commit` (writing the file, the
``fsync`` calls, the UID and the rename) in the server's thread pool.  The Deferred fires with
the UID once the message is on disk, so a protocol answers (IMAP's tagged
OK, LMTP's 250) only then, as before.

While one mailbox's commit runs, further messages for it wait and then go
in one commit together: one UID-file write and one folder flush serve them
all (the way a database groups commits).  Different mailboxes commit in
parallel, as many as the pool has threads.

The folders an expunge changed are flushed in the pool too
(:meth:`DurableWriter.flush`).

Without a pool (the command line, tests) commits run at once, blocking.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from communigate.store.mailbox import Mailbox, StagedMessage, flush_folders


class DurableWriter:
    """Commits staged messages in a thread pool, grouped per mailbox."""

    def __init__(self, reactor: Any = None, pool: Any = None) -> None:
        self.reactor = reactor
        self.pool = pool
        #: Mailbox folder → (mailbox, messages waiting with their Deferreds).
        self._waiting: dict[str, tuple[Mailbox, list[tuple[StagedMessage, Deferred[int]]]]] = {}
        #: Folders whose commit is running.
        self._running: set[str] = set()
        #: How many commits ran and how many messages they held (for tests
        #: and figures).
        self.commits = 0
        self.committed = 0

    def commit(self, mailbox: Mailbox, staged: StagedMessage) -> Deferred[int]:
        """Deliver a staged message; fires with its UID once it is durable
        (or fails with the ``OSError`` that stopped it)."""
        if self.pool is None:
            self.commits += 1
            self.committed += 1
            try:
                result = mailbox.commit([staged])[0]
            except Exception:
                mailbox.discard([staged])
                return fail()
            return fail(result) if isinstance(result, OSError) else succeed(result)
        key = str(mailbox.path)
        done: Deferred[int] = Deferred()
        _, waiting = self._waiting.setdefault(key, (mailbox, []))
        waiting.append((staged, done))
        if key not in self._running:
            self._start(key)
        return done

    def _start(self, key: str) -> None:
        """Commit everything waiting for one mailbox, in the pool."""
        mailbox, batch = self._waiting.pop(key)
        self._running.add(key)
        self.commits += 1
        self.committed += len(batch)
        running = deferToThreadPool(
            self.reactor, self.pool, mailbox.commit, [staged for staged, _ in batch]
        )
        running.addBoth(self._finished, key, mailbox, batch)

    def _finished(
        self,
        result: list[int | OSError] | Failure,
        key: str,
        mailbox: Mailbox,
        batch: list[tuple[StagedMessage, Deferred[int]]],
    ) -> None:
        """Give each waiting message its result; start the next group."""
        self._running.discard(key)
        if isinstance(result, Failure):
            mailbox.discard(staged for staged, _ in batch)
            for _, done in batch:
                done.errback(result)
        else:
            for (_, done), outcome in zip(batch, result, strict=True):
                if isinstance(outcome, OSError):
                    done.errback(Failure(outcome))
                else:
                    done.callback(outcome)
        if key in self._waiting and key not in self._running:
            self._start(key)

    def flush(self, folders: list[str]) -> Deferred[None]:
        """Flush folders whose entries changed (an expunge) to disk; fires
        once they are (at once without a pool or folders)."""
        if self.pool is None or not folders:
            try:
                flush_folders(folders)
            except OSError:
                return fail()
            return succeed(None)
        return deferToThreadPool(self.reactor, self.pool, flush_folders, folders)
