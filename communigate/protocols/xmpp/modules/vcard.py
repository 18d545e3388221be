"""vcard-temp (XEP-0054): the account's vCard, stored and fetched.

A get to the user's own bare JID (or no ``to``) or to another account's
bare JID answers the stored ``<vCard/>`` (empty when there is none, as
§3.1 allows); a set stores the element the client sent, for its own
account only (``forbidden`` otherwise, ``not-acceptable`` past the store's
size bound), answered once it is on disk.
"""

from __future__ import annotations

from typing import Any

from twisted.words.xish import domish

from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.jid import JID
from communigate.protocols.xmpp.modules.offline import parse_stored
from communigate.protocols.xmpp.modules.replies import error, result, when_written

NS_VCARD = "vcard-temp"


def handle(hub: Hub, session: Any, iq: domish.Element, target: JID) -> None:
    """vCard get and set."""
    if target.local is None:
        target = session.jid.bare()
    own = target == session.jid.bare()
    stores = session.avatar.stores if own else hub.stores(target)
    if iq["type"] == "set":
        if not own:
            session.send(error(iq, "auth", "forbidden"))
            return
        card = next(iter(iq.elements()))
        try:
            written = stores.set_vcard(card.toXml().encode("utf-8"))
        except ValueError:
            session.send(error(iq, "modify", "not-acceptable"))
            return
        when_written(session, iq, written, lambda: session.send(result(iq)))
        return
    reply = result(iq)
    data = stores.vcard()
    stored = parse_stored(data) if data else None
    if stored is not None and stored.uri == NS_VCARD:
        reply.addChild(stored)
    else:
        reply.addElement((NS_VCARD, "vCard"))
    session.send(reply)


def register(hub: Hub) -> None:
    """Store and fetch vCards."""
    hub.register_iq(NS_VCARD, "vCard", handle)
