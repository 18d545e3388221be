"""Stream Management (XEP-0198): acknowledgements and resumption.

Misuse is answered with ``<failed/>`` and a stanza error condition, the
stream going on (§3, §5; the choices of Prosody's ``mod_smacks`` and of
ejabberd): ``not-authorized`` for anything before authentication,
``unexpected-request`` for ``<enable/>`` before resource binding or a
second time, ``<resume/>`` after binding, and ``<r/>`` or ``<a/>``
before ``<enable/>``.  An ``<a/>`` acknowledging more stanzas than the
server sent ends the stream with ``undefined-condition`` and
``<handled-count-too-high/>`` (§4); one behind an earlier acknowledgement
is stale and changes nothing (as Prosody).

After binding, ``<enable/>`` starts counting (§4): the stanzas the client
sent (``h`` in the server's ``<a/>`` answers to ``<r/>``) and the stanzas
sent to it, kept until the client acknowledges them (the server asks with
``<r/>`` every :data:`REQUEST_EVERY` stanzas).  With ``resume='true'`` a
connection that breaks leaves the session bound but asleep for
:data:`RESUME_TIMEOUT` seconds (§5): stanzas for it are kept; a new stream
of the same account that sends ``<resume previd=... h=...>`` instead of
binding takes the session over, is told ``<resumed/>`` and gets what the
client had not acknowledged.  A session not resumed in time ends then:
unavailable presence goes out, and the unacknowledged messages go to the
offline store (§5 recommends not losing them).  An account keeps at most
:data:`MAX_ASLEEP` sleeping sessions (Prosody's
``smacks_max_hibernated_sessions``): a client that keeps dropping its
connection cannot make the server hold sessions without bound; past it
the account's oldest sleeping session ends at once, as if it expired.
"""

from __future__ import annotations

import secrets
from collections import deque
from typing import Any

from twisted.words.xish import domish

from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.stream import NS_SM, NS_STANZAS, serialize

#: Seconds a broken session waits to be resumed (Prosody's default: 600).
RESUME_TIMEOUT = 300
#: Unacknowledged stanzas after which the server asks for an ack.
REQUEST_EVERY = 10
#: Most unacknowledged stanzas kept; past it the session is not resumable.
MAX_QUEUE = 500
#: Sleeping (resumable) sessions one account may have at once.
MAX_ASLEEP = 10
_MOD = 2**32


class SMState:
    """The counters and the unacknowledged stanzas of one session."""

    def __init__(self, session: Any, resumable: bool) -> None:
        self.session = session
        self.id = secrets.token_urlsafe(12)
        self.resumable = resumable
        self.handled_in = 0
        #: Stanzas sent to the client (mod 2^32) and those not yet acked.
        self.sent = 0
        self.unacked: deque[domish.Element] = deque()
        #: ``h`` of the client's last acknowledgement.
        self.acked = 0
        self.timer: Any = None

    def incoming(self) -> None:
        """A stanza from the client was handled."""
        self.handled_in = (self.handled_in + 1) % _MOD

    def outgoing(self, element: domish.Element) -> None:
        """A stanza goes (or would go) to the client: keep it until acked."""
        self.sent = (self.sent + 1) % _MOD
        if len(self.unacked) >= MAX_QUEUE:
            self.unacked.popleft()
            self.resumable = False
        self.unacked.append(element)
        if len(self.unacked) % REQUEST_EVERY == 0 and self.session.connected:
            self.session.write(f"<r xmlns='{NS_SM}'/>".encode())

    def possible(self, h: int) -> bool:
        """Whether ``h`` handled stanzas can be true: no more than were
        sent (an ``h`` behind an earlier acknowledgement is stale, not
        impossible)."""
        if (h - self.acked) % _MOD <= (self.sent - self.acked) % _MOD:
            return True
        # Past the last ack but not within what was sent: ahead of ``sent``
        # (too high) or behind ``acked`` (an old ack), whichever is nearer.
        return (h - self.sent) % _MOD >= _MOD // 2

    def acknowledged(self, h: int) -> bool:
        """The client has handled ``h`` stanzas in all (§4); False (and
        nothing changes) when that is more than were sent.  A stale ``h``
        (behind an earlier one) changes nothing."""
        if not self.possible(h):
            return False
        if (h - self.acked) % _MOD > (self.sent - self.acked) % _MOD:
            return True
        self.acked = h
        pending = (self.sent - h) % _MOD
        while len(self.unacked) > pending:
            self.unacked.popleft()
        return True


def _h(element: domish.Element) -> int | None:
    value = element.getAttribute("h", "")
    return int(value) % _MOD if value.isascii() and value.isdigit() else None


class SMModule:
    """Stream management for one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        #: Sleeping resumable sessions by stream management id, and the
        #: ids of each account's, oldest first.
        self.asleep: dict[str, Any] = {}
        self.accounts: dict[str, list[str]] = {}

    def element(self, session: Any, element: domish.Element) -> bool:
        """``<enable/>``, ``<r/>``, ``<a/>``, ``<resume/>``; one that comes
        too early or twice gets ``<failed/>`` and the stream goes on."""
        state: SMState | None = session.features.get("sm")
        if not session.authenticated:
            # §3: not before authentication (as ejabberd answers).
            session.write(_failed("not-authorized"))
        elif element.name == "resume":
            if session.bound:
                # §5: a resumption replaces binding, it cannot follow it.
                session.write(_failed("unexpected-request"))
            else:
                self.resume(session, element)
        elif not session.bound:
            # §3: the client enables stream management after binding.
            session.write(_failed("unexpected-request"))
        elif element.name == "enable":
            if state is not None:
                session.write(_failed("unexpected-request"))
                return True
            resumable = element.getAttribute("resume") in ("true", "1")
            state = SMState(session, resumable)
            session.features["sm"] = state
            session.features["sm-in"] = state.incoming
            session.features["sm-out"] = state.outgoing
            extra = f" id='{state.id}' resume='true' max='{RESUME_TIMEOUT}'" if resumable else ""
            session.write(f"<enabled xmlns='{NS_SM}'{extra}/>".encode())
        elif element.name == "r" and state is not None:
            session.write(f"<a xmlns='{NS_SM}' h='{state.handled_in}'/>".encode())
        elif element.name == "a" and state is not None:
            h = _h(element)
            if h is not None and not state.acknowledged(h):
                session.fail(
                    "undefined-condition",
                    "more stanzas acknowledged than were sent",
                    f"<handled-count-too-high xmlns='{NS_SM}' h='{h}' send-count='{state.sent}'/>",
                )
        else:
            # A second <enable/>, or <r/>/<a/> before <enable/>.
            session.write(_failed("unexpected-request"))
        return True

    def bound_now(self, session: Any) -> bool:
        """Whether ``session`` still holds its full JID in the hub."""
        return self.hub.session(session.jid) is session

    def lost(self, session: Any) -> bool:
        """The connection broke: keep a resumable session asleep (not
        while the server stops: it could not be resumed, so what it had not
        acknowledged goes to the offline store now)."""
        state: SMState | None = session.features.get("sm")
        if state is None:
            return False
        if not state.resumable or self.hub.stopping:
            self.rescue(session, state)
            return False
        self.asleep[state.id] = session
        state.timer = session.factory.reactor.callLater(RESUME_TIMEOUT, self.expire, session)
        sleeping = self.accounts.setdefault(session.avatar.account, [])
        sleeping.append(state.id)
        if len(sleeping) > MAX_ASLEEP:
            oldest = self.asleep.get(sleeping[0])
            if oldest is not None:
                self.expire(oldest)
        return True

    def _awake(self, session: Any, state: SMState) -> None:
        """``session`` sleeps no more (expired or resumed)."""
        self.asleep.pop(state.id, None)
        if state.timer is not None and state.timer.active():
            state.timer.cancel()
        state.timer = None
        account = session.avatar.account
        sleeping = self.accounts.get(account, [])
        if state.id in sleeping:
            sleeping.remove(state.id)
        if not sleeping:
            self.accounts.pop(account, None)

    def expire(self, session: Any) -> None:
        """Nobody resumed in time (or the account has too many sleeping
        sessions): the session ends for good."""
        state: SMState = session.features["sm"]
        self._awake(session, state)
        if not self.bound_now(session):  # replaced meanwhile
            session.end_asleep()
            return
        session.end_asleep()
        self.rescue(session, state)

    def rescue(self, session: Any, state: SMState) -> None:
        """The chat messages the client never acknowledged go to the
        account's offline store (XEP-0198 §5: not lost)."""
        messages = [stanza for stanza in state.unacked if stanza.name == "message"]
        state.unacked.clear()
        stores = session.avatar.stores
        for message in messages:
            if message.getAttribute("type", "normal") in ("chat", "normal"):
                self.hub.fire("offline", stores, message, None)

    def resume(self, session: Any, element: domish.Element) -> None:
        """``<resume/>`` (§5): take over a sleeping session of the same account."""
        old = self.asleep.get(element.getAttribute("previd", ""))
        h = _h(element)
        if (
            old is None
            or h is None
            or not self.bound_now(old)
            or session.avatar is None
            or old.avatar.account != session.avatar.account
        ):
            session.write(_failed("item-not-found"))
            return
        state: SMState = old.features["sm"]
        if not state.possible(h):
            # More acknowledged than was sent: not this session's client.
            session.write(_failed("undefined-condition"))
            return
        self._awake(old, state)
        state.acknowledged(h)
        session.take_over(old)
        state.session = session
        session.write(
            f"<resumed xmlns='{NS_SM}' h='{state.handled_in}' previd='{state.id}'/>".encode()
        )
        for stanza in list(state.unacked):
            session.write(serialize(stanza))


def _failed(condition: str) -> bytes:
    return f"<failed xmlns='{NS_SM}'><{condition} xmlns='{NS_STANZAS}'/></failed>".encode()


def register(hub: Hub) -> None:
    """Handle stream management."""
    module = SMModule(hub)
    hub.on("sm", module.element)
    hub.on("lost", module.lost)
    hub.features.add(NS_SM)
