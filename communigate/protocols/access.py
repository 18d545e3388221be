"""What every protocol server needs to log clients in, in one object.

A protocol gives its transport and asks: which domain is this connection
for, which login methods to advertise, may clear text be used, log in these
credentials.  Everything behind (names, Router, checkers, realm, TLS
certificates) stays behind the portal.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred

from communigate.cred.credentials import ConnectionInfo
from communigate.cred.sasl import registry
from communigate.cred.sasl.registry import ExchangeContext
from communigate.portal.accounts import AccountResolver
from communigate.protocols.tls import DomainContexts, server_name
from communigate.store.atomic import write_atomic
from communigate.store.settingsformat import Value


def salt_key(base: Path) -> bytes:
    """The server's SCRAM salt key, created on first use."""
    path = Path(base) / "Settings" / "SCRAM.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        write_atomic(path, key, 0o600)
        return key


class LoginService:
    """The portal and its policy, as protocol servers use them."""

    def __init__(
        self,
        portal: Portal,
        resolver: AccountResolver,
        tls: DomainContexts | None = None,
        scram_key: bytes | None = None,
        hostname: str | None = None,
    ) -> None:
        self.portal = portal
        self.resolver = resolver
        self.tls = tls
        self.scram_key = scram_key or os.urandom(32)
        self.hostname = hostname or socket.getfqdn()

    def connection(self, transport: Any, protocol: str, secure: bool) -> ConnectionInfo:
        """The addresses, TLS state and SNI name of a transport."""
        host, peer = transport.getHost(), transport.getPeer()
        return ConnectionInfo(
            protocol=protocol,
            local_host=getattr(host, "host", None),
            remote_host=getattr(peer, "host", None),
            secure=secure,
            server_name=server_name(transport) if secure else None,
        )

    def domain(self, connection: ConnectionInfo) -> str:
        """The domain a bare login name belongs to on this connection."""
        return self.resolver.connection_domain(connection)

    def known_domain(self, name: str) -> str | None:
        """The real name of a domain (or domain alias), None if unknown."""
        record = self.resolver.directory.domain(name.lower())
        return record.name if record else None

    def domain_settings(self, connection: ConnectionInfo) -> Mapping[str, Value]:
        """The settings of the connection's domain."""
        record = self.resolver.directory.domain(self.domain(connection))
        return record.settings if record else {}

    def mechanisms(self, connection: ConnectionInfo) -> list[str]:
        """The SASL mechanisms to advertise on this connection."""
        return registry.advertised(self.domain_settings(connection), connection)

    def clear_text_allowed(self, connection: ConnectionInfo) -> bool:
        """Whether USER/PASS, LOGIN, PLAIN may be used on this link now."""
        return registry.clear_text_allowed(self.domain_settings(connection), connection)

    def exchange_context(self, connection: ConnectionInfo) -> ExchangeContext:
        """What SASL mechanisms need from this connection."""
        return ExchangeContext(connection, self.domain(connection), self.hostname, self.scram_key)

    def login(self, credentials: Any, interface: Any) -> Deferred[Any]:
        """Ask the portal for an avatar."""
        return self.portal.login(credentials, None, interface)
