"""XMPP end to end: slixmpp and go-sendxmpp against the real server
(``--xmpp`` with STARTTLS, ``--xmpps`` with direct TLS), two domains on one
listener, raw sockets for what clients never do."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    admin,
    free_port,
    launch_server,
    stop_server,
    wait_for_port,
)

slixmpp = pytest.importorskip("slixmpp")

pytestmark = pytest.mark.integration

MAIN, OTHER = "company.com", "client1.com"
#: Account → password; the same names in both domains, different passwords.
ACCOUNTS = {
    f"{name}@{domain}": f"pw-{name}-{domain}"
    for domain in (MAIN, OTHER)
    for name in ("alice", "bob", "carol", "dave")
}
#: Seconds a client may take to log in or see a stanza.
WAIT = 15


@dataclass
class XMPPServer:
    """A running server with the two XMPP listeners."""

    base: Path
    log: Path
    xmpp: int
    xmpps: int
    #: Both domains' certificates, for the clients to verify TLS with.
    ca: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XMPPServer]:
    """company.com (Main Domain) and client1.com (its own certificate),
    both with PLAIN and SCRAM; the log ends with no traceback."""
    root = tmp_path_factory.mktemp("xmpp")
    base = root / "base"
    admin(base, "init", "--main-domain", MAIN, "--postmaster-password", "pm")
    admin(base, "server", "settings", "FailedLoginDelay=0.2s")
    admin(base, "domain", "create", OTHER)
    key, certificate = root / "key.pem", root / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", f"/CN={OTHER}", "-addext", f"subjectAltName=DNS:{OTHER}",
            "-keyout", str(key), "-out", str(certificate),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    admin(base, "domain", "certificate", OTHER, "--cert", str(certificate), "--key", str(key))
    for domain in (MAIN, OTHER):
        admin(base, "domain", "settings", domain, "LoginMethods=(PLAIN,SCRAM-SHA-1,SCRAM-SHA-256)")
    for account, password in ACCOUNTS.items():
        admin(base, "account", "create", account, "--password", password)
    ca = root / "ca.pem"
    main_certificate = base / "Accounts" / "Settings" / "certificate.pem"
    ca.write_bytes(main_certificate.read_bytes() + certificate.read_bytes())
    log = root / "server.log"
    running = XMPPServer(base, log, free_port(), free_port(), ca)
    process = launch_server(
        base,
        log,
        f"--xmpp=tcp:{running.xmpp}:interface=127.0.0.1",
        f"--xmpps=tcp:{running.xmpps}:interface=127.0.0.1",
    )
    try:
        wait_for_port("127.0.0.1", running.xmpp, process, log)
        wait_for_port("127.0.0.1", running.xmpps, process, log)
        yield running
    finally:
        stop_server(process)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    assert "Unhandled Error" not in text


class Client:
    """A slixmpp client that logs in and records what it receives."""

    def __init__(
        self,
        server: XMPPServer,
        jid: str,
        password: str | None = None,
        direct: bool = False,
        mechanism: str | None = None,
    ) -> None:
        account = jid.partition("/")[0]
        self.xmpp = slixmpp.ClientXMPP(jid, password or ACCOUNTS[account], sasl_mech=mechanism)
        self.xmpp.ca_certs = str(server.ca)
        self.xmpp.enable_direct_tls = direct
        self.xmpp.enable_starttls = not direct
        self.xmpp.enable_plaintext = False
        self.xmpp.auto_reconnect = False
        self.port = server.xmpps if direct else server.xmpp
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.presences: asyncio.Queue[Any] = asyncio.Queue()
        self.ended: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.xmpp.add_event_handler("message", self.messages.put_nowait)
        self.xmpp.add_event_handler("presence_available", self.presences.put_nowait)
        self.xmpp.add_event_handler("disconnected", self._ended)

    def _ended(self, reason: Any) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)

    async def login(self) -> bool:
        """Connect; True once the session started, False if SASL failed."""
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def settle(value: bool) -> None:
            if not outcome.done():
                outcome.set_result(value)

        self.xmpp.add_event_handler("session_start", lambda _: settle(True))
        self.xmpp.add_event_handler("failed_all_auth", lambda _: settle(False))
        self.xmpp.add_event_handler("failed_auth", lambda _: settle(False))
        self.xmpp.add_event_handler("disconnected", lambda _: settle(False))
        self.xmpp.connect(host="127.0.0.1", port=self.port)
        return await asyncio.wait_for(outcome, WAIT)

    async def online(self) -> Client:
        """Log in (it must work), fetch the roster, send initial presence."""
        assert await self.login()
        await self.xmpp.get_roster()
        self.xmpp.send_presence()
        return self

    async def message(self) -> Any:
        """The next message with a body."""
        while True:
            message = await asyncio.wait_for(self.messages.get(), WAIT)
            if message["body"]:
                return message

    async def close(self) -> None:
        """Disconnect and wait until the connection is gone."""
        self.xmpp.disconnect()
        await asyncio.wait_for(asyncio.shield(self.ended), WAIT)


def run(coroutine: Any) -> Any:
    """Run one scenario in its own event loop."""
    return asyncio.run(coroutine)


def log_has(server: XMPPServer, text: str) -> bool:
    """Whether the server log names ``text`` (waiting a little for it)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if text in server.log.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


def test_plain_over_starttls(server: XMPPServer) -> None:
    """PLAIN after STARTTLS logs a bare name into the stream's domain and binds."""

    async def scenario() -> str:
        client = Client(server, f"alice@{MAIN}/desk", mechanism="PLAIN")
        assert await client.login()
        bound = str(client.xmpp.boundjid)
        await client.close()
        return bound

    assert run(scenario()) == f"alice@{MAIN}/desk"
    assert log_has(server, "xmpp PLAIN login 'alice' from 127.0.0.1")


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_over_direct_tls(server: XMPPServer, mechanism: str) -> None:
    """SCRAM on the direct TLS listener; the server picks a resource."""

    async def scenario() -> tuple[str, str]:
        client = Client(server, f"bob@{MAIN}", direct=True, mechanism=mechanism)
        assert await client.login()
        bound = client.xmpp.boundjid
        await client.close()
        return str(bound.bare), str(bound.resource)

    bare, resource = run(scenario())
    assert bare == f"bob@{MAIN}"
    assert resource
    assert log_has(server, f"xmpp {mechanism} login 'bob'")


def test_scram_over_starttls_other_domain(server: XMPPServer) -> None:
    """STARTTLS for client1.com serves its own certificate (verified by name)."""

    async def scenario() -> bool:
        client = Client(server, f"bob@{OTHER}", mechanism="SCRAM-SHA-256")
        ok = await client.login()
        await client.close()
        return ok

    assert run(scenario())


def test_wrong_password_refused(server: XMPPServer) -> None:
    """A wrong password gets a SASL failure and no session."""

    async def scenario() -> bool:
        client = Client(server, f"alice@{MAIN}", password="wrong", mechanism="PLAIN")
        ok = await client.login()
        client.xmpp.disconnect()
        return ok

    assert run(scenario()) is False


def test_message_and_presence(server: XMPPServer) -> None:
    """Subscription both ways, presence seen, a chat message delivered."""

    async def scenario() -> tuple[str, str, str]:
        alice = await Client(server, f"alice@{MAIN}/a").online()
        bob = await Client(server, f"bob@{MAIN}/b").online()
        alice.xmpp.send_presence_subscription(pto=f"bob@{MAIN}")
        # slixmpp approves and subscribes back (auto_authorize/auto_subscribe).
        while True:
            seen = await asyncio.wait_for(alice.presences.get(), WAIT)
            if seen["from"].bare == f"bob@{MAIN}":
                break
        alice.xmpp.send_message(mto=f"bob@{MAIN}", mbody="hello bob", mtype="chat")
        received = await bob.message()
        # The roster pushes of the subscriptions kept slixmpp's roster current.
        subscription = alice.xmpp.client_roster[f"bob@{MAIN}"]["subscription"]
        await alice.close()
        await bob.close()
        return str(received["body"]), str(received["from"]), subscription

    body, sender, subscription = run(scenario())
    assert body == "hello bob"
    assert sender == f"alice@{MAIN}/a"
    assert subscription == "both"


def test_offline_message_delivered_at_next_login(server: XMPPServer) -> None:
    """A chat message to an account with no session waits for its next login."""

    async def scenario() -> tuple[str, bool]:
        alice = await Client(server, f"alice@{MAIN}/off").online()
        alice.xmpp.send_message(mto=f"carol@{MAIN}", mbody="while you were out", mtype="chat")
        await asyncio.sleep(0.5)
        await alice.close()
        carol = await Client(server, f"carol@{MAIN}").online()
        message = await carol.message()
        delayed = bool(message.xml.find("{urn:xmpp:delay}delay") is not None)
        await carol.close()
        return str(message["body"]), delayed

    body, delayed = run(scenario())
    assert body == "while you were out"
    assert delayed


def test_two_domains_same_name(server: XMPPServer) -> None:
    """dave@company.com and dave@client1.com are two accounts on one
    listener; a message crosses from one domain to the other."""

    async def scenario() -> tuple[str, str, str]:
        here = await Client(server, f"dave@{MAIN}/x").online()
        there = await Client(server, f"dave@{OTHER}/x").online()
        there.xmpp.send_message(mto=f"dave@{MAIN}", mbody="across domains", mtype="chat")
        message = await here.message()
        bound = str(there.xmpp.boundjid)
        await here.close()
        await there.close()
        return bound, str(message["from"]), str(message["body"])

    bound, sender, body = run(scenario())
    assert bound == f"dave@{OTHER}/x"
    assert sender == f"dave@{OTHER}/x"
    assert body == "across domains"


def test_resource_conflict_replaces_old_session(server: XMPPServer) -> None:
    """Binding a full JID in use ends the older session (RFC 6120 §7.7.2.2)."""

    async def scenario() -> bool:
        first = await Client(server, f"carol@{OTHER}/same").online()
        second = await Client(server, f"carol@{OTHER}/same").online()
        await asyncio.wait_for(asyncio.shield(first.ended), WAIT)
        alive = second.xmpp.is_connected()
        await second.close()
        return alive

    assert run(scenario())


def _read_until(sock: socket.socket | ssl.SSLSocket, marker: bytes) -> bytes:
    data = b""
    sock.settimeout(WAIT)
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _header(domain: str) -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    ).encode()


def test_clear_text_login_refused(server: XMPPServer) -> None:
    """Without TLS no mechanism is offered and <auth/> is refused."""
    with socket.create_connection(("127.0.0.1", server.xmpp)) as sock:
        sock.sendall(_header(MAIN))
        features = _read_until(sock, b"</stream:features>")
        assert b"<required/>" in features
        assert b"<mechanisms" not in features
        sock.sendall(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHg=</auth>"
        )
        assert b"<encryption-required/>" in _read_until(sock, b"</failure>")


def test_unknown_domain_and_oversized_stanza(server: XMPPServer) -> None:
    """An unknown domain is host-unknown; a stanza over the limit is
    policy-violation; the server goes on serving."""
    with socket.create_connection(("127.0.0.1", server.xmpp)) as sock:
        sock.sendall(_header("nowhere.example"))
        assert b"<host-unknown" in _read_until(sock, b"</stream:stream>")
    with socket.create_connection(("127.0.0.1", server.xmpp)) as sock:
        sock.sendall(_header(MAIN))
        _read_until(sock, b"</stream:features>")
        try:
            sock.sendall(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + b"A" * 400_000)
        except OSError:
            pass
        assert b"<policy-violation" in _read_until(sock, b"</stream:stream>")

    async def scenario() -> bool:
        client = Client(server, f"alice@{OTHER}", mechanism="PLAIN")
        ok = await client.login()
        await client.close()
        return ok

    assert run(scenario())


@pytest.mark.skipif(shutil.which("go-sendxmpp") is None, reason="go-sendxmpp is not installed")
def test_go_sendxmpp_message_reaches_slixmpp(server: XMPPServer, tmp_path: Path) -> None:
    """go-sendxmpp (STARTTLS and direct TLS) sends; slixmpp receives."""

    async def scenario() -> list[str]:
        bob = await Client(server, f"bob@{OTHER}/listen").online()
        bodies = []
        for text, extra in (("from go starttls", []), ("from go direct", ["-t"])):
            port = server.xmpps if extra else server.xmpp
            command = [
                "go-sendxmpp", *extra, "-u", f"alice@{OTHER}",
                "-p", ACCOUNTS[f"alice@{OTHER}"], "-j", f"127.0.0.1:{port}", f"bob@{OTHER}",
            ]  # fmt: skip
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={"HOME": str(tmp_path), "SSL_CERT_FILE": str(server.ca)},
            )
            output, _ = await asyncio.wait_for(process.communicate(text.encode()), WAIT)
            assert process.returncode == 0, output.decode()
            bodies.append(str((await bob.message())["body"]))
        await bob.close()
        return bodies

    assert run(scenario()) == ["from go starttls", "from go direct"]


def test_stream_management_resume(server: XMPPServer) -> None:
    """slixmpp's XEP-0198: the TCP connection breaks, a message is sent
    meanwhile, the client resumes and gets it."""

    async def scenario() -> tuple[bool, str]:
        bob = Client(server, f"bob@{MAIN}/sm")
        bob.xmpp.register_plugin("xep_0198")
        resumed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        enabled: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def settle(future: asyncio.Future[bool]) -> None:
            if not future.done():
                future.set_result(True)

        bob.xmpp.add_event_handler("sm_enabled", lambda _: settle(enabled))
        bob.xmpp.add_event_handler("session_resumed", lambda _: settle(resumed))
        await bob.online()
        await asyncio.wait_for(enabled, WAIT)
        bob.xmpp.transport.abort()
        await asyncio.wait_for(asyncio.shield(bob.ended), WAIT)
        bob.ended = asyncio.get_running_loop().create_future()
        alice = await Client(server, f"alice@{MAIN}/sm").online()
        alice.xmpp.send_message(mto=f"bob@{MAIN}/sm", mbody="across the break", mtype="chat")
        await asyncio.sleep(0.3)
        bob.xmpp.connect(host="127.0.0.1", port=bob.port)
        ok = await asyncio.wait_for(resumed, WAIT)
        message = await bob.message()
        await alice.close()
        bob.xmpp.disconnect()
        return ok, str(message["body"])

    assert run(scenario()) == (True, "across the break")


def test_carbons(server: XMPPServer) -> None:
    """slixmpp's XEP-0280: a chat sent from one resource is copied to the other."""

    async def scenario() -> str:
        phone = Client(server, f"carol@{OTHER}/phone")
        phone.xmpp.register_plugin("xep_0280")
        sent = asyncio.get_running_loop().create_future()
        phone.xmpp.add_event_handler("carbon_sent", sent.set_result)
        await phone.online()
        await phone.xmpp.plugin["xep_0280"].enable()
        desk = await Client(server, f"carol@{OTHER}/desk").online()
        desk.xmpp.send_message(mto=f"dave@{OTHER}", mbody="copied", mtype="chat")
        copy = await asyncio.wait_for(sent, WAIT)
        await phone.close()
        await desk.close()
        return str(copy["carbon_sent"]["body"])

    assert run(scenario()) == "copied"


def test_message_archive_with_slixmpp(server: XMPPServer) -> None:
    """XEP-0313 with slixmpp's xep_0313: the chats of two accounts are in
    both archives, filtered by ``with``, paged one by one with RSM, and
    MAM is announced on the account's bare JID."""

    async def scenario() -> tuple[list[str], list[str], list[str], bool]:
        carol = Client(server, f"carol@{OTHER}/m")
        alice = Client(server, f"alice@{OTHER}/m")
        for client in (carol, alice):
            client.xmpp.register_plugin("xep_0030")
            client.xmpp.register_plugin("xep_0313")
            await client.online()
        for body in ("archived one", "archived two"):
            carol.xmpp.send_message(mto=f"alice@{OTHER}", mbody=body, mtype="chat")
            await alice.message()
        alice.xmpp.send_message(mto=f"carol@{OTHER}", mbody="archived reply", mtype="chat")
        await carol.message()
        mam = carol.xmpp.plugin["xep_0313"]
        answer = await mam.retrieve(with_jid=slixmpp.JID(f"alice@{OTHER}"), timeout=WAIT)
        everything = [
            str(result["mam_result"]["forwarded"]["stanza"]["body"])
            for result in answer["mam"]["results"]
        ]
        paged = [
            str(result["mam_result"]["forwarded"]["stanza"]["body"])
            async for result in mam.iterate(with_jid=slixmpp.JID(f"alice@{OTHER}"), rsm={"max": 1})
        ]
        answer = await alice.xmpp.plugin["xep_0313"].retrieve(
            with_jid=slixmpp.JID(f"carol@{OTHER}"), timeout=WAIT
        )
        theirs = [
            str(result["mam_result"]["forwarded"]["stanza"]["body"])
            for result in answer["mam"]["results"]
        ]
        info = await carol.xmpp.plugin["xep_0030"].get_info(jid=f"carol@{OTHER}", timeout=WAIT)
        announced = "urn:xmpp:mam:2" in info["disco_info"]["features"]
        await carol.close()
        await alice.close()
        return everything, paged, theirs, announced

    everything, paged, theirs, announced = run(scenario())
    expected = ["archived one", "archived two", "archived reply"]
    assert everything == expected
    assert paged == expected
    assert theirs == expected
    assert announced
