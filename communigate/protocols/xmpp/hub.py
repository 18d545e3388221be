"""The process-wide registry of bound XMPP sessions and the stanza router.

Every bound resource of every local account is here, by bare JID and
resource.  A client's stanza goes through :meth:`Hub.route`: the server
stamps its ``from`` (RFC 6120 §8.1.2.1), then

- a stanza for a remote domain gets ``remote-server-not-found`` (there is
  no server-to-server in this server, RFC 6120 §8.3.3.16);
- ``<iq/>`` addressed to the server, the account's own bare JID or another
  account's bare JID goes to the handler registered for its payload's
  namespace (:meth:`Hub.register_iq`); to a full JID it is delivered to
  that resource or answered ``service-unavailable`` (RFC 6121 §8.5.3.1);
- ``<message/>`` follows RFC 6121 §8.5 (:meth:`Hub.deliver_message`): to a
  full JID that is bound, to that resource; to a bare JID (or an unbound
  full JID), for ``chat``/``normal`` to the available resource(s) of the
  highest non-negative priority, ``headline`` to all of them, and with none
  available into the account's offline store; ``groupchat`` is
  ``service-unavailable``; a message to no account is
  ``service-unavailable``;
- ``<presence/>`` goes to whatever registered for the ``presence`` event
  (:mod:`.presence`).

The hub is an event bus (Prosody's ``module:hook``): feature modules
register handlers for events (:meth:`Hub.on`) and iq namespaces; the
stream core (:mod:`.server`) knows none of them.  Events fired:

``bound(session)``, ``unbound(session)``, ``presence(session, stanza)``
(a client's presence), ``presence-in(session, stanza)`` (a presence about
to be written to a session; True drops it), ``initial(session)`` (initial
presence was broadcast), ``message-out(session, stanza)`` (True stops it),
``message-in(session, stanza)`` (a message delivered to a session, before
it is written; True drops it), ``offline(stores, stanza, sender)``
(True once stored; ``sender`` is the client session it came from, or
None), ``roster-remove(session, contact, item)``, ``sm(session,
element)`` (a stream management element), ``lost(session)`` (the
connection broke; True keeps the session bound, asleep).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.words.xish import domish

from communigate.portal.xmppsession import XMPPDirectory
from communigate.protocols.xmpp.jid import JID, InvalidJID, parse
from communigate.protocols.xmpp.stream import serialize, stanza_error

#: Handler of an iq payload: (hub, session, iq, target bare JID) → None.
IQHandler = Callable[[Any, Any, domish.Element, JID], None]


class Session(Protocol):
    """What the hub needs of a bound client session."""

    jid: JID
    #: The priority of its last available presence (RFC 6121 §4.7.2.3).
    priority: int
    #: Whether it sent initial presence and has not gone unavailable.
    available: bool
    #: Its last broadcast available presence, for probes.
    presence: domish.Element | None
    avatar: Any
    #: Per-session state of the feature modules, by name.
    features: dict[str, Any]
    #: Full JIDs it sent directed presence to (RFC 6121 §4.6), None if none.
    directed: set[JID] | None

    def send(self, element: domish.Element) -> None:
        """Write a stanza to the client."""

    def hold(self, done: Deferred[None]) -> None:
        """Handle nothing more from the client until ``done`` fires (it
        takes the result): what a stanza's handler answers once a write is
        durable goes out before the answers to what came after it."""

    def replaced(self) -> None:
        """Another session bound the same full JID: end with ``conflict``."""


#: Not looked up yet (None is an answer: no account).
_UNKNOWN: Any = object()


def _message_type(stanza: domish.Element) -> str:
    value = stanza.attributes.get("type", "normal")
    return value if value in ("chat", "error", "groupchat", "headline", "normal") else "normal"


class Hub:
    """Bound sessions by JID, the event bus and the router."""

    log = Logger()

    def __init__(self, contacts: XMPPDirectory) -> None:
        self.contacts = contacts
        self._sessions: dict[JID, dict[str, Session]] = {}
        self._iq: dict[tuple[str, str], IQHandler] = {}
        self._hooks: dict[str, list[Callable[..., Any]]] = {}
        #: disco#info features the modules announce (XEP-0030): for the
        #: server, and for an account's bare JID.
        self.features: set[str] = set()
        self.account_features: set[str] = set()
        #: The server is stopping: every session is about to end, so none
        #: is told of the others' going, and none sleeps to be resumed.
        self.stopping = False
        #: The message being routed, its prepared target (None without a
        #: ``to``), the stores of the target's account once looked up
        #: (:meth:`target_stores`), and its bytes once serialized
        #: (:meth:`serialized`).
        self._routing: domish.Element | None = None
        self._target: JID | None = None
        self._stores: Any = _UNKNOWN
        self._wire: bytes | None = None

    # -- the bus -----------------------------------------------------------

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        """Call ``handler`` whenever ``event`` fires."""
        self._hooks.setdefault(event, []).append(handler)

    def fire(self, event: str, *args: Any) -> bool:
        """Run the handlers of ``event`` in order; True as soon as one
        returns True (it took the event)."""
        for handler in self._hooks.get(event, ()):
            if handler(*args):
                return True
        return False

    def register_iq(self, namespace: str, name: str, handler: IQHandler) -> None:
        """Handle iq get/set whose payload is ``{namespace}name``."""
        self._iq[namespace, name] = handler
        self.features.add(namespace)

    # -- sessions ----------------------------------------------------------

    def bind(self, session: Session) -> None:
        """Register a session under its full JID; a session bound there
        before is replaced (RFC 6120 §7.7.2.2: the new one wins)."""
        bare = session.jid.bare()
        resources = self._sessions.setdefault(bare, {})
        old = resources.get(session.jid.resource or "")
        if old is not None and old is not session:
            self.unbind(old)
            old.replaced()
            resources = self._sessions.setdefault(bare, {})
        resources[session.jid.resource or ""] = session
        self.fire("bound", session)

    def unbind(self, session: Session) -> None:
        """Forget a session (logout, broken connection, replaced)."""
        bare = session.jid.bare()
        resources = self._sessions.get(bare)
        if resources is None or resources.get(session.jid.resource or "") is not session:
            return
        self.fire("unbound", session)
        resources = self._sessions.get(bare, {})
        if resources.get(session.jid.resource or "") is session:
            del resources[session.jid.resource or ""]
        if not resources:
            self._sessions.pop(bare, None)

    def swap(self, old: Session, new: Session) -> None:
        """``new`` continues ``old`` under the same full JID, with no
        event (stream management resumption)."""
        resources = self._sessions.get(old.jid.bare(), {})
        if resources.get(old.jid.resource or "") is old:
            resources[old.jid.resource or ""] = new

    def session(self, jid: JID) -> Session | None:
        """The session bound to a full JID."""
        return self._sessions.get(jid.bare(), {}).get(jid.resource or "")

    def resources(self, bare: JID) -> list[Session]:
        """Every bound session of an account."""
        return list(self._sessions.get(bare.bare(), {}).values())

    def count(self, bare: JID) -> int:
        """How many sessions of an account are bound."""
        return len(self._sessions.get(bare.bare(), ()))

    def available(self, bare: JID) -> list[Session]:
        """The sessions of an account that sent available presence."""
        return [session for session in self.resources(bare) if session.available]

    def all_sessions(self) -> Iterator[Session]:
        """Every bound session."""
        for resources in list(self._sessions.values()):
            yield from list(resources.values())

    def __len__(self) -> int:
        return sum(len(resources) for resources in self._sessions.values())

    # -- addresses ---------------------------------------------------------

    def local(self, jid: JID) -> JID | None:
        """``jid`` with its domain's real name if the domain is local
        (domain aliases become the domain), else None."""
        domain = self.contacts.domain(jid.domain)
        if domain is None:
            return None
        if domain == jid.domain:
            return jid
        return JID(jid.local, domain, jid.resource)

    def is_account(self, jid: JID) -> bool:
        """Whether a (local) JID's bare part is a local account."""
        return jid.local is not None and self.contacts.is_account(jid.domain, jid.local)

    def account_stores(self, jid: JID) -> Any:
        """The stores of the local account of ``jid``, None when it is no
        account: through a bound session when there is one (no directory
        lookup on the path of every message)."""
        resources = self._sessions.get(jid.bare())
        if resources:
            return next(iter(resources.values())).avatar.stores
        if not self.is_account(jid):
            return None
        return self.stores(jid)

    def stores(self, jid: JID) -> Any:
        """The stores of the local account of ``jid``."""
        assert jid.local is not None
        return self.contacts.stores(jid.domain, jid.local)

    # -- routing -----------------------------------------------------------

    def route(self, session: Session, stanza: domish.Element) -> None:
        """A stanza from a bound client (see the module documentation)."""
        # The attributes dictionary itself, not domish's item access: a
        # plain name needs none of its namespace handling, and routing is
        # the path of every stanza.
        attributes = stanza.attributes
        attributes["from"] = str(session.jid)
        target: JID | None = None
        to = attributes.get("to")
        if to is not None:
            try:
                parsed = parse(to)
            except InvalidJID:
                self.bounce(session, stanza, "modify", "jid-malformed")
                return
            target = self.local(parsed)
            if target is None:
                self.bounce(session, stanza, "cancel", "remote-server-not-found")
                return
            attributes["to"] = str(target)
        if stanza.name == "presence":
            self.fire("presence", session, stanza)
        elif stanza.name == "message":
            outer = self._routing, self._target, self._stores, self._wire
            self._routing, self._target, self._stores, self._wire = stanza, target, _UNKNOWN, None
            try:
                if self.fire("message-out", session, stanza):
                    return
                self.deliver_message(stanza, target or session.jid.bare(), session)
            finally:
                self._routing, self._target, self._stores, self._wire = outer
        elif stanza.name == "iq":
            self.route_iq(session, stanza, target)

    def target(self, stanza: domish.Element) -> JID | None:
        """The prepared JID a message is addressed to, None if it names
        none (or an invalid one): for the message being routed the
        router's own, with no second parse."""
        if stanza is self._routing:
            return self._target
        to = stanza.attributes.get("to")
        if not to:
            return None
        try:
            return parse(to)
        except InvalidJID:
            return None

    def target_stores(self, stanza: domish.Element, target: JID) -> Any:
        """:meth:`account_stores` of a message's ``target`` (from
        :meth:`target`), looked up once for the message being routed
        however many modules (and the offline store) ask."""
        if stanza is not self._routing or target is not self._target:
            return self.account_stores(target)
        if self._stores is _UNKNOWN:
            self._stores = self.account_stores(target)
        return self._stores

    def serialized(self, stanza: domish.Element) -> bytes:
        """:func:`~communigate.protocols.xmpp.stream.serialize`; the message
        being routed is serialized once for its archive and its delivery
        alike (no module changes a message between the two: one that adds
        to it for a purpose, such as offline storage, serializes itself)."""
        if stanza is not self._routing:
            return serialize(stanza)
        if self._wire is None:
            self._wire = serialize(stanza)
        return self._wire

    def bounce(
        self, session: Session, stanza: domish.Element, error_type: str, condition: str
    ) -> None:
        """Answer a stanza with an error, unless it is an error itself
        (RFC 6120 §8.3.1) or an iq result."""
        if stanza.getAttribute("type") in ("error", "result"):
            return
        reply = stanza_error(stanza, error_type, condition)
        if reply.hasAttribute("to"):
            del reply.attributes["to"]
        session.send(reply)

    def route_iq(self, session: Session, iq: domish.Element, target: JID | None) -> None:
        """RFC 6121 §8.5.1 (server), §8.5.2.1.3 (bare JID), §8.5.3.1 (full JID)."""
        kind = iq.getAttribute("type")
        if kind not in ("get", "set", "result", "error"):
            self.bounce(session, iq, "modify", "bad-request")
            return
        if target is not None and target.resource is not None and target.local is not None:
            other = self.session(target)
            if other is not None:
                other.send(iq)
            elif kind in ("get", "set"):
                self.bounce(session, iq, "cancel", "service-unavailable")
            return
        if kind in ("result", "error"):
            return
        payloads = list(iq.elements())
        if len(payloads) != 1:
            self.bounce(session, iq, "modify", "bad-request")
            return
        payload = payloads[0]
        if target is None:
            target = session.jid.bare()
        elif target.local is not None and not self.is_account(target):
            self.bounce(session, iq, "cancel", "service-unavailable")
            return
        handler = self._iq.get((payload.uri or "", payload.name))
        if handler is None:
            self.bounce(session, iq, "cancel", "service-unavailable")
            return
        handler(self, session, iq, target.bare())

    def deliver_message(
        self, stanza: domish.Element, target: JID, sender: Session | None = None
    ) -> None:
        """RFC 6121 §8.5.2 and §8.5.3.2 for a message to a local JID."""
        kind = _message_type(stanza)
        if target.local is None:
            if sender is not None:
                self.bounce(sender, stanza, "cancel", "service-unavailable")
            return
        if target.resource is not None:
            other = self.session(target)
            if other is not None:
                self.send_message(other, stanza)
                return
            if kind == "groupchat" and sender is not None:
                self.bounce(sender, stanza, "cancel", "service-unavailable")
                return
            if kind == "error":
                return
        if target.bare() not in self._sessions and not self.is_account(target):
            if sender is not None and kind not in ("headline",):
                self.bounce(sender, stanza, "cancel", "service-unavailable")
            return
        if kind == "groupchat":
            if sender is not None:
                self.bounce(sender, stanza, "cancel", "service-unavailable")
            return
        if kind == "error":
            return
        candidates = [session for session in self.available(target) if session.priority >= 0]
        if candidates:
            if kind != "headline":
                top = max(session.priority for session in candidates)
                candidates = [session for session in candidates if session.priority == top]
            for session in candidates:
                self.send_message(session, stanza)
            return
        if kind == "headline":
            return
        stores = self.target_stores(stanza, target)
        if not self.fire("offline", stores, stanza, sender) and sender is not None:
            self.bounce(sender, stanza, "cancel", "service-unavailable")

    def send_message(self, session: Session, stanza: domish.Element) -> None:
        """Write a message to a session unless a module takes it."""
        if not self.fire("message-in", session, stanza):
            session.send(stanza)
