"""The request class of the HTTP module: its body is bounded as it arrives.

twisted.web keeps a request's body (in memory up to 100 KB, else in a
temporary file) until the whole request is there, and only then asks the
resource tree; a client could fill the disk before any check.  So a body
is cut off while it arrives: a request without credentials (no
``Authorization`` header, no session cookie) may bring
:data:`MAX_ANONYMOUS_BODY` bytes (a login form, a PROPFIND), one with
credentials :data:`MAX_BODY` (uploads; the File Storage quota is applied
when the upload is stored).  A body over its bound ends the connection.
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request

#: Bytes a request without credentials may send.
MAX_ANONYMOUS_BODY = 64 * 1024
#: Bytes any request may send (the largest upload).
MAX_BODY = 8 * 1024**3


class WebRequest(Request):
    """A request whose body may not grow past its bound."""

    _received = 0
    _refused = False

    def _limit(self) -> int:
        headers = self.requestHeaders
        cookies = b";".join(headers.getRawHeaders(b"cookie", []))
        if headers.hasHeader(b"authorization") or b"CGPSessionID=" in cookies:
            return MAX_BODY
        return MAX_ANONYMOUS_BODY

    def gotLength(self, length: int | None) -> None:
        """A declared length over the bound ends the connection at once."""
        if length is not None and length > self._limit():
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Keep the chunk while the body stays within its bound."""
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._limit():
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        self._refused = True
        transport: Any = self.channel.transport
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            transport.loseConnection()
