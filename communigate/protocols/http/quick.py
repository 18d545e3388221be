"""The short way for the commonest request: an anonymous ``GET`` or
``HEAD`` of a small File Storage file.

A web site's visitors mostly fetch small files, one request after the
other on a kept-alive connection.  twisted.web builds a request object, a
header table and a resource chain for each and writes its answer in
pieces; for a 4 KiB file that costs several times the file's own work.
So the channel (:class:`~communigate.protocols.http.channel.WebChannel`)
first offers each complete request head to :func:`parse`, a strict parser
of our own (no library parses just this much), and answers it here when
it is the plain case:

- the request line is ``GET`` or ``HEAD``, an origin-form target under
  ``/~`` and ``HTTP/1.1``; the head is complete, at most 16 KiB and 100
  header lines, every line ends in CRLF;
- one ``Host`` header, and otherwise only headers that cannot change the
  answer (:data:`HARMLESS`: ``Accept``, ``User-Agent``, ``Connection:
  keep-alive``, ...) — so no body framing, credentials, cookie, ``Range``
  or condition;
- the path leads, for an anonymous visitor, to a regular file of at most
  :data:`~communigate.protocols.http.download.SMALL` bytes.

Anything else — a request this parser would have to think about, a
refusal, a directory, a large file — goes to twisted.web untouched, which
answers it as it answers every other request (the answer given here has
the very same status and headers).  Requests are answered strictly in
order: the short way is taken only while twisted.web holds no request and
no buffered bytes, and it stops at the first request it does not take.
"""

from __future__ import annotations

import math
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet import tcp
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.http import datetimeToString
from twisted.web.server import version as SERVER

from communigate.protocols.http import paths
from communigate.protocols.http.download import SMALL, type_of
from communigate.recent import Recent

#: The largest head taken (twisted.web's own bound; a larger one goes
#: there to be refused).
MAX_HEAD = 16 * 1024
#: Header lines taken at most.
MAX_HEADERS = 100
#: Headers whose presence does not change the answer to a file's GET.
HARMLESS = frozenset(
    {
        b"accept",
        b"accept-charset",
        b"accept-encoding",
        b"accept-language",
        b"cache-control",
        b"dnt",
        b"pragma",
        b"priority",
        b"referer",
        b"sec-fetch-dest",
        b"sec-fetch-mode",
        b"sec-fetch-site",
        b"sec-fetch-user",
        b"sec-gpc",
        b"upgrade-insecure-requests",
        b"user-agent",
    }
)
#: ``GET`` or ``HEAD``, an origin-form target under ``/~`` (printable
#: ASCII, no space), HTTP/1.1.
_REQUEST_LINE = re.compile(rb"(GET|HEAD) (/~[!-~]*) HTTP/1\.1\r\n")
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
#: Header lines: a token, a colon, a value without NUL, CR or LF (no
#: folding, no space before the colon), each ending in CRLF.
_FIELDS = re.compile(rb"(?:" + _TOKEN + rb":[^\r\n\x00]*\r\n)*")
#: One header line's name and value (its blanks stripped after: a lazy
#: value before optional blanks would backtrack over a long run of them).
_FIELD = re.compile(rb"(" + _TOKEN + rb"):([^\r\n\x00]*)\r\n")
#: The host part of a Host header, as twisted.web takes it.
_HOST = re.compile(rb"^\[?(?P<host>.*?)\]?(:\d+)?$")


@dataclass(frozen=True, slots=True)
class SimpleGet:
    """A request head the short way may answer."""

    method: bytes
    #: The path (without a query), still percent-encoded.
    path: bytes
    #: The host the Host header names (without a port).
    host: bytes
    #: Offset just past the head in the buffer it was parsed from.
    end: int


def parse(data: bytes, start: int = 0) -> SimpleGet | None:
    """The head at ``data[start:]`` if it is complete and plain enough for
    the short way, else None (incomplete, or for twisted.web to judge)."""
    end = data.find(b"\r\n\r\n", start, start + MAX_HEAD)
    if end < 0:
        return None
    line = _REQUEST_LINE.match(data, start, end + 2)
    if line is None:
        return None
    fields = data[line.end() : end + 2]
    if not _FIELDS.fullmatch(fields):
        return None
    host: bytes | None = None
    count = 0
    for name, raw in _FIELD.findall(fields):
        count += 1
        value = raw.strip(b" \t")
        name = name.lower()
        if name == b"host":
            if host is not None:
                return None
            host = value
        elif name == b"connection":
            if value.lower() != b"keep-alive":
                return None
        elif name not in HARMLESS:
            return None
    if not host or count > MAX_HEADERS:
        return None
    found = _HOST.match(host)
    if found is None:
        return None
    path = line.group(2).split(b"?", 1)[0]
    return SimpleGet(line.group(1), path, found.group("host"), end + 4)


class _Dates:
    """HTTP dates (RFC 9110 §5.6.7) as twisted.web writes them, each made
    once: ``Date`` for the current second, ``Last-Modified`` for the last
    second asked (the files of a site are often written in the same one)."""

    def __init__(self) -> None:
        self._now: tuple[int, bytes] = (-1, b"")
        self._modified: tuple[int, bytes] = (-1, b"")

    def now(self) -> bytes:
        """The ``Date`` of an answer given now."""
        second = int(time.time())
        if second != self._now[0]:
            self._now = (second, datetimeToString(second))
        return self._now[1]

    def modified(self, seconds: float) -> bytes:
        """The ``Last-Modified`` of a file changed at ``seconds`` (rounded
        up, as twisted.web's ``setLastModified`` does)."""
        second = math.ceil(seconds)
        if second != self._modified[0]:
            self._modified = (second, datetimeToString(second))
        return self._modified[1]


class QuickFiles:
    """Answers :class:`SimpleGet` requests for small files of File Storage,
    as the visitor of the domain the Host header names sees them.

    Which folder a URL's folder part leads to, and whether a visitor may
    read the files there, is asked of the File Storage shell
    (:meth:`~communigate.portal.webfiles.AnonymousFiles.readable_folder`)
    and remembered for :data:`~communigate.recent.RECENT` seconds (over
    the shell's own memory of storages, rights and checked folders: a
    change is seen within a second); the file
    itself is opened on each request, never through a link
    (``O_NOFOLLOW``: a link is left to the shell's full check) and never
    waited for (``O_NONBLOCK``: a FIFO is not a regular file and goes the
    long way).
    """

    def __init__(self, context: Any) -> None:
        #: The :class:`~communigate.protocols.http.context.WebContext`.
        self.context = context
        self._dates = _Dates()
        self._folders = Recent(context.reactor.seconds)

    def answer(self, get: SimpleGet, channel: Any) -> bytes | None:
        """The whole answer (head and body) to ``get`` on ``channel``, or
        None for twisted.web to answer."""
        folder_part, _, name_part = get.path.rpartition(b"/")
        if not name_part:
            return None
        domain = self.context.domain_of(get.host, channel)
        folder: str | None = self._folders.get(
            (domain, folder_part), lambda: self._folder(domain, folder_part)
        )
        if folder is None:
            return None
        try:
            name = paths.segment(unquote_to_bytes(name_part))
            handle = os.open(os.path.join(folder, name), _OPEN)
        except (paths.BadPath, OSError):
            return None
        try:
            status = os.fstat(handle)
            if not stat.S_ISREG(status.st_mode) or status.st_size > SMALL:
                return None
            data = b"" if get.method == b"HEAD" else os.read(handle, status.st_size)
        except OSError:
            return None
        finally:
            os.close(handle)
        length = status.st_size if get.method == b"HEAD" else len(data)
        head = [
            b"HTTP/1.1 200 OK\r\nServer: ",
            SERVER,
            b"\r\nDate: ",
            self._dates.now(),
            b"\r\nContent-Security-Policy: sandbox\r\nX-Content-Type-Options: nosniff"
            b"\r\nAccept-Ranges: bytes\r\nLast-Modified: ",
            self._dates.modified(status.st_mtime),
        ]
        kind, encoding = type_of(name)
        if kind:
            head += (b"\r\nContent-Type: ", kind.encode("latin-1"))
        if encoding:
            head += (b"\r\nContent-Encoding: ", encoding.encode("latin-1"))
        head += (b"\r\nContent-Length: %d\r\n\r\n" % length, data)
        return b"".join(head)

    def _folder(self, domain: str, encoded: bytes) -> str | None:
        """The folder a URL's folder part names, where a visitor of
        ``domain`` may read; None if none (or the path is refused)."""
        try:
            segments = paths.segments([unquote_to_bytes(part) for part in encoded[1:].split(b"/")])
        except paths.BadPath:
            return None
        if not segments or not segments[0].startswith("~"):
            return None
        try:
            found: str | None = self.context.visitor_in(domain).readable_folder(segments)
        except Exception:
            # Anything odd is answered, and logged, the long way.
            return None
        return found


#: How a file is opened: read only, never through a link, never waiting.
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def plain_tcp_below(transport: Any) -> tcp.Connection | None:
    """The TCP connection under a counting transport when every layer
    between passes bytes on unchanged (no TLS, no other transformation),
    else None."""
    if not isinstance(getattr(transport, "bytes_out", None), int):
        return None
    below = getattr(transport, "transport", None)
    for _ in range(8):
        if isinstance(below, tcp.Connection):
            return None if below.TLS else below
        if not isinstance(below, ProtocolWrapper) or type(below).write is not ProtocolWrapper.write:
            return None
        below = below.transport
    return None


def send_now(transport: Any, below: tcp.Connection | None, data: bytes) -> None:
    """Write ``data`` on a connection's counting ``transport``, sent at
    once where it can be.

    Twisted's TCP transport keeps what it is given until the reactor's next
    turn finds the socket writable (adding it to the poller, then taking it
    out: two system calls and a turn more for every small answer).  Where
    the layers below pass bytes on unchanged down to plain TCP (``below``,
    from :func:`plain_tcp_below`) and nothing is waiting to be sent, the
    bytes go to the socket now and only what the socket does not take is
    left to the transport; anything else is an ordinary ``write``.  The
    bytes are counted either way."""
    if (
        below is not None
        and not below.dataBuffer
        and getattr(below, "_tempDataBuffer", None) == []
        and below.connected
        and not below.disconnecting
        and not below.TLS
    ):
        try:
            sent = below.socket.send(data)
        except OSError:
            # Full (the transport waits), or broken (the transport finds
            # the connection lost and says so).
            sent = 0
        if sent:
            transport.bytes_out += sent
        if sent < len(data):
            transport.write(data[sent:])
        return
    transport.write(data)


#: What the channel calls: a :class:`QuickFiles`'s ``answer``.
Answerer = Callable[[SimpleGet, Any], "bytes | None"]
