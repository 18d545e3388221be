"""The SMTP submission server (RFC 6409 on port 587 with STARTTLS, RFC 8314
implicit TLS on port 465).

Mail clients hand their outgoing mail here after logging in:

- ESMTP (RFC 5321): EHLO advertises PIPELINING, 8BITMIME, SMTPUTF8,
  SIZE, ENHANCEDSTATUSCODES, STARTTLS (RFC 3207, until the link is TLS)
  and AUTH with the mechanisms the connection's domain advertises
  (clear-text ones only over TLS or loopback, or where the domain allows
  clear text).  VRFY answers 252, EXPN 502.
- AUTH (RFC 4954) runs the one SASL layer every protocol shares
  (:mod:`communigate.protocols.saslexchange`) with the ``334 base64``
  framing; ``=`` is an empty response, ``*`` cancels (501).  A refused
  login is ``535 5.7.8`` with the portal's text (the same for an unknown
  account and a wrong password, ``HideAccountUnknown``); a temporary
  failure ``454 4.7.0``; a clear-text mechanism on a link that may not
  carry one ``538 5.7.11``.  Lockout, client addresses, impersonation and
  AccessModes are the portal's: the login needs the ``Relay`` service and
  the avatar (:class:`~communigate.portal.submission.ISubmitter`) the
  ``Mail`` service.
- Submission rules (RFC 6409 §4.3, §6.1): MAIL needs AUTH first
  (``530 5.7.0``); the envelope sender must be ``<>`` or an address that
  routes to the authenticated account (its name, an alias, a Router
  record; :mod:`communigate.portal.submission`), else ``553 5.7.1``; the
  message may not exceed the size limit (SIZE parameter and text, 552).
  A ``Received`` field naming the account and the TLS state is put on top
  and ``Message-ID``/``Date`` are added when missing (RFC 6409 §8;
  :mod:`.headers`).
- Delivery: recipients the Router leads to local accounts (aliases, groups
  expanded to their members, forwarders followed to their target) get the
  message through the same code as
  LMTP (:func:`~communigate.portal.delivery.deliver_durably`); remote ones
  go to the durable queue (:mod:`.queue`) for the smart host named by the
  server setting ``SubmitRelayHost`` (:mod:`.relay`), or get ``550 5.7.1
  relaying not configured`` without one.  The 250 after the message comes
  once every local copy and the queued copy are on disk.

The text is spooled to disk as it arrives (:mod:`communigate.store.spool`);
the connection limits are the shared ones (:mod:`communigate.protocols.limits`,
protocol name ``smtp``: lines up to 64000 octets, 5 minutes idle, the login
deadline until AUTH succeeds); pipelined commands are answered in order;
STARTTLS drops whatever was pipelined behind it in plaintext.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from communigate.cred.errors import LoginFailure
from communigate.cred.sasl import framing, registry
from communigate.cred.sasl.mechanism import MalformedResponse
from communigate.portal.delivery import DeliveryError, deliver_durably, resolve_recipients
from communigate.portal.durable import DurableWriter
from communigate.portal.names import BadLoginName, FullName
from communigate.portal.router import LocalAccount, NotAccount, RouteKind, Router
from communigate.portal.submission import ISubmitter
from communigate.protocols.access import LoginService
from communigate.protocols.limits import Limits, LimitsReader
from communigate.protocols.lines import LineTooLong
from communigate.protocols.replies import CodedReplyServer
from communigate.protocols.saslexchange import SASLAborted, SASLExchange, SASLMalformed
from communigate.protocols.smtp import headers
from communigate.protocols.smtp.parser import (
    MAX_COMMAND,
    Session,
    SMTPSyntaxError,
    State,
    parse_command,
    parse_path,
    refusal,
    unstuff,
)
from communigate.protocols.smtp.parser import (
    reply as format_reply,
)
from communigate.protocols.tls import switch_to_tls
from communigate.store.spool import MessageSpool, SpooledMessage, default_spool

#: Most recipients one message may have (RFC 5321 §4.5.3.1.8 asks for 100).
MAX_RECIPIENTS = 1000
#: Lines that may wait while a login or delivery is pending before the
#: socket is no longer read (a 64 KiB read holds some hundreds of lines).
PAUSE_LINES = 2000
#: The defaults of the ``smtp`` connection limits.
DEFAULT_LIMITS = Limits(max_line=64000, idle_timeout=5 * 60)


def _printable(name: bytes) -> str:
    """The client's EHLO name as it may appear in a header field: printable
    ASCII, anything else replaced by ``?``, at most 255 characters."""
    return "".join(chr(byte) if 32 < byte < 127 else "?" for byte in name[:255])


class SubmissionServer(CodedReplyServer):
    """One submission session."""

    log = Logger()
    timeout_code = 421
    factory: SubmissionFactory

    def __init__(self) -> None:
        super().__init__()
        self.session = Session()
        self.secure = False
        self.tls_settled = False
        self.connection: Any = None
        self.helo = ""
        self.avatar: Any = None
        self.logout: Any = None
        self.exchange: SASLExchange | None = None
        self.sender: str | None = None
        self.local: list[LocalAccount] = []
        self.remote: list[str] = []
        self.recipients: list[str] = []
        self.data: MessageSpool | None = None
        self.completer: headers.HeaderCompleter | None = None
        self.too_big = False
        self.header_size = 0
        #: The socket is not being read (too many lines wait).
        self.paused = False

    # -- connection ------------------------------------------------------

    @property
    def service(self) -> LoginService:
        """The login service of this server."""
        return self.factory.service

    def connectionMade(self) -> None:
        """Note the TLS state and the domain, then limits, timers, greeting."""
        self.secure = self.factory.implicit_tls
        self.connection = self.service.connection(self.transport, "smtp", self.secure)
        super().connectionMade()

    def domain(self) -> str:
        """The domain of the connection (the local address or SNI)."""
        return self.service.domain(self.connection)

    def greet(self) -> None:
        """``220 <domain> ESMTP``."""
        self.reply(220, f"{self.domain()} ESMTP communigate submission ready")

    def dataReceived(self, data: bytes) -> None:
        """Once TLS carried data, its handshake (SNI) is known.  While a
        login or a delivery is pending, lines wait in the queue; past
        :data:`PAUSE_LINES` of them the socket is not read any more, so a
        client pipelining a flood cannot make the queue grow without bound."""
        if self.secure and not self.tls_settled:
            self.tls_settled = True
            self.connection = self.service.connection(self.transport, "smtp", True)
        super().dataReceived(data)
        if self.busy and len(self.queue) > PAUSE_LINES and not self.paused:
            self.paused = True
            if self.transport is not None:
                self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resume(self) -> None:
        """Run what waited; read the socket again once nothing is pending."""
        super().resume()
        if self.paused and not self.busy and self.transport is not None:
            self.paused = False
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Drop the exchange, the message being received, the session."""
        super().connectionLost(reason)
        if self.exchange is not None:
            self.exchange.cancel()
            self.exchange = None
        self.discard()
        if self.logout is not None:
            self.logout()
            self.logout = None

    def timed_out(self, why: str) -> None:
        """421 with an enhanced status (RFC 5321 §4.5.3.2), then close."""
        self.reply(421, f"4.4.2 {self.domain()} {why}, closing the connection")
        self.queue.clear()
        if self.transport is not None:
            self.transport.loseConnection()

    def send(self, data: bytes) -> None:
        """Write bytes to the client."""
        if self.transport is not None:
            self.transport.write(data)

    def ended_from_outside(self, reason: str) -> None:
        """The account was deleted: say so and close."""
        self.reply(421, f"4.7.0 {reason}")
        self.queue.clear()
        if self.transport is not None:
            self.transport.loseConnection()

    # -- lines -----------------------------------------------------------

    def line(self, event: bytes | LineTooLong) -> None:
        """Message text after DATA, a SASL response, or a command."""
        if self.session.state is State.DATA:
            self.data_line(event)
        elif self.exchange is not None:
            if isinstance(event, LineTooLong):
                self.exchange.cancel()
                self.exchange = None
                self.busy = False
                self.reply(500, "5.5.6 authentication exchange line too long")
                return
            self.busy = True
            self.exchange.line(event)
        elif isinstance(event, LineTooLong) or len(event) > MAX_COMMAND:
            self.reply(500, "5.5.2 line too long")
        else:
            self.command(event)

    def command(self, line: bytes) -> None:
        """Check the command against the state machine and run it."""
        try:
            command = parse_command(line)
        except SMTPSyntaxError as error:
            self.reply(500, str(error))
            return
        if not self.session.allows(command.verb):
            self.send(refusal(self.session, command.verb))
            return
        handler = getattr(self, f"do_{command.verb}", None)
        if handler is None:
            self.reply(502, "5.5.1 command not implemented")
            return
        try:
            handler(command.argument)
        except SMTPSyntaxError as error:
            text = str(error)
            self.reply(555 if "parameter" in text else 501, text)

    # -- session commands ------------------------------------------------

    def do_EHLO(self, argument: bytes) -> None:
        """RFC 5321 §4.1.1.1; the extensions this server offers."""
        if not argument:
            self.reply(501, "5.5.4 EHLO needs a domain or address")
            return
        self.helo = _printable(argument.split()[0])
        self.reset()
        self.session.advance("EHLO")
        lines = [
            f"{self.domain()} greets {self.helo}",
            "PIPELINING",
            "8BITMIME",
            "SMTPUTF8",
            f"SIZE {self.factory.max_message}",
            "ENHANCEDSTATUSCODES",
        ]
        if self.factory.tls is not None and not self.secure:
            lines.append("STARTTLS")
        if self.avatar is None:
            mechanisms = self.service.mechanisms(self.connection)
            if mechanisms:
                lines.append("AUTH " + " ".join(mechanisms))
        lines.append("HELP")
        self.send(format_reply(250, *lines))

    def do_HELO(self, argument: bytes) -> None:
        """RFC 5321 §4.1.1.1 (no extensions)."""
        if not argument:
            self.reply(501, "5.5.4 HELO needs a domain")
            return
        self.helo = _printable(argument.split()[0])
        self.reset()
        self.session.advance("HELO")
        self.reply(250, self.domain())

    def do_STARTTLS(self, argument: bytes) -> None:
        """RFC 3207: switch to TLS; what was pipelined behind is dropped
        and the session starts again (no EHLO, no AUTH yet)."""
        if self.secure or self.factory.tls is None:
            self.reply(454, "4.7.0 TLS not available")
            return
        if argument:
            self.reply(501, "5.5.4 STARTTLS takes no argument")
            return
        self.reply(220, "2.0.0 ready to start TLS")
        switch_to_tls(self.transport, self.factory.tls, self.queue, self.lines)
        self.secure = True
        # The SNI name is known once data came over TLS (dataReceived).
        self.tls_settled = False
        self.session.restart()
        self.helo = ""
        self.reset()
        self.connection = self.service.connection(self.transport, "smtp", True)

    def do_RSET(self, argument: bytes) -> None:
        """Abort the transaction (RFC 5321 §4.1.1.5)."""
        self.reset()
        self.session.advance("RSET")
        self.reply(250, "2.0.0 OK")

    def do_NOOP(self, argument: bytes) -> None:
        """Nothing (RFC 5321 §4.1.1.9)."""
        self.reply(250, "2.0.0 OK")

    def do_HELP(self, argument: bytes) -> None:
        """RFC 5321 §4.1.1.8."""
        self.reply(214, "2.0.0 commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP QUIT")

    def do_VRFY(self, argument: bytes) -> None:
        """Addresses are not verified (RFC 5321 §3.5.3: 252)."""
        self.reply(252, "2.5.0 cannot VRFY; send the message and delivery will be attempted")

    def do_EXPN(self, argument: bytes) -> None:
        """Lists are not expanded for clients."""
        self.reply(502, "5.5.1 EXPN not available")

    def do_QUIT(self, argument: bytes) -> None:
        """Close (RFC 5321 §4.1.1.10)."""
        self.reply(221, "2.0.0 bye")
        self.queue.clear()
        if self.transport is not None:
            self.transport.loseConnection()

    # -- AUTH ------------------------------------------------------------

    def do_AUTH(self, argument: bytes) -> None:
        """``AUTH mechanism [initial-response]`` (RFC 4954 §4)."""
        if self.avatar is not None:
            self.reply(503, "5.5.1 already authenticated")
            return
        arguments = argument.split()
        if not arguments or len(arguments) > 2:
            self.reply(501, "5.5.4 syntax: AUTH mechanism [initial-response]")
            return
        service = self.service
        name = arguments[0].decode("ascii", "replace").upper()
        if name in registry.CLEAR_TEXT and not service.clear_text_allowed(self.connection):
            self.reply(538, "5.7.11 encryption required for this authentication mechanism")
            return
        mechanism = registry.create(name, service.exchange_context(self.connection, self.transport))
        if mechanism is None:
            self.reply(504, "5.5.4 unrecognized authentication mechanism")
            return
        initial = None
        if len(arguments) == 2:
            try:
                initial = framing.decode(arguments[1])
            except framing.Aborted:
                self.reply(501, "5.7.0 authentication aborted")
                return
            except MalformedResponse:
                self.reply(501, "5.5.2 invalid initial response")
                return
        self.busy = True
        self.exchange = SASLExchange(
            mechanism, service, ISubmitter, self._challenge, self._exchange_done
        )
        self.exchange.start(initial)

    def _challenge(self, data: bytes) -> None:
        """``334 base64`` (RFC 4954 §4); the client's answer may come."""
        self.send(b"334 " + data + b"\r\n")
        self.resume()

    def _exchange_done(self, result: Any) -> None:
        """The verdict: 235, or the refusal in SMTP's words."""
        self.exchange = None
        if isinstance(result, Failure):
            self._refused(result.value or Exception("login failed"))
        else:
            _, self.avatar, self.logout = result
            if not self.connected:
                self.logout()
                self.logout = None
                return
            watch = getattr(self.avatar, "watch", None)
            if watch is not None:
                watch(self.ended_from_outside)
            self.logged_in()
            self.log.info("SMTP submission: {account} authenticated", account=self.avatar.account)
            self.reply(235, "2.7.0 authentication successful")
        self.resume()

    def _refused(self, error: BaseException) -> None:
        if isinstance(error, SASLAborted):
            self.reply(501, "5.7.0 authentication aborted")
        elif isinstance(error, SASLMalformed):
            self.reply(501, f"5.5.2 {error.reply}")
        elif isinstance(error, LoginFailure) and error.temporary:
            self.reply(454, f"4.7.0 {error.reply}")
        elif isinstance(error, LoginFailure):
            self.reply(535, f"5.7.8 {error.reply}")
            if error.fatal:
                self.queue.clear()
                if self.transport is not None:
                    self.transport.loseConnection()
        else:
            self.log.error("SMTP AUTH failed: {error!r}", error=error)
            self.reply(454, "4.7.0 temporary authentication failure")

    # -- the transaction -------------------------------------------------

    def reset(self) -> None:
        """Forget the transaction (the login stays)."""
        self.discard()
        self.sender = None
        self.local, self.remote, self.recipients = [], [], []
        self.too_big = False
        self.completer = None

    def discard(self) -> None:
        """Drop the spooled message, if any."""
        if self.data is not None:
            self.data.discard()
            self.data = None

    def do_MAIL(self, argument: bytes) -> None:
        """The envelope sender: authenticated, owned by the account."""
        if self.avatar is None:
            self.reply(530, "5.7.0 authentication required")
            return
        path = parse_path(argument, b"FROM:", null_allowed=True)
        for key, value in path.parameters.items():
            if key == "SIZE":
                if value is None or not value.isdigit():
                    raise SMTPSyntaxError("5.5.4 SIZE needs a number")
                if int(value) > self.factory.max_message:
                    self.reply(552, "5.3.4 message size exceeds the limit")
                    return
            elif key == "BODY":
                if (value or "").upper() not in ("7BIT", "8BITMIME"):
                    raise SMTPSyntaxError("5.5.4 BODY must be 7BIT or 8BITMIME")
            elif key == "SMTPUTF8" and value is None:
                continue
            elif key != "AUTH":
                raise SMTPSyntaxError(f"5.5.4 unsupported parameter {key}")
        if not self.avatar.may_send_as(path.address):
            self.reply(553, f"5.7.1 {path.address} is not an address of {self.avatar.account}")
            return
        self.sender = path.address
        self.session.advance("MAIL")
        self.reply(250, "2.1.0 sender OK")

    def do_RCPT(self, argument: bytes) -> None:
        """A recipient: local (routed now) or remote (queued for the smart
        host, if there is one)."""
        path = parse_path(argument, b"TO:", null_allowed=False)
        if path.parameters:
            raise SMTPSyntaxError(f"5.5.4 unsupported parameter {next(iter(path.parameters))}")
        if len(self.recipients) >= MAX_RECIPIENTS:
            self.reply(452, "4.5.3 too many recipients")
            return
        router = self.factory.router
        try:
            address = FullName.parse(path.address, self.domain())
            route = router.route(address, RouteKind.MAIL)
            if isinstance(route, NotAccount) and route.what == "forwarder" and route.target:
                # A forwarder forwards: its target is served like a recipient.
                address = FullName.parse(route.target.targets[0].lower(), route.target.domain)
                route = router.route(address, RouteKind.MAIL)
            if isinstance(route, NotAccount) and route.what == "remote":
                relay = self.factory.relay
                if relay is None or not relay.configured():
                    self.reply(550, "5.7.1 relaying not configured")
                    return
                self.remote.append(str(address))
            else:
                for account in resolve_recipients(router, address):
                    if account not in self.local:
                        self.local.append(account)
        except (DeliveryError, BadLoginName) as error:
            self.reply(550, f"5.1.1 {path.address}: {error}")
            return
        self.recipients.append(path.address)
        self.session.advance("RCPT")
        self.reply(250, "2.1.5 recipient OK")

    def do_DATA(self, argument: bytes) -> None:
        """Start the message text, with the trace fields on top."""
        if argument:
            self.reply(501, "5.5.4 DATA takes no argument")
            return
        try:
            self.data = MessageSpool(self.factory.spool)
        except OSError:
            self.log.failure("SMTP could not open a spool file")
            self.reply(451, "4.3.0 cannot receive the message now")
            return
        self.session.advance("DATA")
        now = self.factory.reactor.seconds()
        date = format_datetime(datetime.fromtimestamp(now, UTC))
        top = b""
        if not self.remote:
            top += f"Return-Path: <{self.sender}>\r\n".encode("utf-8", "replace")
        top += headers.received(
            self.helo,
            self.connection.remote_host,
            self.domain(),
            self.avatar.account,
            self.secure,
            self.connection.session,
            self.recipients[0] if len(self.recipients) == 1 else None,
            date,
        )
        self.data.write(top)
        self.header_size = len(top)
        domain = self.domain()
        self.completer = headers.HeaderCompleter(
            lambda: f"<{self.factory.token()}@{domain}>", lambda: date
        )
        self.reply(354, "end data with <CR><LF>.<CR><LF>")

    def data_line(self, event: bytes | LineTooLong) -> None:
        """A line of the message (to the spool), or its end."""
        if isinstance(event, LineTooLong):
            self.too_big = True
            self.discard()
            return
        text = unstuff(event)
        if text is None:
            self.session.advance(".")
            self.finish()
            return
        if self.data is None or self.completer is None:
            return
        self.data.write(self.completer.line(text))
        if self.data.size - self.header_size > self.factory.max_message:
            self.too_big = True
            self.discard()

    def finish(self) -> None:
        """Deliver the local copies and queue the remote one; reply once
        both are on disk (pipelined commands wait until then)."""
        spool, self.data = self.data, None
        message: SpooledMessage | None = None
        if spool is not None and not self.too_big and self.completer is not None:
            spool.write(self.completer.missing())
            try:
                message = spool.finish()
            except OSError:
                self.log.failure("SMTP could not spool the message")
        elif spool is not None:
            spool.discard()
        if message is None:
            self.reply(
                *((552, "5.3.4 message too big") if self.too_big else (451, "4.3.0 try again"))
            )
            self.reset()
            return
        recipients, sender = list(self.recipients), self.sender
        stored = self._store(message, self.local, self.remote, sender or "")
        self.reset()
        self.busy = True
        stored.addBoth(self._stored, message, recipients, sender)
        stored.addErrback(lambda failure: self.log.failure("SMTP reply failed", failure))
        stored.addBoth(lambda _: self.resume())

    def _store(
        self, message: SpooledMessage, local: list[Any], remote: list[str], sender: str
    ) -> Deferred[Any]:
        """The remote copy queued (held), then the local copies delivered;
        the queued copy is released once they are on disk, or withdrawn if
        they fail, so a 451 never leaves a copy behind that a retry of the
        client would duplicate."""
        relay = self.factory.relay
        account = self.avatar.account

        def deliver_local(entry: Any) -> Deferred[Any]:
            if not local:
                return succeed(entry)
            delivered = deliver_durably(self.factory.directory, self.factory.writer, local, message)

            def failed(failure: Failure) -> Deferred[Any]:
                if entry is None or relay is None:
                    return failure  # type: ignore[return-value]
                withdrawn = relay.withdraw(entry)
                withdrawn.addErrback(lambda why: self.log.failure("SMTP withdraw failed", why))
                return withdrawn.addCallback(lambda _: failure)

            return delivered.addCallbacks(lambda _: entry, failed)

        if remote:
            assert relay is not None
            queued = relay.enqueue(message, sender, remote, account, hold=bool(local))
        else:
            queued = succeed(None)
        done = queued.addCallback(deliver_local)

        def release(entry: Any) -> None:
            if entry is not None and local and relay is not None:
                relay.release(entry)

        return done.addCallback(release)

    def _stored(
        self,
        outcome: Any,
        message: SpooledMessage,
        recipients: list[str],
        sender: str | None,
    ) -> None:
        """250 once everything is durable; 451 if anything failed."""
        message.discard()
        if isinstance(outcome, Failure):
            self.log.failure("SMTP submission could not store a message", outcome)
        if not self.connected:
            return
        if isinstance(outcome, Failure):
            self.reply(451, "4.3.0 temporary failure storing the message, try again")
            return
        self.log.info(
            "SMTP submission: {account} sent <{sender}> to {recipients}",
            account=self.avatar.account if self.avatar else "",
            sender=sender,
            recipients=", ".join(recipients),
        )
        self.reply(250, "2.0.0 message accepted")


class SubmissionFactory(Factory):
    """Builds submission sessions.

    ``tls`` is the context factory for STARTTLS (with ``implicit_tls`` the
    listener wraps every connection in TLS instead); messages up to
    ``max_message`` octets are spooled into ``spool`` and flushed in
    ``pool``; ``relay`` (:class:`~communigate.protocols.smtp.relay.Relay`)
    takes remote recipients, None refuses them."""

    protocol = SubmissionServer  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        service: LoginService,
        reactor: Any,
        tls: Any = None,
        implicit_tls: bool = False,
        max_message: int = 64 * 1024 * 1024,
        spool: Path | None = None,
        pool: Any = None,
        relay: Any = None,
        limits: LimitsReader | None = None,
        token: Any = None,
    ) -> None:
        self.service = service
        self.reactor = reactor
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.max_message = max_message
        self.directory = service.resolver.directory
        self.router = Router(self.directory)
        self.writer = DurableWriter(reactor, pool)
        self.spool = spool if spool is not None else default_spool()
        self.relay = relay
        #: Unique text for Message-ID fields (injected in tests).
        self.token = token if token is not None else lambda: secrets.token_hex(12)
        if limits is None:
            limits = LimitsReader("smtp", DEFAULT_LIMITS, self.directory.server_settings)
        self.limits = limits
