"""Client certificates in the TLS handshake: asked for by domains with a
trusted CA, verified, never failing the handshake (in-memory TLS, no sockets)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from communigate.cred.clientcert import VerifiedCertificate
from communigate.protocols.tls import DomainContexts, PreferredDomain
from communigate.store import certificates, trustedca
from communigate.store.certificates import self_signed
from communigate.store.files import FileDirectory
from communigate.store.initialise import initialise
from tests.clientcerts import Issued, make_ca, make_client, make_crl


class _Transport:
    """What DomainContexts reads of a transport: its TLS handle and address."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.handle: SSL.Connection | None = None

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", self.host, 993)

    def getHandle(self) -> SSL.Connection | None:
        return self.handle


class _Protocol:
    """Stands for Twisted's TLS protocol, the connection's application data."""

    def __init__(self, transport: _Transport) -> None:
        self.transport = transport


@pytest.fixture
def directory(tmp_path: Path) -> FileDirectory:
    """company.com (Main Domain) and client1.com on 127.0.0.2."""
    directory = FileDirectory(tmp_path / "base")
    initialise(directory, "company.com", "pm")
    directory.create_domain("client1.com", {"IPAddresses": ["127.0.0.2"]})
    return directory


def handshake(
    contexts: Any, client: Issued | None, sni: str | None, host: str = "127.0.0.1"
) -> tuple[_Transport, SSL.Connection]:
    """A handshake through memory BIOs; the server's transport and the client."""
    transport = _Transport(host)
    server = SSL.Connection(contexts.getContext(), None)
    server.set_app_data(_Protocol(transport))
    server.set_accept_state()
    transport.handle = server
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if client is not None:
        context.use_certificate(client.certificate)
        context.use_privatekey(client.key)
    peer = SSL.Connection(context, None)
    if sni is not None:
        peer.set_tlsext_host_name(sni.encode())
    peer.set_connect_state()
    for _ in range(20):
        for one, other in ((peer, server), (server, peer)):
            try:
                one.do_handshake()
            except SSL.WantReadError:
                pass
            try:
                other.bio_write(one.bio_read(65536))
            except SSL.WantReadError:
                pass
    # TLS 1.3: the server sees the client's certificate with its Finished.
    peer.send(b"x")
    server.bio_write(peer.bio_read(65536))
    assert server.recv(1) == b"x"
    return transport, peer


def install(directory: FileDirectory, domain: str, ca: Issued, crl: bytes | None = None) -> None:
    trustedca.install(directory.domain_folder(domain) / "Settings", ca.cert_pem, crl)


def test_no_trusted_ca_asks_nothing(directory: FileDirectory) -> None:
    """Without a trusted CA no certificate is asked for: none is recorded."""
    contexts = DomainContexts(directory)
    client = make_client(make_ca("CA"), "info@company.com")
    transport, _ = handshake(contexts, client, "company.com")
    assert contexts.client_certificate(transport) is None
    assert transport.handle is not None and transport.handle.get_peer_certificate() is None


def test_verified_by_sni_domain(directory: FileDirectory) -> None:
    """A certificate of client1.com's CA, SNI client1.com: verified, bound to client1.com."""
    ca = make_ca("Client1 CA")
    install(directory, "client1.com", ca)
    contexts = DomainContexts(directory)
    transport, _ = handshake(contexts, make_client(ca, "info@client1.com"), "client1.com")
    found = contexts.client_certificate(transport)
    assert isinstance(found, VerifiedCertificate)
    assert (found.address, found.domain) == ("info@client1.com", "client1.com")


def test_bound_to_the_verifying_domain(directory: FileDirectory) -> None:
    """A certificate naming a company.com address, verified by client1.com's
    CA, stays bound to client1.com."""
    ca = make_ca("Client1 CA")
    install(directory, "client1.com", ca)
    contexts = DomainContexts(directory)
    transport, _ = handshake(contexts, make_client(ca, "info@company.com"), "client1.com")
    found = contexts.client_certificate(transport)
    assert found is not None and found.domain == "client1.com"


def test_multihoming_without_sni(directory: FileDirectory) -> None:
    """Without SNI the local address chooses the CA (client1.com owns
    127.0.0.2); the server certificate stays the Main Domain's."""
    ca = make_ca("Client1 CA")
    install(directory, "client1.com", ca)
    certificates.install(
        directory.domain_folder("client1.com") / "Settings", *self_signed("client1.com")
    )
    contexts = DomainContexts(directory)
    client = make_client(ca, "info@client1.com")
    transport, peer = handshake(contexts, client, None, "127.0.0.2")
    found = contexts.client_certificate(transport)
    assert found is not None and found.domain == "client1.com"
    served = peer.get_peer_certificate(as_cryptography=True)
    assert served is not None and "CN=company.com" in served.subject.rfc4514_string()
    transport, peer = handshake(contexts, client, "client1.com", "127.0.0.2")
    served = peer.get_peer_certificate(as_cryptography=True)
    assert served is not None and "CN=client1.com" in served.subject.rfc4514_string()
    transport, _ = handshake(contexts, client, None, "127.0.0.1")
    assert contexts.client_certificate(transport) is None


def test_preferred_domain(directory: FileDirectory) -> None:
    """A domain chosen before the handshake (FTP HOST) asks with its own CA."""
    ca = make_ca("Client1 CA")
    install(directory, "client1.com", ca)
    contexts = DomainContexts(directory)
    preferred = PreferredDomain(contexts, "client1.com")
    transport, _ = handshake(preferred, make_client(ca, "info@client1.com"), None)
    found = contexts.client_certificate(transport)
    assert found is not None and found.domain == "client1.com"


@pytest.mark.parametrize("case", ["other CA", "expired", "revoked", "a CA certificate"])
def test_bad_certificates_do_not_fail_handshake(directory: FileDirectory, case: str) -> None:
    """A certificate of another CA, an expired or a revoked one completes the
    handshake but verifies nothing."""
    ca = make_ca("Client1 CA")
    good = make_client(ca, "good@client1.com")
    bad = {
        "other CA": make_client(make_ca("Other"), "info@client1.com"),
        "expired": make_client(ca, "info@client1.com", expired=True),
        "revoked": make_client(ca, "info@client1.com"),
        "a CA certificate": make_ca("Self"),
    }[case]
    install(directory, "client1.com", ca, make_crl(ca, bad) if case == "revoked" else None)
    contexts = DomainContexts(directory)
    transport, _ = handshake(contexts, bad, "client1.com")
    assert contexts.client_certificate(transport) is None
    transport, _ = handshake(contexts, good, "client1.com")
    assert contexts.client_certificate(transport) is not None


def test_client_without_certificate(directory: FileDirectory) -> None:
    """A client without a certificate completes the handshake; nothing is recorded."""
    install(directory, "client1.com", make_ca("Client1 CA"))
    contexts = DomainContexts(directory)
    transport, peer = handshake(contexts, None, "client1.com")
    assert contexts.client_certificate(transport) is None
    assert peer.get_peer_certificate() is not None


def test_ca_change_is_seen(directory: FileDirectory) -> None:
    """A new CA (and a CRL) is used from the next handshake; clearing stops asking."""
    first, second = make_ca("First"), make_ca("Second")
    client = make_client(second, "info@client1.com")
    install(directory, "client1.com", first)
    clock = Clock()
    contexts = DomainContexts(directory, clock.seconds)
    transport, _ = handshake(contexts, client, "client1.com")
    assert contexts.client_certificate(transport) is None
    install(directory, "client1.com", second)
    folder = directory.domain_folder("client1.com") / "Settings"
    stamp = os.stat(folder / trustedca.TRUSTED_CA).st_mtime_ns + 10**9
    os.utime(folder / trustedca.TRUSTED_CA, ns=(stamp, stamp))
    # The files are looked at again half a second later, not at once.
    transport, _ = handshake(contexts, client, "client1.com")
    assert contexts.client_certificate(transport) is None
    clock.advance(0.5)
    transport, _ = handshake(contexts, client, "client1.com")
    assert contexts.client_certificate(transport) is not None
    install(directory, "client1.com", second, make_crl(second, client))
    clock.advance(0.5)
    transport, _ = handshake(contexts, client, "client1.com")
    assert contexts.client_certificate(transport) is None
    trustedca.clear(folder)
    clock.advance(0.5)
    transport, _ = handshake(contexts, client, "client1.com")
    assert contexts.client_certificate(transport) is None
    assert transport.handle is not None and transport.handle.get_peer_certificate() is None
