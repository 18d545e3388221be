"""Roster management (RFC 6121 §2): get, set, remove, pushes, versioning.

The roster is the account's (:class:`communigate.store.roster.Roster`,
through the avatar's stores).  A get answers the whole roster with its
version, or, when the client names a version the store can still bring up
to date, an empty result followed by one push per change (§2.6.3).  A set
changes the name and groups of one item (never its subscription, §2.1.5)
or removes it (§2.5: cancelling the subscriptions both ways); once the
change is on disk the client gets its result and every resource of the
account a push (§2.1.6).  Items kept only for
a contact's pending request (``listed`` false) are not shown.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.words.xish import domish

from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.jid import JID, InvalidJID, parse
from communigate.protocols.xmpp.modules.replies import error, result, when_written
from communigate.protocols.xmpp.xmlstream import NS_CLIENT
from communigate.store.roster import RosterError, RosterFull, RosterItem

NS_ROSTER = "jabber:iq:roster"


def item_element(parent: domish.Element, item: RosterItem) -> domish.Element:
    """``<item/>`` of a roster item as RFC 6121 §2.1.2 shows it."""
    element = parent.addElement("item")
    element["jid"] = item.jid
    element["subscription"] = item.subscription
    if item.name:
        element["name"] = item.name
    if item.ask:
        element["ask"] = "subscribe"
    for group in item.groups:
        element.addElement("group", content=group)
    return element


def push(hub: Hub, owner: JID, item: RosterItem, version: int) -> None:
    """A roster push of ``item`` to every resource of ``owner`` (§2.1.6)."""
    for session in hub.resources(owner):
        iq = domish.Element((NS_CLIENT, "iq"))
        iq["type"] = "set"
        iq["id"] = f"push{version}"
        iq["to"] = str(session.jid)
        query = iq.addElement((NS_ROSTER, "query"))
        query["ver"] = str(version)
        item_element(query, item)
        session.send(iq)


def handle(hub: Hub, session: Any, iq: domish.Element, target: JID) -> None:
    """``jabber:iq:roster`` get and set, for the account's own roster only."""
    if target != session.jid.bare():
        session.send(error(iq, "cancel", "forbidden"))
        return
    roster = session.avatar.stores.roster
    query = next(iter(iq.elements()))
    if iq["type"] == "get":
        get(hub, session, iq, query, roster)
    else:
        set_item(hub, session, iq, query, roster)


def get(hub: Hub, session: Any, iq: domish.Element, query: domish.Element, roster: Any) -> None:
    """The roster, whole or as the changes since the client's version."""
    session.features["roster"] = True
    asked = query.getAttribute("ver")
    version = roster.version
    if asked is not None and asked.isdigit():
        changes = roster.changes_since(int(asked))
        if changes is not None:
            session.send(result(iq))
            for item in changes:
                if item.subscription == "remove" or item.listed:
                    push(hub, session.jid.bare(), item, version)
            return
    reply = result(iq)
    answer = reply.addElement((NS_ROSTER, "query"))
    answer["ver"] = str(version)
    for item in roster.items():
        if item.listed:
            item_element(answer, item)
    session.send(reply)


def set_item(
    hub: Hub, session: Any, iq: domish.Element, query: domish.Element, roster: Any
) -> None:
    """One item added, changed or removed (§2.3–2.5)."""
    items = list(query.elements(NS_ROSTER, "item"))
    if len(items) != 1:
        session.send(error(iq, "modify", "bad-request"))
        return
    element = items[0]
    try:
        contact = parse(element.getAttribute("jid", ""))
    except InvalidJID:
        session.send(error(iq, "modify", "bad-request"))
        return
    if not contact.is_bare:
        session.send(error(iq, "modify", "bad-request"))
        return
    owner = session.jid.bare()
    key = str(contact)
    if element.getAttribute("subscription") == "remove":
        current = roster.get(key)
        if current is None:
            session.send(error(iq, "cancel", "item-not-found"))
            return
        hub.fire("roster-remove", session, contact, current)
        version = roster.remove(key)

        def removed() -> None:
            session.send(result(iq))
            push(hub, owner, RosterItem(key, subscription="remove"), version)

        when_written(session, iq, roster.written(), removed)
        return
    groups = tuple(str(group).strip() for group in element.elements(NS_ROSTER, "group"))
    name = element.getAttribute("name") or None
    current = roster.get(key) or RosterItem(key)
    item = replace(current, name=name, groups=groups, listed=True)
    try:
        version = roster.set(item)
    except RosterFull:
        session.send(error(iq, "wait", "resource-constraint"))
        return
    except RosterError:
        session.send(error(iq, "modify", "not-acceptable"))
        return

    def changed() -> None:
        session.send(result(iq))
        push(hub, owner, item, version)

    when_written(session, iq, roster.written(), changed)


def register(hub: Hub) -> None:
    """Handle ``jabber:iq:roster`` queries."""
    hub.register_iq(NS_ROSTER, "query", handle)
