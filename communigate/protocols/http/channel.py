"""An HTTP/1.1 connection of the HTTP module, with the limits every
listener has (:mod:`communigate.protocols.limits`).

twisted.web's channel parses the request (RFC 9112): a line over 16 KiB, a
head over 16 KiB or 500 headers, a ``Content-Length`` that is not digits,
two framing headers (``Content-Length`` with ``Transfer-Encoding``, or
either twice: request smuggling, RFC 9112 §6.3), a malformed chunk are all
answered ``400`` and the connection closed.  Pipelined requests wait in a
buffer of 16 KiB, past which the connection is no longer read until the
request at its head is answered.  What it lacks is added here:

- **A deadline for each request's head.**  Its idle time-out restarts with
  every byte, so a client trickling a header a byte a second (slowloris)
  would hold the connection for ever.  From the first byte of a request,
  its head (request line and headers, where its credentials are) must be
  complete within ``LoginTimeout`` seconds of the ``Limits`` server
  setting's ``http`` section (30 s by default, as Apache's
  ``RequestReadTimeout header=20-40``); bytes do not extend it.  A body
  then runs under the idle time-out.
- **The idle time-out** is ``IdleTimeout`` of the same section (120 s).
- **Whether the client reads.**  Pipelined requests answered at once
  would fill the transport's buffer without bound when the client does not
  read its answers; :attr:`WebChannel.backed_up` tells an answer to wait.

And one thing is taken off its hands: a plain anonymous ``GET``/``HEAD``
of a small file is answered by :mod:`.quick` before twisted.web sees it,
while twisted.web holds nothing of the connection (:meth:`WebChannel.
dataReceived`).

The limits are read when a connection starts (``Limits = { http = {
LoginTimeout = 10s; IdleTimeout = 5m; }; }``).  Only HTTP/1.x is spoken
(no HTTP/2 negotiation), so the channel serves the connection directly.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers

from communigate.protocols.http.quick import Answerer, parse, plain_tcp_below, send_now
from communigate.protocols.limits import Limits

#: The HTTP module's limits unless the ``Limits`` setting says otherwise
#: (``max_line`` and ``prelogin_data`` are twisted.web's own bounds).
DEFAULTS = Limits(max_line=16 * 1024, login_timeout=30, idle_timeout=120)
_DONE = Failure(ConnectionDone())


class WebChannel(HTTPChannel):
    """twisted.web's HTTP/1.1 channel with a deadline for request heads."""

    #: Seconds from a request's first byte to the end of its head.
    head_timeout: float = DEFAULTS.login_timeout
    #: The transport's buffer is full (the client is not reading): an
    #: answer must wait for it to drain (:func:`.download.send`).
    backed_up = False
    _head_call: Any = None
    #: Answers plain small-file requests (:mod:`.quick`); None: every
    #: request goes to twisted.web.
    quick: Answerer | None = None
    #: The plain TCP connection below, found at the first short answer
    #: (False: not looked for yet).
    _below: Any = False

    def pauseProducing(self) -> None:
        """The transport has enough to send for now."""
        self.backed_up = True
        super().pauseProducing()

    def resumeProducing(self) -> None:
        """The transport wants more."""
        self.backed_up = False
        super().resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        """Plain requests at the start of ``data`` are answered the short
        way; the rest goes to twisted.web.  Bytes that leave a request's
        head incomplete start its deadline (a head that arrives whole in
        one read needs no timer)."""
        if self.quick is not None and self._between_requests():
            data = self._answer_quickly(data)
            if not data:
                self.resetTimeout()
                return
        super().dataReceived(data)
        if (
            self._head_call is None
            and self.head_timeout > 0
            and self.line_mode
            and not self._handlingRequest
            and (self._buffer or self._receivedHeaderSize)
            and self.transport is not None
            and not getattr(self.transport, "disconnecting", False)
        ):
            self._head_call = self.callLater(self.head_timeout, self._head_expired)

    def _between_requests(self) -> bool:
        """twisted.web holds no request, no part of one and no answer
        waiting to be sent: a request now is answered before any other."""
        return bool(
            self.line_mode
            and not self._buffer
            and not self.requests
            and not self._handlingRequest
            and not self._receivedHeaderSize
            and getattr(self, "_HTTPChannel__first_line", 0) == 1
            and self.persistent
            and not self.backed_up
            and self.transport is not None
            and not getattr(self.transport, "disconnecting", False)
        )

    def _answer_quickly(self, data: bytes) -> bytes:
        """Answer the plain requests at the start of ``data``, in order;
        what is left from the first other one (or a partial head)."""
        answer = self.quick
        transport: Any = self.transport
        if self._below is False:
            self._below = plain_tcp_below(transport)
        start = 0
        while start < len(data) and answer is not None and not self.backed_up:
            get = parse(data, start)
            if get is None:
                break
            reply = answer(get, self)
            if reply is None:
                break
            send_now(transport, self._below, reply)
            start = get.end
            if transport.disconnecting:
                return b""
        return data[start:] if start else data

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        """The response head as one piece of bytes: twisted.web writes
        four pieces per header, each then counted and checked again by
        every layer below."""
        if not isinstance(headers, Headers):
            super().writeHeaders(version, code, reason, headers)
            return
        head = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        transport: Any = self.transport
        transport.write(b"".join(head))

    def _send100Continue(self) -> None:
        """``100 Continue`` only for a body that will be taken: while the
        request's credentials are checked it waits for them to be proven,
        and a refused request never gets it (its client would send the
        body for nothing)."""
        request = self.requests[-1] if self.requests else None
        if request is not None and not getattr(request, "may_continue", lambda: True)():
            return
        super()._send100Continue()

    def allHeadersReceived(self) -> None:
        """The head is complete in time."""
        self._stop_head()
        super().allHeadersReceived()

    def connectionLost(self, reason: Failure = _DONE) -> None:
        """Nothing is waited for any more."""
        self._stop_head()
        super().connectionLost(reason)

    def _stop_head(self) -> None:
        call, self._head_call = self._head_call, None
        if call is not None and call.active():
            call.cancel()

    def _head_expired(self) -> None:
        self._head_call = None
        self._log.info(
            "HTTP request head from {peer} not complete after {seconds}s: closed",
            peer=str(self.transport.getPeer()) if self.transport else None,
            seconds=self.head_timeout,
        )
        self.timeoutConnection()
