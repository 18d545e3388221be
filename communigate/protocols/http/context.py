"""What every HTTP resource needs: the login service, the web sessions,
the form tokens, the thread pool — and, per request, the connection.

The domain of a request is the one its Host header names (spec §1.3), found
as the Router finds the domain of a host name (``LoginPage@host``, so
domain aliases and Router records apply); a host that leads to no local
domain falls back to the connection's (local address, SNI).  That domain
becomes the :class:`~communigate.cred.credentials.ConnectionInfo`'s
``server_name``, which the portal uses for bare login names.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.web.server import Request

from communigate.cred.credentials import ConnectionInfo, LoginPassword
from communigate.cred.errors import WrongPassword
from communigate.portal.filesession import IFileSession
from communigate.portal.router import Router
from communigate.portal.webfiles import AnonymousFiles
from communigate.protocols.access import LoginService
from communigate.protocols.http.csrf import FormTokens
from communigate.protocols.http.sessions import WebSession, WebSessions, session_limits
from communigate.recent import Recent

#: The cookie holding the WebUser session's ID.
SESSION_COOKIE = b"CGPSessionID"
#: The cookie a login form's token is bound to (before there is a session).
FORM_COOKIE = b"CGPLoginForm"
#: Protocol name in ConnectionInfo (and so in logs, metrics, AccessModes).
PROTOCOL = "http"

_T = TypeVar("_T")


class BasicLogin(LoginPassword):
    """HTTP Basic credentials (RFC 7617 §2).  A client sends them again
    with every request, so the checker may reuse a verification of the
    same password made a moment ago
    (:class:`~communigate.portal.verifiedlogins.VerifiedLogins`)."""

    reuse_verified = True

    def __repr__(self) -> str:
        return f"<BasicLogin {self.username!r} via {self.connection.protocol}>"


class WebContext:
    """Shared by the resources of one server."""

    def __init__(
        self,
        service: LoginService,
        sessions: WebSessions,
        tokens: FormTokens,
        reactor: Any,
        pool: Any = None,
    ) -> None:
        self.service = service
        self.directory = service.resolver.directory
        self.sessions = sessions
        self.tokens = tokens
        self.reactor = reactor
        self.pool = pool
        self.router = Router(self.directory)
        #: Host names' domains and visitors' rights, remembered a moment.
        self.recent = Recent(reactor.seconds)
        self._connections: WeakKeyDictionary[Any, ConnectionInfo] = WeakKeyDictionary()

    def run(self, work: Callable[[], _T]) -> Deferred[_T]:
        """Blocking file work, in the thread pool (inline without one)."""
        if self.pool is None:
            return maybeDeferred(work)
        return deferToThreadPool(self.reactor, self.pool, work)

    def host_domain(self, request: Request) -> str | None:
        """The local domain the Host header names, if any."""
        return self.named_domain(request.getRequestHostname())

    def named_domain(self, host: bytes) -> str | None:
        """The local domain of a host name, if any."""
        try:
            name = host.decode("ascii").rstrip(".").lower()
        except UnicodeDecodeError:
            return None
        if not name or name.startswith("["):
            return None
        found: str | None = self.recent.get(
            ("host", name), lambda: self.router.login_page_domain(name)
        )
        return found

    def _base(self, request: Request) -> ConnectionInfo:
        return self.channel_info(request.channel, bool(request.isSecure()))

    def channel_info(self, channel: Any, secure: bool) -> ConnectionInfo:
        """The connection's facts (addresses, TLS, SNI, session id): the
        same for every request a connection carries, so found once."""
        try:
            found: ConnectionInfo | None = self._connections.get(channel)
        except TypeError:  # not weakly referenceable
            found = None
        if found is None:
            transport = getattr(channel, "transport", None)
            found = self.service.connection(transport, PROTOCOL, secure)
            try:
                self._connections[channel] = found
            except TypeError:
                pass
        return found

    def connection(self, request: Request) -> ConnectionInfo:
        """The request's connection, its ``server_name`` the request's domain."""
        base = self._base(request)
        return replace(base, server_name=self.domain(request))

    def domain(self, request: Request) -> str:
        """The domain a bare name typed on this request belongs to: the
        one the Host header names, else the connection's."""
        return self.host_domain(request) or self.service.domain(self._base(request))

    def domain_of(self, host: bytes, channel: Any) -> str:
        """:meth:`domain` of a request naming ``host`` on ``channel``."""
        return self.named_domain(host) or self.service.domain(
            self.channel_info(channel, bool(channel.isSecure()))
        )

    def visitor(self, request: Request) -> AnonymousFiles:
        """The File Storage view of a request without credentials."""
        return self.visitor_in(self.domain(request))

    def visitor_in(self, domain: str) -> AnonymousFiles:
        """The File Storage view of a visitor of ``domain``."""
        found: AnonymousFiles = self.recent.get(
            ("visitor", domain), lambda: AnonymousFiles(self.directory, domain, self.recent)
        )
        return found

    def session_limits(self, domain: str) -> tuple[float, float]:
        """``(idle, lifetime)`` seconds of a new web session in ``domain``."""
        record = self.directory.domain(domain)
        return session_limits(
            record.settings if record else {}, self.sessions.idle, self.sessions.lifetime
        )

    def session(self, request: Request) -> WebSession | None:
        """The live session the request's cookie names, if any."""
        cookie = request.getCookie(SESSION_COOKIE)
        if not cookie:
            return None
        try:
            return self.sessions.get(cookie.decode("ascii"))
        except UnicodeDecodeError:
            return None

    def live_session(self, request: Request) -> bool:
        """Whether the request's cookie names a live session (it is not
        used by asking)."""
        cookie = request.getCookie(SESSION_COOKIE)
        if not cookie:
            return False
        try:
            return self.sessions.live(cookie.decode("ascii"))
        except UnicodeDecodeError:
            return False

    def basic_login(self, request: Request) -> Deferred[tuple[Any, Callable[[], None]]] | None:
        """Log in with the request's HTTP Basic credentials as a File
        Storage user: ``(avatar, logout)``, or a LoginFailure.  None when
        the request has no Basic credentials."""
        authorization = request.getHeader(b"authorization") or b""
        scheme, _, encoded = authorization.partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        name, colon, password = decoded.partition(b":")
        if not name or not colon:
            return fail(WrongPassword())
        credentials = BasicLogin(name, password, self.connection(request), None, "BASIC")
        login = self.service.login(credentials, IFileSession)
        return login.addCallback(lambda result: (result[1], result[2]))

    @staticmethod
    def set_cookie(request: Request, name: bytes, value: str, max_age: int | None = None) -> None:
        """An HttpOnly, SameSite=Lax cookie for the whole site; Secure over HTTPS."""
        request.addCookie(
            name,
            value.encode("ascii"),
            path=b"/",
            max_age=str(max_age).encode() if max_age is not None else None,
            secure=bool(request.isSecure()),
            httpOnly=True,
            sameSite="lax",
        )


def page_headers(request: Request) -> None:
    """Headers of every WebUser page: never cached, never framed, no
    scripts, forms posted only here."""
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")
    request.setHeader(
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    )
