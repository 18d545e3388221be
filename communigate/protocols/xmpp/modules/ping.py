"""XMPP Ping (XEP-0199): an empty result to ``<ping xmlns='urn:xmpp:ping'/>``
sent to the server or to the account's own bare JID."""

from __future__ import annotations

from typing import Any

from twisted.words.xish import domish

from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.jid import JID
from communigate.protocols.xmpp.modules.replies import result

NS_PING = "urn:xmpp:ping"


def handle(hub: Hub, session: Any, iq: domish.Element, target: JID) -> None:
    """Pong (XEP-0199 §4)."""
    session.send(result(iq))


def register(hub: Hub) -> None:
    """Answer pings."""
    hub.register_iq(NS_PING, "ping", handle)
