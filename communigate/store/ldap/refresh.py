"""Keeping an LDAP directory's snapshot fresh in a running server.

Twice a second (and at once after a change made by this process, from
whichever thread made it) one
:meth:`~.directory.LdapDirectory.fetch` runs in the thread pool — never
more than one at a time — and its result is merged on the reactor thread,
the only thread that reads the snapshot.  An unreachable LDAP server is
logged once when it goes away and once when it comes back.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from communigate.store.directory import DirectoryError
from communigate.store.ldap.directory import LdapDirectory
from communigate.store.ldap.snapshot import Fetched

#: Seconds between two looks at the LDAP server.
INTERVAL = 0.5


class DirectoryRefresher(Service):
    """Merges the LDAP server's changes into ``directory`` every
    ``interval`` seconds, the blocking search in ``pool``."""

    log = Logger()

    def __init__(
        self, directory: LdapDirectory, reactor: Any, pool: ThreadPool, interval: float = INTERVAL
    ) -> None:
        self.directory = directory
        self.reactor = reactor
        self.pool = pool
        self.interval = interval
        self._busy = False
        self._again = False
        self._down = False
        self._broken = False
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        """Look every ``interval`` seconds; look at once after a change."""
        super().startService()
        self._loop = LoopingCall(self.poll)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=False)
        # Changes are made in the pool's threads: poll on the reactor's.
        self.directory.on_change = lambda: self.reactor.callFromThread(self.poll)
        # Reads answer from memory; an LDAP call on the reactor thread
        # would stall every session while it waits: refused.
        self.directory.entries.may_block = _off_reactor_thread
        self.directory.refreshed = True

    def stopService(self) -> None:
        """Stop looking."""
        super().stopService()
        # Not None (refresh at once, in the writer's thread): the copy may
        # only change on the reactor thread, which still reads it.
        self.directory.on_change = _later
        self.directory.refreshed = False
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def poll(self) -> None:
        """Start one look unless one is running (then one more after it)."""
        if self._busy:
            self._again = True
            return
        self._busy = True
        looked = deferToThreadPool(self.reactor, self.pool, self.directory.fetch)
        looked.addCallback(self._fetched)
        # After _fetched: a merge that raised is logged too, not swallowed.
        looked.addErrback(self._failed)
        looked.addBoth(self._done)

    def _fetched(self, fetched: Fetched) -> None:
        self.directory.merge(fetched)
        self._broken = False
        if self._down:
            self._down = False
            self.log.info("LDAP directory reachable again")

    def _failed(self, failure: Failure) -> None:
        if not failure.check(DirectoryError):
            # A fault of ours, not of the LDAP server: its traceback, once.
            if not self._broken:
                self._broken = True
                self.log.failure("LDAP directory refresh failed", failure)
            return
        if not self._down:
            self._down = True
            self.log.warn(
                "LDAP directory unreachable ({error}); logins fail temporarily "
                "once the copy in memory is {limit:.0f} s old",
                error=failure.getErrorMessage(),
                limit=self.directory.max_age,
            )

    def _done(self, _: object) -> None:
        self._busy = False
        if self._again and self.running:
            self._again = False
            self.poll()


def _later() -> None:
    """After the refresher stopped: a change made here is read at the next
    start, never merged from the thread that made it."""


def _off_reactor_thread() -> bool:
    """Whether the calling thread is not the reactor's."""
    return not threadable.isInIOThread()
