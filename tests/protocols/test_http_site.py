"""The HTTP resource tree on an in-memory transport: Host header domains,
the login form, sessions, SESSIONID through the checker, File Storage."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from communigate.cred.credentials import ConnectionInfo, VerifiedIdentity
from communigate.cred.errors import WrongPassword
from communigate.portal.filesession import IFileSession
from communigate.portal.websession import IWebUser, WebUser
from communigate.protocols.http.site import make_site
from communigate.store.files import FileDirectory
from tests.protocols.conftest import raw_connection

TOKEN = re.compile(rb'name="csrf" value="([^"]+)"')


class Browser:
    """Sends one request per connection to a Site; keeps cookies."""

    def __init__(self, site: Any, clock: Clock, peer: str = "127.0.0.1") -> None:
        self.site = site
        self.clock = clock
        self.peer = peer
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, host: str = "company.com", body: bytes = b"", **headers: str
    ) -> tuple[int, dict[str, list[str]], bytes]:
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 80),
            peerAddress=IPv4Address("TCP", self.peer, 40000),
        )
        protocol.makeConnection(transport)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        # A file being sent: run the cooperator that pulls it.
        for _ in range(1000):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(0)
        head, _, payload = transport.value().partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode().split("\r\n")
        found: dict[str, list[str]] = {}
        for line in header_lines:
            name, _, value = line.partition(": ")
            found.setdefault(name.lower(), []).append(value)
        if found.get("transfer-encoding") == ["chunked"]:
            payload = _unchunk(payload)
        for cookie in found.get("set-cookie", []):
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        protocol.connectionLost(Failure(ConnectionDone()))
        return int(status_line.split()[1]), found, payload


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        count = int(size, 16)
        if count == 0:
            break
        out += data[:count]
        data = data[count + 2 :]
    return out


def log_in(
    browser: Browser, name: str, password: str, host: str = "company.com"
) -> tuple[int, bytes]:
    _, _, page = browser.request("GET", "/", host)
    token = TOKEN.search(page)
    assert token is not None
    form = f"csrf={token.group(1).decode()}&username={name}&password={password}".encode()
    status, _, body = browser.request(
        "POST", "/login", host, form, Content_Type="application/x-www-form-urlencoded"
    )
    return status, body


def test_webuser_is_served_by_the_realm(directory: FileDirectory) -> None:
    """The realm's IWebUser avatar names the account and gives its files."""
    from zope.interface.verify import verifyObject

    avatar = WebUser(directory, "company.com", "info")
    assert verifyObject(IWebUser, avatar)
    assert IFileSession.providedBy(avatar.files())


def test_host_header_names_the_domain(web: Any) -> None:
    """The login page is the Host's domain's, aliases included; an unknown
    host gets the connection's."""
    browser = Browser(web[0], web[3])
    for host, domain in (
        ("client2.com", "client2.com"),
        ("alias2.com:81", "client2.com"),
        ("nowhere.example", "company.com"),
    ):
        status, headers, page = browser.request("GET", "/", host)
        assert status == 200
        assert f"<title>Log in to {domain}</title>".encode() in page
        assert "no-store" in headers["cache-control"][0]


def test_login_opens_a_session_with_a_safe_cookie(web: Any) -> None:
    """A bare name takes the Host's domain; the cookie is HttpOnly and
    SameSite=Lax; the account page shows name and session ID."""
    site, sessions, _, _ = web
    browser = Browser(site, web[3])
    status, _ = log_in(browser, "info", "pw-client2.com", host="alias2.com")
    assert status == 303
    session = browser.cookies["CGPSessionID"]
    assert re.fullmatch(r"[0-9]+-[A-Za-z0-9]{20}", session)
    _, _, page = browser.request("GET", "/", "alias2.com")
    assert b"<h1>info@client2.com</h1>" in page and session.encode() in page
    assert sessions.get(session).account == "info@client2.com"


def test_failures_are_one_page(web: Any) -> None:
    """Wrong password, unknown name and a forged token: 403, same text."""
    site = web[0]
    bodies = []
    for name, password in (("info", "wrong"), ("nobody", "x")):
        status, body = log_in(Browser(site, web[3]), name, password)
        assert status == 403
        bodies.append(TOKEN.sub(b"", body))
    browser = Browser(site, web[3])
    browser.request("GET", "/")
    status, _, body = browser.request(
        "POST",
        "/login",
        body=b"csrf=1.2.3&username=info&password=pw-company.com",
        Content_Type="application/x-www-form-urlencoded",
    )
    assert status == 403
    bodies.append(TOKEN.sub(b"", body))
    assert len(set(bodies)) == 1 and b"Incorrect password or account name." in bodies[0]


def test_idle_session_ends(web: Any) -> None:
    """After the idle time-out the cookie opens the login page again."""
    site, sessions, _, reactor = web
    browser = Browser(site, web[3])
    assert log_in(browser, "info", "pw-company.com")[0] == 303
    reactor.advance(sessions.idle + 1)
    _, _, page = browser.request("GET", "/")
    assert b"Log in to company.com" in page


def test_logout_needs_the_page_token(web: Any) -> None:
    """Logout with the account page's token ends the session."""
    site, sessions, _, _ = web
    browser = Browser(site, web[3])
    log_in(browser, "info", "pw-company.com")
    session = browser.cookies["CGPSessionID"]
    status, _, _ = browser.request(
        "POST", "/logout", body=b"csrf=1.x.y", Content_Type="application/x-www-form-urlencoded"
    )
    assert status == 403 and sessions.get(session) is not None
    _, _, page = browser.request("GET", "/")
    token = TOKEN.search(page)
    assert token is not None
    status, _, _ = browser.request(
        "POST",
        "/logout",
        body=b"csrf=" + token.group(1),
        Content_Type="application/x-www-form-urlencoded",
    )
    assert status == 303 and sessions.get(session) is None


def test_sessionid_through_the_checker(web: Any) -> None:
    """The checker opens the session's account for a proof with an empty
    setting, and refuses a proof with no domain as a wrong password."""
    _, _, service, _ = web
    connection = ConnectionInfo("imap4", "127.0.0.1", "127.0.0.1")
    good = VerifiedIdentity(b"info@company.com", "company.com", "", connection, "SESSIONID")
    results: list[Any] = []
    service.login(good, IFileSession).addBoth(results.append)
    assert results[0][1].identity.name == "info"
    bad = VerifiedIdentity(b"info", "", "", connection, "SESSIONID")
    service.login(bad, IFileSession).addBoth(results.append)
    assert results[1].check(WrongPassword)


def test_files_with_basic_and_anonymous(web: Any) -> None:
    """PUT with Basic stores the file; anyone reads it; anonymous writes
    are asked to log in; traversal is refused."""
    browser = Browser(web[0], web[3])
    auth = "Basic " + base64.b64encode(b"info:pw-company.com").decode()
    status, _, _ = browser.request("PUT", "/~info/a.txt", body=b"data", Authorization=auth)
    assert status == 201
    status, _, body = browser.request("GET", "/~info/a.txt")
    assert (status, body) == (200, b"data")
    status, headers, _ = browser.request("PUT", "/~info/b.txt", body=b"x")
    assert status == 401 and headers["www-authenticate"][0].startswith('Basic realm="company.com"')
    for path in ("/~info/%2e%2e/x", "/~info/a%2fb", "/~info/%c0%ae%c0%ae/x", "/~info/..\\x"):
        assert browser.request("GET", path, Authorization=auth)[0] == 400, path
    status, _, _ = browser.request("PROPFIND", "/~info/", Authorization=auth, Depth="infinity")
    assert status == 403
    status, _, body = browser.request("PROPFIND", "/~info/", Authorization=auth, Depth="1")
    assert status == 207 and b"<D:href>/~info/a.txt</D:href>" in body


def test_anonymous_body_is_bounded(web: Any) -> None:
    """A body over the bound of a request without credentials is answered
    413 and ends the connection before it is stored."""
    site = web[0]
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 80),
        peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
    )
    protocol.makeConnection(transport)
    protocol.dataReceived(
        b"PUT /~info/big HTTP/1.1\r\nHost: company.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 32768
    for _ in range(3):
        protocol.dataReceived(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    assert transport.disconnecting
    assert transport.value().startswith(b"HTTP/1.1 413 ")


def test_clear_text_refused_on_an_insecure_remote_link(web: Any) -> None:
    """From another machine over plain HTTP the right password is refused
    (ClearTextLogin=Secure, the default) with the one failure page, which
    advises HTTPS; from the server itself it is accepted."""
    site, _, _, clock = web
    remote = Browser(site, clock, peer="192.0.2.7")
    _, _, page = remote.request("GET", "/")
    assert b"use HTTPS to log in" in page
    status, body = log_in(remote, "info", "pw-company.com")
    assert status == 403 and b"Incorrect password or account name." in body
    assert log_in(Browser(site, clock), "info", "pw-company.com")[0] == 303


def test_access_modes_apply(web: Any, directory: FileDirectory) -> None:
    """An account without the WebMail service cannot log in over HTTP,
    neither through the form nor with Basic credentials."""
    site, _, _, clock = web
    directory.update_account_settings("company.com", "info", {"AccessModes": ["Mail", "IMAP"]})
    status, body = log_in(Browser(site, clock), "info", "pw-company.com")
    assert status == 403 and b"Incorrect password or account name." in body
    auth = "Basic " + base64.b64encode(b"info:pw-company.com").decode()
    status, _, _ = Browser(site, clock).request("PUT", "/~info/x", body=b"x", Authorization=auth)
    assert status == 401


@pytest.mark.parametrize(
    "credentials",
    [
        "Cookie: CGPSessionID=1234-forgedforgedforgedfo",
        "Authorization: Basic " + base64.b64encode(b"info:wrong").decode(),
        "Authorization: Bearer whatever",
    ],
)
def test_large_body_needs_proven_credentials(web: Any, credentials: str) -> None:
    """A forged cookie, a wrong Basic password or another scheme does not
    let a large body in: the client is answered and the connection closed
    before the body is read."""
    protocol, transport = raw_connection(web[0])
    protocol.dataReceived(
        f"PUT /~info/big HTTP/1.1\r\nHost: company.com\r\n{credentials}\r\n"
        f"Content-Length: {1024**3}\r\n\r\n".encode()
    )
    answer = transport.value()
    status = answer.split(b"\r\n", 1)[0]
    assert status in (b"HTTP/1.1 401 Unauthorized", b"HTTP/1.1 413 Content Too Large")
    assert transport.disconnecting
    protocol.dataReceived(b"x" * 65536)
    assert transport.value() == answer


def test_large_body_after_a_basic_login(web: Any) -> None:
    """The right Basic password is checked once, before the body is read;
    the upload is then stored (a chunked body as well)."""
    protocol, transport = raw_connection(web[0])
    auth = base64.b64encode(b"info:pw-company.com").decode()
    protocol.dataReceived(
        f"PUT /~info/big HTTP/1.1\r\nHost: company.com\r\nAuthorization: Basic {auth}\r\n"
        "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    chunk = b"y" * 32768
    for _ in range(8):
        protocol.dataReceived(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    protocol.dataReceived(b"0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 201"), transport.value()[:200]
    browser = Browser(web[0], web[3])
    status, _, body = browser.request("GET", "/~info/big", Authorization=f"Basic {auth}")
    assert status == 200 and body == chunk * 8


def test_continue_only_after_the_credentials_are_proven(
    web: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Expect: 100-continue`` with a large body: no ``100 Continue``
    while the Basic login is checked; sent once it succeeds, never when it
    is refused (the client would send its body for nothing)."""
    site, _, _, clock = web
    context = site.context
    real = context.basic_login
    gates: list[Deferred[None]] = []

    def held(request: Any) -> Any:
        """The real login, started when the test opens the gate."""
        gate: Deferred[None] = Deferred()
        gates.append(gate)
        return gate.addCallback(lambda _: real(request))

    monkeypatch.setattr(context, "basic_login", held)
    head = (
        "PUT /~info/c.bin HTTP/1.1\r\nHost: company.com\r\nAuthorization: Basic {}\r\n"
        "Expect: 100-continue\r\nContent-Length: {}\r\n\r\n"
    )
    body = b"c" * (200 * 1024)
    for password, proven in (("pw-company.com", True), ("wrong", False)):
        protocol, transport = raw_connection(site)
        auth = base64.b64encode(f"info:{password}".encode()).decode()
        protocol.dataReceived(head.format(auth, len(body)).encode())
        assert gates and transport.value() == b""
        gates.pop().callback(None)
        clock.advance(10)
        if proven:
            assert transport.value() == b"HTTP/1.1 100 Continue\r\n\r\n"
            protocol.dataReceived(body)
            assert transport.value().split(b"\r\n\r\n")[1].startswith(b"HTTP/1.1 201")
        else:
            assert transport.value().startswith(b"HTTP/1.1 401")
            assert b"100 Continue" not in transport.value()


def test_a_proven_login_does_not_read_past_an_unread_answer(
    web: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection is not read while the Basic login of a large body
    is checked; once proven it is read again, unless the client is not
    reading its answers (then when they drain)."""
    site, _, _, clock = web
    real = site.context.basic_login
    gates: list[Deferred[None]] = []

    def held(request: Any) -> Any:
        gate: Deferred[None] = Deferred()
        gates.append(gate)
        return gate.addCallback(lambda _: real(request))

    monkeypatch.setattr(site.context, "basic_login", held)
    protocol, transport = raw_connection(site)
    auth = base64.b64encode(b"info:pw-company.com").decode()
    protocol.dataReceived(
        f"PUT /~info/d.bin HTTP/1.1\r\nHost: company.com\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Length: {200 * 1024}\r\n\r\n".encode()
    )
    assert transport.producerState == "paused"
    protocol.pauseProducing()  # the transport's buffer is full meanwhile
    gates.pop().callback(None)
    clock.advance(10)
    assert transport.producerState == "paused"
    protocol.resumeProducing()  # drained
    assert transport.producerState == "producing"
    protocol.dataReceived(b"d" * (200 * 1024))
    assert transport.value().startswith(b"HTTP/1.1 201")


def test_large_body_with_a_live_session(web: Any) -> None:
    """A live session's cookie lets a large body in."""
    browser = Browser(web[0], web[3])
    assert log_in(browser, "info", "pw-company.com")[0] in (200, 303)
    body = b"z" * (200 * 1024)
    status, _, _ = browser.request("PUT", "/~info/session.bin", body=body)
    assert status == 201
    status, _, got = browser.request("GET", "/~info/session.bin")
    assert status == 200 and got == body


def test_basic_password_verified_once(web: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A WebDAV client's Basic credentials on every request cost one
    password verification, until the password changes."""
    site, _, service, clock = web
    checker = next(iter(service.portal.checkers.values()))
    source = checker.sources[0]
    calls: list[bytes] = []
    verify = source.verify

    def counting(account: Any, password: bytes) -> Any:
        calls.append(password)
        return verify(account, password)

    monkeypatch.setattr(source, "verify", counting)
    auth = "Basic " + base64.b64encode(b"info:pw-company.com").decode()
    browser = Browser(site, clock)
    assert browser.request("PUT", "/~info/c.txt", body=b"c", Authorization=auth)[0] == 201
    for _ in range(3):
        assert browser.request("GET", "/~info/c.txt", Authorization=auth)[0] == 200
    assert len(calls) == 1
    wrong = "Basic " + base64.b64encode(b"info:wrong").decode()
    assert browser.request("GET", "/~info/", Authorization=wrong)[0] == 401
    assert len(calls) == 2


def test_request_head_has_a_deadline(web: Any, directory: FileDirectory) -> None:
    """A head trickled in is cut off LoginTimeout seconds after its first
    byte however busy it is; a complete head stops the deadline.  Both
    times come from the Limits setting's http section."""
    site, _, _, clock = web
    directory.update_server_settings(
        {"Limits": {"http": {"LoginTimeout": "5s", "IdleTimeout": "1m"}}}
    )
    protocol, transport = raw_connection(site)
    assert (protocol.head_timeout, protocol.timeOut) == (5, 60)
    protocol.dataReceived(b"G")
    for _ in range(4):
        clock.advance(1)
        protocol.dataReceived(b"E")
    assert not transport.disconnecting
    clock.advance(1.5)
    assert transport.disconnecting
    quick, quick_transport = raw_connection(site)
    quick.dataReceived(b"GET /~info/ HTTP/1.1\r\nHost: company.com\r\n\r\n")
    clock.advance(10)
    assert not quick_transport.disconnecting


def test_small_file_answers(web: Any) -> None:
    """A small file is answered whole with its length, type and date;
    HEAD without a body, If-Modified-Since with 304, a Range with 206."""
    site, _, _, clock = web
    browser = Browser(site, clock)
    auth = "Basic " + base64.b64encode(b"info:pw-company.com").decode()
    assert browser.request("PUT", "/~info/s.txt", body=b"0123456789", Authorization=auth)[0] == 201
    status, headers, body = browser.request("GET", "/~info/s.txt")
    assert (status, body) == (200, b"0123456789")
    assert headers["content-length"] == ["10"] and headers["content-type"] == ["text/plain"]
    assert headers["content-security-policy"] == ["sandbox"]
    status, headers, body = browser.request("HEAD", "/~info/s.txt")
    assert (status, body, headers["content-length"]) == (200, b"", ["10"])
    modified = headers["last-modified"][0]
    status, _, body = browser.request("GET", "/~info/s.txt", If_Modified_Since=modified)
    assert (status, body) == (304, b"")
    status, headers, body = browser.request("GET", "/~info/s.txt", Range="bytes=2-4")
    assert (status, body) == (206, b"234")


def test_session_times_are_domain_settings(web: Any, directory: FileDirectory) -> None:
    """A domain's WebUserIdleTimeout and WebUserSessionLimit bound the
    sessions opened after they are set; another domain keeps the defaults."""
    site, sessions, _, reactor = web
    directory.update_domain_settings(
        "company.com", {"WebUserIdleTimeout": "2m", "WebUserSessionLimit": "5m"}
    )
    short, default = Browser(site, reactor), Browser(site, reactor)
    assert log_in(short, "info", "pw-company.com")[0] == 303
    assert log_in(default, "info", "pw-client1.com", host="client1.com")[0] == 303
    reactor.advance(100)
    assert b"<h1>info@company.com</h1>" in short.request("GET", "/")[2]
    reactor.advance(100)
    assert b"<h1>info@company.com</h1>" in short.request("GET", "/")[2]
    reactor.advance(101)
    assert b"Log in to company.com" in short.request("GET", "/")[2]
    page = default.request("GET", "/", host="client1.com")[2]
    assert b"<h1>info@client1.com</h1>" in page
    assert len(sessions) == 1


def test_access_log_keeps_no_secret(web: Any, tmp_path: Path) -> None:
    """With an access log each request is one Combined Log Format line,
    which holds neither the Basic credentials nor the session cookie."""
    path = tmp_path / "access.log"
    site = make_site(web[0].context, str(path))
    site.doStart()
    try:
        browser = Browser(site, web[3])
        auth = base64.b64encode(b"info:pw-company.com").decode()
        browser.request("PUT", "/~info/l.txt", body=b"x", Authorization="Basic " + auth)
        log_in(browser, "info", "pw-company.com")
        browser.request("GET", "/~info/l.txt", User_Agent="agent/1")
    finally:
        site.doStop()
    lines = path.read_text().splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith('"127.0.0.1" - - [')
    assert '"PUT /~info/l.txt HTTP/1.1" 201' in lines[0]
    assert lines[-1].endswith('"GET /~info/l.txt HTTP/1.1" 200 1 "-" "agent/1"')
    text = path.read_text()
    assert auth not in text and "pw-company.com" not in text
    assert browser.cookies["CGPSessionID"] not in text
