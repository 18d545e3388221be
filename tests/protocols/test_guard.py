"""Listener Grant/Deny lists and per-address connection limits."""

from __future__ import annotations

from twisted.application.service import MultiService
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol

from communigate.protocols.guard import GuardedFactory
from communigate.store.files import FileDirectory
from communigate.workers.handoff import add_mail_listeners


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


def test_listeners_served_here_and_by_workers_share_one_count(
    directory: FileDirectory,
) -> None:
    """A protocol's listeners served here and those handed to worker
    processes count one address's connections together."""
    directory.update_server_settings({"Listeners": {"imap4": {"MaxPerAddress": 2}}})
    parent = MultiService()
    pool = Recorder()
    add_mail_listeners(
        parent,
        "imap4",
        ["unix:/nonexistent/imap.sock", "tcp:0:interface=127.0.0.1"],
        Factory.forProtocol(Protocol),
        object(),
        None,
        directory,
        pool,  # type: ignore[arg-type]
    )
    here, there = (service.factory for service in parent)
    address = IPv4Address("TCP", "192.0.2.1", 1000)
    assert isinstance(here, GuardedFactory) and isinstance(there, GuardedFactory)
    assert here.buildProtocol(address) is not None
    assert there.buildProtocol(address) is not None
    assert here.buildProtocol(address) is None
    assert there.buildProtocol(address) is None


class Recorder:
    """A worker pool that keeps what it is handed."""

    def __init__(self) -> None:
        self.handed: list[object] = []

    def hand(self, listener: str, accepted: object) -> None:
        self.handed.append(accepted)
