"""The table of live logged-in sessions, fed by the login service.

Each entry says who (account, login mechanism), how (protocol, TLS) and from
where (remote and local address and port) a session logged in, when, and
its session id, the one every log event of the connection carries.  Ending
sessions is the realm's :class:`~communigate.portal.sessions.SessionRegistry`
business; this table only lists them.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial

from zope.interface import implementer

from communigate.control.interfaces import ISessionTable
from communigate.cred.credentials import ConnectionInfo


@dataclass(frozen=True)
class SessionEntry:
    """One logged-in session."""

    session: str | None
    #: ``name@domain`` of the account the session opened.
    account: str
    protocol: str
    remote_host: str | None
    remote_port: int | None
    local_host: str | None
    local_port: int | None
    tls: bool
    mechanism: str
    #: Seconds since the epoch (the table's clock) when it logged in.
    since: float

    def domain(self) -> str:
        """The account's domain."""
        return self.account.rpartition("@")[2]

    def as_answer(self, now: float) -> dict[str, object]:
        """The entry as a control answer gives it, with its ``duration``
        (seconds) at ``now``."""
        return {**asdict(self), "duration": max(0.0, now - self.since)}


@implementer(ISessionTable)
class LiveSessions:
    """The sessions logged in now, in the order they logged in."""

    def __init__(self, clock: Callable[[], float]) -> None:
        #: Seconds since the epoch (the reactor's ``seconds``).
        self.clock = clock
        self._entries: dict[int, SessionEntry] = {}
        self._keys = itertools.count()

    def opened(
        self, connection: ConnectionInfo, account: str, mechanism: str
    ) -> Callable[[], None]:
        """Add a session; the returned callable removes it (once)."""
        return self.add(
            SessionEntry(
                session=connection.session,
                account=account,
                protocol=connection.protocol,
                remote_host=connection.remote_host,
                remote_port=connection.remote_port,
                local_host=connection.local_host,
                local_port=connection.local_port,
                tls=connection.secure,
                mechanism=mechanism,
                since=float(self.clock()),
            )
        )

    def add(self, entry: SessionEntry) -> Callable[[], None]:
        """Add ``entry`` (a session of this process or of a worker); the
        returned callable removes it (once)."""
        key = next(self._keys)
        self._entries[key] = entry
        # (A partial rather than a closure: one stays with every session.)
        return partial(self._forget, key)

    def _forget(self, key: int) -> None:
        self._entries.pop(key, None)

    def __iter__(self) -> Iterator[SessionEntry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def matching(self, selector: str | None = None) -> list[SessionEntry]:
        """The sessions of an account (``name@domain``), of a domain (no
        ``@``), or all of them (None); names compare without case."""
        if not selector:
            return list(self)
        wanted = selector.lower()
        if "@" in wanted:
            return [entry for entry in self if entry.account.lower() == wanted]
        return [entry for entry in self if entry.domain().lower() == wanted]

    def per_protocol(self) -> Counter[str]:
        """How many sessions each protocol has."""
        return Counter(entry.protocol for entry in self)
