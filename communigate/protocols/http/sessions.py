"""The process-wide registry of WebUser sessions.

A session is opened after a successful login through the form and lives
until its owner logs out, until it has been idle for ``idle`` seconds or
``lifetime`` seconds after it began (whichever comes first), or until its
account is deleted (the avatar's :class:`~communigate.portal.sessions.
LiveSession` watch).  Both times are its domain's, when the session opens
(:func:`session_limits`: domain settings ``WebUserIdleTimeout``, default 30
minutes as CommuniGate's WebUser, and ``WebUserSessionLimit``, default 12
hours); a change applies to sessions opened after it.  Its ID has
CommuniGate's shape, ``<number>-<20 random characters>``
(``4815-vN2Txjkggy7gjHRD10jw``): a counter, so IDs
never repeat in one process, and about 119 random bits, so they cannot be
guessed.

The registry also answers the SESSIONID login method
(:class:`~communigate.cred.sasl.sessionid.ISessionOwners`): a live
session's account, when the name the client typed resolves to it.  Using an
ID that way does not make its session younger.

An account holds at most :data:`MAX_PER_ACCOUNT` sessions: a new login
past that closes the account's oldest session, so a script logging in
again and again (or a password shared too widely) cannot fill the
server's memory.  Expired sessions are closed when they are next used, a
few at each login (the oldest first) and all of them by a sweep every
minute; opening a session never walks through every other.

Worker processes (``--workers``) serve IMAP and POP3 and take SESSIONID
logins too: :attr:`WebSessions.watch` tells them of every session opened
and closed, and each keeps a :class:`SessionCopies` of the live ones (the
ID, the account and the end of the session's lifetime).  A session that
ends by being idle is closed here by the minute's sweep at the latest,
and a worker takes its ID until then.

The clock and the source of random characters are passed in.
"""

from __future__ import annotations

import hmac
import itertools
import secrets
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from zope.interface import implementer

from communigate.cred.credentials import ConnectionInfo
from communigate.cred.sasl.sessionid import ISessionOwners
from communigate.store.settingsformat import Value, as_seconds

#: Seconds a session may stay unused (CommuniGate's WebUser default).
IDLE_TIMEOUT = 30 * 60
#: Seconds a session may last at most, however busy.
LIFETIME = 12 * 60 * 60
#: Domain settings holding the two times.
IDLE_SETTING = "WebUserIdleTimeout"
LIFETIME_SETTING = "WebUserSessionLimit"
_ALPHABET = string.ascii_letters + string.digits
#: Live sessions one account may hold (its oldest goes first).
MAX_PER_ACCOUNT = 100
#: Oldest sessions looked at for expiry at each login.
_SWEEP_AT_OPEN = 4


def session_limits(
    settings: Mapping[str, Value], idle: float = IDLE_TIMEOUT, lifetime: float = LIFETIME
) -> tuple[float, float]:
    """``(idle, lifetime)`` seconds a domain's settings give its web
    sessions; a value missing or not a time interval keeps the default
    (at least a minute each, so a typo cannot end every session at once)."""
    found = []
    for key, default in ((IDLE_SETTING, idle), (LIFETIME_SETTING, lifetime)):
        value = settings.get(key)
        try:
            seconds = float(as_seconds(value)) if value is not None else default
        except ValueError:
            seconds = default
        found.append(max(60.0, seconds))
    return found[0], found[1]


def random_characters(count: int = 20) -> str:
    """``count`` characters of ``[A-Za-z0-9]`` from the system's CSPRNG."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(count))


@dataclass
class WebSession:
    """One logged-in WebUser session."""

    id: str
    account: str
    avatar: Any
    logout: Callable[[], None]
    started: float
    used: float
    secure: bool = False
    closed: bool = field(default=False)
    #: Seconds it may stay unused, and last at most.
    idle: float = IDLE_TIMEOUT
    lifetime: float = LIFETIME

    @property
    def domain(self) -> str:
        """The account's domain."""
        return self.account.rpartition("@")[2]


@implementer(ISessionOwners)
class WebSessions:
    """Live web sessions by ID."""

    def __init__(
        self,
        clock: Callable[[], float],
        resolve: Callable[[str, ConnectionInfo], str],
        idle: float = IDLE_TIMEOUT,
        lifetime: float = LIFETIME,
        characters: Callable[[], str] = random_characters,
        first: int | None = None,
    ) -> None:
        self._clock = clock
        self._resolve = resolve
        self.idle = idle
        self.lifetime = lifetime
        self._characters = characters
        self._counter = first if first is not None else 1000 + secrets.randbelow(9000)
        self._live: dict[str, WebSession] = {}
        #: Each account's live session IDs, oldest first.
        self._by_account: dict[str, dict[str, None]] = {}
        #: Told ``(id, session)`` of each session opened and ``(id, None)``
        #: of each closed (the worker processes keep copies).
        self.watch: Callable[[str, WebSession | None], None] | None = None

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[WebSession]:
        """The sessions open now (some may have expired unnoticed)."""
        return iter(list(self._live.values()))

    def open(
        self,
        account: str,
        avatar: Any,
        logout: Callable[[], None],
        secure: bool = False,
        limits: tuple[float, float] | None = None,
    ) -> WebSession:
        """Register a new session for a logged-in ``account``; ``limits``:
        its ``(idle, lifetime)`` seconds, else the registry's."""
        self._sweep_oldest()
        owned = self._by_account.setdefault(account.lower(), {})
        while len(owned) >= MAX_PER_ACCOUNT:
            self.close(next(iter(owned)))
        self._counter += 1
        now = self._clock()
        idle, lifetime = limits if limits is not None else (self.idle, self.lifetime)
        session = WebSession(
            f"{self._counter}-{self._characters()}",
            account,
            avatar,
            logout,
            now,
            now,
            secure,
            idle=idle,
            lifetime=lifetime,
        )
        self._live[session.id] = session
        owned[session.id] = None
        watch = getattr(avatar, "watch", None)
        if watch is not None:
            watch(lambda _reason: self.close(session.id))
        if self.watch is not None:
            self.watch(session.id, session)
        return session

    @staticmethod
    def _expired(session: WebSession, now: float) -> bool:
        return now - session.used > session.idle or now - session.started > session.lifetime

    def _find(self, session_id: str) -> WebSession | None:
        """The live session of an ID, without using it; an expired one is
        closed."""
        session = self._live.get(session_id)
        if session is None:
            return None
        if self._expired(session, self._clock()):
            self.close(session_id)
            return None
        return session

    def live(self, session_id: str) -> bool:
        """Whether an ID names a live session (without using it)."""
        return self._find(session_id) is not None

    def get(self, session_id: str) -> WebSession | None:
        """The live session of an ID (it is used now), None if there is
        none, it ended or it expired."""
        session = self._find(session_id)
        if session is not None:
            session.used = self._clock()
        return session

    def close(self, session_id: str) -> bool:
        """Log a session out; whether it was live."""
        session = self._live.pop(session_id, None)
        if session is None or session.closed:
            return False
        owned = self._by_account.get(session.account.lower())
        if owned is not None:
            owned.pop(session_id, None)
            if not owned:
                del self._by_account[session.account.lower()]
        session.closed = True
        session.logout()
        if self.watch is not None:
            self.watch(session_id, None)
        return True

    def _sweep_oldest(self) -> None:
        """Close the oldest few sessions if they expired (a login's share
        of the sweep: constant work, however many sessions there are)."""
        now = self._clock()
        for key in list(itertools.islice(self._live, _SWEEP_AT_OPEN)):
            if self._expired(self._live[key], now):
                self.close(key)

    def sweep(self) -> int:
        """Close the expired sessions; how many."""
        now = self._clock()
        expired = [key for key, value in self._live.items() if self._expired(value, now)]
        for key in expired:
            self.close(key)
        return len(expired)

    def owner(self, login: str, session_id: str, connection: ConnectionInfo) -> str | None:
        """SESSIONID: the session's account when ``login`` resolves to it."""
        session = self._find(session_id)
        if session is None:
            return None
        return owner_if(session.account, login, connection, self._resolve)


def owner_if(
    account: str,
    login: str,
    connection: ConnectionInfo,
    resolve: Callable[[str, ConnectionInfo], str],
) -> str | None:
    """``account`` (a session's) when ``login`` resolves to it on
    ``connection``; else None."""
    try:
        resolved = resolve(login, connection)
    except Exception:  # any name that leads nowhere: not this session's
        return None
    if not hmac.compare_digest(resolved.lower().encode(), account.lower().encode()):
        return None
    return account


@implementer(ISessionOwners)
class SessionCopies:
    """A worker process's copies of the server's live web sessions: each
    session's account until it closes or its lifetime ends."""

    def __init__(
        self, clock: Callable[[], float], resolve: Callable[[str, ConnectionInfo], str]
    ) -> None:
        self._clock = clock
        self._resolve = resolve
        #: ID → (account, seconds since the epoch when its lifetime ends).
        self._live: dict[str, tuple[str, float]] = {}

    def __len__(self) -> int:
        return len(self._live)

    def opened(self, session_id: str, account: str, ends: float) -> None:
        """A session opened at the server."""
        self._live[session_id] = (account, ends)

    def closed(self, session_id: str) -> None:
        """A session closed at the server."""
        self._live.pop(session_id, None)

    def owner(self, login: str, session_id: str, connection: ConnectionInfo) -> str | None:
        """SESSIONID: the session's account when ``login`` resolves to it."""
        found = self._live.get(session_id)
        if found is None:
            return None
        account, ends = found
        if self._clock() > ends:
            del self._live[session_id]
            return None
        return owner_if(account, login, connection, self._resolve)
