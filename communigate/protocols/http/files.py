"""File Storage over HTTP and WebDAV: ``/~name/path`` and ``/~name@domain/path``.

One :class:`StorageNode` per path segment (twisted.web's tree; each
segment checked by :mod:`.paths`).  Who the client is, in this order: HTTP
Basic credentials (a login through the portal for this request, as FTP's),
the WebUser session cookie, else an anonymous visitor, who may read the
files of directories that are not private (:mod:`communigate.portal.
webfiles`).  Everything then goes through the same File Storage shell as
FTP (:class:`~communigate.portal.filesession.FileSession`): the same
rights, privacy and quota.  An anonymous request that is refused, for
whatever reason, is asked to authenticate (``401``), so the answer tells
nothing about what exists.

Methods: ``GET``/``HEAD`` (files pushed as the connection takes them,
with ``Range``; directories as an HTML list), ``PUT`` (the body, which
twisted.web has spooled, copied into an :class:`~communigate.store.uploads.
Upload` in the thread pool and committed only when complete), ``DELETE``,
and WebDAV (RFC 4918) ``PROPFIND`` (Depth 0 or 1; no Depth header counts as
1, ``infinity`` is refused as §9.1 allows), ``MKCOL``, ``MOVE`` and
``COPY`` (``Destination``, ``Overwrite``), ``OPTIONS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from communigate.cred.errors import LoginFailure
from communigate.portal.filesession import FileError, FileSession, Problem, Segments
from communigate.protocols.http import davxml, pages, paths
from communigate.protocols.http.context import WebContext
from communigate.protocols.http.download import send
from communigate.store.uploads import QuotaExceeded

ALLOW = b"OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, MKCOL, MOVE, COPY"
_STATUS = {
    Problem.NOT_FOUND: 404,
    Problem.DENIED: 403,
    Problem.EXISTS: 405,
    Problem.NOT_EMPTY: 409,
    Problem.IS_DIRECTORY: 409,
    Problem.NOT_DIRECTORY: 409,
    Problem.INVALID: 400,
    Problem.NO_SPACE: 507,
}
_CHUNK = 1024 * 1024
#: Methods that only read.
READS = frozenset({b"GET", b"HEAD", b"PROPFIND"})


class HTTPError(Exception):
    """An answer other than success, with its status and text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class ErrorPage(Resource):
    """A fixed error answer (a refused path segment)."""

    isLeaf = True

    def __init__(self, status: int, text: str) -> None:
        super().__init__()
        self.status = status
        self.text = text

    def render(self, request: Request) -> bytes:
        """The status and a short page, whatever the method."""
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return pages.message_page(str(self.status), self.text)


def _body(request: Request) -> BinaryIO:
    """The request's body (twisted.web spooled it), from its start."""
    body = request.content
    if body is None:
        raise HTTPError(400, "The request has no body.")
    body.seek(0)
    return body


def _exists(view: FileSession, path: Segments) -> bool:
    try:
        view.entry(path)
    except FileError as error:
        if error.problem is Problem.NOT_FOUND:
            return False
        raise
    return True


def _remove(view: FileSession, path: Segments) -> None:
    """Delete a file, or a directory with everything in it."""
    if not view.entry(path).directory:
        view.remove_file(path)
        return
    for child in view.listing(path):
        _remove(view, (*path, child.name))
    view.remove_directory(path)


def _copy(view: FileSession, source: Segments, target: Segments) -> None:
    """Copy a file or a directory tree (blocking: run in the thread pool)."""
    if view.entry(source).directory:
        view.make_directory(target)
        for child in view.listing(source):
            _copy(view, (*source, child.name), (*target, child.name))
        return
    handle, _size = view.open_download(source)
    with handle:
        _store(view.open_upload(target), handle)


def _store(upload: Any, body: BinaryIO) -> None:
    """Fill an upload from ``body`` and commit it; abort on any failure."""
    upload.prepare()
    try:
        while chunk := body.read(_CHUNK):
            upload.write(chunk)
        upload.commit()
    except BaseException:
        upload.abort()
        raise


class StorageNode(Resource):
    """One path of File Storage; its first segment is ``~name[@domain]``."""

    log = Logger()

    def __init__(self, context: WebContext, path: Segments) -> None:
        super().__init__()
        self.context = context
        self.path = path

    def getChild(self, name: bytes, request: Request) -> IResource:
        """The next segment (a trailing ``/`` stays here)."""
        if name == b"":
            return self
        try:
            return StorageNode(self.context, (*self.path, paths.segment(name)))
        except paths.BadPath:
            return ErrorPage(400, "This path is not allowed.")

    # -- who is asking --------------------------------------------------------------

    def _view(
        self, request: Request
    ) -> tuple[FileSession, bool] | Deferred[tuple[FileSession, bool]]:
        """The File Storage view of this request, and whether it is
        anonymous; a Deferred only while a Basic login is checked."""
        early = getattr(request, "early_login", None)
        if early is not None:
            return early[0], False
        login = self.context.basic_login(request)
        if login is not None:
            return login.addCallbacks(self._opened, self._refused, callbackArgs=(request,))
        session = self.context.session(request)
        if session is not None:
            return session.avatar.files(), False
        return self.context.visitor(request), True

    @staticmethod
    def _opened(result: tuple[Any, Callable[[], None]], request: Request) -> tuple[Any, bool]:
        avatar, logout = result
        request.notifyFinish().addBoth(lambda _: logout())
        return avatar, False

    @staticmethod
    def _refused(failure: Failure) -> Any:
        failure.trap(LoginFailure)
        raise HTTPError(401, "Incorrect password or account name.")

    # -- dispatch ----------------------------------------------------------------------

    def render(self, request: Request) -> Any:
        """Authenticate, then run the method's handler."""
        method = bytes(request.method).decode("ascii", "replace").upper()
        if method == "OPTIONS":
            request.setHeader(b"allow", ALLOW)
            request.setHeader(b"dav", b"1")
            request.setHeader(b"ms-author-via", b"DAV")
            request.setHeader(b"content-length", b"0")
            return b""
        handler = getattr(self, f"do_{method}", None)
        if handler is None:
            request.setResponseCode(405)
            request.setHeader(b"allow", ALLOW)
            return pages.message_page("405", "Method not allowed.")
        view = self._view(request)
        if isinstance(view, Deferred):
            done = view.addCallback(lambda found: self._run(handler, request, *found))
        else:
            # Answered at once where nothing waits (a visitor's or a
            # session's read): no Deferred for a small file.
            try:
                body = self._run(handler, request, *view)
            except Exception:
                self._failed(Failure(), request, [])
                return NOT_DONE_YET
            if isinstance(body, bytes) and body and request.method == b"HEAD":
                # A page's length without the page (twisted.web's render
                # would log a warning for each).
                self._answered(body, request, [])
                return NOT_DONE_YET
            if not isinstance(body, Deferred):
                return body
            done = body
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        done.addCallbacks(
            self._answered, self._failed, callbackArgs=(request, gone), errbackArgs=(request, gone)
        )
        return NOT_DONE_YET

    def _run(self, handler: Any, request: Request, view: FileSession, anonymous: bool) -> Any:
        """Run a handler; a read an account may not make as itself is
        tried again as a visitor (an account sees at least what anyone
        sees: other accounts' public files)."""
        try:
            return handler(request, view, anonymous)
        except FileError:
            if anonymous or request.method not in READS:
                raise
        visitor = self.context.visitor(request)
        return handler(request, visitor, False)

    def _answered(self, body: Any, request: Request, gone: list[bool]) -> None:
        if gone or body is NOT_DONE_YET:
            return
        if body:
            request.write(body)
        request.finish()

    def _failed(self, failure: Failure, request: Request, gone: list[bool]) -> None:
        if gone:
            return
        error = failure.value
        if isinstance(error, FileError):
            error = HTTPError(_STATUS.get(error.problem, 403), error.text)
        elif isinstance(error, QuotaExceeded):
            error = HTTPError(507, "The File Storage is full.")
        elif isinstance(error, paths.BadPath):
            error = HTTPError(400, "This path is not allowed.")
        elif not isinstance(error, HTTPError):
            self.log.failure("HTTP {method} failed", failure, method=request.method)
            error = HTTPError(500, "Internal server error.")
        request.setResponseCode(error.status)
        if error.status == 401:
            realm = self.context.domain(request)
            request.setHeader(
                b"www-authenticate", f'Basic realm="{realm}", charset="UTF-8"'.encode()
            )
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.write(pages.message_page(str(error.status), error.text))
        request.finish()

    def _check(self, anonymous: bool, call: Callable[[], Any]) -> Any:
        """Run a File Storage call; a refused anonymous visitor is asked
        to authenticate instead."""
        try:
            return call()
        except FileError:
            if anonymous:
                raise HTTPError(401, "Log in to see this.") from None
            raise

    # -- methods ------------------------------------------------------------------------

    def do_GET(self, request: Request, view: FileSession, anonymous: bool) -> Any:
        """A file's bytes, or a directory's list of links."""
        try:
            handle, _size = view.open_download(self.path)
        except FileError as error:
            if error.problem is not Problem.IS_DIRECTORY:
                if anonymous:
                    raise HTTPError(401, "Log in to see this.") from None
                raise
            entries = self._check(anonymous, lambda: view.listing(self.path))
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            request.setHeader(b"cache-control", b"no-cache")
            return pages.listing_page(self.path, entries)
        # Stored files are the account's web site, served on the WebUser
        # origin: a sandbox keeps their scripts away from its pages.
        request.setHeader(b"content-security-policy", b"sandbox")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return send(request, handle)

    do_HEAD = do_GET

    def do_PUT(self, request: Request, view: FileSession, anonymous: bool) -> Any:
        """Store the body as the file; 201 if new, 204 if replaced."""
        existed = self._check(anonymous, lambda: _exists(view, self.path))
        upload = self._check(anonymous, lambda: view.open_upload(self.path))
        body = _body(request)
        stored = self.context.run(lambda: _store(upload, body))
        return stored.addCallback(lambda _: self._success(request, existed))

    @staticmethod
    def _success(request: Request, existed: bool) -> bytes:
        """``204`` where something was there before, else ``201 Created``."""
        request.setResponseCode(204 if existed else 201)
        return b""

    def do_DELETE(self, request: Request, view: FileSession, anonymous: bool) -> Any:
        """Delete a file or a directory tree."""
        self._check(anonymous, lambda: view.entry(self.path))
        done = self.context.run(lambda: self._check(anonymous, lambda: _remove(view, self.path)))
        return done.addCallback(lambda _: self._success(request, True))

    def do_MKCOL(self, request: Request, view: FileSession, anonymous: bool) -> Any:
        """Make a directory (RFC 4918 §9.3): 405 if something is there, 409
        without a parent."""
        body = _body(request)
        if body.read(1):
            raise HTTPError(415, "MKCOL takes no body.")
        if self._check(anonymous, lambda: _exists(view, self.path)):
            raise HTTPError(405, "Something with that name exists.")
        try:
            self._check(anonymous, lambda: view.make_directory(self.path))
        except FileError as error:
            if error.problem is Problem.NOT_FOUND:
                raise HTTPError(409, "The parent directory does not exist.") from None
            raise
        return self._success(request, False)

    def _target(self, request: Request) -> Segments:
        header = request.getHeader(b"destination")
        if not header:
            raise HTTPError(400, "A Destination header is needed.")
        target = paths.destination(header)
        if not target or not target[0].startswith("~"):
            raise HTTPError(502, "The Destination is not in a File Storage.")
        return target

    @inlineCallbacks
    def _transfer(self, request: Request, view: FileSession, anonymous: bool, move: bool) -> Any:
        target = self._target(request)
        if target == self.path:
            raise HTTPError(403, "Source and Destination are the same.")
        self._check(anonymous, lambda: view.entry(self.path))
        overwrite = (request.getHeader(b"overwrite") or b"T").strip().upper() != b"F"
        existed = self._check(anonymous, lambda: _exists(view, target))
        if existed and not overwrite:
            raise HTTPError(412, "The Destination exists.")
        if existed:
            yield self.context.run(lambda: _remove(view, target))
        try:
            if move:
                self._check(anonymous, lambda: view.rename(self.path, target))
            else:
                yield self.context.run(lambda: _copy(view, self.path, target))
        except FileError as error:
            if error.problem is Problem.NOT_FOUND:
                raise HTTPError(409, "The Destination's directory does not exist.") from None
            raise
        return self._success(request, existed)

    def do_MOVE(self, request: Request, view: FileSession, anonymous: bool) -> Any:
        """Rename within one File Storage."""
        return self._transfer(request, view, anonymous, move=True)

    def do_COPY(self, request: Request, view: FileSession, anonymous: bool) -> Any:
        """Copy a file or a directory tree."""
        return self._transfer(request, view, anonymous, move=False)

    def do_PROPFIND(self, request: Request, view: FileSession, anonymous: bool) -> Any:
        """The properties of this path and, at Depth 1, of its entries."""
        depth = (request.getHeader(b"depth") or b"1").strip().lower()
        if depth not in (b"0", b"1"):
            raise HTTPError(403, "Depth infinity is not served; use Depth 0 or 1.")
        body = _body(request)
        data = body.read(davxml.MAX_BODY + 1)
        if len(data) > davxml.MAX_BODY:
            raise HTTPError(413, "The PROPFIND body is too large.")
        if not davxml.body_acceptable(data):
            raise HTTPError(400, "The PROPFIND body is not acceptable.")
        entry = self._check(anonymous, lambda: view.entry(self.path))
        found = [(paths.href(self.path, entry.directory), entry)]
        if entry.directory and depth == b"1":
            for child in self._check(anonymous, lambda: view.listing(self.path)):
                found.append((paths.href((*self.path, child.name), child.directory), child))
        request.setResponseCode(davxml.MULTISTATUS)
        request.setHeader(b"content-type", b"application/xml; charset=utf-8")
        return davxml.multistatus(found)
