"""Who may connect to a listener, checked when a connection is accepted.

Server setting ``Listeners`` holds, per protocol, ``Grant`` and ``Deny``
address lists and ``MaxPerAddress`` (spec §7)::

    Listeners = { imap4 = { Grant = (192.0.2.0/24); Deny = (192.0.2.66);
                            MaxPerAddress = #20; }; };

A refused connection is closed before any greeting.  Without ``Grant``
every address is granted; ``Deny`` wins over ``Grant``.  ``MaxPerAddress``
defaults to 50 for every protocol.  The settings are read again for every
connection, so changes made with the command line apply at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from twisted.internet.main import CONNECTION_DONE
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

from communigate.portal.addresses import address_in
from communigate.store.directory import IDirectory
from communigate.store.settingsformat import Value, as_string_list

DEFAULT_PER_ADDRESS = 50
_DONE = Failure(CONNECTION_DONE)


class _Counted(ProtocolWrapper):
    host = ""

    def connectionLost(self, reason: Failure = _DONE) -> None:
        self.factory.release(self.host)
        super().connectionLost(reason)


class GuardedFactory(WrappingFactory):
    """Applies a protocol's Grant/Deny lists and per-address limit."""

    protocol = _Counted
    log = Logger()
    noisy = False

    def __init__(
        self,
        wrapped: Any,
        name: str,
        directory: IDirectory,
        counts: Counter[str] | None = None,
    ) -> None:
        super().__init__(wrapped)
        self.name = name
        self.directory = directory
        #: Open connections per address; ``counts`` shares them with
        #: another guard (a protocol's listeners served here and those
        #: handed to worker processes).
        self.counts: Counter[str] = Counter() if counts is None else counts

    def _rules(self) -> Mapping[str, Value]:
        listeners = self.directory.server_settings().get("Listeners")
        rules = listeners.get(self.name) if isinstance(listeners, dict) else None
        return rules if isinstance(rules, dict) else {}

    def buildProtocol(self, addr: Any) -> Any:
        """None (the connection is closed) for a refused address."""
        host = str(getattr(addr, "host", ""))
        rules = self._rules()
        grant = as_string_list(rules.get("Grant"))
        if address_in(host, as_string_list(rules.get("Deny"))) or (
            grant and not address_in(host, grant)
        ):
            self.log.info(
                "{protocol} connection from {host} refused by the listener lists",
                protocol=self.name,
                host=host,
            )
            return None
        limit = rules.get("MaxPerAddress", DEFAULT_PER_ADDRESS)
        limit = limit if isinstance(limit, int) else DEFAULT_PER_ADDRESS
        if self.counts[host] >= limit:
            self.log.info(
                "{protocol} connection from {host} refused: {limit} already open",
                protocol=self.name,
                host=host,
                limit=limit,
            )
            return None
        protocol = super().buildProtocol(addr)
        if isinstance(protocol, _Counted):
            protocol.host = host
            self.counts[host] += 1
        return protocol

    def release(self, host: str) -> None:
        """A connection from ``host`` closed."""
        self.counts[host] -= 1
        if self.counts[host] <= 0:
            del self.counts[host]
