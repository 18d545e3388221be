"""Service Discovery (XEP-0030): what the server and an account offer.

disco#info on the domain names the server identity (``server/im``) and
every feature the loaded modules announced (:attr:`Hub.features`); on an
account's bare JID, ``account/registered`` (XEP-0030 §3.1, as servers
answer for their users) and the features modules announce for accounts
(:attr:`Hub.account_features`, such as MAM).  disco#items lists nothing: there are no
components.
"""

from __future__ import annotations

from typing import Any

from twisted.words.xish import domish

from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.jid import JID
from communigate.protocols.xmpp.modules.replies import error, result

NS_INFO = "http://jabber.org/protocol/disco#info"
NS_ITEMS = "http://jabber.org/protocol/disco#items"


def info(hub: Hub, session: Any, iq: domish.Element, target: JID) -> None:
    """disco#info of the domain or of an account."""
    query = next(iter(iq.elements()))
    if iq["type"] != "get" or query.getAttribute("node"):
        session.send(error(iq, "cancel", "item-not-found"))
        return
    reply = result(iq)
    answer = reply.addElement((NS_INFO, "query"))
    identity = answer.addElement("identity")
    if target.local is None:
        identity["category"], identity["type"] = "server", "im"
        identity["name"] = "communigate"
        features = sorted(hub.features | {NS_INFO, NS_ITEMS})
    else:
        identity["category"], identity["type"] = "account", "registered"
        features = sorted(hub.account_features | {NS_INFO, NS_ITEMS})
    for feature in features:
        answer.addElement("feature")["var"] = feature
    session.send(reply)


def items(hub: Hub, session: Any, iq: domish.Element, target: JID) -> None:
    """disco#items: empty (no components, no nodes)."""
    if iq["type"] != "get":
        session.send(error(iq, "cancel", "feature-not-implemented"))
        return
    reply = result(iq)
    reply.addElement((NS_ITEMS, "query"))
    session.send(reply)


def register(hub: Hub) -> None:
    """Answer disco#info and disco#items."""
    hub.register_iq(NS_INFO, "query", info)
    hub.register_iq(NS_ITEMS, "query", items)
