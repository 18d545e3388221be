"""A client-to-server stream on a StringTransport, for the XMPP unit tests."""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from communigate.portal.xmppsession import XMPPDirectory
from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.modules import load_all
from communigate.protocols.xmpp.server import XMPPFactory, XMPPServer
from communigate.store.files import FileDirectory
from tests.conftest import Exchange, login_service

STREAMS = "http://etherx.jabber.org/streams"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def header(domain: str = "company.com", version: str = "1.0") -> bytes:
    """A client's stream header to ``domain``."""
    return (
        f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
        f"xmlns:stream='{STREAMS}' version='{version}'>"
    ).encode()


def plain(name: str, password: str) -> bytes:
    """``<auth mechanism='PLAIN'>`` with the initial response."""
    data = base64.b64encode(b"\0" + name.encode() + b"\0" + password.encode())
    return f"<auth xmlns='{SASL}' mechanism='PLAIN'>".encode() + data + b"</auth>"


class TLSTransport(StringTransport):
    """A StringTransport that records a STARTTLS switch and TCP_NODELAY."""

    tls: Any = None
    no_delay = False

    def startTLS(self, contexts: Any) -> None:
        self.tls = contexts

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled


def make_factory(directory: FileDirectory, clock: Clock, tls: Any = None) -> XMPPFactory:
    """A factory with its hub and every feature module."""
    hub = Hub(XMPPDirectory(directory))
    load_all(hub)
    return XMPPFactory(login_service(directory), clock, hub, tls)


class Stream(Exchange):
    """One client stream to a factory (loopback unless told)."""

    def __init__(self, factory: XMPPFactory, local: str = "127.0.0.1") -> None:
        self.factory = factory
        server = factory.buildProtocol(IPv4Address("TCP", local, 5222))
        assert isinstance(server, XMPPServer)
        self.server = server
        self.transport = TLSTransport(
            hostAddress=IPv4Address("TCP", local, 5222),
            peerAddress=IPv4Address("TCP", local, 40000),
        )
        self.server.makeConnection(self.transport)

    def login(
        self, name: str = "info", password: str = "pw-company.com", domain: str = "company.com"
    ) -> bytes:
        """Header, PLAIN, restart; what the server wrote last (the features)."""
        self.send(header(domain))
        reply = self.send(plain(name, password))
        assert reply.startswith(b"<success"), reply
        return self.send(header(domain))

    def bind(self, resource: str | None = None) -> bytes:
        """Bind ``resource`` (or let the server choose); the reply."""
        asked = f"<resource>{resource}</resource>" if resource else ""
        return self.send(
            b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            + asked.encode()
            + b"</bind></iq>"
        )

    def online(
        self,
        resource: str,
        name: str = "info",
        password: str = "pw-company.com",
        domain: str = "company.com",
        priority: int = 0,
    ) -> Stream:
        """Log in, bind ``resource``, send initial presence; output dropped."""
        self.login(name, password, domain)
        assert b"<jid>" in self.bind(resource)
        self.send(f"<presence><priority>{priority}</priority></presence>".encode())
        self.take()
        return self
