"""Accepted connections passed on to the worker pool: which listeners hand
off, and the guard's per-address count held until the worker is done."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any, cast

import pytest
from twisted.internet.address import IPv4Address
from zope.interface import implementer

from communigate.protocols.guard import GuardedFactory
from communigate.store.directory import IDirectory
from communigate.workers.handoff import (
    Accepted,
    HandoffFactory,
    HandoffProtocol,
    IHandoff,
    handed_off,
)


@pytest.mark.parametrize("description", ["tcp:143", "tcp6:143:interface=\\:\\:1", "TCP:143"])
def test_tcp_listeners_hand_off(description: str) -> None:
    """Plain tcp: and tcp6: endpoints, in any case, hand their connections on."""
    assert handed_off(description)


@pytest.mark.parametrize("description", ["ssl:993", "unix:/x", "systemd:domain=INET:index=0"])
def test_other_listeners_are_served_here(description: str) -> None:
    """TLS, Unix and systemd endpoints do not hand their connections on."""
    assert not handed_off(description)


@implementer(IHandoff)
class RecordingPool:
    """A pool that keeps what it is handed."""

    def __init__(self) -> None:
        self.handed: list[tuple[str, Accepted]] = []

    def hand(self, listener: str, accepted: Accepted) -> None:
        self.handed.append((listener, accepted))


class Settings:
    """A directory whose server settings limit imap4 to two per address."""

    def server_settings(self) -> dict[str, Any]:
        return {"Listeners": {"imap4": {"MaxPerAddress": 2}}}


class Setup:
    """A guarded handoff factory and the sockets it was given."""

    def __init__(self) -> None:
        self.pool = RecordingPool()
        self.factory = GuardedFactory(
            HandoffFactory("imap4", self.pool), "imap4", cast(IDirectory, Settings())
        )
        self.sockets: list[socket.socket] = []

    def connect(self, host: str = "192.0.2.1") -> Accepted | None:
        """Accept one connection from ``host`` as HandoffPort would."""
        addr = IPv4Address("TCP", host, 40000 + len(self.sockets))
        protocol = self.factory.buildProtocol(addr)
        if protocol is None:
            return None
        ours, theirs = socket.socketpair()
        self.sockets += [ours, theirs]
        accepted = Accepted(ours, protocol, (host, addr.port), None, 0, None)
        protocol.makeConnection(accepted)
        return accepted


@pytest.fixture
def setup() -> Iterator[Setup]:
    made = Setup()
    yield made
    for skt in made.sockets:
        skt.close()


def test_connection_is_handed_to_pool(setup: Setup) -> None:
    """makeConnection passes the Accepted itself, with the listener name, to the pool."""
    accepted = setup.connect()
    assert accepted is not None
    assert setup.pool.handed == [("imap4", accepted)]
    assert setup.factory.counts["192.0.2.1"] == 1


def test_handoff_factory_builds_handoff_protocol() -> None:
    """HandoffFactory makes HandoffProtocol instances that know their factory."""
    factory = HandoffFactory("pop3", RecordingPool())
    protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
    assert isinstance(protocol, HandoffProtocol)
    assert protocol.factory is factory


def test_third_connection_from_same_host_refused(setup: Setup) -> None:
    """MaxPerAddress 2 refuses a third connection from a host, not another host's."""
    assert setup.connect() is not None
    assert setup.connect() is not None
    assert setup.connect() is None
    assert setup.connect("192.0.2.2") is not None
    assert len(setup.pool.handed) == 3


def test_finish_releases_the_count(setup: Setup) -> None:
    """Accepted.finish lets another connection from the host in."""
    first = setup.connect()
    setup.connect()
    assert first is not None
    first.finish()
    assert first.ended
    assert setup.connect() is not None
    assert setup.connect() is None


def test_finish_twice_counts_once(setup: Setup) -> None:
    """A second finish does not release the count again."""
    first = setup.connect()
    setup.connect()
    assert first is not None
    first.finish()
    first.finish()
    assert setup.factory.counts["192.0.2.1"] == 1
    assert setup.connect() is not None
    assert setup.connect() is None


def test_detach_gives_descriptor_and_leaves_socket_detached(setup: Setup) -> None:
    """detach returns the socket's descriptor; the socket object no longer owns it."""
    accepted = setup.connect()
    assert accepted is not None
    expected = accepted.socket.fileno()
    descriptor = accepted.detach()
    try:
        assert descriptor == expected
        assert accepted.socket.fileno() == -1
        # Still open: the caller owns it now.
        os.fstat(descriptor)
    finally:
        os.close(descriptor)


def test_lose_connection_closes_and_finishes(setup: Setup) -> None:
    """loseConnection closes the socket and ends the connection for the guard."""
    accepted = setup.connect()
    assert accepted is not None
    peer = setup.sockets[-1]
    accepted.loseConnection()
    assert accepted.ended
    assert accepted.socket.fileno() == -1
    assert peer.recv(10) == b""
    assert "192.0.2.1" not in setup.factory.counts


def test_get_handle_is_the_accepted(setup: Setup) -> None:
    """getHandle returns the Accepted itself."""
    accepted = setup.connect()
    assert accepted is not None
    assert accepted.getHandle() is accepted
