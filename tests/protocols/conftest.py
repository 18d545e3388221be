"""What the HTTP tests of this folder share: a site over the template
directory, and a raw connection to it."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Cooperator
from twisted.internet.testing import StringTransport

from communigate.protocols.http.context import WebContext
from communigate.protocols.http.csrf import FormTokens
from communigate.protocols.http.sessions import WebSessions
from communigate.protocols.http.site import make_site
from communigate.store.files import FileDirectory
from tests.conftest import SyncClockReactor, login_service


@pytest.fixture
def web(
    directory: FileDirectory, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, WebSessions, Any, SyncClockReactor]:
    """A site over the template directory with SESSIONID on for company.com."""
    directory.update_domain_settings("company.com", {"LoginMethods": ["PLAIN", "SESSIONID"]})
    service = login_service(directory)
    reactor = SyncClockReactor()
    reactor.advance(10_000)
    # Files are sent by a pull producer that twisted.web drives with the
    # global cooperator: make it run on this clock.
    cooperator = Cooperator(scheduler=lambda work: reactor.callLater(0, work))
    monkeypatch.setattr("twisted.internet._producer_helpers.cooperate", cooperator.cooperate)
    sessions = WebSessions(
        reactor.seconds, lambda login, c: service.resolver.resolve(login, c).full_name
    )
    service.web_sessions = sessions
    context = WebContext(service, sessions, FormTokens(b"k" * 32, reactor.seconds), reactor)
    return make_site(context), sessions, service, reactor


def raw_connection(site: Any) -> tuple[Any, StringTransport]:
    """A connection to ``site`` from 127.0.0.1 on an in-memory transport."""
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 80),
        peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
    )
    protocol.makeConnection(transport)
    return protocol, transport
