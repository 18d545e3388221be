"""Sending a File Storage file as an HTTP response body.

twisted.web's static file resource parses ``Range``, sets the headers and
answers ``HEAD`` and ``If-Modified-Since``; its producers, though, are
pulled by Twisted's cooperator, which works in slices of 10 ms with pauses
of 10 ms between them — a small file waits for the next slice, a large one
flows half the time.  :class:`PushFile` pushes instead: it writes chunks
while the connection takes them and stops when the transport pauses it
(its buffer is full), so a download needs no more memory than one chunk
and the transport's buffer, and starts at once.

A small file (up to :data:`SMALL` bytes) asked for whole is simpler still:
:func:`send` reads it at once and answers with one write, with the same
headers static.File would give (``Last-Modified``, ``If-Modified-Since``
answered ``304``, the type from the name), without a producer — unless
the connection's transport is backed up (the client does not read), where
it waits as a producer like any other answer.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

from twisted.internet.interfaces import IPushProducer
from twisted.web import static
from twisted.web.http import CACHED
from twisted.web.server import Request
from zope.interface import implementer

#: Bytes read and written at a time.
CHUNK = 256 * 1024
#: Files up to this size are read and answered in one write.
SMALL = 64 * 1024
#: The type of a file whose name says none (static.File's default).
DEFAULT_TYPE = "text/html"


@implementer(IPushProducer)
class PushFile:
    """Writes ``length`` bytes of a file from ``offset``, then finishes."""

    def __init__(self, request: Request, handle: BinaryIO, offset: int, length: int) -> None:
        self.request = request
        self.handle = handle
        self.offset = offset
        self.left = length
        self._paused = False
        self._pumping = False
        self._done = False

    def start(self) -> None:
        """Register with the request and begin writing (at once, unless the
        transport is already full: twisted.web does not tell a producer
        registered then)."""
        self.handle.seek(self.offset)
        self.request.registerProducer(self, True)
        self._paused = bool(getattr(self.request.channel, "backed_up", False))
        self._pump()

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while not self._paused and not self._done and self.left > 0:
                data = self.handle.read(min(CHUNK, self.left))
                if not data:
                    break
                self.left -= len(data)
                self.request.write(data)
        finally:
            self._pumping = False
        if not self._done and (self.left <= 0 or not self._paused):
            self._finish()

    def _finish(self) -> None:
        self._done = True
        self.handle.close()
        self.request.unregisterProducer()
        self.request.finish()

    def pauseProducing(self) -> None:
        """The transport's buffer is full."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The transport wants more."""
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:
        """The connection is gone."""
        if not self._done:
            self._done = True
            self.handle.close()


class Download(static.File):
    """twisted.web's static file (Range, HEAD, Last-Modified) over a file
    the File Storage shell has opened, sent by :class:`PushFile`."""

    def __init__(self, handle: BinaryIO) -> None:
        super().__init__(handle.name)
        self._handle = handle

    def openForReading(self) -> BinaryIO:
        """The already opened (rights-checked) file."""
        return self._handle

    def makeProducer(self, request: Any, fileForReading: Any) -> Any:
        """Twisted's choice of headers and range; a pushing producer for a
        whole file or one range (several ranges keep Twisted's)."""
        producer = super().makeProducer(request, fileForReading)
        if isinstance(producer, static.NoRangeStaticProducer):
            return PushFile(request, fileForReading, 0, self.getFileSize())
        if isinstance(producer, static.SingleRangeStaticProducer):
            return PushFile(request, fileForReading, producer.offset, producer.size)
        return producer


_TYPES: dict[str, tuple[str | None, str | None]] = {}


def type_of(name: str) -> tuple[str | None, str | None]:
    """The content type and encoding static.File gives a file ``name``,
    remembered by its last two extensions (all the answer depends on)."""
    dots = name.count(".")
    if dots == 0:
        key = "x"
    elif dots == 1 and not name.startswith("."):
        key = "x" + name[name.index(".") :]
    else:
        root, last = os.path.splitext(name)
        key = "x" + os.path.splitext(root)[1] + last
    found = _TYPES.get(key)
    if found is None:
        found = static.getTypeAndEncoding(
            key, Download.contentTypes, Download.contentEncodings, DEFAULT_TYPE
        )
        if len(_TYPES) < 4096:
            _TYPES[key] = found
    return found


def send(request: Request, handle: BinaryIO) -> Any:
    """Answer a GET or HEAD with an opened (rights-checked) file: a small
    file asked for whole in one write (its bytes are returned), anything
    else by :class:`Download` (``NOT_DONE_YET``).  The handle is closed
    either way."""
    try:
        status = os.fstat(handle.fileno())
    except OSError:
        handle.close()
        raise
    if (
        status.st_size > SMALL
        or request.getHeader(b"range") is not None
        # A client that does not read its answers: this one waits, as a
        # producer, until the transport drains (so do pipelined ones).
        or getattr(request.channel, "backed_up", False)
    ):
        return Download(handle).render(request)
    with handle:
        request.setHeader(b"accept-ranges", b"bytes")
        if request.setLastModified(status.st_mtime) is CACHED:
            return b""
        kind, encoding = type_of(os.path.basename(handle.name))
        if kind:
            request.setHeader(b"content-type", kind.encode("latin-1"))
        if encoding:
            request.setHeader(b"content-encoding", encoding.encode("latin-1"))
        if request.method == b"HEAD":
            request.setHeader(b"content-length", b"%d" % status.st_size)
            return b""
        # As much as was measured (a file that changes meanwhile is sent
        # as static.File would send it: its first st_size bytes).
        data = handle.read(status.st_size)
    request.setHeader(b"content-length", b"%d" % len(data))
    return data
