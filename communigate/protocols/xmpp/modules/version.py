"""Software Version (XEP-0092) of the server."""

from __future__ import annotations

from typing import Any

from twisted.words.xish import domish

from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.jid import JID
from communigate.protocols.xmpp.modules.replies import error, result

NS_VERSION = "jabber:iq:version"
NAME = "communigate"
VERSION = "1.0"


def handle(hub: Hub, session: Any, iq: domish.Element, target: JID) -> None:
    """The server's name and version; accounts answer through their
    clients, so a query to a bare JID is ``service-unavailable``."""
    if target.local is not None or iq["type"] != "get":
        session.send(error(iq, "cancel", "service-unavailable"))
        return
    reply = result(iq)
    query = reply.addElement((NS_VERSION, "query"))
    query.addElement("name", content=NAME)
    query.addElement("version", content=VERSION)
    session.send(reply)


def register(hub: Hub) -> None:
    """Answer version queries."""
    hub.register_iq(NS_VERSION, "query", handle)
