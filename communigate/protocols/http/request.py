"""The request class of the HTTP module: its body is bounded as it arrives.

twisted.web keeps a request's body (in memory up to 100 KB, else in a
temporary file) until the whole request is there, and only then asks the
resource tree; a client could fill the disk before any check.  So a body
is judged while it arrives.  Any request may bring
:data:`MAX_ANONYMOUS_BODY` bytes (a login form, a PROPFIND).  A larger body
(an upload, up to :data:`MAX_BODY`; the File Storage quota is applied when
it is stored) is read only from a client that has proved who it is:

- a session cookie must name a live WebUser session;
- HTTP Basic credentials are checked through the portal as soon as the
  headers say the body will be large (or when a chunked body grows past
  the small bound), and the connection is not read while the check runs.
  The login's avatar is kept on the request, so the resource that serves
  it does not log in a second time.

Anything else gets ``413`` (no credentials) or ``401`` (refused
credentials) and the connection is closed; nothing of the body is kept.
A client that asked to be told (``Expect: 100-continue``) gets ``100
Continue`` only once its credentials are proven, never before a refusal.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from communigate.cred.errors import LoginFailure

#: Bytes a request without proven credentials may send.
MAX_ANONYMOUS_BODY = 64 * 1024
#: Bytes any request may send (the largest upload).
MAX_BODY = 8 * 1024**3
#: Bytes taken in while a Basic login is checked (what the transport had
#: read before it was paused).
_SLACK = 256 * 1024


class WebRequest(Request):
    """A request whose body may not grow past its bound."""

    log = Logger()

    _received = 0
    _refused = False
    #: The client has proved who it is: the body may grow to MAX_BODY.
    _admitted = False
    _checking = False
    _realm = ""
    #: ``(avatar, logout)`` of a Basic login made while the body arrived.
    early_login: tuple[Any, Any] | None = None
    #: The client asked for ``100 Continue`` while its login was checked.
    _continue_asked = False

    def gotLength(self, length: int | None) -> None:
        """A declared length over the small bound asks for credentials now."""
        if length is not None and length > MAX_BODY:
            self._refuse(413)
            return
        super().gotLength(length)
        if length is not None and length > MAX_ANONYMOUS_BODY:
            self._admit()

    def handleContentChunk(self, data: bytes) -> None:
        """Keep the chunk while the body stays within its bound."""
        if self._refused:
            return
        self._received += len(data)
        if self._received > MAX_BODY:
            self._refuse(413)
            return
        if self._received > MAX_ANONYMOUS_BODY and not self._admitted:
            if not self._checking:
                self._admit()
            if self._refused:
                return
            if not self._admitted and self._received > MAX_ANONYMOUS_BODY + _SLACK:
                self._refuse(413)
                return
        super().handleContentChunk(data)

    # -- credentials for a large body -------------------------------------------

    def may_continue(self) -> bool:
        """Whether ``100 Continue`` may be sent now: not while the
        credentials are checked (it is sent once they are proven), never
        for a refused request."""
        if self._refused:
            return False
        if self._checking:
            self._continue_asked = True
            return False
        return True

    def _admit(self) -> None:
        """Let a large body in only from a live session or a Basic login."""
        if self._admitted or self._checking or self._refused:
            return
        context = getattr(getattr(self.channel, "site", None), "context", None)
        if context is None:
            self._refuse(413)
            return
        if context.live_session(self):
            self._admitted = True
            return
        self._realm = context.domain(self)
        login = context.basic_login(self)
        if login is None:
            self._refuse(413)
            return
        self._checking = True
        transport: Any = self.channel.transport
        transport.pauseProducing()
        login.addCallbacks(self._logged_in, self._login_refused)

    def _logged_in(self, result: tuple[Any, Any]) -> None:
        self._checking = False
        avatar, logout = result
        if self._refused or self.channel is None or self.channel.transport is None:
            # Refused meanwhile, or the client went away: never served.
            logout()
            return
        self.notifyFinish().addBoth(lambda _: logout())
        self.early_login = (avatar, logout)
        self._admitted = True
        if self._continue_asked:
            self.channel._send100Continue()
        if not getattr(self.channel, "backed_up", False):
            # (A channel whose client does not read its answers reads
            # again when they drain, not before.)
            transport: Any = self.channel.transport
            transport.resumeProducing()

    def _login_refused(self, failure: Failure) -> None:
        self._checking = False
        status = 401
        if not failure.check(LoginFailure):
            self.log.failure("HTTP login before a large body failed", failure)
            status = 503
        if self.channel is not None and self.channel.transport is not None:
            self._refuse(status)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """A refused request is never served (its end may have been read
        in the same chunk that refused it)."""
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def _refuse(self, status: int) -> None:
        """Answer ``status`` with a short page and close the connection."""
        if self._refused:
            return
        self._refused = True
        transport: Any = self.channel.transport
        text = _TEXTS[status]
        head = [b"HTTP/1.1 %d %s" % (status, _REASONS[status])]
        if status == 401:
            realm = self._realm.encode("ascii", "replace")
            head.append(b'WWW-Authenticate: Basic realm="%s", charset="UTF-8"' % realm)
        head += [
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Length: %d" % len(text),
            b"Connection: close",
        ]
        transport.write(b"\r\n".join(head) + b"\r\n\r\n" + text)
        transport.loseConnection()


_REASONS = {401: b"Unauthorized", 413: b"Content Too Large", 503: b"Service Unavailable"}
_TEXTS = {
    401: b"Incorrect password or account name.",
    413: b"The request is too large.",
    503: b"The login could not be checked now; try again later.",
}
