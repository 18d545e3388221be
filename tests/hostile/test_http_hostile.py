"""The HTTP listener against hostile clients: raw sockets sending what no
honest browser sends (RFC 9112's limits and framing rules).

Each attack must be refused (``400``, ``413`` or ``431``) or cut off, never
buffered without bound, never answered with a traceback; after each a
normal GET and a login through the form still work.  The server is one of
this module's own (``--http``), started with ``Limits = { http = {
LoginTimeout = 3s; }; }`` so the deadline of a request's head is short;
its log must end without a traceback.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hostile.listeners import closed_within
from tests.integration.conftest import (
    admin,
    free_port,
    launch_server,
    stop_server,
    wait_for_port,
)

pytestmark = pytest.mark.integration

#: Seconds any one socket operation may take.
TIMEOUT = 10.0
#: The request-head deadline the server runs with, in seconds.
HEAD_DEADLINE = 3
TOKEN = re.compile(rb'name="csrf" value="([^"]+)"')
FORM_COOKIE = re.compile(rb"CGPLoginForm=([A-Za-z0-9]+)")
PUBLIC = b"public file\n"


@dataclass
class Web:
    """The running server: its HTTP port, process id and log."""

    port: int
    pid: int
    log: Path


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """A server with one HTTP listener; info@company.com (``pw``) has a
    public ``hello.txt``.  Its log holds no traceback at the end."""
    root = tmp_path_factory.mktemp("http-hostile")
    base = root / "base"
    admin(base, "init", "--main-domain", "company.com", "--postmaster-password", "pm")
    admin(base, "server", "settings", "FailedLoginDelay=0.2s")
    admin(base, "server", "settings", f"Limits={{http={{LoginTimeout={HEAD_DEADLINE}s;}};}}")
    admin(base, "account", "create", "info@company.com", "--password", "pw")
    storage = base / "Accounts" / "info.macnt" / "account.web"
    storage.mkdir(parents=True, exist_ok=True)
    (storage / "hello.txt").write_bytes(PUBLIC)
    (storage / "64k.bin").write_bytes(b"6" * 65536)
    log = root / "server.log"
    port = free_port()
    process = launch_server(base, log, f"--http=tcp:{port}:interface=127.0.0.1")
    try:
        wait_for_port("127.0.0.1", port, process, log)
        yield Web(port, process.pid, log)
    finally:
        stop_server(process)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    assert "Unhandled Error" not in text


class Raw:
    """A client socket that writes exactly what it is given."""

    def __init__(self, web: Web) -> None:
        self.sock = socket.create_connection(("127.0.0.1", web.port), timeout=TIMEOUT)
        self.buffer = b""
        #: The head of the last response read.
        self.head = b""

    def send(self, data: bytes) -> bool:
        """Write bytes; False if the server has already closed."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionError, TimeoutError):
            return False
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> tuple[int, bytes] | None:
        """The next response (status, body; Content-Length framed), None
        if the connection ends first."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.head = head
        status = int(head.split(b" ", 2)[1])
        found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        length = int(found.group(1)) if found else 0
        while len(self.buffer) < length:
            if not self._fill():
                return None
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, body

    def closed_within(self, seconds: float) -> bool:
        """Whether the server closes within ``seconds``."""
        return closed_within(self.sock, seconds)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def refused(web: Web, data: bytes, statuses: tuple[int, ...]) -> None:
    """Send ``data``: the answer (if the server got to write one before the
    client's excess bytes reset the connection) is one of ``statuses``, the
    connection is closed, and the server still serves."""
    client = Raw(web)
    try:
        client.send(data)
        answer = client.response()
        assert answer is None or answer[0] in statuses, answer
        assert client.closed_within(TIMEOUT)
    finally:
        client.close()
    still_serves(web)


def get(web: Web, path: bytes, host: bytes = b"company.com") -> tuple[int, bytes] | None:
    """One GET on a connection of its own."""
    client = Raw(web)
    try:
        client.send(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host))
        return client.response()
    finally:
        client.close()


def still_serves(web: Web) -> None:
    """A public file is served and a login through the form succeeds."""
    assert get(web, b"/~info/hello.txt") == (200, PUBLIC)
    client = Raw(web)
    try:
        client.send(b"GET / HTTP/1.1\r\nHost: company.com\r\n\r\n")
        answer = client.response()
        assert answer is not None and answer[0] == 200, answer
        token, cookie = TOKEN.search(answer[1]), FORM_COOKIE.search(client.head)
        assert token is not None and cookie is not None
        form = b"csrf=" + token.group(1) + b"&username=info&password=pw"
        client.send(
            b"POST /login HTTP/1.1\r\nHost: company.com\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Cookie: CGPLoginForm=" + cookie.group(1) + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % len(form) + form
        )
        answer = client.response()
        assert answer is not None and answer[0] == 303, answer
        assert b"CGPSessionID=" in client.head
    finally:
        client.close()


def test_header_line_over_the_limit(web: Web) -> None:
    """A 100 KB header line is refused and the connection closed."""
    refused(
        web,
        b"GET / HTTP/1.1\r\nHost: company.com\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n",
        (400, 431),
    )


def test_too_many_headers(web: Web) -> None:
    """600 small headers are refused and the connection closed."""
    headers = b"".join(b"X-%d: v\r\n" % number for number in range(600))
    refused(web, b"GET / HTTP/1.1\r\nHost: company.com\r\n" + headers + b"\r\n", (400, 431))


def test_request_line_of_a_megabyte(web: Web) -> None:
    """A 1 MB request line is refused, never buffered whole."""
    before = rss_of(web)
    refused(web, b"GET /" + b"a" * (1024 * 1024) + b" HTTP/1.1\r\n\r\n", (400, 414))
    assert rss_of(web) - before < 8 * 1024 * 1024


def test_slowloris_head_is_cut_off(web: Web) -> None:
    """A client trickling its headers a byte a second is closed at the
    head deadline, although it is never idle."""
    client = Raw(web)
    try:
        started = time.monotonic()
        closed = False
        for byte in b"GET / HTTP/1.1\r\nHost: company.com\r\nX-Slow: " + b"a" * 60:
            if not client.send(bytes([byte])) or client.closed_within(1):
                closed = True
                break
        elapsed = time.monotonic() - started
        assert closed, f"kept a slow client for {elapsed:.1f} s"
        assert HEAD_DEADLINE - 0.5 <= elapsed <= HEAD_DEADLINE + 3, elapsed
    finally:
        client.close()
    still_serves(web)


@pytest.mark.parametrize(
    "size_line",
    [b"zz", b"-1", b"1" * 5000, b"0x10", b"5 ; " + b"x" * 5000],
    ids=["not-hex", "negative", "5000-digits", "0x", "long-extension"],
)
def test_malformed_chunk_size(web: Web, size_line: bytes) -> None:
    """A chunk size that is not hexadecimal, or far too long, is refused."""
    refused(
        web,
        b"POST /login HTTP/1.1\r\nHost: company.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        + size_line
        + b"\r\nhello\r\n0\r\n\r\n",
        (400, 413),
    )


def test_huge_chunk_is_bounded(web: Web) -> None:
    """A chunk announced as 2^64-1 octets is read no further than an
    anonymous body may go."""
    client = Raw(web)
    try:
        client.send(
            b"PUT /~info/x HTTP/1.1\r\nHost: company.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"ffffffffffffffff\r\n"
        )
        for _ in range(64):
            if not client.send(b"x" * 16384):
                break
        answer = client.response()
        assert answer is None or answer[0] == 413, answer
        assert client.closed_within(TIMEOUT)
    finally:
        client.close()
    still_serves(web)


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
    ],
    ids=["cl-te", "te-cl", "cl-cl", "te-list"],
)
def test_ambiguous_framing_is_refused(web: Web, framing: bytes) -> None:
    """A body whose length two headers disagree on (request smuggling,
    RFC 9112 §6.3) is refused with 400 and the connection closed."""
    refused(
        web,
        b"POST /login HTTP/1.1\r\nHost: company.com\r\n"
        + framing
        + b"\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        (400,),
    )


@pytest.mark.parametrize(
    ("length", "statuses"),
    [
        (b"-1", (400,)),
        (b"+5", (400,)),
        (b"1e3", (400,)),
        (b"99999999999999999999999999999999", (400, 413)),
    ],
    ids=["negative", "signed", "float", "overflowing"],
)
def test_bad_content_length(web: Web, length: bytes, statuses: tuple[int, ...]) -> None:
    """A Content-Length that is no length, or larger than any body may be,
    is refused."""
    refused(
        web,
        b"POST /login HTTP/1.1\r\nHost: company.com\r\nContent-Length: " + length + b"\r\n\r\nx",
        statuses,
    )


def rss_of(web: Web) -> int:
    """The server's resident memory in octets."""
    for line in Path(f"/proc/{web.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_pipelined_requests_are_bounded(web: Web) -> None:
    """1,000 GETs sent at once, read only later: every one is answered in
    order, or the connection closed, and the server does not buffer them
    all (it stops reading while answers wait)."""
    before = rss_of(web)
    client = Raw(web)
    try:
        request = b"GET /~info/hello.txt HTTP/1.1\r\nHost: company.com\r\n\r\n"
        client.send(request * 1000)
        time.sleep(1)
        grown = rss_of(web) - before
        answered = 0
        while answered < 1000:
            answer = client.response()
            if answer is None:
                break
            assert answer == (200, PUBLIC)
            answered += 1
        assert answered == 1000 or client.closed_within(TIMEOUT)
        assert grown < 16 * 1024 * 1024, f"server grew by {grown} octets"
    finally:
        client.close()
    still_serves(web)


def test_unread_answers_are_bounded(web: Web) -> None:
    """1,000 pipelined GETs of a 64 KiB file from a client that does not
    read: the server stops answering while its answers wait, instead of
    holding 64 MB of them."""
    before = rss_of(web)
    client = Raw(web)
    try:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        request = b"GET /~info/64k.bin HTTP/1.1\r\nHost: company.com\r\n\r\n"
        client.send(request * 1000)
        time.sleep(2)
        grown = rss_of(web) - before
        assert grown < 16 * 1024 * 1024, f"server grew by {grown} octets"
        answer = client.response()
        assert answer == (200, b"6" * 65536)
    finally:
        client.close()
    still_serves(web)


@pytest.mark.parametrize(
    "path",
    [
        b"/~info/\x00",
        b"/~info/a\x00b.txt",
        b"/\x00",
        b"/~info/\xff\xfe.txt",
        b"/~info/\xc3\xa9t\xc3\xa9.txt",
        b"/~\xc3\xa9/x",
        b"/~info/%00",
        b"/~info/\x01\x7f",
    ],
    ids=["nul", "nul-inside", "nul-top", "not-utf8", "utf8", "utf8-owner", "encoded-nul", "ctl"],
)
def test_odd_bytes_in_the_path(web: Web, path: bytes) -> None:
    """NUL, control and non-ASCII bytes in the path are refused or not
    found, never a server error."""
    answer = get(web, path)
    assert answer is None or answer[0] in (400, 401, 404), answer
    still_serves(web)


@pytest.mark.parametrize("host", [b"\xff\xfe", b"company.com\x01", b"[::1", b"a" * 300])
def test_odd_host_header(web: Web, host: bytes) -> None:
    """An undecodable, bracketed or overlong Host falls back to the
    connection's domain (or is refused), never a server error."""
    answer = get(web, b"/~info/hello.txt", host)
    assert answer is None or answer in ((200, PUBLIC),) or answer[0] == 400, answer
    still_serves(web)
