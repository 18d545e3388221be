"""Listeners: the listen backlog from the endpoint description, 1024 by default."""

from __future__ import annotations

from twisted.application.service import MultiService
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor

from communigate.protocols.listeners import DEFAULT_BACKLOG, add_listeners, with_backlog


def test_with_backlog() -> None:
    """backlog= is added to TCP, SSL and Unix descriptions that lack it, and only there."""
    assert DEFAULT_BACKLOG >= 1024
    assert with_backlog("tcp:143") == f"tcp:143:backlog={DEFAULT_BACKLOG}"
    assert with_backlog("tcp:143:backlog=7") == "tcp:143:backlog=7"
    assert with_backlog("unix:/run/x") == f"unix:/run/x:backlog={DEFAULT_BACKLOG}"
    assert with_backlog(r"tcp6:143:interface=\:\:1").endswith(f":backlog={DEFAULT_BACKLOG}")
    assert with_backlog("systemd:domain=INET:index=0") == "systemd:domain=INET:index=0"


def test_listeners_listen_with_the_backlog() -> None:
    """The port is opened with the default backlog, or the one the description gives."""
    reactor = MemoryReactor()
    top = MultiService()
    factory = Factory.forProtocol(Protocol)
    add_listeners(
        top, "imap4", ["tcp:143:interface=127.0.0.1", "tcp:993:backlog=20"], factory, reactor
    )
    top.startService()
    backlogs = {port: backlog for port, _, backlog, _ in reactor.tcpServers}
    assert backlogs == {143: DEFAULT_BACKLOG, 993: 20}
    assert sorted(service.name for service in top) == [
        "imap4:tcp:143:interface=127.0.0.1",
        "imap4:tcp:993:backlog=20",
    ]
