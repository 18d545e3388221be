"""Adding XMPP to the server's service tree.

The listeners are ``--xmpp`` (STARTTLS, RFC 6120 §5, port 5222) and
``--xmpps`` (TLS from the first byte, XEP-0368, port 5223), built like
every other listener
(:func:`~communigate.protocols.listeners.add_listeners`: guard, backlog,
session ids and byte counts).  Both share one :class:`~.hub.Hub`, so
sessions on either reach each other, and one
:class:`~communigate.portal.durablefiles.DurableFiles` that writes the
accounts' XMPP files in the server's thread pool.  When the server
stops, the hub is told first (:class:`HubService`): the sessions then end
without telling each other, and the messages a resumable session had not
acknowledged go to the offline store before the writer drains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import IServiceCollection, Service

from communigate.portal.durablefiles import DurableFiles, DurableFilesService
from communigate.portal.xmppsession import XMPPDirectory
from communigate.protocols.access import LoginService
from communigate.protocols.listeners import add_listeners
from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.modules import load_all
from communigate.protocols.xmpp.server import XMPPFactory


class HubService(Service):
    """Tells the hub that the server stops, before its connections close."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def stopService(self) -> None:
        """Every session is about to end."""
        self.hub.stopping = True
        super().stopService()


def add_xmpp(
    top: IServiceCollection,
    options: Any,
    service: LoginService,
    reactor: Any,
    tls: Any,
    counted: Callable[[str, Any], Any],
    pool: Any = None,
) -> dict[str, Any]:
    """The ``xmpp``/``xmpps`` listeners; the (counted) factory of each,
    for the listeners file's listeners.  ``pool`` runs the durable writes
    (at once on the reactor thread without one)."""
    directory = service.resolver.directory
    writes = DurableFiles(reactor, pool)
    DurableFilesService(writes).setServiceParent(top)
    hub = Hub(XMPPDirectory(directory, writes))
    load_all(hub)
    HubService(hub).setServiceParent(top)
    factories: dict[str, Any] = {}
    for name, implicit in (("xmpp", False), ("xmpps", True)):
        factory = XMPPFactory(service, reactor, hub, tls, implicit_tls=implicit)
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
