"""Listeners: Twisted endpoint descriptions bound to protocol factories.

Every protocol takes endpoint descriptions (``tcp:110:interface=127.0.0.2``,
repeatable), so one process can listen on several addresses and the domain of
a connection follows from the local address of the accepted socket.

The listen backlog (connections the kernel has accepted but the server has
not yet taken) is ``backlog=`` in the description; without it a TCP, SSL or
Unix listener gets :data:`DEFAULT_BACKLOG` rather than Twisted's 50, which a
burst of clients overflows (the kernel caps it at ``net.core.somaxconn``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from twisted.application import strports
from twisted.application.service import IServiceCollection
from twisted.internet.interfaces import IProtocolFactory
from twisted.protocols.tls import TLSMemoryBIOFactory

from communigate.protocols.guard import GuardedFactory
from communigate.store.directory import IDirectory
from communigate.store.listeners import DEFAULT_BACKLOG

#: Listen backlog when a description names none: a burst of a thousand
#: clients connecting at once fits (with Twisted's 50, half of them were
#: dropped and retried for seconds).
#: Endpoint types that take ``backlog=``.
_BACKLOG_TYPES = frozenset({"tcp", "tcp6", "ssl", "unix"})
#: ``:`` separates the parts of a description unless escaped as ``\:``.
_SEPARATOR = re.compile(r"(?<!\\):")


def with_backlog(description: str, backlog: int = DEFAULT_BACKLOG) -> str:
    """``description`` with ``backlog=`` added when it is a TCP, SSL or Unix
    endpoint that does not set one."""
    parts = _SEPARATOR.split(description)
    if parts[0].strip().lower() not in _BACKLOG_TYPES:
        return description
    if any(part.strip().lower().startswith("backlog=") for part in parts[1:]):
        return description
    return f"{description}:backlog={backlog}"


def add_listeners(
    parent: IServiceCollection,
    protocol: str,
    descriptions: Iterable[str],
    factory: IProtocolFactory,
    reactor: Any,
    tls: Any = None,
    directory: IDirectory | None = None,
    counts: Counter[str] | None = None,
) -> None:
    """Add one listening service per description to ``parent``; with a
    ``tls`` context factory every connection is TLS from the first byte;
    with a directory, its listener lists are checked at accept time (with
    ``counts`` the connections per address are counted there, shared with
    the guard of other listeners).  A description without ``backlog=``
    gets :data:`DEFAULT_BACKLOG`."""
    if tls is not None:
        factory = TLSMemoryBIOFactory(tls, False, factory)
    if directory is not None:
        factory = GuardedFactory(factory, protocol, directory, counts)
    for description in descriptions:
        service = strports.service(with_backlog(description), factory, reactor=reactor)
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
