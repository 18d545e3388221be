"""Message Carbons (XEP-0280): every resource of an account sees its chats.

A resource enables carbons with ``<enable xmlns='urn:xmpp:carbons:2'/>``
(and disables them again).  A ``chat`` message (or a ``normal`` one with a
body, §6) that the account sends from one resource is copied to its other
resources with carbons as ``<sent/>``; one delivered to a full JID of the
account is copied to its other resources as ``<received/>`` (a message to
the bare JID already reaches every eligible resource, §6).  A message
marked ``<private/>`` or ``<no-copy/>`` is not copied (§7).
"""

from __future__ import annotations

from typing import Any

from twisted.words.xish import domish

from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.jid import JID, parse
from communigate.protocols.xmpp.modules.replies import error, result
from communigate.protocols.xmpp.xmlstream import NS_CLIENT

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_HINTS = "urn:xmpp:hints"


def eligible(stanza: domish.Element) -> bool:
    """Whether a message is copied (XEP-0280 §6, §7)."""
    kind = stanza.attributes.get("type", "normal")
    if kind not in ("chat", "normal"):
        return False
    if kind == "normal" and not any(child.name == "body" for child in stanza.elements()):
        return False
    for child in stanza.elements():
        if (child.uri, child.name) in ((NS_CARBONS, "private"), (NS_HINTS, "no-copy")):
            return False
        if child.uri == NS_CARBONS:
            return False
    return True


def _copies(hub: Hub, owner: JID, skip: Any, stanza: domish.Element, how: str) -> None:
    for session in hub.resources(owner):
        if session is skip or not session.features.get("carbons"):
            continue
        wrapper = domish.Element((NS_CLIENT, "message"))
        wrapper["from"], wrapper["to"] = str(owner), str(session.jid)
        wrapper["type"] = stanza.getAttribute("type", "normal")
        forwarded = wrapper.addElement((NS_CARBONS, how)).addElement((NS_FORWARD, "forwarded"))
        forwarded.addChild(stanza)
        session.send(wrapper)
        stanza.parent = None


def handle(hub: Hub, session: Any, iq: domish.Element, target: JID) -> None:
    """``<enable/>`` / ``<disable/>`` (§4, §5)."""
    payload = next(iter(iq.elements()))
    if iq["type"] != "set" or target != session.jid.bare():
        session.send(error(iq, "modify", "bad-request"))
        return
    session.features["carbons"] = payload.name == "enable"
    session.send(result(iq))


class CarbonsModule:
    """Copies chats to the account's other resources."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def others(self, session: Any) -> bool:
        """Whether another resource of the account has carbons enabled."""
        if self.hub.count(session.jid) < 2:
            return False
        return any(
            other is not session and other.features.get("carbons")
            for other in self.hub.resources(session.jid)
        )

    def sent(self, session: Any, stanza: domish.Element) -> bool:
        """A message the user sends: ``<sent/>`` copies."""
        if self.others(session) and eligible(stanza):
            _copies(self.hub, session.jid.bare(), session, stanza, "sent")
        return False

    def received(self, session: Any, stanza: domish.Element) -> bool:
        """A message delivered to a full JID: ``<received/>`` copies."""
        to = stanza.attributes.get("to", "")
        if "/" in to and self.others(session) and eligible(stanza) and parse(to) == session.jid:
            _copies(self.hub, session.jid.bare(), session, stanza, "received")
        return False


def register(hub: Hub) -> None:
    """Handle carbons."""
    module = CarbonsModule(hub)
    hub.register_iq(NS_CARBONS, "enable", handle)
    hub.register_iq(NS_CARBONS, "disable", handle)
    hub.on("message-out", module.sent)
    hub.on("message-in", module.received)
