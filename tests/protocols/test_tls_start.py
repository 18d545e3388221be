"""STARTTLS on real loopback sockets: connections of one context factory
share one TLS factory, and each still gets its own TLS session."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOProtocol

from communigate.observe.traffic import CountingFactory
from communigate.protocols.guard import GuardedFactory
from communigate.protocols.tls import DomainContexts, switch_to_tls
from communigate.store.files import FileDirectory
from communigate.store.initialise import initialise


class _Echo(Protocol):
    """Answers ``GO`` then starts TLS; echoes what arrives after."""

    contexts: Any = None

    def dataReceived(self, data: bytes) -> None:
        if self.transport is None:
            return
        if data == b"STARTTLS\n":
            self.transport.write(b"GO\n")
            switch_to_tls(self.transport, self.contexts)
        else:
            self.transport.write(data.upper())


def _client(port: int, results: list[Any], index: int, hold: threading.Event) -> None:
    """STARTTLS, then one line echoed over TLS; the connection stays open
    until ``hold`` is set."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
            plain.sendall(b"STARTTLS\n")
            assert plain.recv(3) == b"GO\n"
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with context.wrap_socket(plain, server_hostname="company.com") as secure:
                secure.sendall(b"hello %d" % index)
                results[index] = (secure.recv(100), secure.version())
                hold.wait(10)
    except Exception as error:  # reported by the test
        results[index] = error


def _run_until(reactor: Any, done: Callable[[], bool], seconds: float = 15) -> None:
    """Turn the reactor until ``done()`` (TLS's writes wait for its turns)."""
    limit = time.monotonic() + seconds
    while not done() and time.monotonic() < limit:
        reactor.iterate(0.01)


@pytest.fixture
def contexts(tmp_path: Path) -> DomainContexts:
    directory = FileDirectory(tmp_path / "base")
    initialise(directory, "company.com", "pm")
    return DomainContexts(directory)


@pytest.mark.parametrize("preferred", [False, True])
def test_connections_share_one_tls_factory(contexts: DomainContexts, preferred: bool) -> None:
    """Two STARTTLS connections through the per-address guard and the
    traffic counter (as every listener has them) complete their handshakes
    on one shared TLS factory, each with its own TLS connection; both leave
    the factory when they close."""
    from twisted.internet import reactor

    echo = Factory.forProtocol(_Echo)
    _Echo.contexts = contexts.preferred("company.com") if preferred else contexts
    # As a listener has them: the per-address guard, then the traffic counter.
    guarded = GuardedFactory(CountingFactory(echo), "imap4", contexts.directory)
    port = reactor.listenTCP(0, guarded, interface="127.0.0.1")
    results: list[Any] = [None, None]
    hold = threading.Event()
    shared = (contexts.preferred("company.com") if preferred else contexts).tls_factory()
    clients = [
        threading.Thread(target=_client, args=(port.getHost().port, results, index, hold))
        for index in range(2)
    ]
    for client in clients:
        client.start()
    try:
        _run_until(reactor, lambda: all(result is not None for result in results))
        assert results[0] == (b"HELLO 0", "TLSv1.3")
        assert results[1] == (b"HELLO 1", "TLSv1.3")
        protocols = list(shared.protocols)
        assert len(protocols) == 2
        assert all(isinstance(protocol, TLSMemoryBIOProtocol) for protocol in protocols)
        assert protocols[0].getHandle() is not protocols[1].getHandle()
        for protocol in protocols:
            assert ISSLTransport.providedBy(protocol.transport)
            assert protocol.transport.TLS
    finally:
        hold.set()
        for client in clients:
            client.join(10)
        _run_until(reactor, lambda: not shared.protocols, 5)
        port.stopListening()
        reactor.iterate(0)
    assert not shared.protocols


def test_preferred_is_one_object_per_domain(contexts: DomainContexts) -> None:
    """So that a domain's connections share its TLS factory."""
    first = contexts.preferred("company.com")
    assert contexts.preferred("company.com") is first
    assert first.tls_factory() is first.tls_factory()
    assert contexts.preferred("other.com") is not first
