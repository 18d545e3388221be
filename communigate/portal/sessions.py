"""Live sessions per account, so that deleting an account ends them.

The realm registers every avatar it hands out (:meth:`SessionRegistry.opened`)
and the protocol watches its avatar (:meth:`LiveSession.watch`) with a
callback that says goodbye in its own words (IMAP ``* BYE``, POP3 ``-ERR``,
FTP ``421``) and closes the connection.  :meth:`SessionRegistry.sweep`, run
every few seconds, ends the sessions of accounts that are gone — deleted or
renamed with the command line, which runs in another process and only
changes files.  A session never creates its account's folder again (the
store refuses), so nothing brings a deleted account back.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from twisted.logger import Logger

from communigate.store.directory import IDirectory, ObjectKind


class LiveSession:
    """What an avatar mixes in to be ended from outside."""

    _watchers: list[Callable[[str], None]] | None = None

    def watch(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` when the session must end."""
        if self._watchers is None:
            self._watchers = []
        self._watchers.append(callback)

    def end(self, reason: str) -> None:
        """End the session (once): every watcher is told."""
        watchers, self._watchers = self._watchers or [], []
        for callback in watchers:
            callback(reason)


class SessionRegistry:
    """The avatars handed out, per account."""

    log = Logger()

    def __init__(self, directory: IDirectory) -> None:
        self.directory = directory
        self.live: dict[tuple[str, str], set[LiveSession]] = {}

    def opened(self, domain: str, name: str, avatar: LiveSession) -> Callable[[], None]:
        """Register ``avatar``; the returned logout removes it."""
        key = (domain, name)
        self.live.setdefault(key, set()).add(avatar)
        # (A partial rather than a closure: one stays with every session.)
        return partial(self._forget, key, avatar)

    def _forget(self, key: tuple[str, str], avatar: LiveSession) -> None:
        avatars = self.live.get(key)
        if avatars is not None:
            avatars.discard(avatar)
            if not avatars:
                del self.live[key]

    def sweep(self) -> int:
        """End the sessions of accounts that no longer exist; how many."""
        ended = 0
        for (domain, name), avatars in list(self.live.items()):
            found = self.directory.find_object(domain, name)
            if found is not None and found.kind is ObjectKind.ACCOUNT:
                continue
            self.log.info(
                "{count} sessions of {name}@{domain} ended: the account is gone",
                count=len(avatars),
                name=name,
                domain=domain,
            )
            ended += self.end(domain, name, "the account was deleted")
        return ended

    def end(self, domain: str, name: str, reason: str) -> int:
        """End every live session of ``name@domain`` (each protocol says
        goodbye with ``reason``); how many were ended."""
        avatars = self.live.pop((domain, name), set())
        for avatar in list(avatars):
            avatar.end(reason)
        return len(avatars)
