"""Sending a File Storage file as an HTTP response body.

twisted.web's static file resource parses ``Range``, sets the headers and
answers ``HEAD`` and ``If-Modified-Since``; its producers, though, are
pulled by Twisted's cooperator, which works in slices of 10 ms with pauses
of 10 ms between them — a small file waits for the next slice, a large one
flows half the time.  :class:`PushFile` pushes instead: it writes chunks
while the connection takes them and stops when the transport pauses it
(its buffer is full), so a download needs no more memory than one chunk
and the transport's buffer, and starts at once.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from twisted.internet.interfaces import IPushProducer
from twisted.web import static
from twisted.web.server import Request
from zope.interface import implementer

#: Bytes read and written at a time.
CHUNK = 256 * 1024


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
        """Register with the request and begin writing."""
        self.handle.seek(self.offset)
        self.request.registerProducer(self, True)
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
