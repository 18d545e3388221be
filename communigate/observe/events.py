"""Session events: one record per login attempt, per logout, per lockout.

The checker decides a login and reports it once, as a :class:`LoginEvent`;
the login service reports the end of a logged-in session as a
:class:`LogoutEvent`.  Whoever watches (the log, the metrics) implements
:class:`IActivityObserver`; :class:`Fanout` hands every event to several.

An event never holds a password or a SASL payload: it is built from the
connection, the login name as typed, the account it led to and the
checker's verdict, nothing else.  ``result`` is ``ok`` or the failure's
``kind`` (:mod:`communigate.cred.errors`: ``wrong-password``,
``unknown-account``, ``locked``, ``service-disabled``,
``secure-method-required``, ``impersonation-refused``, ``address-refused``,
``temporary``), or ``internal-error`` / ``abandoned``: one vocabulary for
logs and metric labels.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from communigate.cred.credentials import ConnectionInfo

#: ``result`` of a login whose check raised something unexpected.
INTERNAL_ERROR = "internal-error"
#: ``result`` of a login whose client went away while it was checked.
ABANDONED = "abandoned"
#: ``result`` of an accepted login.
OK = "ok"


#: Characters of a login name an event keeps (longer ones are cut).
MAX_LOGGED_NAME = 256


def new_session_id() -> str:
    """A short random hex name for one connection (48 bits)."""
    return secrets.token_hex(6)


@dataclass(frozen=True)
class LoginEvent:
    """One login attempt and its verdict."""

    session: str | None
    protocol: str
    remote_host: str | None
    remote_port: int | None
    local_host: str | None
    local_port: int | None
    tls: bool
    server_name: str | None
    #: The login name as the client typed it.
    login: str
    #: ``name@domain`` of the account the name led to, if any.
    account: str | None
    #: A configured domain (the account's, or the one the name or the
    #: connection names), else None: never a domain only the client typed.
    domain: str | None
    mechanism: str
    result: str
    #: Why, in words, for the administrator (never the secret).
    detail: str | None = None
    #: The account opened instead (impersonation), if any.
    authorized: str | None = None
    #: Seconds from the attempt to the verdict, if a clock was given.
    latency: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the login was accepted."""
        return self.result == OK

    @classmethod
    def of(cls, connection: ConnectionInfo, **fields: object) -> LoginEvent:
        """An event for an attempt on ``connection`` with ``fields``; the
        login name is cut to :data:`MAX_LOGGED_NAME` characters (a client
        controls it: a long one must not swell the log)."""
        login = fields.get("login")
        if isinstance(login, str) and len(login) > MAX_LOGGED_NAME:
            fields["login"] = login[:MAX_LOGGED_NAME] + "…"
        return cls(
            session=connection.session,
            protocol=connection.protocol,
            remote_host=connection.remote_host,
            remote_port=connection.remote_port,
            local_host=connection.local_host,
            local_port=connection.local_port,
            tls=connection.secure,
            server_name=connection.server_name,
            **fields,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class LogoutEvent:
    """The end of a logged-in session."""

    session: str | None
    protocol: str
    account: str | None
    #: Seconds from the login to the logout, if a clock was given.
    duration: float | None
    #: Bytes read from and written to the client on this connection so far
    #: (None when the listener does not count them).
    bytes_in: int | None = None
    bytes_out: int | None = None


@dataclass(frozen=True)
class LockoutEvent:
    """An account locked by too many failed logins (``FailedLoginFlow``)."""

    session: str | None
    protocol: str
    account: str
    domain: str
    remote_host: str | None


class IActivityObserver(Interface):
    """Told of every login, logout and lockout."""

    def login(event: LoginEvent) -> None:
        """A login attempt was decided."""

    def opened(protocol: str) -> None:
        """A logged-in session began (the realm gave its avatar)."""

    def logout(event: LogoutEvent) -> None:
        """A logged-in session ended."""

    def lockout(event: LockoutEvent) -> None:
        """An account was locked."""


_NAMES: dict[type, tuple[str, ...]] = {}


def _fields(event: Any) -> dict[str, Any]:
    """An event's fields by name (``dataclasses.asdict`` without its deep
    copies: the values are logged, never changed)."""
    names = _NAMES.get(type(event))
    if names is None:
        names = _NAMES[type(event)] = tuple(field.name for field in fields(event))
    return {name: getattr(event, name) for name in names}


@implementer(IActivityObserver)
class EventLog:
    """Writes each event as one structured twisted.logger event.

    The fields of the dataclass become fields of the log event, plus
    ``event`` (``login``, ``logout``, ``lockout``), so a JSON log line can be
    filtered on any of them.
    """

    def __init__(self) -> None:
        # Not a class attribute: Logger, as a descriptor, would rename its
        # namespace after the class.
        self.log = Logger(namespace="communigate.session", source=self)

    def login(self, event: LoginEvent) -> None:
        """``{protocol} {mechanism} login ...: {result}``; an internal
        error is logged with the traceback of the exception being handled
        (the checker reports it from its ``except`` clause)."""
        emit = self.log.failure if event.result == INTERNAL_ERROR else self.log.info
        text = "{protocol} {mechanism} login {login!r} from {remote_host}:{remote_port}"
        text += " session {session}" + (" as {account}" if event.account else "")
        text += " impersonates {authorized}" if event.authorized else ""
        # The result is a fixed word (no braces), so it may stand in the
        # format itself: a filter on the text template sees it.
        text += ": " + event.result + (" ({detail})" if event.detail else "")
        emit(
            text,
            event="login",
            ok=event.ok,
            **_fields(event),
        )

    def opened(self, protocol: str) -> None:
        """Nothing: the login event said it."""

    def logout(self, event: LogoutEvent) -> None:
        """``{protocol} logout of {account} ...``."""
        text = "{protocol} logout of {account} session {session}"
        if event.duration is not None:
            text += " after {duration:.3f}s"
        if event.bytes_in is not None:
            text += " ({bytes_in} bytes in, {bytes_out} bytes out)"
        self.log.info(text, event="logout", **_fields(event))

    def lockout(self, event: LockoutEvent) -> None:
        """``account ... locked``."""
        self.log.warn(
            "{account} locked after too many failed {protocol} logins from {remote_host}",
            event="lockout",
            **_fields(event),
        )


@implementer(IActivityObserver)
class Fanout:
    """Hands every event to each of several observers, in order."""

    def __init__(self, observers: Iterable[IActivityObserver]) -> None:
        self.observers = list(observers)

    def login(self, event: LoginEvent) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.login(event)

    def opened(self, protocol: str) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.opened(protocol)

    def logout(self, event: LogoutEvent) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.logout(event)

    def lockout(self, event: LockoutEvent) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.lockout(event)


class ISessionMind(Interface):
    """The ``mind`` the login service gives the portal: the realm tells it
    which account it opened."""

    account = Attribute("``name@domain`` of the opened account, once opened.")

    def opened(domain: str, name: str) -> None:
        """The realm opened ``name@domain`` for this login."""


@implementer(ISessionMind)
class SessionMind:
    """Collects what the realm opened, for the logout event."""

    def __init__(self, connection: ConnectionInfo) -> None:
        self.connection = connection
        self.account: str | None = None

    def opened(self, domain: str, name: str) -> None:
        """Remember ``name@domain``."""
        self.account = f"{name}@{domain}"
