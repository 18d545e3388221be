"""The POP3 server: a Twisted protocol around :mod:`.parser`.

This module owns the transport, timers and the portal call; commands are
parsed and checked by :mod:`communigate.protocols.pop3.parser`.  Commands
are handled strictly one after another: while a login is being checked or a
message is being sent, further pipelined commands wait in the queue
(RFC 2449 §6.6).  Deletions are applied only when the client ends the
session with QUIT (RFC 1939 §6); a dropped connection keeps every message.
Line length, login deadline and idle time-out are the shared connection
limits (:mod:`communigate.protocols.limits`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any, BinaryIO

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from communigate import __version__
from communigate.cred.credentials import ClearSecretProof, ConnectionInfo, LoginPassword
from communigate.cred.errors import LoginFailure
from communigate.cred.sasl import framing, registry
from communigate.cred.sasl.cram import apop_check
from communigate.cred.sasl.mechanism import MalformedResponse
from communigate.portal.avatars import IPOP3Maildrop
from communigate.protocols.access import LoginService
from communigate.protocols.limits import DEFAULTS, LimitsReader, SessionTimers
from communigate.protocols.lines import LineSplitter, LineTooLong
from communigate.protocols.multiline import DotStuffer, stuff_all
from communigate.protocols.pop3 import parser
from communigate.protocols.pop3.parser import Command, CommandError, State, err, ok
from communigate.protocols.saslexchange import SASLExchange
from communigate.protocols.tls import switch_to_tls
from communigate.store.mailbox import MessageInfo
from communigate.store.settingsformat import as_string_list

#: RFC 1939 §3: the inactivity timer is at least 10 minutes.
IDLE_TIMEOUT = DEFAULTS["pop3"].idle_timeout
#: Protocol errors tolerated in one session before it is closed.
MAX_ERRORS = 20
#: Failed logins tolerated in one session before it is closed.
MAX_LOGIN_FAILURES = 3
CHUNK = 1024 * 1024


@implementer(IPullProducer)
class MessageSender:
    """Streams one message file, dot-stuffed, then calls ``done``."""

    def __init__(self, source: BinaryIO, consumer: Any, done: Any, dot_free: bool) -> None:
        self._source = source
        self._consumer = consumer
        self._done = done
        self._stuffer = DotStuffer(dot_free)

    def start(self) -> None:
        """Register with the consumer; it will pull the chunks."""
        # Twisted's TCP transport hands the kernel at most SEND_LIMIT bytes
        # (128 KiB) per reactor turn; letting it offer a whole chunk halves
        # the turns for large messages (measured: benchmarks/pop3.py).
        transport = self._consumer
        if hasattr(transport, "wrappedProtocol"):  # behind the listener's guard
            transport = transport.transport
        if getattr(transport, "SEND_LIMIT", CHUNK) < CHUNK:
            transport.SEND_LIMIT = CHUNK
        self._consumer.registerProducer(self, False)

    def resumeProducing(self) -> None:
        """Send the next chunk, or the end of the message."""
        chunk = self._source.read(CHUNK)
        if chunk:
            self._consumer.write(self._stuffer.feed(chunk))
            return
        self._consumer.write(self._stuffer.finish())
        self._finish()
        self._done()

    def stopProducing(self) -> None:
        """The connection went away: just close the file."""
        self._source.close()

    def _finish(self) -> None:
        self._source.close()
        self._consumer.unregisterProducer()


class POP3Server(Protocol):
    """One POP3 session."""

    log = Logger()
    factory: POP3Factory

    def __init__(self) -> None:
        self.state = State.AUTHORIZATION
        self.lines = LineSplitter(parser.MAX_LINE)
        self.queue: deque[bytes | LineTooLong] = deque()
        self.busy = False
        self.user: bytes | None = None
        self.maildrop: Any = None
        self.logout: Any = None
        self.messages: list[MessageInfo] = []
        self.deleted: set[int] = set()
        self.errors = 0
        self.login_failures = 0
        self.connection: ConnectionInfo | None = None
        self.pending: Deferred[Any] | None = None
        self.exchange: SASLExchange | None = None
        self.secure = False
        #: Data came over TLS: its handshake (SNI, client certificate) is done.
        self.tls_settled = False
        self.timestamp: bytes | None = None
        self.timers: SessionTimers | None = None

    # -- connection --------------------------------------------------------

    def connectionMade(self) -> None:
        """Apply the limits, start the timers, greet the client with the
        domain of the address it reached."""
        limits = self.factory.limits()
        self.lines.max_length = limits.max_line
        self.timers = SessionTimers(self.factory.reactor, limits, self.timed_out)
        self.timers.start()
        self.secure = self.factory.implicit_tls
        self.connection = self.service.connection(self.transport, "pop3", self.secure)
        domain = self.service.domain(self.connection)
        greeting = f"{domain} POP3 server ready"
        if self.apop_advertised():
            self.timestamp = registry.timestamp(self.service.hostname)
            greeting += " " + self.timestamp.decode("ascii")
        self.send(ok(greeting))

    @property
    def service(self) -> LoginService:
        """The login service of this server."""
        return self.factory.service

    def apop_advertised(self) -> bool:
        """Whether the domain's Login Methods include APOP."""
        assert self.connection is not None
        methods = self.service.domain_settings(self.connection).get("LoginMethods")
        return "APOP" in {name.upper() for name in as_string_list(methods)}

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Drop the session; marked deletions are not applied (RFC 1939 §6)."""
        self.connected = False
        if self.timers is not None:
            self.timers.stop()
        if self.pending is not None:
            self.pending.cancel()
        if self.exchange is not None:
            self.exchange.cancel()
        if self.logout is not None:
            self.logout()
            self.logout = None

    def timed_out(self, why: str) -> None:
        """Close a session that did not log in in time or stayed idle (no
        deletions)."""
        text = "idle timeout" if why == "idle time-out" else "no login in time"
        self.send(err(f"{text}, closing the connection"))
        self.close()
        self.queue.clear()

    def send(self, data: bytes) -> None:
        """Write bytes to the client."""
        if self.transport is not None:
            self.transport.write(data)

    def ended_from_outside(self, reason: str) -> None:
        """The account was deleted: nothing is applied, the session ends."""
        self.send(err(f"[SYS/PERM] {reason}"))
        self.queue.clear()
        self.close()

    def close(self) -> None:
        """Close the connection once what was written is sent."""
        if self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """Queue complete lines and run them in order."""
        if self.timers is not None:
            self.timers.activity()
        if self.secure and not self.tls_settled:
            self.tls_settled = True
            self.connection = self.service.connection(self.transport, "pop3", True)
        self.queue.extend(self.lines.feed(data))
        self.run_queue()

    def run_queue(self) -> None:
        """Run queued commands until one has to wait."""
        while self.queue and not self.busy and self.connected:
            event = self.queue.popleft()
            if self.exchange is not None and isinstance(event, bytes):
                self.busy = True
                self.exchange.line(event)
                continue
            if isinstance(event, LineTooLong):
                self.protocol_error(f"line too long (at most {event.limit} octets)")
                continue
            try:
                command = parser.parse(event, self.state)
            except CommandError as error:
                self.protocol_error(str(error))
                continue
            handler = getattr(self, f"do_{command.keyword}")
            try:
                handler(command)
            except CommandError as error:
                self.protocol_error(str(error))
            except Exception:
                self.log.failure("POP3 command {keyword} failed", keyword=command.keyword)
                self.send(err("[SYS/TEMP] internal error"))

    def protocol_error(self, text: str) -> None:
        """Answer a bad command; too many of them end the session."""
        self.errors += 1
        self.send(err(text))
        if self.errors >= MAX_ERRORS:
            self.log.info(
                "POP3 session from {remote} closed after {count} errors",
                remote=self.connection.remote_host if self.connection else None,
                count=self.errors,
            )
            self.send(err("too many errors, closing the connection"))
            self.close()
            self.queue.clear()

    # -- AUTHORIZATION -----------------------------------------------------

    def do_CAPA(self, command: Command) -> None:
        """List capabilities (RFC 2449 §5)."""
        assert self.connection is not None
        lines = parser.capabilities(
            self.state,
            f"communigate-{__version__}",
            self.service.mechanisms(self.connection),
            self.service.clear_text_allowed(self.connection),
            self.can_starttls(),
        )
        self.send(ok("capability list follows") + b"".join(line + b"\r\n" for line in lines))
        self.send(b".\r\n")

    def do_USER(self, command: Command) -> None:
        """Remember the login name (if clear text may be used here)."""
        assert self.connection is not None
        if not self.service.clear_text_allowed(self.connection):
            raise CommandError("[AUTH] clear-text login is not allowed on this link; use STLS")
        self.user = command.arguments[0]
        self.send(ok("please send the PASS"))

    def do_PASS(self, command: Command) -> None:
        """Check the password through the portal."""
        if self.user is None:
            raise CommandError("send USER first")
        assert self.connection is not None
        credentials = LoginPassword(self.user, command.arguments[0], self.connection)
        self.user = None
        self.login(credentials)

    def login(self, credentials: object) -> None:
        """Ask the portal; commands wait until it answers."""
        self.busy = True
        self.pending = self.service.login(credentials, IPOP3Maildrop)
        self.pending.addCallbacks(self._logged_in, self._login_failed)
        self.pending.addBoth(self._resume)

    def do_APOP(self, command: Command) -> None:
        """RFC 1939 §7: the MD5 of the banner timestamp and the password."""
        if self.timestamp is None:
            raise CommandError("APOP is not available")
        assert self.connection is not None
        name, digest = command.arguments
        proof = ClearSecretProof(name, apop_check(self.timestamp, digest), self.connection, "APOP")
        self.login(proof)

    def do_AUTH(self, command: Command) -> None:
        """RFC 5034 SASL; without arguments, list the mechanisms (RFC 1734)."""
        assert self.connection is not None
        if not command.arguments:
            names = self.service.mechanisms(self.connection)
            self.send(ok() + b"".join(name.encode() + b"\r\n" for name in names) + b".\r\n")
            return
        name = command.arguments[0].decode("ascii", "replace").upper()
        if name in registry.CLEAR_TEXT and not self.service.clear_text_allowed(self.connection):
            raise CommandError("[AUTH] clear-text mechanisms are not allowed on this link")
        mechanism = registry.create(
            name, self.service.exchange_context(self.connection, self.transport)
        )
        if mechanism is None:
            raise CommandError("unsupported authentication mechanism")
        initial = None
        if len(command.arguments) > 1:
            try:
                initial = framing.decode(command.arguments[1])
            except (framing.Aborted, MalformedResponse):
                raise CommandError("invalid initial response") from None
        self.busy = True
        self.exchange = SASLExchange(
            mechanism,
            self.service,
            IPOP3Maildrop,
            self._sasl_challenge,
            self._exchange_done,
        )
        self.exchange.start(initial)

    def _sasl_challenge(self, data: bytes) -> None:
        self.send(b"+ " + data + b"\r\n")
        self._resume(None)

    def _exchange_done(self, result: object) -> None:
        self.exchange = None
        if isinstance(result, Failure):
            self._login_failed(result)
        else:
            self._logged_in(result)  # type: ignore[arg-type]
        self._resume(None)

    def can_starttls(self) -> bool:
        """Whether STLS may be offered now."""
        return (
            self.factory.tls is not None and not self.secure and self.state is State.AUTHORIZATION
        )

    def do_STLS(self, command: Command) -> None:
        """RFC 2595 §4: switch to TLS; nothing sent before it survives."""
        if not self.can_starttls():
            raise CommandError("STLS is not available")
        self.send(ok("begin TLS negotiation"))
        self.user = None
        switch_to_tls(self.transport, self.factory.tls, self.queue, self.lines)
        self.secure = True
        self.connection = self.service.connection(self.transport, "pop3", True)

    def _resume(self, result: object) -> None:
        self.pending = None
        self.busy = False
        self.run_queue()

    def _logged_in(self, result: tuple[Any, Any, Any]) -> None:
        _, self.maildrop, self.logout = result
        if not self.connected:
            return
        # Avatars of this realm can be ended from outside (account deleted).
        watch = getattr(self.maildrop, "watch", None)
        if watch is not None:
            watch(self.ended_from_outside)
        assert self.connection is not None
        # The SNI name is known once the TLS handshake is over.
        self.connection = self.service.connection(self.transport, "pop3", self.secure)
        self.messages = self.maildrop.listing()
        self.state = State.TRANSACTION
        if self.timers is not None:
            self.timers.logged_in()
        total = sum(info.size for info in self.messages)
        self.send(ok(f"{len(self.messages)} messages ({total} octets)"))

    def _login_failed(self, failure: Failure) -> None:
        if not self.connected:
            return
        error = failure.value
        if not isinstance(error, LoginFailure):
            self.log.failure("POP3 login failed unexpectedly", failure)
            self.send(err("[SYS/TEMP] authentication failed, try again later"))
            return
        code = "SYS/TEMP" if error.temporary else "AUTH"
        self.send(err(f"[{code}] {error.reply}"))
        self.login_failures += 1
        if error.fatal or self.login_failures >= MAX_LOGIN_FAILURES:
            self.close()
            self.queue.clear()

    # -- TRANSACTION -------------------------------------------------------

    def message(self, number: int) -> MessageInfo:
        """The message with this number, unless it is missing or deleted."""
        if not 1 <= number <= len(self.messages):
            raise CommandError("no such message")
        if number in self.deleted:
            raise CommandError(f"message {number} is deleted")
        return self.messages[number - 1]

    def live(self) -> list[tuple[int, MessageInfo]]:
        """Numbered messages not marked as deleted."""
        return [
            (number, info)
            for number, info in enumerate(self.messages, 1)
            if number not in self.deleted
        ]

    def do_NOOP(self, command: Command) -> None:
        """Do nothing (RFC 1939 §5)."""
        self.send(ok())

    def do_STAT(self, command: Command) -> None:
        """Count and size of the messages not deleted."""
        live = self.live()
        self.send(ok(f"{len(live)} {sum(info.size for _, info in live)}"))

    def _scan(self, command: Command, column: Any) -> None:
        if command.arguments:
            number = command.numbers()[0]
            self.send(ok(f"{number} {column(self.message(number))}"))
            return
        lines = [f"{number} {column(info)}\r\n".encode() for number, info in self.live()]
        self.send(ok() + b"".join(lines) + b".\r\n")

    def do_LIST(self, command: Command) -> None:
        """Message sizes (RFC 1939 §5)."""
        self._scan(command, lambda info: info.size)

    def do_UIDL(self, command: Command) -> None:
        """Unique IDs (RFC 1939 §7)."""
        self._scan(command, self.maildrop.unique_id)

    def do_RETR(self, command: Command) -> None:
        """Send a whole message, streamed from its file."""
        info = self.message(command.numbers()[0])
        try:
            source = self.maildrop.open(info)
        except FileNotFoundError:
            raise CommandError("message was removed by another session") from None
        self.send(ok(f"{info.size} octets"))
        self.busy = True
        MessageSender(source, self.transport, lambda: self._resume(None), info.dot_free).start()

    def do_TOP(self, command: Command) -> None:
        """The header and the first lines of a message's body."""
        number, count = command.numbers()
        info = self.message(number)
        try:
            with self.maildrop.open(info) as source:
                data = source.read()
        except FileNotFoundError:
            raise CommandError("message was removed by another session") from None
        self.send(ok() + stuff_all(parser.top_of(data, count)))

    def do_DELE(self, command: Command) -> None:
        """Mark a message for deletion at QUIT."""
        number = command.numbers()[0]
        self.message(number)
        self.deleted.add(number)
        self.send(ok(f"message {number} deleted"))

    def do_RSET(self, command: Command) -> None:
        """Unmark every deletion."""
        self.deleted.clear()
        self.send(ok(f"{len(self.messages)} messages"))

    def do_QUIT(self, command: Command) -> None:
        """End the session; in TRANSACTION apply deletions first (UPDATE)."""
        if self.state is State.TRANSACTION and self.deleted:
            doomed = [self.messages[number - 1] for number in sorted(self.deleted)]
            try:
                self.maildrop.delete(doomed)
            except OSError:
                self.log.failure("POP3 UPDATE failed for {account}", account=self.maildrop.account)
                self.send(err("[SYS/TEMP] some deleted messages not removed"))
                self.close()
                return
        self.send(ok("bye"))
        self.queue.clear()
        self.close()


class POP3Factory(Factory):
    """Builds POP3 sessions that log in through one login service.

    ``tls`` is a context factory: with ``implicit_tls`` every connection is
    TLS from the start (port 995, the listener wraps it), otherwise STLS is
    offered.  ``timeout`` is the default idle time-out; each connection
    takes its limits from ``limits``, by default the ``Limits`` server
    setting.
    """

    protocol = POP3Server  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        service: LoginService,
        reactor: Any,
        timeout: int = IDLE_TIMEOUT,
        tls: Any = None,
        implicit_tls: bool = False,
        limits: LimitsReader | None = None,
    ) -> None:
        self.service = service
        self.reactor = reactor
        self.tls = tls
        self.implicit_tls = implicit_tls
        if limits is None:
            defaults = replace(DEFAULTS["pop3"], idle_timeout=timeout)
            limits = LimitsReader("pop3", defaults, service.resolver.directory.server_settings)
        self.limits = limits
