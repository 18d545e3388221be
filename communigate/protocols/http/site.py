"""The resource tree of the HTTP module and the listeners serving it.

::

    /                 the login form, or the account page of a live session
    /login            POST: log in (the form posts here)
    /logout           POST: end the session
    /~name[@domain]/  File Storage (GET, HEAD, PUT, DELETE, WebDAV)

``--http`` listeners are plain, ``--https`` ones TLS from the first byte
with the certificate of the domain the client names by SNI
(:class:`~communigate.protocols.tls.DomainContexts`).  Both are built as
every listener is (guard, backlog, session ids and byte counts).  The
session registry is handed to the login service, where the SESSIONID
method finds it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.application import internet
from twisted.application.service import IServiceCollection
from twisted.web import http
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from communigate.protocols.access import LoginService
from communigate.protocols.http.channel import DEFAULTS, WebChannel
from communigate.protocols.http.context import PROTOCOL, WebContext
from communigate.protocols.http.csrf import FormTokens
from communigate.protocols.http.files import ErrorPage, StorageNode
from communigate.protocols.http.paths import BadPath, segment
from communigate.protocols.http.quick import Answerer, QuickFiles
from communigate.protocols.http.request import WebRequest
from communigate.protocols.http.sessions import WebSessions
from communigate.protocols.http.webuser import Login, LoginPage, Logout
from communigate.protocols.limits import LimitsReader
from communigate.protocols.listeners import add_listeners

#: Seconds between sweeps of expired web sessions.
SESSION_SWEEP = 60


class WebRoot(Resource):
    """``/``: the WebUser pages and the File Storage tree."""

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context
        self.putChild(b"", LoginPage(context))
        self.putChild(b"login", Login(context))
        self.putChild(b"logout", Logout(context))

    def getChild(self, name: bytes, request: Request) -> IResource:
        """``~name`` and ``~name@domain`` lead into File Storage."""
        if not name.startswith(b"~"):
            return ErrorPage(404, "No such page.")
        try:
            return StorageNode(self.context, (segment(name),))
        except BadPath:
            return ErrorPage(400, "This path is not allowed.")


class WebSite(Site):
    """twisted.web's site, by default without its per-request access log:
    as for every other protocol, logins and sessions are logged as events
    (and counted by the metrics); a line per request costs a sixth of a
    small file's time.  With ``logPath`` (``--http-access-log``) a line per
    request is appended in the Combined Log Format (address, time, request
    line, status, length, Referer, User-Agent: never the Authorization
    header, a cookie or the user name).  Each connection is a
    :class:`WebChannel` under the ``Limits`` of ``http`` as they are when
    it starts."""

    protocol = WebChannel  # type: ignore[assignment]
    #: What the resources share (the request reads it to check credentials
    #: before it takes a large body).
    context: WebContext | None = None
    #: The limits of a new connection.
    limits: LimitsReader = LimitsReader(PROTOCOL, DEFAULTS)
    #: The short way for plain small-file requests (none while every
    #: request is written to the access log).
    quick: Answerer | None = None

    def buildProtocol(self, addr: Any) -> Any:
        """A channel with the idle time-out and head deadline of now."""
        channel = super().buildProtocol(addr)
        limits = self.limits()
        channel.timeOut = limits.idle_timeout
        channel.head_timeout = limits.login_timeout
        channel.quick = self.quick
        return channel

    def log(self, request: http.Request) -> None:
        """An access log line, where an access log is kept."""
        if self.logPath is not None:
            super().log(request)


def make_site(context: WebContext, access_log: str | None = None) -> WebSite:
    """The twisted.web site of a context (``access_log``: the file its
    access log lines are appended to; none without)."""
    site = WebSite(
        WebRoot(context),
        logPath=access_log,
        timeout=DEFAULTS.idle_timeout,
        reactor=context.reactor,
    )
    site.limits = LimitsReader(PROTOCOL, DEFAULTS, context.directory.server_settings)
    site.requestFactory = WebRequest
    site.context = context
    if access_log is None:
        site.quick = QuickFiles(context).answer
    site.noisy = False
    site.displayTracebacks = False
    return site


def add_http(
    top: IServiceCollection,
    options: Any,
    service: LoginService,
    reactor: Any,
    tls: Any,
    pool: Any,
    counted: Callable[[str, Any], Any],
) -> dict[str, Any]:
    """The web session registry and the ``http``/``https`` listeners; the
    (counted) factory of each, for the listeners file's listeners."""
    directory = service.resolver.directory

    def resolve(login: str, connection: Any) -> str:
        return service.resolver.resolve(login, connection).full_name

    sessions = WebSessions(reactor.seconds, resolve)
    service.web_sessions = sessions
    sweep = internet.TimerService(SESSION_SWEEP, sessions.sweep)
    sweep.clock = reactor
    sweep.setName("http-sessions")
    sweep.setServiceParent(top)
    context = WebContext(
        service, sessions, FormTokens(os.urandom(32), reactor.seconds), reactor, pool
    )
    factories: dict[str, Any] = {}
    for name, secure in (("http", False), ("https", True)):
        factories[name] = counted(name, make_site(context, options.get("http-access-log")))
        add_listeners(
            top, name, options[name], factories[name], reactor, tls if secure else None, directory
        )
    return factories
