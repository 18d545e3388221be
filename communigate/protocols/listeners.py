"""Listeners: Twisted endpoint descriptions bound to protocol factories.

Every protocol takes endpoint descriptions (``tcp:110:interface=127.0.0.2``,
repeatable), so one process can listen on several addresses and the domain of
a connection follows from the local address of the accepted socket.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.application import strports
from twisted.application.service import IServiceCollection
from twisted.internet.interfaces import IProtocolFactory
from twisted.protocols.tls import TLSMemoryBIOFactory

from communigate.protocols.guard import GuardedFactory
from communigate.store.directory import IDirectory


def add_listeners(
    parent: IServiceCollection,
    protocol: str,
    descriptions: Iterable[str],
    factory: IProtocolFactory,
    reactor: Any,
    tls: Any = None,
    directory: IDirectory | None = None,
) -> None:
    """Add one listening service per description to ``parent``; with a
    ``tls`` context factory every connection is TLS from the first byte;
    with a directory, its listener lists are checked at accept time."""
    if tls is not None:
        factory = TLSMemoryBIOFactory(tls, False, factory)
    if directory is not None:
        factory = GuardedFactory(factory, protocol, directory)
    for description in descriptions:
        service = strports.service(description, factory, reactor=reactor)
        service.setName(f"{protocol}:{description}")
        service.setServiceParent(parent)


def parse_udp(description: str) -> tuple[int, str]:
    """``udp:PORT[:interface=ADDR]`` → (port, interface); raises ValueError."""
    parts = description.split(":")
    if len(parts) < 2 or parts[0] != "udp" or not parts[1].isdigit():
        raise ValueError(f"not a UDP listener description: {description!r}")
    interface = ""
    for extra in parts[2:]:
        key, _, value = extra.partition("=")
        if key != "interface":
            raise ValueError(f"unknown UDP listener option {key!r}")
        interface = value
    return int(parts[1]), interface
