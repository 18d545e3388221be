"""What every protocol server needs to log clients in, in one object.

A protocol gives its transport and asks: which domain is this connection
for, which login methods to advertise, may clear text be used, log in these
credentials.  Everything behind (names, Router, checkers, realm, TLS
certificates) stays behind the portal.

Each connection gets a session id (short random hex, carried by its
:class:`~communigate.cred.credentials.ConnectionInfo`, so every event of
the connection can be told apart); the checker reports each login attempt
once, and this service reports the end of each logged-in session (account,
duration, the bytes the listener counted) to the same observer.
"""

from __future__ import annotations

import os
import secrets
import socket
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred

from communigate.control.interfaces import ISessionTable
from communigate.cred.credentials import ConnectionInfo
from communigate.cred.sasl import registry, scram
from communigate.cred.sasl.registry import ExchangeContext
from communigate.observe.events import (
    EventLog,
    IActivityObserver,
    LogoutEvent,
    SessionMind,
    new_session_id,
)
from communigate.portal.accounts import AccountResolver
from communigate.protocols.tls import DomainContexts, channel_binding, server_name
from communigate.store.atomic import write_atomic
from communigate.store.settingsformat import Value


def salt_key(base: Path) -> bytes:
    """The server's SCRAM salt key, created on first use."""
    path = Path(base) / "Settings" / "SCRAM.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        write_atomic(path, key, 0o600)
        return key


class _Logout:
    """The logout a protocol is given: the realm's logout, the session's
    entry forgotten and its end reported, once.  (An object rather than a
    closure: one stays with every open session.)"""

    __slots__ = ("_done", "_forget", "_logout", "_mind", "_service", "_started")

    def __init__(
        self,
        service: LoginService,
        logout: Callable[[], None],
        forget: Callable[[], None] | None,
        mind: SessionMind,
        started: float | None,
    ) -> None:
        self._service = service
        self._logout = logout
        self._forget = forget
        self._mind = mind
        self._started = started
        self._done = False

    def __call__(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._logout()
        finally:
            if self._forget is not None:
                self._forget()
            self._service._ended(self._mind, self._started)


class LoginService:
    """The portal and its policy, as protocol servers use them."""

    def __init__(
        self,
        portal: Portal,
        resolver: AccountResolver,
        tls: DomainContexts | None = None,
        scram_key: bytes | None = None,
        hostname: str | None = None,
        observer: IActivityObserver | None = None,
        clock: Callable[[], float] | None = None,
        sessions: ISessionTable | None = None,
        kerberos: Any = None,
    ) -> None:
        self.portal = portal
        self.resolver = resolver
        self.tls = tls
        self.scram_key = scram_key or os.urandom(32)
        self.hostname = hostname or socket.getfqdn()
        #: Told of every logged-in session that opens and ends.
        self.observer: IActivityObserver = observer if observer is not None else EventLog()
        #: Seconds, for session durations; None: durations are not known.
        self.clock = clock
        #: Told of every logged-in session (the control socket lists them).
        self.sessions = sessions
        #: The domains' Kerberos keys (GSSAPI); None: no GSSAPI at all.
        self.kerberos = kerberos
        #: The web sessions SESSIONID logs in with (set by the HTTP module).
        self.web_sessions: Any = None
        # Session ids of transports that carry none of their own, and the
        # transports by session id (for their byte counts at logout).
        self._ids: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._transports: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    def session_id(self, transport: Any) -> str:
        """The transport's session id: the one the listener gave it
        (``session_id``), else one made up now and kept for it."""
        session = getattr(transport, "session_id", None)
        if not isinstance(session, str):
            try:
                session = self._ids.setdefault(transport, new_session_id())
            except TypeError:  # not weakly referenceable: a new id each time
                return new_session_id()
        try:
            self._transports[session] = transport
        except TypeError:
            pass
        return session

    def connection(self, transport: Any, protocol: str, secure: bool) -> ConnectionInfo:
        """The addresses and ports, TLS state, SNI name, verified client
        certificate and session id of a transport."""
        host, peer = transport.getHost(), transport.getPeer()
        verified = (
            self.tls.client_certificate(transport) if secure and self.tls is not None else None
        )
        return ConnectionInfo(
            protocol=protocol,
            local_host=getattr(host, "host", None),
            remote_host=getattr(peer, "host", None),
            secure=secure,
            server_name=server_name(transport) if secure else None,
            local_port=getattr(host, "port", None),
            remote_port=getattr(peer, "port", None),
            session=self.session_id(transport),
            client_certificate=verified,
        )

    def domain(self, connection: ConnectionInfo) -> str:
        """The domain a bare login name belongs to on this connection."""
        return self.resolver.connection_domain(connection)

    def known_domain(self, name: str) -> str | None:
        """The real name of a domain (or domain alias), None if unknown."""
        record = self.resolver.directory.domain(name.lower())
        return record.name if record else None

    def domain_settings(self, connection: ConnectionInfo) -> Mapping[str, Value]:
        """The settings of the connection's domain."""
        record = self.resolver.directory.domain(self.domain(connection))
        return record.settings if record else {}

    def mechanisms(self, connection: ConnectionInfo) -> list[str]:
        """The SASL mechanisms to advertise on this connection."""
        return registry.advertised(
            self.domain_settings(connection), connection, self.available(connection)
        )

    def available(self, connection: ConnectionInfo) -> frozenset[str]:
        """Which mechanisms needing more than a password this connection
        can serve: GSSAPI where its domain has Kerberos keys, EXTERNAL with
        a verified client certificate."""
        found = set()
        if self.kerberos is not None and self.kerberos.serves(self.domain(connection)):
            found.add("GSSAPI")
        if connection.client_certificate is not None:
            found.add("EXTERNAL")
        return frozenset(found)

    def clear_text_allowed(self, connection: ConnectionInfo) -> bool:
        """Whether USER/PASS, LOGIN, PLAIN may be used on this link now."""
        return registry.clear_text_allowed(self.domain_settings(connection), connection)

    def exchange_context(
        self, connection: ConnectionInfo, transport: Any = None
    ) -> ExchangeContext:
        """What SASL mechanisms need from this connection (``transport``:
        its TLS channel bindings)."""
        return ExchangeContext(
            connection,
            self.domain(connection),
            self.hostname,
            self.scram_key,
            channel_binding=lambda kind: channel_binding(transport, kind),
            scram_secret=lambda login, mechanism: self._scram_secret(connection, login, mechanism),
            kerberos=self.kerberos,
            offered=frozenset(self.mechanisms(connection)),
            web_sessions=self.web_sessions,
        )

    def _scram_secret(self, connection: ConnectionInfo, login: bytes, mechanism: str) -> Any:
        """The stored SCRAM secret of the account ``login`` leads to."""
        try:
            account = self.resolver.resolve(login.decode("utf-8", "replace"), connection)
        except Exception:  # the checker reports why, once, later
            return None
        return scram.stored_secret(account.settings, mechanism)

    def login(self, credentials: Any, interface: Any) -> Deferred[Any]:
        """Ask the portal for an avatar: ``(interface, avatar, logout)``,
        where ``logout`` also reports the end of the session (once)."""
        connection = getattr(credentials, "connection", None)
        if not isinstance(connection, ConnectionInfo):
            connection = ConnectionInfo("unknown")
        mind = SessionMind(connection)
        mechanism = str(getattr(credentials, "mechanism", "USER"))
        login = self.portal.login(credentials, mind, interface)
        return login.addCallback(self._opened, mind, mechanism)

    def _now(self) -> float | None:
        return float(self.clock()) if self.clock is not None else None

    def _opened(
        self,
        result: tuple[Any, Any, Callable[[], None]],
        mind: SessionMind,
        mechanism: str = "USER",
    ) -> tuple[Any, Any, Callable[[], None]]:
        interface, avatar, logout = result
        connection = mind.connection
        started = self._now()
        self.observer.opened(connection.protocol)
        forget = (
            self.sessions.opened(connection, mind.account or "", mechanism)
            if self.sessions is not None
            else None
        )
        return interface, avatar, _Logout(self, logout, forget, mind, started)

    def _ended(self, mind: SessionMind, started: float | None) -> None:
        """Tell the observer a session of ``mind`` ended."""
        connection = mind.connection
        now = self._now()
        transport = self._transports.get(connection.session or "")
        self.observer.logout(
            LogoutEvent(
                session=connection.session,
                protocol=connection.protocol,
                account=mind.account,
                duration=now - started if now is not None and started is not None else None,
                bytes_in=getattr(transport, "bytes_in", None),
                bytes_out=getattr(transport, "bytes_out", None),
            )
        )
