"""The short way for plain small-file requests (protocols/http/quick.py):
its parser, and the channel answering with it exactly as twisted.web
would, in order, and leaving everything else to twisted.web."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import StringTransport

from communigate.protocols.http import quick
from communigate.protocols.http.quick import SimpleGet, parse, plain_tcp_below
from communigate.store.acl import Identity
from communigate.store.files import FileDirectory
from communigate.store.filestorage import FileStorage
from tests.protocols.conftest import raw_connection

BASIC = "Basic " + base64.b64encode(b"info:pw-company.com").decode()


# -- the parser ---------------------------------------------------------------------


def test_a_plain_get_is_taken() -> None:
    head = (
        b"GET /~info/a%20b.txt?v=3 HTTP/1.1\r\nHost: Company.com:8080\r\n"
        b"User-Agent: curl/8\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n"
    )
    found = parse(head + b"GET /next")
    assert found == SimpleGet(b"GET", b"/~info/a%20b.txt", b"Company.com", len(head))
    assert parse(b"x" * 5 + head, 5) == SimpleGet(
        b"GET", b"/~info/a%20b.txt", b"Company.com", 5 + len(head)
    )
    assert parse(head.replace(b"GET", b"HEAD", 1)) is not None


@pytest.mark.parametrize(
    "head",
    [
        # incomplete
        b"GET /~info/f HTTP/1.1\r\nHost: company.com\r\n",
        # other methods, versions, targets
        b"POST /~info/f HTTP/1.1\r\nHost: company.com\r\n\r\n",
        b"get /~info/f HTTP/1.1\r\nHost: company.com\r\n\r\n",
        b"GET /~info/f HTTP/1.0\r\nHost: company.com\r\n\r\n",
        b"GET /login HTTP/1.1\r\nHost: company.com\r\n\r\n",
        b"GET http://company.com/~info/f HTTP/1.1\r\nHost: company.com\r\n\r\n",
        b"GET  /~info/f HTTP/1.1\r\nHost: company.com\r\n\r\n",
        b"GET /~info/f\x7f HTTP/1.1\r\nHost: company.com\r\n\r\n",
        # Host missing, twice, empty
        b"GET /~info/f HTTP/1.1\r\nAccept: */*\r\n\r\n",
        b"GET /~info/f HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n",
        b"GET /~info/f HTTP/1.1\r\nHost:\r\n\r\n",
        # headers that change the answer, or framing, or credentials
        b"GET /~info/f HTTP/1.1\r\nHost: company.com\r\nRange: bytes=0-1\r\n\r\n",
        b"GET /~info/f HTTP/1.1\r\nHost: company.com\r\nIf-Modified-Since: x\r\n\r\n",
        b"GET /~info/f HTTP/1.1\r\nHost: company.com\r\nAuthorization: Basic eA==\r\n\r\n",
        b"GET /~info/f HTTP/1.1\r\nHost: company.com\r\nCookie: CGPSessionID=1\r\n\r\n",
        b"GET /~info/f HTTP/1.1\r\nHost: company.com\r\nContent-Length: 0\r\n\r\n",
        b"GET /~info/f HTTP/1.1\r\nHost: company.com\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /~info/f HTTP/1.1\r\nHost: company.com\r\nConnection: close\r\n\r\n",
        b"GET /~info/f HTTP/1.1\r\nHost: company.com\r\nExpect: 100-continue\r\n\r\n",
        # malformed lines: folded, bare LF, no colon, space before the colon
        b"GET /~info/f HTTP/1.1\r\nHost: company.com\r\n Accept: x\r\n\r\n",
        b"GET /~info/f HTTP/1.1\r\nHost: company.com\nAccept: */*\r\n\r\n",
        b"GET /~info/f HTTP/1.1\r\nHost: company.com\r\nAccept\r\n\r\n",
        b"GET /~info/f HTTP/1.1\r\nHost : company.com\r\n\r\n",
        b"GET /~info/f HTTP/1.1\r\nHost: company.com\r\nAccept: a\x00b\r\n\r\n",
    ],
)
def test_anything_else_is_left_to_twisted_web(head: bytes) -> None:
    assert parse(head) is None


def test_blank_runs_cost_one_pass() -> None:
    """A header value of 16,000 blanks is parsed in one pass (a pattern
    with a lazy value before optional blanks took half a second on it,
    on the reactor thread); the blanks around a value are not part of it."""
    head = b"GET /~info/f HTTP/1.1\r\nHost:  company.com \t\r\nAccept: x"
    found = parse(head + b" \t" * 8000 + b"y\r\n\r\n")
    assert found is not None and found.host == b"company.com"
    for _ in range(200):  # bounded: 200 parses of 16 KiB
        parse(head + b" " * 16000 + b"\r\n\r\n")


def test_heads_are_bounded() -> None:
    many = b"".join(b"Accept: x\r\n" for _ in range(quick.MAX_HEADERS + 1))
    assert parse(b"GET /~info/f HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n") is None
    long = b"GET /~info/" + b"f" * quick.MAX_HEAD + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    assert parse(long) is None


# -- the channel --------------------------------------------------------------------


def _answers(
    data: bytes, heads: tuple[int, ...] = ()
) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """The (status line, headers without Date, body) of each answer; the
    answers numbered in ``heads`` are to HEAD requests (no body)."""
    found = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b": ")
            headers[name.lower()] = value
        body = b""
        if len(found) in heads:
            pass
        elif headers.get(b"transfer-encoding") == b"chunked":
            while True:
                size, _, data = data.partition(b"\r\n")
                count = int(size, 16)
                body += data[:count]
                data = data[count + 2 :]
                if count == 0:
                    break
        else:
            length = int(headers.get(b"content-length", b"0"))
            body, data = data[:length], data[length:]
        headers.pop(b"date", None)
        found.append((status, headers, body))
    return found


def _get(site: Any, *requests: bytes) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    protocol, transport = raw_connection(site)
    protocol.dataReceived(b"".join(requests))
    heads = tuple(i for i, request in enumerate(requests) if request.startswith(b"HEAD"))
    return _answers(transport.value(), heads)


def _request(path: str, method: str = "GET", host: str = "company.com", *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Accept: */*", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture
def storage(directory: FileDirectory) -> Path:
    """info@company.com's File Storage with a few files."""
    files = FileStorage(
        directory.account_path("company.com", "info"), Identity("company.com", "info")
    )
    files.create()
    (files.root / "page.txt").write_bytes(b"hello, visitor\n")
    (files.root / "data.tar.gz").write_bytes(b"\x1f\x8b" + b"z" * 100)
    (files.root / "sub").mkdir()
    (files.root / "sub" / "a b.html").write_bytes(b"<p>deep</p>")
    (files.root / "priv").mkdir()
    (files.root / "priv" / "secret.txt").write_bytes(b"not for visitors")
    files.set_access("/priv", {"Private": "YES"})
    return files.root


@pytest.mark.parametrize(
    ("path", "method", "file"),
    [
        ("/~info/page.txt", "GET", "page.txt"),
        ("/~info/page.txt", "HEAD", ""),
        ("/~info/data.tar.gz", "GET", "data.tar.gz"),
        ("/~info/sub/a%20b.html", "GET", "sub/a b.html"),
        ("/~info@company.com//sub/a%20b.html?x=1", "GET", "sub/a b.html"),
    ],
)
def test_the_answer_is_twisted_webs(
    web: Any, storage: Path, path: str, method: str, file: str
) -> None:
    """The short answer has the status, headers and body the long way
    gives (a header quick does not know sends the request the long way)."""
    site = web[0]
    assert site.quick is not None
    short = _get(site, _request(path, method))
    long = _get(site, _request(path, method, "company.com", "X-Long-Way: 1"))
    assert short == long
    status, headers, body = short[0]
    assert status == b"HTTP/1.1 200 OK"
    assert body == ((storage / file).read_bytes() if file else b"")
    assert headers[b"content-length"] == b"%d" % (storage / (file or "page.txt")).stat().st_size


def test_short_answers_bypass_twisted_web(
    web: Any, storage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain request never reaches twisted.web's request machinery."""
    site = web[0]
    made: list[Any] = []
    factory = site.requestFactory
    monkeypatch.setattr(site, "requestFactory", lambda *a: made.append(1) or factory(*a))
    protocol, transport = raw_connection(site)
    protocol.dataReceived(_request("/~info/page.txt"))
    assert _answers(transport.value())[0][2] == b"hello, visitor\n"
    assert made == []
    protocol.dataReceived(_request("/~info/page.txt", "GET", "company.com", "Range: bytes=0-4"))
    assert made == [1]
    assert _answers(transport.value())[1][2] == b"hello"


def test_pipelined_requests_are_answered_in_order(web: Any, storage: Path) -> None:
    """Short, long (a refusal), short again, split across reads: each
    answer in its request's place."""
    site = web[0]
    protocol, transport = raw_connection(site)
    data = (
        _request("/~info/page.txt")
        + _request("/~info/missing.txt")
        + _request("/~info/sub/a%20b.html")
        + _request("/~info/priv/secret.txt")
        + _request("/~info/page.txt", "HEAD")
    )
    for start in range(0, len(data), 37):
        protocol.dataReceived(data[start : start + 37])
    answers = _answers(transport.value(), heads=(4,))
    assert [a[0].split(b" ")[1] for a in answers] == [b"200", b"401", b"200", b"401", b"200"]
    assert answers[0][2] == b"hello, visitor\n"
    assert answers[2][2] == b"<p>deep</p>"
    assert answers[4][1][b"content-length"] == b"15"
    assert not transport.disconnecting


def test_what_a_visitor_may_not_read_goes_the_long_way(
    web: Any, storage: Path, tmp_path: Path
) -> None:
    """Private folders, missing files, links, FIFOs, folders, large files
    and traversal attempts are answered by twisted.web, as before."""
    site = web[0]
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside the storage")
    os.symlink(outside, storage / "link.txt")
    os.mkfifo(storage / "fifo")
    (storage / "big.bin").write_bytes(b"b" * (quick.SMALL + 1))
    for path, status in [
        ("/~info/priv/secret.txt", b"401"),
        ("/~info/missing", b"401"),
        ("/~nobody/page.txt", b"401"),
        ("/~info/link.txt", b"401"),
        ("/~info/fifo", b"401"),
        ("/~info/sub/", b"200"),
        ("/~info/%2e%2e/info.settings", b"400"),
        ("/~info/sub%2f..%2fpage.txt", b"400"),
    ]:
        (answer,) = _get(site, _request(path))
        assert answer[0].split(b" ")[1] == status, path
        assert b"outside" not in answer[2]
    (answer,) = _get(site, _request("/~info/big.bin"))
    assert answer[0] == b"HTTP/1.1 200 OK" and len(answer[2]) == quick.SMALL + 1


def test_the_host_header_names_the_domain(
    web: Any, storage: Path, directory: FileDirectory
) -> None:
    """A bare ``~name`` belongs to the Host header's domain (aliases too);
    a host that names none falls back to the connection's domain."""
    site = web[0]
    other = FileStorage(
        directory.account_path("client2.com", "info"), Identity("client2.com", "info")
    )
    other.create()
    (other.root / "page.txt").write_bytes(b"client2's page")
    for host, body in [
        ("company.com", b"hello, visitor\n"),
        ("COMPANY.com.:8080", b"hello, visitor\n"),
        ("client2.com", b"client2's page"),
        ("alias2.com", b"client2's page"),
        ("unknown.example", b"hello, visitor\n"),
    ]:
        (answer,) = _get(site, _request("/~info/page.txt", "GET", host))
        assert answer[2] == body, host
    (answer,) = _get(site, _request("/~info/page.txt", "GET", "client1.com"))
    assert answer[0].split(b" ")[1] == b"401"


def test_an_access_log_keeps_every_request_on_the_long_way(
    web: Any, storage: Path, tmp_path: Path
) -> None:
    from communigate.protocols.http.site import make_site

    site = make_site(web[0].context, str(tmp_path / "access.log"))
    assert site.quick is None
    site.startFactory()
    (answer,) = _get(site, _request("/~info/page.txt"))
    assert answer[2] == b"hello, visitor\n"
    site.stopFactory()
    assert b"GET /~info/page.txt" in (tmp_path / "access.log").read_bytes()


def test_plain_tcp_below_only_under_a_counting_transport() -> None:
    assert plain_tcp_below(StringTransport()) is None
