"""The XMPP listener against hostile clients, on raw sockets.

The folder's server gets an ``xmpp`` listener (STARTTLS) through
Listeners.settings and ``communigate reload``, as an administrator would
add one.  Each attack must end in a stream error or a closed connection,
never a traceback (the server fixture reads the log at the end); after
each, two clients still log in and a chat message still flows.
"""

from __future__ import annotations

import base64
import select
import socket
import ssl
import time
from collections.abc import Iterator
from itertools import count

import pytest

from tests.hostile.conftest import rss, server_setting
from tests.integration.conftest import Server, admin, free_port

pytestmark = pytest.mark.integration

#: Seconds one read may wait.
TIMEOUT = 10.0
STREAMS = "http://etherx.jabber.org/streams"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
#: The login deadline set for the slow-client tests, in seconds.
DEADLINE = 3
_messages = count()


def header(domain: str | None = "company.com") -> bytes:
    """A client's stream header (to ``domain``; no ``to`` for None)."""
    to = f" to='{domain}'" if domain is not None else ""
    return (
        f"<?xml version='1.0'?><stream:stream{to} xmlns='jabber:client' "
        f"xmlns:stream='{STREAMS}' version='1.0'>"
    ).encode()


def plain(name: str, password: str) -> bytes:
    """The base64 of a PLAIN initial response."""
    return base64.b64encode(b"\0" + name.encode() + b"\0" + password.encode())


class RawClient:
    """One connection that writes exactly what it is given."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        """Write all of ``data``."""
        self.sock.sendall(data)

    def read_until(self, *patterns: bytes, timeout: float = TIMEOUT) -> bytes:
        """Everything read until one of ``patterns`` (included); what came
        before the end of the stream if it ends first."""
        deadline = time.monotonic() + timeout
        while not any(pattern in self.buffer for pattern in patterns):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"waited for {patterns!r}, got {self.buffer[-300:]!r}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                data = b""
            if not data:
                break
            self.buffer += data
        ends = [self.buffer.find(pattern) + len(pattern) for pattern in patterns]
        found = [end for end, pattern in zip(ends, patterns, strict=True) if end >= len(pattern)]
        end = min(found) if found else len(self.buffer)
        got, self.buffer = self.buffer[:end], self.buffer[end:]
        return got

    def closed_within(self, seconds: float) -> bool:
        """Whether the server closes the connection within ``seconds``
        (what it writes meanwhile is kept in the buffer)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if not data:
                return True
            self.buffer += data
        return False

    def starttls(self, domain: str = "company.com") -> None:
        """Header, STARTTLS, TLS (certificates not checked), header again."""
        self.send(header(domain))
        assert b"starttls" in self.read_until(b"</stream:features>")
        self.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        assert b"<proceed" in self.read_until(b"/>")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname=domain)
        self.send(header(domain))
        assert b"PLAIN" in self.read_until(b"</stream:features>")

    def login(self, name: str, password: str, domain: str, resource: str) -> None:
        """STARTTLS, PLAIN, bind ``resource``, initial presence."""
        self.starttls(domain)
        self.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>".encode())
        self.send(plain(name, password) + b"</auth>")
        assert b"<success" in self.read_until(b"</success>", b"/>")
        self.send(header(domain))
        self.read_until(b"</stream:features>")
        bind = (
            "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        self.send(bind.encode())
        assert b"<jid>" in self.read_until(b"</iq>")
        self.send(b"<presence/>")

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


@pytest.fixture(scope="module")
def xmpp(server: Server) -> Iterator[int]:
    """The port of an ``xmpp`` listener added to the running server."""
    port = free_port()
    where = ("--address", "127.0.0.1", "--port", str(port))
    admin(server.base, "listener", "add", "xmpp", *where)
    admin(server.base, "reload")
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the xmpp listener did not start"
            time.sleep(0.05)
    try:
        yield port
    finally:
        admin(server.base, "listener", "remove", "xmpp", *where)
        admin(server.base, "reload")


def assert_still_serves(port: int) -> None:
    """Two clients log in and a chat message goes from one to the other."""
    receiver = RawClient(port)
    sender = RawClient(port)
    try:
        receiver.login("info", "pw-client1.com", "client1.com", "hostile-r")
        receiver.read_until(b"</presence>", b"/>")
        sender.login("info", "pw-company.com", "company.com", "hostile-s")
        body = f"still-flowing-{next(_messages)}"
        sender.send(
            f"<message to='info@client1.com' type='chat'><body>{body}</body></message>".encode()
        )
        assert body.encode() in receiver.read_until(body.encode())
    finally:
        receiver.close()
        sender.close()


def assert_stream_error(client: RawClient, condition: bytes) -> None:
    """The server ends the stream with ``condition`` and closes."""
    got = client.read_until(b"</stream:error>")
    assert b"<" + condition + b" xmlns='urn:ietf:params:xml:ns:xmpp-streams'" in got, got
    assert client.closed_within(TIMEOUT)


def test_baseline(xmpp: int) -> None:
    """Before any attack, clients log in and messages flow."""
    assert_still_serves(xmpp)


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\xff\xfe garbage \r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x02\x00"],
)
def test_garbage_before_the_header(xmpp: int, garbage: bytes) -> None:
    """Bytes that are no XML: not-well-formed, closed."""
    client = RawClient(xmpp)
    client.send(garbage)
    assert_stream_error(client, b"not-well-formed")
    assert_still_serves(xmpp)


@pytest.mark.parametrize("domain", [None, "", "nowhere.example", "x" * 3000])
def test_missing_or_unknown_to(xmpp: int, domain: str | None) -> None:
    """A header without ``to`` or to a domain the server does not serve:
    host-unknown, closed."""
    client = RawClient(xmpp)
    client.send(header(domain))
    assert_stream_error(client, b"host-unknown")
    assert_still_serves(xmpp)


LAUGHS = (
    b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + b"".join(
        b"<!ENTITY lol%d '%s'>" % (n, (b"&lol%d;" % (n - 1) if n > 1 else b"&lol;") * 10)
        for n in range(1, 10)
    )
    + b"]><stream:stream to='company.com' xmlns='jabber:client' xmlns:stream='"
    + STREAMS.encode()
    + b"' version='1.0'>&lol9;"
)


@pytest.mark.parametrize(
    "attack",
    [
        LAUGHS,
        b"<?xml version='1.0'?><!DOCTYPE x SYSTEM 'file:///etc/passwd'><x/>",
        header() + b"<message><!ENTITY e 'x'></message>",
        header() + b"<!-- a comment -->",
        header() + b"<?pi data?>",
    ],
    ids=["billion-laughs", "external-dtd", "entity-in-stream", "comment", "pi"],
)
def test_dtds_and_entities_are_refused(server: Server, xmpp: int, attack: bytes) -> None:
    """DOCTYPE, entity declarations, comments and PIs: restricted-xml or
    not-well-formed, nothing expanded (the server's memory stays put)."""
    before = rss(server)
    client = RawClient(xmpp)
    client.send(attack)
    got = client.read_until(b"</stream:error>")
    assert b"restricted-xml" in got or b"not-well-formed" in got, got
    assert b"lollol" not in got and b"root:" not in got
    assert client.closed_within(TIMEOUT)
    assert rss(server) - before < 20 * 1024 * 1024
    assert_still_serves(xmpp)


def test_two_megabyte_stanza(xmpp: int) -> None:
    """A 2 MB stanza from a logged-in client: policy-violation for it,
    while another logged-in client keeps talking."""
    bystander = RawClient(xmpp)
    big = RawClient(xmpp)
    try:
        bystander.login("info", "pw-client1.com", "client1.com", "bystander")
        big.login("info", "pw-company.com", "company.com", "big")
        big.send(b"<message to='info@client1.com' type='chat'><body>")
        chunk = b"A" * 65536
        sent = 0
        while sent < 2 * 1024 * 1024 and b"</stream:error>" not in big.buffer:
            try:
                big.send(chunk)
            except OSError:
                break
            sent += len(chunk)
            readable, _, _ = select.select([big.sock], [], [], 0)
            if readable:
                big.closed_within(0.05)
        got = big.read_until(b"</stream:error>")
        assert b"<policy-violation" in got, got[-300:]
        assert b"AAAA" not in bystander.read_until(b"/>", timeout=1)
    finally:
        big.close()
        bystander.close()
    assert_still_serves(xmpp)


def test_deep_nesting(xmpp: int) -> None:
    """10,000 nested elements: policy-violation, closed."""
    client = RawClient(xmpp)
    client.send(header() + b"<message>" + b"<a>" * 10000)
    assert_stream_error(client, b"policy-violation")
    assert_still_serves(xmpp)


@pytest.fixture
def short_deadline(server: Server) -> Iterator[None]:
    """``Limits = { LoginTimeout = 3s; }`` for the test."""
    with server_setting(server, "Limits", f"{{LoginTimeout={DEADLINE}s;}}"):
        yield


@pytest.mark.parametrize(
    "opening",
    [
        header() + b"<message to='",
        b"<?xml version='1.0'?><stream:stream to='company.com' xmlns='jabber:client'",
    ],
    ids=["unterminated-attribute", "half-header"],
)
def test_slow_unfinished_input_hits_the_deadline(
    xmpp: int, short_deadline: None, opening: bytes
) -> None:
    """An attribute or a header that never ends, one byte a second: closed
    at the login deadline, which bytes do not extend."""
    client = RawClient(xmpp)
    started = time.monotonic()
    client.send(opening)
    closed = False
    while time.monotonic() - started < DEADLINE + 6:
        try:
            client.send(b"x")
        except OSError:
            closed = True
            break
        if client.closed_within(1):
            closed = True
            break
    elapsed = time.monotonic() - started
    assert closed, f"kept an unfinished stream for {elapsed:.1f} s"
    assert elapsed <= DEADLINE + 3, elapsed
    assert_still_serves(xmpp)


def test_connections_per_address(server: Server, xmpp: int) -> None:
    """Past ``MaxPerAddress`` a connection from the same address is closed
    before any byte; closing one makes room again."""
    with server_setting(server, "Listeners", "{xmpp={MaxPerAddress=#4;};}"):
        held = [RawClient(xmpp) for _ in range(4)]
        try:
            for client in held:
                client.send(header())
                client.read_until(b"</stream:features>")
            extra = RawClient(xmpp)
            assert extra.closed_within(TIMEOUT)
            assert extra.buffer == b""
            extra.close()
            held.pop().close()
            time.sleep(0.3)
            again = RawClient(xmpp)
            again.send(header())
            assert b"<stream:features>" in again.read_until(b"</stream:features>")
            again.close()
        finally:
            for client in held:
                client.close()
    assert_still_serves(xmpp)


@pytest.mark.parametrize("size", [200 * 1024, 600 * 1024])
def test_huge_sasl_plain(xmpp: int, size: int) -> None:
    """A PLAIN response of 200 KiB is refused as a login (the stream goes
    on); one of 600 KiB passes the stanza limit (policy-violation)."""
    client = RawClient(xmpp)
    client.starttls()
    payload = base64.b64encode(b"\0info\0" + b"p" * size)
    try:
        client.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>".encode() + payload + b"</auth>")
    except OSError:
        pass
    got = client.read_until(b"</failure>", b"</stream:error>")
    if size < 256 * 1024:
        assert b"<failure" in got and b"<stream:error>" not in got, got
        # The stream goes on: a proper login still succeeds on it.
        client.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>".encode())
        client.send(plain("info", "pw-company.com") + b"</auth>")
        assert b"<success" in client.read_until(b"</success>", b"/>")
    else:
        assert b"<policy-violation" in got, got
    client.close()
    assert_still_serves(xmpp)


def test_no_payload_in_the_log(server: Server, xmpp: int) -> None:
    """The log holds neither a password nor a SASL payload sent above."""
    text = server.log_text()
    assert plain("info", "pw-company.com").decode() not in text
    assert "pw-company.com" not in text
    assert "cHBwcHBw" not in text  # base64 of the huge PLAIN password


ODD_ADDRESSES = [
    "../../etc@company.com",
    "..@company.com",
    "@company.com",
    "info@",
    "x" * 2000 + "@company.com",
    "info@company.com/" + "r" * 2000,
    "info@company.com/../../roster.settings",
    "\u202e\u0000@company.com".replace("\u0000", ""),
    "info@[::1]",
    "info@company.com.",
]


def test_odd_addresses_after_login(xmpp: int) -> None:
    """Messages, presence and iq to malformed or odd JIDs get stanza errors
    (or nothing), never a stream error; the session goes on."""
    client = RawClient(xmpp)
    try:
        client.login("info", "pw-company.com", "company.com", "odd")
        for number, address in enumerate(ODD_ADDRESSES):
            quoted = address.replace("&", "&amp;").replace("'", "&apos;").encode()
            client.send(b"<message to='" + quoted + b"' type='chat'><body>x</body></message>")
            client.send(b"<presence type='subscribe' to='" + quoted + b"'/>")
            client.send(
                b"<iq type='get' id='v%d' to='" % number
                + quoted
                + b"'><vCard xmlns='vcard-temp'/></iq>"
            )
            client.send(
                b"<iq type='set' id='r%d'><query xmlns='jabber:iq:roster'><item jid='" % number
                + quoted
                + b"'/></query></iq>"
            )
        client.send(b"<iq type='get' id='last' to='company.com'><ping xmlns='urn:xmpp:ping'/></iq>")
        got = client.read_until(b"id='last'")
        assert b"<stream:error>" not in got
    finally:
        client.close()
    assert_still_serves(xmpp)


def test_client_that_never_reads(server: Server, xmpp: int) -> None:
    """A client that asks for a 60 KB vCard 2000 times and reads nothing
    does not make the server buffer the 120 MB of answers."""
    client = RawClient(xmpp)
    try:
        client.login("info", "pw-company.com", "company.com", "deaf")
        card = b"<FN>" + b"x" * 60000 + b"</FN>"
        client.send(b"<iq type='set' id='c'><vCard xmlns='vcard-temp'>" + card + b"</vCard></iq>")
        client.read_until(b"id='c'")
        before = rss(server)
        request = b"<iq type='get' id='g'><vCard xmlns='vcard-temp'/></iq>"
        client.sock.settimeout(5)
        try:
            for _ in range(2000):
                client.sock.sendall(request)
        except (TimeoutError, OSError):
            pass  # the server stopped reading: the send buffer is full
        time.sleep(1)
        assert rss(server) - before < 40 * 1024 * 1024
    finally:
        client.close()
    assert_still_serves(xmpp)
