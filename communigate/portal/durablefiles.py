"""Durable writes of small whole files off the reactor thread, per file.

The XMPP stores (roster, block list, vCard, offline messages, the chat
archive whose appends waiting together form one state; see
:mod:`communigate.store.writes`) change their state in memory on the
reactor thread and give each new state of a file to :class:`DurableFiles`,
which writes it (temporary file, ``fsync``, rename, ``fsync`` of the
folder: :func:`communigate.store.atomic.write_atomic`) in the server's
thread pool, the way :class:`communigate.portal.durable.DurableWriter`
commits messages:

- one write per file at a time, so two threads never write one file;
- while a file's write runs, a newer state waits; a state newer still
  replaces the waiting one (it holds every change the older had), so a
  burst of changes costs one write after the running one, and an older
  state is never written after a newer one;
- until a state is on disk, :meth:`DurableFiles.latest` gives it back, so
  every reader in the process sees it at once;
- a failed write is logged (one line: the file and the error) and fails
  the tickets waiting for it; the store then reads what is on disk again
  (a :class:`~communigate.store.writes.WriteRefused`, a bound the write
  function keeps, fails them without a log line).

Without a pool (the command line, tests), or once the pool has stopped
(the server shuts down), each write runs at once, but a failure still goes
to the ticket rather than to the caller.  :class:`DurableFilesService`
makes shutdown wait until every pending state is on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from communigate.store.writes import REMOVED, Ticket, WriteFunction, WriteRefused, remove_file

T = TypeVar("T")


@dataclass
class _Job:
    """One state to write to one file, and who waits for it."""

    path: Path
    state: Any
    write: WriteFunction
    tickets: list[Ticket] = field(default_factory=list)


class DurableFiles:
    """Writes whole files in a thread pool: serialised and coalesced per file."""

    log = Logger()

    def __init__(self, reactor: Any = None, pool: Any = None) -> None:
        self.reactor = reactor
        self.pool = pool
        self._running: dict[Path, _Job] = {}
        self._waiting: dict[Path, _Job] = {}
        self._drained: list[Deferred[None]] = []
        #: Writes started, and states replaced by a newer one before their
        #: write started (for tests and figures).
        self.writes = 0
        self.coalesced = 0
        #: Counts every change of what is pending (a state queued, replaced,
        #: started or finished): a store that looked at :meth:`latest` or
        #: :meth:`waiting` may keep the answer while this stays the same.
        self.changes = 0

    def replace(self, path: Path, state: Any, write: WriteFunction) -> Ticket:
        """Schedule ``write(path, state)`` (run in the pool); the ticket
        resolves once this state or a newer one is on disk."""
        ticket = Ticket()
        self.changes += 1
        waiting = self._waiting.get(path)
        if waiting is not None:
            waiting.state, waiting.write = state, write
            waiting.tickets.append(ticket)
            self.coalesced += 1
            return ticket
        job = _Job(path, state, write, [ticket])
        if path in self._running:
            self._waiting[path] = job
        else:
            self._start(job)
        return ticket

    def remove(self, path: Path) -> Ticket:
        """Schedule the removal of ``path`` (after any pending write of it)."""
        return self.replace(path, REMOVED, remove_file)

    def latest(self, path: Path) -> Any:
        """The newest state of ``path`` not yet on disk, or None."""
        job = self._waiting.get(path) or self._running.get(path)
        return None if job is None else job.state

    def pending_under(self, folder: Path) -> dict[Path, Any]:
        """The newest pending state of each file directly in ``folder``."""
        found = {path: job.state for path, job in self._running.items() if path.parent == folder}
        found.update(
            (path, job.state) for path, job in self._waiting.items() if path.parent == folder
        )
        return found

    def queue(self, path: Path) -> tuple[Any, ...]:
        """The states of ``path`` being written and waiting, oldest first."""
        return tuple(jobs[path].state for jobs in (self._running, self._waiting) if path in jobs)

    def waiting(self, path: Path) -> Any:
        """The state of ``path`` waiting for the running write, or None."""
        job = self._waiting.get(path)
        return None if job is None else job.state

    def read(self, function: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run a reading ``function(*args)`` in the pool (at once without
        one, or once the pool stopped), so a large file is not read on the
        reactor thread."""
        if self.pool is None or getattr(self.pool, "joined", False):
            try:
                return succeed(function(*args))
            except Exception:
                return fail()
        return deferToThreadPool(self.reactor, self.pool, function, *args)

    def idle(self) -> bool:
        """Whether no write runs or waits."""
        return not self._running and not self._waiting

    def drained(self) -> Deferred[None]:
        """Fires once no write runs or waits."""
        if self.idle():
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._drained.append(done)
        return done

    def _start(self, job: _Job) -> None:
        """Run one job: in the pool, or at once without one (or once the
        pool stopped: it would drop the job)."""
        self._running[job.path] = job
        self.writes += 1
        self.changes += 1
        if self.pool is None or getattr(self.pool, "joined", False):
            try:
                job.write(job.path, job.state)
            except Exception:
                self._finished(Failure(), job)
            else:
                self._finished(None, job)
            return
        running = deferToThreadPool(self.reactor, self.pool, job.write, job.path, job.state)
        running.addBoth(self._finished, job)

    def _finished(self, result: object, job: _Job) -> None:
        """A job ended: start the state waiting for the file, then tell the
        tickets (which may schedule more)."""
        del self._running[job.path]
        self.changes += 1
        failure = result if isinstance(result, Failure) else None
        if failure is not None and not failure.check(WriteRefused):
            error = failure.value
            reason = getattr(error, "strerror", None) or repr(error)
            self.log.error("could not write {path}: {reason}", path=str(job.path), reason=reason)
        following = self._waiting.pop(job.path, None)
        if following is not None:
            self._start(following)
        for ticket in job.tickets:
            ticket.resolve(failure)
        if self._drained and self.idle():
            drained, self._drained = self._drained, []
            for done in drained:
                done.callback(None)


class DurableFilesService(Service):
    """Makes the server's shutdown wait until the writer has put every
    pending state on disk (what the stopped pool would drop runs at once)."""

    def __init__(self, writes: DurableFiles) -> None:
        self.writes = writes

    def stopService(self) -> Deferred[None]:
        """Stop once nothing is waiting to be written."""
        super().stopService()
        return self.writes.drained()
