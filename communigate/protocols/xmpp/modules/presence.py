"""Presence (RFC 6121 §3, §4): broadcast, probes, directed presence and
subscriptions, between local accounts.

- Initial presence (§4.2): the session becomes available with its
  priority; its presence goes to the contacts with a subscription
  ``from`` the user, to the user's other available resources and back to
  itself; the presence of the contacts the user is subscribed ``to`` is
  delivered to it (the probe of §4.3, answered in process since every
  contact is local); subscription requests that waited are delivered
  again (§3.1.3); then the ``initial`` event fires (offline messages).
- Presence updates and ``unavailable`` (§4.4, §4.5) go the same way, and
  also to the full JIDs the session sent directed presence to (§4.6); a
  session that ends without saying so (logout, broken connection) sends
  ``unavailable`` for it.
- Subscription stanzas (§3) move both rosters by the tables of
  :mod:`communigate.protocols.xmpp.subscriptions` (Appendix A); each change
  is a roster push; a request arriving while the contact is offline stays
  in the contact's roster and is delivered at its next initial presence.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.words.xish import domish

from communigate.protocols.xmpp import subscriptions
from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.jid import JID, parse
from communigate.protocols.xmpp.modules.roster import push
from communigate.protocols.xmpp.subscriptions import SubState
from communigate.protocols.xmpp.xmlstream import NS_CLIENT
from communigate.store.roster import RosterItem


def _copy(stanza: domish.Element, sender: JID, to: JID) -> domish.Element:
    """A copy of ``stanza`` addressed from ``sender`` to ``to``."""
    copy = domish.Element((NS_CLIENT, stanza.name))
    for key, value in stanza.attributes.items():
        copy.attributes[key] = value
    for child in stanza.children:
        copy.children.append(child)
    copy["from"] = str(sender)
    copy["to"] = str(to)
    return copy


def _state(item: RosterItem | None) -> SubState:
    if item is None:
        return SubState.NONE
    return subscriptions.from_roster(item.subscription, item.ask, item.pending_in)


def _priority(stanza: domish.Element) -> int:
    for child in stanza.elements(NS_CLIENT, "priority"):
        text = str(child).strip()
        try:
            return max(-128, min(127, int(text)))
        except ValueError:
            return 0
    return 0


class PresenceModule:
    """Presence handling for one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def presence(self, session: Any, stanza: domish.Element) -> bool:
        """A presence stanza from a client."""
        kind = stanza.getAttribute("type")
        if kind in subscriptions.KINDS:
            if stanza.hasAttribute("to"):
                self.subscription(session, stanza, kind)
            return True
        if kind == "probe":
            return True
        if kind not in (None, "unavailable"):
            self.hub.bounce(session, stanza, "modify", "bad-request")
            return True
        if stanza.hasAttribute("to"):
            self.directed(session, stanza)
        else:
            self.broadcast(session, stanza)
        return True

    def deliver(self, session: Any, stanza: domish.Element) -> None:
        """Write a presence to a session unless a module stops it (a
        block list)."""
        if not self.hub.fire("presence-in", session, stanza):
            session.send(stanza)

    # -- availability ------------------------------------------------------

    def subscribers(self, owner: JID, roster: Any) -> list[JID]:
        """The contacts receiving the user's presence (subscription from)."""
        found = []
        for item in roster.items():
            if subscriptions.has_from(_state(item)):
                found.append(parse(item.jid))
        return found

    def broadcast(self, session: Any, stanza: domish.Element) -> None:
        """Initial presence, an update, or unavailable (§4.2, §4.4, §4.5)."""
        owner = session.jid.bare()
        roster = session.avatar.stores.roster
        initial = not session.available
        unavailable = stanza.getAttribute("type") == "unavailable"
        if unavailable:
            session.available = False
            session.presence = None
        else:
            session.available = True
            session.priority = _priority(stanza)
            session.presence = stanza
        for contact in self.subscribers(owner, roster):
            for other in self.hub.available(contact):
                self.deliver(other, _copy(stanza, session.jid, other.jid))
        for other in self.hub.resources(owner):
            if other.available or other is session:
                self.deliver(other, _copy(stanza, session.jid, other.jid))
        if unavailable:
            for target in list(session.directed or ()):
                directed = self.hub.session(target)
                if directed is not None:
                    self.deliver(directed, _copy(stanza, session.jid, target))
            session.directed = None
        elif initial:
            self.probe(session, roster)
            self.hub.fire("initial", session)

    def probe(self, session: Any, roster: Any) -> None:
        """The presence of the contacts the user is subscribed to (§4.3),
        and the subscription requests that waited (§3.1.3)."""
        for item in roster.items():
            state = _state(item)
            contact = parse(item.jid)
            if subscriptions.has_to(state):
                for other in self.hub.available(contact):
                    if other.presence is not None:
                        self.deliver(session, _copy(other.presence, other.jid, session.jid))
            if item.pending_in:
                request = domish.Element((NS_CLIENT, "presence"))
                request["type"] = "subscribe"
                request["from"] = item.jid
                request["to"] = str(session.jid)
                session.send(request)

    def directed(self, session: Any, stanza: domish.Element) -> None:
        """Directed presence (§4.6): to one JID, remembered until
        unavailable."""
        target = parse(stanza["to"])
        if target.resource is not None:
            other = self.hub.session(target)
            recipients = [other] if other is not None else []
        else:
            recipients = self.hub.available(target)
        for other in recipients:
            self.deliver(other, _copy(stanza, session.jid, other.jid))
            if stanza.getAttribute("type") == "unavailable":
                if session.directed is not None:
                    session.directed.discard(other.jid)
            elif session.directed is None:
                session.directed = {other.jid}
            else:
                session.directed.add(other.jid)

    def unbound(self, session: Any) -> None:
        """A session ended: unavailable for it, if it was available (not
        while the server stops: every other session ends with it)."""
        if session.available and not self.hub.stopping:
            gone = domish.Element((NS_CLIENT, "presence"))
            gone["type"] = "unavailable"
            self.broadcast(session, gone)

    # -- subscriptions -----------------------------------------------------

    def subscription(self, session: Any, stanza: domish.Element, kind: str) -> None:
        """A subscription stanza from the user (§3; Appendix A.2), then its
        arrival at the contact (Appendix A.3)."""
        user = session.jid.bare()
        contact = parse(stanza["to"]).bare()
        roster = session.avatar.stores.roster
        item = roster.get(str(contact))
        state = _state(item)
        new, routed = subscriptions.outbound(state, kind)
        if new != state or (kind == "subscribe" and item is not None and not item.listed):
            self.store(user, roster, str(contact), item, new)
        if not routed or not self.hub.is_account(contact):
            return
        self.arrive(user, contact, kind)

    def arrive(self, user: JID, contact: JID, kind: str) -> None:
        """A subscription stanza from ``user`` reaches ``contact``."""
        roster = self.hub.stores(contact).roster
        item = roster.get(str(user))
        state = _state(item)
        if kind == "subscribe" and subscriptions.auto_subscribed(state):
            self.arrive(contact, user, "subscribed")
            return
        new, delivered = subscriptions.inbound(state, kind)
        if new != state:
            self.store(contact, roster, str(user), item, new, listed=item is not None)
        if not delivered:
            return
        notice = domish.Element((NS_CLIENT, "presence"))
        notice["type"] = kind
        notice["from"] = str(user)
        for other in self.hub.available(contact):
            self.deliver(other, _copy(notice, user, other.jid))
        if kind == "subscribed":
            # §3.1.5: the new subscriber gets the user's current presence.
            for other in self.hub.available(contact):
                for source in self.hub.available(user):
                    if source.presence is not None:
                        self.deliver(other, _copy(source.presence, source.jid, other.jid))
        elif kind in ("unsubscribed", "unsubscribe"):
            gone = domish.Element((NS_CLIENT, "presence"))
            gone["type"] = "unavailable"
            sources, targets = (user, contact) if kind == "unsubscribed" else (contact, user)
            for source in self.hub.available(sources):
                for target in self.hub.available(targets):
                    self.deliver(target, _copy(gone, source.jid, target.jid))

    def store(
        self,
        owner: JID,
        roster: Any,
        contact: str,
        item: RosterItem | None,
        state: SubState,
        listed: bool = True,
    ) -> None:
        """Write the new state to the owner's roster and push it."""
        subscription, ask, pending_in = subscriptions.to_roster(state)
        current = item or RosterItem(contact, listed=listed)
        changed = replace(
            current,
            subscription=subscription,
            ask=ask,
            pending_in=pending_in,
            listed=current.listed or listed,
        )
        if not changed.listed and subscription == "none" and not ask and not pending_in:
            roster.remove(contact)
            return
        version = roster.set(changed)
        if changed.listed:
            push(self.hub, owner, changed, version)

    def removed(self, session: Any, contact: JID, item: RosterItem) -> None:
        """An item removed by the user (§2.5.2): cancel both ways."""
        state = _state(item)
        if subscriptions.has_to(state) or item.ask:
            self.arrive(session.jid.bare(), contact, "unsubscribe")
        if subscriptions.has_from(state) or item.pending_in:
            self.arrive(session.jid.bare(), contact, "unsubscribed")


def register(hub: Hub) -> None:
    """Handle presence; unavailable for sessions that end."""
    module = PresenceModule(hub)
    hub.on("presence", module.presence)
    hub.on("unbound", module.unbound)
    hub.on("roster-remove", module.removed)
