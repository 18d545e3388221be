"""Blocking Command (XEP-0191): the account's block list, and stanzas
that it stops.

``<blocklist/>`` get answers the list (and marks the resource as wanting
pushes, §3.1); ``<block/>`` and ``<unblock/>`` (no items: everything)
change it, answered once the list is on disk, and are pushed to every
such resource (§3.2, §3.3).  A message
the user sends to a JID they block is refused with ``not-acceptable`` and
``<blocked/>`` (§3.2); a message or presence from a JID the recipient
blocks is not delivered (a message gets ``service-unavailable``, §3.3).
The list is the account's
(:class:`communigate.store.blocklist.BlockList`).
"""

from __future__ import annotations

from typing import Any

from twisted.words.xish import domish

from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.jid import JID, InvalidJID, block_candidates, parse
from communigate.protocols.xmpp.modules.replies import error, result, when_written
from communigate.protocols.xmpp.xmlstream import NS_CLIENT
from communigate.store.blocklist import BlockListFull

NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKED = "urn:xmpp:blocking:errors"


def _items(payload: domish.Element) -> list[str] | None:
    """The prepared JIDs of the payload's items; None if one is invalid."""
    found = []
    for item in payload.elements(NS_BLOCKING, "item"):
        try:
            found.append(str(parse(item.getAttribute("jid", ""))))
        except InvalidJID:
            return None
    return found


def _push(hub: Hub, owner: JID, name: str, jids: list[str]) -> None:
    for session in hub.resources(owner):
        if not session.features.get("blocklist"):
            continue
        iq = domish.Element((NS_CLIENT, "iq"))
        iq["type"], iq["id"], iq["to"] = "set", f"block-{id(iq)}", str(session.jid)
        payload = iq.addElement((NS_BLOCKING, name))
        for jid in jids:
            payload.addElement("item")["jid"] = jid
        session.send(iq)


def handle_list(hub: Hub, session: Any, iq: domish.Element, target: JID) -> None:
    """``<blocklist/>`` get (§3.1)."""
    if iq["type"] != "get" or target != session.jid.bare():
        session.send(error(iq, "cancel", "bad-request"))
        return
    session.features["blocklist"] = True
    reply = result(iq)
    payload = reply.addElement((NS_BLOCKING, "blocklist"))
    for jid in session.avatar.stores.blocklist.items():
        payload.addElement("item")["jid"] = jid
    session.send(reply)


def handle_change(hub: Hub, session: Any, iq: domish.Element, target: JID) -> None:
    """``<block/>`` or ``<unblock/>`` set (§3.2, §3.3)."""
    payload = next(iter(iq.elements()))
    jids = _items(payload)
    if iq["type"] != "set" or target != session.jid.bare() or jids is None:
        session.send(error(iq, "modify", "bad-request" if jids is not None else "jid-malformed"))
        return
    blocklist = session.avatar.stores.blocklist
    if payload.name == "block":
        if not jids:
            session.send(error(iq, "modify", "bad-request"))
            return
        try:
            changed = blocklist.block(jids)
        except BlockListFull:
            session.send(error(iq, "wait", "resource-constraint"))
            return
    else:
        changed = blocklist.unblock(jids or None)

    def answer() -> None:
        session.send(result(iq))
        if changed:
            _push(hub, session.jid.bare(), payload.name, jids)

    when_written(session, iq, blocklist.written(), answer)


class BlockingModule:
    """Stops what a block list forbids."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def message_out(self, session: Any, stanza: domish.Element) -> bool:
        """Refuse a message to a blocked JID, or to a user blocking the sender."""
        to = stanza.attributes.get("to")
        if not to:
            return False
        if session.avatar.stores.blocklist.blocks(block_candidates(to)):
            reply = error(stanza, "cancel", "not-acceptable")
            reply.error.addElement((NS_BLOCKED, "blocked"))
            del reply.attributes["to"]
            session.send(reply)
            return True
        target = self.hub.target(stanza)
        if target is None or target.local is None:
            return False
        stores = self.hub.target_stores(stanza, target)
        if stores is not None and stores.blocklist.blocks(block_candidates(str(session.jid))):
            self.hub.bounce(session, stanza, "cancel", "service-unavailable")
            return True
        return False

    def presence_in(self, session: Any, stanza: domish.Element) -> bool:
        """Drop presence from a JID the recipient blocks."""
        sender = stanza.attributes.get("from")
        return bool(sender) and session.avatar.stores.blocklist.blocks(block_candidates(sender))


def register(hub: Hub) -> None:
    """Handle the block list and enforce it on messages and presence."""
    module = BlockingModule(hub)
    hub.register_iq(NS_BLOCKING, "blocklist", handle_list)
    hub.register_iq(NS_BLOCKING, "block", handle_change)
    hub.register_iq(NS_BLOCKING, "unblock", handle_change)
    hub.on("message-out", module.message_out)
    hub.on("presence-in", module.presence_in)
