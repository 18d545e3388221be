"""How the small per-account stores write their files: at once, or queued.

A store (the XMPP roster, block list, vCard, offline messages) keeps its
state in memory and hands each new state of a file to a writer
(:class:`FileWrites`).  The writer the server uses
(:class:`communigate.portal.durablefiles.DurableFiles`) runs the write, the
``fsync`` and the rename in a thread pool, one at a time per file, a newer
state replacing an older one still waiting; until a state is on disk the
writer hands it back (:meth:`FileWrites.latest`), so the next read sees it
at once.  :class:`InlineWrites`, the default, writes at once and raises
``OSError`` (the command line, tests of the stores themselves).

Each scheduled state has a :class:`Ticket`: whoever must not answer before
the state is durable (an XMPP ``<iq type='result'/>``) waits on
:meth:`Ticket.watch`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from communigate.store.atomic import fsync_directory

T = TypeVar("T")


class _Removed:
    """The state of a file being removed."""

    def __repr__(self) -> str:
        return "REMOVED"


#: What :meth:`FileWrites.latest` gives for a file whose removal is pending.
REMOVED: Any = _Removed()

#: Writes ``state`` to ``path`` durably (runs in the writer's thread).
WriteFunction = Callable[[Path, Any], None]


def remove_file(path: Path, state: object = None) -> None:
    """Remove ``path`` (if there) and make the removal durable."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_directory(path.parent)


class WriteRefused(Exception):
    """A write function's refusal of a state (a bound it keeps), not a
    failure of the disk: the tickets fail with it and nothing is logged."""


class Ticket:
    """The outcome of one scheduled write: pending, done, or failed."""

    def __init__(self) -> None:
        self._done = False
        self._failure: Failure | None = None
        self._watchers: list[Deferred[None]] = []

    @property
    def done(self) -> bool:
        """Whether the write ended (landed or failed)."""
        return self._done

    def resolve(self, failure: Failure | None = None) -> None:
        """The write ended: landed (None) or failed."""
        self._done, self._failure = True, failure
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            if failure is None:
                watcher.callback(None)
            else:
                watcher.errback(failure)

    def watch(self) -> Deferred[None]:
        """A new Deferred: fires once the state (or a newer one of the same
        file) is on disk, fails with the ``OSError`` that stopped it (or
        the :class:`WriteRefused` of the write function)."""
        if not self._done:
            watcher: Deferred[None] = Deferred()
            self._watchers.append(watcher)
            return watcher
        return succeed(None) if self._failure is None else fail(self._failure)


def done_ticket() -> Ticket:
    """A ticket for something already on disk."""
    ticket = Ticket()
    ticket.resolve()
    return ticket


class FileWrites(Protocol):
    """Where a store sends the new states of its files."""

    #: Changes with every change of what is pending (a state queued,
    #: replaced, started or finished): what :meth:`latest` and
    #: :meth:`waiting` answered holds while it stays the same.
    changes: int

    def replace(self, path: Path, state: Any, write: WriteFunction) -> Ticket:
        """Schedule ``write(path, state)``: ``state`` becomes the file's."""

    def remove(self, path: Path) -> Ticket:
        """Schedule the removal of ``path``."""

    def latest(self, path: Path) -> Any:
        """The newest state scheduled for ``path`` and not yet on disk
        (:data:`REMOVED` for a removal), None when nothing is pending."""

    def pending_under(self, folder: Path) -> dict[Path, Any]:
        """The newest pending state of every file directly in ``folder``."""

    def queue(self, path: Path) -> tuple[Any, ...]:
        """The states of ``path`` being written and waiting, oldest first
        (the second, when there are two, is the one a newer state
        replaces)."""

    def waiting(self, path: Path) -> Any:
        """The state of ``path`` waiting for the running write to end (the
        one a newer state replaces), None when none waits."""

    def read(self, function: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run a reading ``function(*args)`` where the writes run (the
        thread pool), its result (or failure) delivered on the caller's
        thread."""


class InlineWrites:
    """Writes at once on the calling thread; ``OSError`` is raised."""

    #: Nothing is ever pending.
    changes = 0

    def replace(self, path: Path, state: Any, write: WriteFunction) -> Ticket:
        """Write now."""
        write(path, state)
        return done_ticket()

    def remove(self, path: Path) -> Ticket:
        """Remove now."""
        remove_file(path)
        return done_ticket()

    def latest(self, path: Path) -> Any:
        """Nothing is ever pending."""
        return None

    def pending_under(self, folder: Path) -> dict[Path, Any]:
        """Nothing is ever pending."""
        return {}

    def queue(self, path: Path) -> tuple[Any, ...]:
        """Nothing is ever pending."""
        return ()

    def waiting(self, path: Path) -> Any:
        """Nothing ever waits."""
        return None

    def read(self, function: Callable[..., T], *args: Any) -> Deferred[T]:
        """Read now."""
        try:
            return succeed(function(*args))
        except Exception:
            return fail()


#: The writer of stores given none.
INLINE = InlineWrites()
