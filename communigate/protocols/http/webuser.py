"""The WebUser pages: the root (login form or account page), ``/login``
and ``/logout``.

Login (``POST /login``): the form's CSRF token must match the browser's
form cookie; the name and password then go to the portal as any other
login (bare names take the Host header's domain; client addresses,
lockout, AccessModes and the clear-text rule are the checker's).  Every
failure, whatever it was, answers ``403`` with the same login page and the
same text.  Success opens a web session, sets its ID in an HttpOnly,
SameSite=Lax cookie (Secure over HTTPS) and redirects (303) to ``/``, which
then shows the account page.  ``POST /logout`` (with the page's token)
ends the session.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from communigate.cred.credentials import LoginPassword
from communigate.portal.filesession import FileError
from communigate.portal.websession import IWebUser
from communigate.protocols.http import pages
from communigate.protocols.http.context import (
    FORM_COOKIE,
    SESSION_COOKIE,
    WebContext,
    page_headers,
)
from communigate.protocols.http.sessions import random_characters

_MAX_FIELD = 1024


def _field(request: Request, name: bytes) -> bytes | None:
    values = (request.args or {}).get(name)
    if not values or len(values) != 1 or len(values[0]) > _MAX_FIELD:
        return None
    value: bytes = values[0]
    return value


class LoginPage(Resource):
    """``/``: the account page of a live session, else the login form."""

    isLeaf = True

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context

    def render_GET(self, request: Request) -> bytes:
        """The page for this browser."""
        page_headers(request)
        session = self.context.session(request)
        if session is None:
            return login_form(self.context, request)
        try:
            entries = session.avatar.files().listing(())
        except FileError:
            entries = []
        token = self.context.tokens.issue(session.id)
        return pages.account_page(session.account, session.id, token, entries)


def login_form(context: WebContext, request: Request, failed: bool = False) -> bytes:
    """The login form, with a fresh token bound to the form cookie (set now
    if the browser has none)."""
    page_headers(request)
    binding_bytes = request.getCookie(FORM_COOKIE)
    binding = binding_bytes.decode("ascii", "replace") if binding_bytes else ""
    if not binding or len(binding) != 24 or not binding.isalnum():
        binding = random_characters(24)
        context.set_cookie(request, FORM_COOKIE, binding)
    connection = context.connection(request)
    insecure = not context.service.clear_text_allowed(connection)
    domain = context.service.domain(connection)
    return pages.login_page(domain, context.tokens.issue(binding), failed, insecure)


class Login(Resource):
    """``POST /login``."""

    isLeaf = True

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context

    def render_GET(self, request: Request) -> bytes:
        """A bookmarked ``/login``: the form."""
        return login_form(self.context, request)

    def render_POST(self, request: Request) -> Any:
        """Check the token, then log in through the portal."""
        context = self.context
        binding = request.getCookie(FORM_COOKIE)
        token, name, password = (
            _field(request, field) for field in (b"csrf", b"username", b"password")
        )
        binding_text = binding.decode("ascii", "replace") if binding else ""
        if (
            token is None
            or not name
            or password is None
            or not context.tokens.valid(token.decode("ascii", "replace"), binding_text)
        ):
            return self._failed(request)
        connection = context.connection(request)
        credentials = LoginPassword(name.strip(), password, connection, None, "FORM")
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _failure: gone.append(True))
        login = context.service.login(credentials, IWebUser)
        login.addCallbacks(
            self._opened, self._refused, callbackArgs=(request, gone), errbackArgs=(request, gone)
        )
        return NOT_DONE_YET

    def _failed(self, request: Request) -> bytes:
        request.setResponseCode(403)
        return login_form(self.context, request, failed=True)

    def _opened(self, result: tuple[Any, Any, Any], request: Request, gone: list[bool]) -> None:
        _, avatar, logout = result
        if gone:
            logout()
            return
        session = self.context.sessions.open(
            avatar.account,
            avatar,
            logout,
            bool(request.isSecure()),
            self.context.session_limits(avatar.domain),
        )
        self.context.set_cookie(request, SESSION_COOKIE, session.id)
        page_headers(request)
        request.setResponseCode(303)
        request.setHeader(b"location", b"/")
        request.finish()

    def _refused(self, failure: Failure, request: Request, gone: list[bool]) -> None:
        if gone:
            return
        request.write(self._failed(request))
        request.finish()


class Logout(Resource):
    """``POST /logout``: end the session the cookie names."""

    isLeaf = True

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context

    def render_POST(self, request: Request) -> bytes:
        """With the account page's token: close the session, forget the cookie."""
        session = self.context.session(request)
        token = _field(request, b"csrf")
        if session is None or token is None:
            return self._to_start(request)
        if not self.context.tokens.valid(token.decode("ascii", "replace"), session.id):
            page_headers(request)
            request.setResponseCode(403)
            return pages.message_page("Forbidden", "The form has expired; reload the page.")
        self.context.sessions.close(session.id)
        self.context.set_cookie(request, SESSION_COOKIE, "", max_age=0)
        return self._to_start(request)

    @staticmethod
    def _to_start(request: Request) -> bytes:
        page_headers(request)
        request.setResponseCode(303)
        request.setHeader(b"location", b"/")
        return b""
