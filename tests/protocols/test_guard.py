"""Listener Grant/Deny lists and per-address connection limits."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol

from communigate.protocols.guard import GuardedFactory
from communigate.store.files import FileDirectory


def test_grant_deny_and_limit(directory: FileDirectory) -> None:
    """Deny wins, Grant restricts, MaxPerAddress caps open connections."""
    factory = GuardedFactory(Factory.forProtocol(Protocol), "pop3", directory)

    def build(host: str) -> object:
        return factory.buildProtocol(IPv4Address("TCP", host, 1000))

    directory.update_server_settings(
        {
            "Listeners": {
                "pop3": {"Grant": ["192.0.2.0/24"], "Deny": ["192.0.2.66"], "MaxPerAddress": 2}
            }
        }
    )
    assert build("198.51.100.1") is None
    assert build("192.0.2.66") is None
    first, second = build("192.0.2.1"), build("192.0.2.1")
    assert first is not None and second is not None
    assert build("192.0.2.1") is None
    factory.release("192.0.2.1")
    assert build("192.0.2.1") is not None
