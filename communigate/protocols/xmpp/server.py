"""The XMPP client-to-server protocol (RFC 6120) on Twisted, and its factory.

One :class:`XMPPServer` per connection drives the negotiation state machine
of :mod:`.stream` with the parser of :mod:`.xmlstream`:

- the stream header's ``to`` names the domain (a domain alias becomes its
  domain; an unknown one is ``host-unknown``); a bare login name takes it
  (the connection's ``server_name`` is that domain, so the portal resolves
  bare names there), and STARTTLS serves its certificate (SNI still wins);
- STARTTLS (RFC 6120 §5) is required before SASL unless the domain's
  ``ClearTextLogin`` is ``Always``; on ``--xmpps`` (XEP-0368) the link is
  TLS from the first byte;
- SASL (§6) runs the one SASL layer every protocol shares
  (:class:`~communigate.protocols.saslexchange.SASLExchange`) in XMPP's
  framing; the mechanisms are those the domain advertises on this link;
  lockout, client addresses and AccessModes (service ``XMPP``) are the
  portal's; a refused login is ``not-authorized`` (``account-disabled``
  for a service that is off, ``temporary-auth-failure``), and after
  :data:`MAX_FAILURES` refusals the stream ends;
- resource binding (§7): a resource the client asks for (prepared by RFC
  7622) or a random one; a second session with the same full JID replaces
  the first, which ends with ``conflict`` (§7.7.2.2);
- after binding, stanzas go to the :class:`~.hub.Hub` and its feature
  modules.

Limits are the shared ones (:mod:`communigate.protocols.limits`, protocol
``xmpp``): ``MaxLineLength`` is the largest stanza (default 256 KiB, a
larger one is ``policy-violation``), the login deadline until SASL
succeeds (``connection-timeout``), ``IdleTimeout`` (default 10 minutes;
clients send whitespace keepalives, RFC 6120 §4.6.1).  The client's input
waits while an answer waits for a durable write (:meth:`XMPPServer.hold`)
and while the client does not read what was sent to it
(:class:`OutputGate`).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections import deque
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.xish import domish
from zope.interface import implementer

from communigate.cred.errors import LoginFailure, ServiceDisabled
from communigate.cred.sasl import registry
from communigate.portal.xmppsession import IXMPPAccount
from communigate.protocols.access import LoginService
from communigate.protocols.limits import Limits, LimitsReader, SessionTimers
from communigate.protocols.saslexchange import SASLAborted, SASLExchange, SASLMalformed
from communigate.protocols.tls import for_domain, switch_to_tls
from communigate.protocols.xmpp import stream
from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.jid import JID, InvalidJID, make
from communigate.protocols.xmpp.stream import NS_BIND, NS_SESSION, NS_SM, State
from communigate.protocols.xmpp.xmlstream import (
    NS_CLIENT,
    Event,
    StanzaReceived,
    StreamClosed,
    StreamOpened,
    StreamViolation,
    XMLStreamParser,
)
from communigate.protocols.xmpp.xmlstream import Limits as ParserLimits

#: The defaults of the ``xmpp`` connection limits (max_line: stanza size).
DEFAULT_LIMITS = Limits(max_line=256 * 1024, idle_timeout=10 * 60)
#: Refused logins on one stream before it ends (RFC 6120 §6.4.5 allows a
#: configurable number of retries).
MAX_FAILURES = 3
#: Bytes written to a client that does not read, past the transport's own
#: buffer and for longer than :data:`UNREAD_GRACE`, before its connection
#: is dropped (a stream management client gets the unacknowledged stanzas
#: again when it resumes; they go to its offline store if it does not).
MAX_UNREAD = 4 * 1024 * 1024
#: Seconds a full send buffer may stay full before :data:`MAX_UNREAD`
#: counts: a burst written in one go (offline messages, an archive page)
#: fills it for a moment even for a client that reads.
UNREAD_GRACE = 30.0
#: Parsed stanzas a client may have waiting while the server checks its
#: login (reading goes on meanwhile): past them, ``policy-violation``.
MAX_PENDING = 10_000
#: What a stream may send before its session is bound, in largest stanzas
#: (``MaxLineLength``): headers, STARTTLS, SASL and bind take a few KiB, a
#: Kerberos ticket included, and one SASL response as large as a stanza
#: may be is refused as a login; more is policy-violation.  Until the
#: session is bound its parser is never dropped between stanzas, and expat
#: keeps every name and namespace prefix it has seen.
BEFORE_BOUND_STANZAS = 2.0


class _Clear:
    """Something with ``clear()`` for :func:`switch_to_tls`: drops the
    events a server has pending."""

    def __init__(self, server: XMPPServer) -> None:
        self.server = server

    def clear(self) -> None:
        self.server.pending = ()


@implementer(IPushProducer)
class OutputGate:
    """Reads nothing more from a client while what the server wrote to it
    waits in the send buffer (the client does not read): its requests
    cannot make the server buffer without bound (an archive query, a
    roster get).  The transport pauses and resumes it."""

    def __init__(self, server: XMPPServer) -> None:
        self.server = server
        self.waiting: Deferred[None] | None = None
        #: Bytes written since the send buffer filled, and when it filled.
        self.unread = 0
        self.since = 0.0

    def pauseProducing(self) -> None:
        """The send buffer is full: hold the client's input."""
        if self.waiting is None:
            self.since = self.server.factory.reactor.seconds()
            self.waiting = Deferred()
            self.server.hold(self.waiting)

    def resumeProducing(self) -> None:
        """The send buffer drained: go on."""
        self.unread = 0
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.callback(None)

    def stopProducing(self) -> None:
        """The connection is gone."""
        self.resumeProducing()


class XMPPServer(Protocol):
    """One client-to-server stream; once bound, a hub session."""

    log = Logger()
    factory: XMPPFactory
    # Thousands of idle sessions: their state in slots, not in a dict each
    # (Twisted's own attributes still go to the instance dictionary).
    __slots__ = (
        "authenticated",
        "available",
        "avatar",
        "bound",
        "busy",
        "connection",
        "directed",
        "domain",
        "exchange",
        "failures",
        "features",
        "gate",
        "header_sent",
        "holds",
        "jid",
        "logout",
        "mechanisms",
        "parser",
        "pending",
        "presence",
        "priority",
        "received_before_bound",
        "running",
        "secure",
        "state",
        "stream_id",
        "timers",
        "tls_settled",
        "uncounted",
    )

    def __init__(self) -> None:
        self.state = State.HEADER
        self.secure = False
        self.tls_settled = False
        self.authenticated = False
        self.connection: Any = None
        self.domain: str | None = None
        self.stream_id = ""
        self.header_sent = False
        self.parser: XMLStreamParser | None = None
        #: Octets received before the session was bound (see
        #: :data:`BEFORE_BOUND_STANZAS`).
        self.received_before_bound = 0
        self.timers: SessionTimers | None = None
        self.exchange: SASLExchange | None = None
        self.failures = 0
        #: The SASL mechanisms offered on this stream (RFC 6120 §6.4.1).
        self.mechanisms: list[str] = []
        #: Events parsed and not yet handled: a deque while there are some,
        #: an empty tuple otherwise (an idle session keeps no 760-byte deque).
        self.pending: deque[Event] | tuple[()] = ()
        #: Whether :meth:`run` is handling events now.
        self.running = False
        self.busy = False
        # The hub session (RFC 6121 state of this resource).
        self.avatar: Any = None
        self.logout: Any = None
        self.jid: JID = JID(None, "invalid")
        self.bound = False
        self.priority = 0
        self.available = False
        self.presence: domish.Element | None = None
        #: Full JIDs this session sent directed presence to (RFC 6121 §4.6).
        #: None until the first (most sessions never send one).
        self.directed: set[JID] | None = None
        #: Per-session state of feature modules (carbons, stream management).
        self.features: dict[str, Any] = {}
        #: Writes the client waits for (:meth:`hold`), and the stanzas
        #: handled meanwhile that XEP-0198 counts once they are done.
        self.holds = 0
        self.uncounted = 0
        self.gate: OutputGate | None = None

    @property
    def service(self) -> LoginService:
        """The login service of this server."""
        return self.factory.service

    @property
    def hub(self) -> Hub:
        """The process's hub of bound sessions."""
        return self.factory.hub

    # -- connection --------------------------------------------------------

    def connectionMade(self) -> None:
        """Apply the limits and start the timers; wait for the header."""
        # Answers written in two turns (the stream header, then its
        # features after a login check) would otherwise wait for the
        # client's delayed ACK of the first.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.secure = self.factory.implicit_tls
        self.connection = self.service.connection(self.transport, "xmpp", self.secure)
        limits = self.factory.limits()
        self.parser = XMLStreamParser(ParserLimits(max_stanza=limits.max_line))
        self.timers = SessionTimers(self.factory.reactor, limits, self.timed_out)
        self.timers.start()
        self.gate = OutputGate(self)
        self.transport.registerProducer(self.gate, True)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        """Parse, then handle the events in order (some wait for a login)."""
        if self.timers is not None:
            self.timers.activity()
        if self.secure and not self.tls_settled:
            self.tls_settled = True
            self.connection = self.service.connection(self.transport, "xmpp", True)
        if self.parser is None or self.state is State.CLOSED:
            return
        if self.state is not State.SESSION:
            self.received_before_bound += len(data)
            largest = self.parser.limits.max_stanza
            if self.received_before_bound > BEFORE_BOUND_STANZAS * largest:
                self.parser.close()
                self.fail("policy-violation", "too much data before binding")
                return
        try:
            events = self.parser.feed(data)
        except StreamViolation as violation:
            self.fail(violation.condition, violation.text)
            return
        if events:
            if isinstance(self.pending, deque):
                self.pending.extend(events)
            else:
                self.pending = deque(events)
            if len(self.pending) > MAX_PENDING:
                self.pending = ()
                self.fail("policy-violation", "too many stanzas waiting")
                return
        self.run()
        if not self.pending:
            self.pending = ()
        if self.state is State.SESSION and self.parser is not None:
            # A bound session spends most of its life idle between stanzas.
            self.parser.release()

    def run(self) -> None:
        """Handle pending events until one has to wait.  Called again from
        inside (a login or a write that finished at once), it leaves the
        work to the loop already running rather than recursing."""
        if self.running:
            return
        self.running = True
        try:
            while (
                self.pending and not self.busy and not self.holds and self.state is not State.CLOSED
            ):
                assert isinstance(self.pending, deque)
                self.event(self.pending.popleft())
        finally:
            self.running = False

    def event(self, event: Event) -> None:
        """One parser event."""
        if type(event) is StanzaReceived:  # nearly every event
            self.stanza(event.element)
        elif isinstance(event, StreamOpened):
            self.opened(event)
        elif isinstance(event, StreamClosed):
            self.write(stream.CLOSE)
            self.close()

    def write(self, data: bytes) -> None:
        """Bytes to the client; one that has left :data:`MAX_UNREAD` bytes
        unread beyond a send buffer full for :data:`UNREAD_GRACE` seconds
        loses its connection (as a broken one: a resumable session
        sleeps)."""
        if self.transport is None or self.state is State.CLOSED:
            return
        gate = self.gate
        if gate is not None and gate.waiting is not None:
            gate.unread += len(data)
            if (
                gate.unread > MAX_UNREAD
                and self.factory.reactor.seconds() - gate.since > UNREAD_GRACE
            ):
                self.log.info(
                    "XMPP client {peer} leaves {unread} bytes unread: connection dropped",
                    peer=self.connection.remote_host if self.connection else None,
                    unread=gate.unread,
                )
                self.pending = ()
                self.state = State.CLOSED
                self.transport.abortConnection()  # type: ignore[attr-defined]
                return
        self.transport.write(data)

    def send(self, element: domish.Element) -> None:
        """A stanza to the client (a hub session's output)."""
        if self.fire_out(element):
            return
        self.write(self.hub.serialized(element))

    def fire_out(self, element: domish.Element) -> bool:
        """Let stream management count an outgoing stanza."""
        counter = self.features.get("sm-out")
        if counter is not None:
            counter(element)
        return False

    def fail(self, condition: str, text: str = "", specific: str = "") -> None:
        """A stream error (RFC 6120 §4.9; ``specific``: an application
        condition element), then the end of the stream."""
        if not self.header_sent:
            self.write(stream.error_header(self.stream_id or self.new_id()))
            self.header_sent = True
        self.write(stream.stream_error(condition, text, specific))
        self.close()

    def close(self) -> None:
        """Stop reading and close the connection."""
        self.pending = ()
        self.state = State.CLOSED
        if self.transport is not None:
            self.transport.loseConnection()

    def new_id(self) -> str:
        """A fresh stream id (RFC 6120 §4.7.3: unpredictable)."""
        self.stream_id = secrets.token_hex(8)
        return self.stream_id

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Unbind (unavailable presence goes out), cancel, log out."""
        self.state = State.CLOSED
        self.connected = False
        if self.parser is not None:
            self.parser.close()
        if self.timers is not None:
            self.timers.stop()
        if self.exchange is not None:
            self.exchange.cancel()
            self.exchange = None
        if self.bound and self.hub.fire("lost", self):
            return  # asleep until resumed (XEP-0198) or expired
        self.end_asleep()

    def end_asleep(self) -> None:
        """The session ends for good: unbind (unavailable presence goes
        out), log out."""
        if self.bound:
            self.bound = False
            self.hub.unbind(self)
        if self.logout is not None:
            self.logout()
            self.logout = None

    def take_over(self, old: XMPPServer) -> None:
        """Continue the session of ``old``, whose connection broke
        (XEP-0198 resumption): its JID, presence and module state move
        here; its avatar is logged out (this stream logged in anew)."""
        self.jid, self.priority, self.available = old.jid, old.priority, old.available
        self.presence, self.directed, self.features = old.presence, old.directed, old.features
        self.bound, old.bound = True, False
        self.state = State.SESSION
        self.hub.swap(old, self)
        old.end_asleep()

    def timed_out(self, why: str) -> None:
        """The login deadline or the idle time passed."""
        self.fail("connection-timeout", why)

    def ended_from_outside(self, reason: str) -> None:
        """The account was deleted."""
        self.fail("not-authorized", reason)

    def replaced(self) -> None:
        """Another stream bound this full JID (RFC 6120 §7.7.2.2)."""
        self.bound = False
        if not self.connected:  # asleep (XEP-0198): nobody to tell
            self.end_asleep()
            return
        self.fail("conflict", "replaced by a new session")

    # -- negotiation -------------------------------------------------------

    def opened(self, event: StreamOpened) -> None:
        """The client's header: check it, answer with ours and features."""
        if self.state is not State.HEADER:
            self.fail("invalid-xml", "a second stream header")
            return
        check = stream.check_header(event.namespace, event.name, event.attributes)
        domain = self.hub.contacts.domain(check.domain) if check.domain else None
        if check.error is None and domain is None:
            check = stream.HeaderCheck(None, "host-unknown")
        if check.error is not None or domain is None:
            self.fail(check.error or "host-unknown")
            return
        if self.domain is not None and domain != self.domain:
            self.fail("host-unknown", "the domain changed during negotiation")
            return
        self.domain = domain
        if self.connection.server_name != domain:
            # Only when it changes: after SASL the login's own record (kept
            # in the session table) stays the one this stream holds.
            self.connection = replace(self.connection, server_name=domain)
        # §4.7.1: the response names the domain as the client asked for it
        # (a domain alias stays an alias here; the JIDs use the domain).
        self.write(stream.header(check.domain or domain, self.new_id()))
        self.header_sent = True
        if self.authenticated:
            self.write(stream.features_after_auth())
            self.state = State.BINDING
            return
        tls = self.factory.tls is not None and not self.secure
        required = tls and self.tls_required()
        # Nothing but STARTTLS is offered while TLS is required (§5.3.1).
        self.mechanisms = [] if required else self.service.mechanisms(self.connection)
        self.write(stream.features_before_auth(tls, required, self.mechanisms))
        self.state = State.NEGOTIATING

    def tls_required(self) -> bool:
        """Whether this clear link must do STARTTLS before SASL: unless the
        domain's ``ClearTextLogin`` is ``Always``."""
        if self.secure or self.factory.tls is None:
            return False
        mode = self.service.domain_settings(self.connection).get("ClearTextLogin", "Secure")
        return str(mode).lower() != "always"

    def stanza(self, element: domish.Element) -> None:
        """A first-level element, checked against the state machine."""
        if not stream.allowed(self.state, element):
            self.fail(stream.unexpected_condition(self.state, element))
            return
        if element.uri == NS_SM:
            self.hub.fire("sm", self, element)
            return
        if self.state is State.NEGOTIATING:
            if element.name == "starttls":
                self.starttls()
            else:
                self.auth(element)
        elif self.state is State.SASL:
            self.sasl_step(element)
        elif self.state is State.BINDING:
            self.binding(element)
        else:
            self.hub.route(self, element)
            if self.holds:
                self.uncounted += 1
            else:
                self.count_handled()

    def count_handled(self) -> None:
        """A client stanza is handled (XEP-0198 §4: ``h`` counts it)."""
        counter = self.features.get("sm-in")
        if counter is not None:
            counter()

    def hold(self, done: Deferred[None]) -> None:
        """Read and handle nothing more from the client until ``done``
        fires (a durable write a stanza's answer waits for; the handler's
        own callbacks come first, and ``done``'s result ends here)."""
        self.holds += 1
        if self.holds == 1 and self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        done.addBoth(self._released)

    def _released(self, result: object) -> None:
        """A write the client waited for is done: go on with its input."""
        if isinstance(result, Failure):
            self.log.failure("XMPP answer after a write failed", result)
        self.holds -= 1
        if self.holds:
            return
        for _ in range(self.uncounted):
            self.count_handled()
        self.uncounted = 0
        if self.state is State.CLOSED:
            return
        if self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]
        self.run()

    def starttls(self) -> None:
        """RFC 6120 §5.4.2.3: proceed, then TLS; what was pipelined behind
        ``<starttls/>`` in plaintext is dropped."""
        if self.secure or self.factory.tls is None or self.domain is None:
            self.write(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            self.write(stream.CLOSE)
            self.close()
            return
        self.write(stream.PROCEED)
        switch_to_tls(self.transport, for_domain(self.factory.tls, self.domain), _Clear(self))
        assert self.parser is not None
        self.parser.reset()
        self.secure = True
        self.tls_settled = False
        self.state = State.HEADER
        self.connection = replace(
            self.service.connection(self.transport, "xmpp", True), server_name=self.domain
        )

    def auth(self, element: domish.Element) -> None:
        """``<auth mechanism='...'>`` (RFC 6120 §6.4.2)."""
        if self.tls_required():
            self.write(stream.sasl_failure("encryption-required"))
            return
        name = element.getAttribute("mechanism", "").upper()
        service = self.service
        if name not in self.mechanisms:
            clear = name in registry.CLEAR_TEXT and not service.clear_text_allowed(self.connection)
            self.write(stream.sasl_failure("encryption-required" if clear else "invalid-mechanism"))
            return
        mechanism = registry.create(name, service.exchange_context(self.connection, self.transport))
        if mechanism is None:
            self.write(stream.sasl_failure("invalid-mechanism"))
            return
        text = str(element).strip()
        initial: bytes | None = None
        if text:
            try:
                initial = b"" if text == "=" else base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                self.write(stream.sasl_failure("incorrect-encoding"))
                return
        self.state = State.SASL
        self.busy = True
        self.exchange = SASLExchange(
            mechanism,
            service,
            IXMPPAccount,
            self._challenge,
            self._exchange_done,
            additional_in_success=True,
        )
        self.exchange.start(initial)

    def sasl_step(self, element: domish.Element) -> None:
        """``<response/>`` or ``<abort/>`` during an exchange."""
        if self.exchange is None:
            self.fail("not-authorized")
            return
        self.busy = True
        if element.name == "abort":
            self.exchange.line(b"*")
        else:
            self.exchange.line(str(element).strip().encode("ascii", "replace"))

    def _challenge(self, data: bytes) -> None:
        self.write(stream.sasl_challenge(data))
        self.busy = False
        self.run()

    def _exchange_done(self, result: Any) -> None:
        exchange, self.exchange = self.exchange, None
        self.busy = False
        if isinstance(result, Failure):
            self.refused(result.value or Exception("login failed"))
            self.run()
            return
        _, self.avatar, self.logout = result
        if not self.connected or self.state is State.CLOSED:
            self.logout()
            self.logout = None
            return
        self.hub.contacts.attach(self.avatar)
        watch = getattr(self.avatar, "watch", None)
        if watch is not None:
            watch(self.ended_from_outside)
        if self.timers is not None:
            self.timers.logged_in()
        self.authenticated = True
        self.write(stream.sasl_success(exchange.additional if exchange else None))
        assert self.parser is not None
        self.parser.reset()
        self.pending = ()
        self.state = State.HEADER

    def refused(self, error: BaseException) -> None:
        """The SASL failure for a refused login (RFC 6120 §6.5)."""
        self.state = State.NEGOTIATING
        if isinstance(error, SASLAborted):
            self.write(stream.sasl_failure("aborted"))
            return
        if isinstance(error, SASLMalformed):
            self.write(stream.sasl_failure("malformed-request", error.reply))
            return
        self.failures += 1
        if isinstance(error, ServiceDisabled):
            self.write(stream.sasl_failure("account-disabled", error.reply))
        elif isinstance(error, LoginFailure) and error.temporary:
            self.write(stream.sasl_failure("temporary-auth-failure", error.reply))
        elif isinstance(error, LoginFailure):
            self.write(stream.sasl_failure("not-authorized", error.reply))
        else:
            self.log.error("XMPP SASL failed: {error!r}", error=error)
            self.write(stream.sasl_failure("temporary-auth-failure"))
        fatal = isinstance(error, LoginFailure) and error.fatal
        if fatal or self.failures >= MAX_FAILURES:
            self.fail("policy-violation", "too many failed logins")

    def binding(self, iq: domish.Element) -> None:
        """Resource binding (RFC 6120 §7) and the legacy session (RFC 3921)."""
        payload = next(iter(iq.elements()), None)
        kind = iq.getAttribute("type")
        if payload is not None and kind == "set" and payload.uri == NS_SESSION:
            self.write(stream.serialize(_result(iq)))
            return
        if payload is None or kind != "set" or payload.uri != NS_BIND or payload.name != "bind":
            self.write(stream.serialize(stream.stanza_error(iq, "auth", "not-authorized")))
            return
        asked = next((str(child) for child in payload.elements(NS_BIND, "resource")), "").strip()
        try:
            jid = make(self.avatar.name, self.avatar.domain, asked or self.factory.new_resource())
        except InvalidJID:
            self.write(stream.serialize(stream.stanza_error(iq, "modify", "bad-request")))
            return
        self.jid = jid
        self.bound = True
        self.state = State.SESSION
        self.hub.bind(self)
        reply = _result(iq)
        bind = reply.addElement((NS_BIND, "bind"))
        bind.addElement("jid", content=str(jid))
        self.write(stream.serialize(reply))


def _result(iq: domish.Element) -> domish.Element:
    """An empty ``result`` to an iq (RFC 6120 §8.2.3)."""
    reply = domish.Element((NS_CLIENT, "iq"))
    reply["type"] = "result"
    if iq.hasAttribute("id"):
        reply["id"] = iq["id"]
    return reply


class XMPPFactory(Factory):
    """Makes :class:`XMPPServer` instances sharing one hub."""

    protocol = XMPPServer  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        service: LoginService,
        reactor: Any,
        hub: Hub,
        tls: Any = None,
        implicit_tls: bool = False,
    ) -> None:
        self.service = service
        self.reactor = reactor
        self.hub = hub
        self.tls = tls
        self.implicit_tls = implicit_tls
        directory = service.resolver.directory
        self.limits = LimitsReader("xmpp", DEFAULT_LIMITS, directory.server_settings)

    def new_resource(self) -> str:
        """A server-generated resource (RFC 6120 §7.6.2.1)."""
        return secrets.token_hex(6)
