"""Adding SMTP submission to the server's service tree.

The relay service (:class:`~communigate.protocols.smtp.relay.Relay`) always
runs, so messages a previous run queued are sent even when this run has no
submission listener; the listeners are ``--submission`` (STARTTLS, RFC 6409)
and ``--smtps`` (implicit TLS, RFC 8314), built like every other listener
(:func:`~communigate.protocols.listeners.add_listeners`: guard, backlog,
session ids and byte counts).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import IServiceCollection

from communigate.protocols.access import LoginService
from communigate.protocols.listeners import add_listeners
from communigate.protocols.smtp.relay import Relay
from communigate.protocols.smtp.server import SubmissionFactory


def add_submission(
    top: IServiceCollection,
    options: Any,
    service: LoginService,
    reactor: Any,
    tls: Any,
    max_message: int,
    spool: Path,
    pool: Any,
    counted: Callable[[str, Any], Any],
) -> dict[str, Any]:
    """The relay service and the ``submission``/``smtps`` listeners; the
    (counted) factory of each, for the listeners file's listeners."""
    directory = service.resolver.directory
    relay = Relay(directory, reactor, service.hostname, pool)
    relay.setName("smtp-relay")
    relay.setServiceParent(top)
    factories: dict[str, Any] = {}
    for name, implicit in (("submission", False), ("smtps", True)):
        factory = SubmissionFactory(
            service,
            reactor,
            tls,
            implicit_tls=implicit,
            max_message=max_message,
            spool=spool,
            pool=pool,
            relay=relay,
        )
        factories[name] = counted(name, factory)
        add_listeners(
            top,
            name,
            options[name],
            factories[name],
            reactor,
            tls if implicit else None,
            directory,
        )
    return factories
