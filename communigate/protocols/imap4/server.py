"""The IMAP4rev1 server: connection, states, login, dispatch.

Commands are read by :mod:`.reader` and run one after another; while a
login is being checked, a SASL exchange runs or IDLE is on, further commands
wait.  Mailbox commands live in :mod:`.mailboxes`, selected-state commands
in :mod:`.messages`; this module holds the connection, CAPABILITY, STARTTLS,
LOGIN, AUTHENTICATE (with SASL-IR), ID, ENABLE, NOOP, LOGOUT and IDLE.

Connection limits (:mod:`communigate.protocols.limits`): before login a
literal may hold at most ``PreLoginData`` octets (a larger one is refused
without ``+``) and the session must log in before ``LoginTimeout``, which
input does not extend; after login the idle time-out applies and APPEND
messages up to ``max_message`` are spooled to disk as they arrive.

IDLE waits on change notifications (:mod:`communigate.store.changes`), not
on a timer.  A client that shuts down its sending side still gets the
answers to what it sent; a client gone while its login is checked cancels
the check (logged as one info line by the checker).

Extensions: LITERAL+ (RFC 7888), SASL-IR (RFC 4959), IDLE (RFC 2177),
NAMESPACE (RFC 2342), UIDPLUS (RFC 4315), CHILDREN (RFC 3348), UNSELECT
(RFC 3691), MOVE (RFC 6851), ID (RFC 2971), ENABLE (RFC 5161), ACL
(RFC 4314).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IPushProducer,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import (
    CooperativeTask,
    Cooperator,
    NotPaused,
    TaskDone,
    TaskFinished,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from communigate import __version__
from communigate.cred.credentials import ConnectionInfo, LoginPassword
from communigate.cred.errors import LoginFailure
from communigate.cred.sasl import framing, registry
from communigate.cred.sasl.mechanism import MalformedResponse
from communigate.portal.avatars import IIMAPAccount
from communigate.portal.durable import DurableWriter
from communigate.protocols.access import LoginService
from communigate.protocols.imap4.mailboxes import MailboxCommands
from communigate.protocols.imap4.messages import MessageCommands
from communigate.protocols.imap4.reader import (
    Argument,
    BadCommand,
    Command,
    CommandReader,
    Continue,
    Line,
    spooled_in,
)
from communigate.protocols.imap4.selected import SelectedMailbox
from communigate.protocols.imap4.states import (
    ANY,
    AUTHENTICATED,
    NOT_AUTHENTICATED,
    CommandFailed,
    State,
)
from communigate.protocols.limits import Limits, LimitsReader, SessionTimers
from communigate.protocols.saslexchange import SASLExchange
from communigate.protocols.tls import switch_to_tls
from communigate.store.changes import IMailboxChanges, ISubscription, MailboxNotifier
from communigate.store.messagecache import MessageCache
from communigate.store.spool import MessageSpool, SpooledMessage, default_spool

MAX_ERRORS = 30
MAX_LOGIN_FAILURES = 3
EXTENSIONS = (
    "LITERAL+",
    "SASL-IR",
    "IDLE",
    "NAMESPACE",
    "UIDPLUS",
    "CHILDREN",
    "UNSELECT",
    "MOVE",
    "ID",
    "ENABLE",
    "ACL",
)


#: Seconds of sliced work between two looks at the other connections.
SLICE_BUDGET = 0.004
#: Seconds values worked out for a mailbox's cache wait for their append.
CACHE_FLUSH_DELAY = 0.5


def _budget() -> Callable[[], bool]:
    """A cooperator's time budget for one turn: :data:`SLICE_BUDGET`."""
    end = time.monotonic() + SLICE_BUDGET
    return lambda: time.monotonic() >= end


@implementer(IPushProducer)
class _TaskProducer:
    """Pauses a command running in slices while the client does not read.

    A transport asks again to pause at every write over its buffer size
    (Twisted's TCP transport does), but a task counts its pauses: only
    the first request of a run counts here."""

    def __init__(self, task: CooperativeTask) -> None:
        self._task = task
        self._paused = False

    def pauseProducing(self) -> None:
        if not self._paused:
            self._paused = True
            self._task.pause()

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            try:
                self._task.resume()
            except (NotPaused, TaskDone):
                pass

    def stopProducing(self) -> None:
        try:
            self._task.stop()
        except TaskFinished:
            pass


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class IMAP4Server(MailboxCommands, MessageCommands, Protocol):
    """One IMAP session.

    A client that shuts down its sending side after pipelining commands
    (LOGIN, LOGOUT) still gets their answers: the session closes once the
    commands read are done (as Dovecot does)."""

    log = Logger()
    factory: IMAP4Factory

    #: command → (allowed states, handler name)
    COMMANDS: dict[str, tuple[frozenset[State], str]] = {
        "CAPABILITY": (ANY, "do_CAPABILITY"),
        "NOOP": (ANY, "do_NOOP"),
        "LOGOUT": (ANY, "do_LOGOUT"),
        "ID": (ANY, "do_ID"),
        "STARTTLS": (NOT_AUTHENTICATED, "do_STARTTLS"),
        "LOGIN": (NOT_AUTHENTICATED, "do_LOGIN"),
        "AUTHENTICATE": (NOT_AUTHENTICATED, "do_AUTHENTICATE"),
        "ENABLE": (AUTHENTICATED, "do_ENABLE"),
        "IDLE": (AUTHENTICATED, "do_IDLE"),
        **MailboxCommands.COMMANDS,
        **MessageCommands.COMMANDS,
    }

    def __init__(self) -> None:
        self.state = State.NOT_AUTHENTICATED
        self.reader = CommandReader()
        self.queue: deque[Command | BadCommand | Line] = deque()
        self.busy = False
        self.account: Any = None
        self.logout: Any = None
        self._selected: SelectedMailbox | None = None
        self.connection: ConnectionInfo | None = None
        self.secure = False
        #: Data came over TLS: its handshake (SNI, client certificate) is done.
        self.tls_settled = False
        #: Implicit TLS: the greeting waits for the handshake.
        self._greeting_due = False
        self.errors = 0
        self.login_failures = 0
        self.pending: Deferred[Any] | None = None
        self.exchange: SASLExchange | None = None
        self.idling: tuple[str, ISubscription | None] | None = None
        #: The client shut down its side: close when the queue is done.
        self.read_closed = False
        #: The notifier's mark when the client's latest bytes arrived
        #: (None: look at every change, as before any arrived).
        self._arrival: int | None = None
        self.auth_tag: str | None = None
        self.limits: Limits | None = None
        self.timers: SessionTimers | None = None
        #: A command running in slices (:meth:`perform`).
        self.sliced: tuple[CooperativeTask, Generator[None, None, None]] | None = None

    @property
    def selected(self) -> SelectedMailbox | None:
        """The selected mailbox; replacing it gives the old one back."""
        return self._selected

    @selected.setter
    def selected(self, value: SelectedMailbox | None) -> None:
        old, self._selected = self._selected, value
        if old is not None and old is not value:
            old.close(self.factory.cooperator.cooperate)

    def detach_selected(self) -> SelectedMailbox | None:
        """Leave the selected mailbox without giving it back yet (the
        caller closes it)."""
        old, self._selected = self._selected, None
        return old

    # -- connection --------------------------------------------------------

    @property
    def service(self) -> LoginService:
        """The login service of this server."""
        return self.factory.service

    def connectionMade(self) -> None:
        """Apply the limits, start the timers, greet with the capabilities
        (RFC 3501 §7.1.1)."""
        self.limits = limits = self.factory.limits()
        self.reader.max_line = limits.max_line
        self.reader.max_literal = limits.prelogin_data
        self.timers = SessionTimers(self.factory.reactor, limits, self.timed_out)
        self.timers.start()
        # An answer that ends in a later reactor turn (APPEND after its
        # commit, a sliced FETCH) would otherwise wait for the client's
        # delayed ACK of the part before it.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.secure = self.factory.implicit_tls
        self.connection = self.service.connection(self.transport, "imap4", self.secure)
        self._greeting_due = self.secure
        if not self.secure:
            self._greet(self.connection)

    def handshakeCompleted(self) -> None:
        """Implicit TLS: greet once the handshake is done, so the greeting's
        capabilities know the domain the client named (SNI) and its
        certificate (``AUTH=EXTERNAL``)."""
        if not self._greeting_due:
            return
        self._greeting_due = False
        self.tls_settled = True
        self.connection = self.service.connection(self.transport, "imap4", True)
        self._greet(self.connection)

    def _greet(self, connection: ConnectionInfo) -> None:
        """The greeting with the capabilities (RFC 3501 §7.1.1)."""
        domain = self.service.domain(connection)
        self.send(
            b"* OK [CAPABILITY %s] %s IMAP4rev1 server ready"
            % (self.capabilities(), domain.encode("ascii", "replace"))
        )

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Drop the session and everything pending (spooled messages too)."""
        self.connected = False
        if self.timers is not None:
            self.timers.stop()
        self.reader.close()
        for event in self.queue:
            if isinstance(event, Command):
                for message in spooled_in(event.arguments):
                    message.discard()
        self.queue.clear()
        if self.pending is not None:
            self.pending.cancel()
        if self.sliced is not None:
            self.sliced[0].stop()
        self.selected = None
        if self.exchange is not None:
            self.exchange.cancel()
        self.stop_idle()
        if self.logout is not None:
            self.logout()
            self.logout = None

    def readConnectionLost(self) -> None:
        """The client will send nothing more: answer what it sent, then
        close (IHalfCloseableProtocol)."""
        self.read_closed = True
        self.run_queue()

    def writeConnectionLost(self) -> None:
        """Our sending side is closed: nothing more to do."""
        self.close()

    def timed_out(self, why: str) -> None:
        """Close a session that did not log in in time, or stayed idle
        (RFC 3501 §5.4)."""
        if why == "idle time-out":
            self.send(b"* BYE autologout; idle for too long")
        else:
            self.send(b"* BYE no login in time")
        self.close()

    def ended_from_outside(self, reason: str) -> None:
        """The account was deleted: BYE (RFC 3501 §7.1.5) and close."""
        self.stop_idle()
        self.send(f"* BYE {reason}".encode())
        self.close()

    def send(self, line: bytes) -> None:
        """Write one response line (CRLF added)."""
        self.write(line + b"\r\n")

    def write(self, data: bytes) -> None:
        """Write bytes as they are."""
        if self.transport is not None and data:
            self.transport.write(data)

    def close(self) -> None:
        """Close once what was written is sent."""
        self.state = State.LOGOUT
        if self.transport is not None:
            self.transport.loseConnection()

    def tagged(self, tag: str, status: str, text: str) -> None:
        """The tagged completion response."""
        self.send(f"{tag} {status} {text}".encode("utf-8", "replace"))

    def capabilities(self) -> bytes:
        """The CAPABILITY list for the current state and link."""
        words = ["IMAP4rev1", *EXTENSIONS]
        if self.state is State.NOT_AUTHENTICATED and self.connection is not None:
            if self.factory.tls is not None and not self.secure:
                words.append("STARTTLS")
            if not self.service.clear_text_allowed(self.connection):
                words.append("LOGINDISABLED")
            words += [f"AUTH={name}" for name in self.service.mechanisms(self.connection)]
        return " ".join(words).encode("ascii")

    # -- reading and dispatch ----------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Read events; run commands in order."""
        if self.timers is not None:
            self.timers.activity()
        if self._greeting_due:
            # A TLS layer that did not report its handshake: greet now.
            self.handshakeCompleted()
        if self.secure and not self.tls_settled:
            self.tls_settled = True
            self.connection = self.service.connection(self.transport, "imap4", True)
        # Every command queued now arrived by this moment (see updates()).
        self._arrival = self.factory.changes.mark()
        for event in self.reader.feed(data):
            if isinstance(event, Continue):
                self.send(b"+ ready for literal")
            else:
                self.queue.append(event)
        self.run_queue()

    def run_queue(self) -> None:
        """Run queued events until one has to wait; after a half-close,
        close once everything read is answered."""
        while self.queue and not self.busy and self.state is not State.LOGOUT:
            event = self.queue.popleft()
            if isinstance(event, Line):
                self.raw_line(event.data)
            elif isinstance(event, BadCommand):
                self.bad(event.tag, event.text)
                if event.fatal:
                    self.send(b"* BYE unrecoverable input")
                    self.close()
            else:
                self.run(event)
        if self.read_closed and not self.busy and self.state is not State.LOGOUT:
            self.stop_idle()
            self.close()

    def bad(self, tag: str | None, text: str) -> None:
        """Answer BAD; too many protocol errors end the session."""
        self.errors += 1
        self.send(f"{tag or '*'} BAD {text}".encode("utf-8", "replace"))
        if self.errors >= MAX_ERRORS:
            self.send(b"* BYE too many errors")
            self.close()

    def run(self, command: Command) -> None:
        """Check the state and run a command's handler."""
        entry = self.COMMANDS.get(command.name)
        if entry is None:
            self.bad(command.tag, f"unknown command {command.name[:40]}")
            return
        states, handler = entry
        if self.state not in states:
            self.bad(command.tag, f"{command.name} is not allowed in the {self.state.value} state")
            return
        try:
            steps = getattr(self, handler)(command.tag, command.arguments)
            if isinstance(steps, Generator):
                self.perform(command.tag, command.name, steps)
        except CommandFailed as failure:
            self.failed(command.tag, failure)
        except Exception:
            self.log.failure("IMAP command {name} failed", name=command.name)
            self.tagged(command.tag, "NO", "[SERVERBUG] internal error")
        finally:
            # A spooled message was linked where it belongs, or refused.
            for message in spooled_in(command.arguments):
                message.discard()

    def failed(self, tag: str, failure: CommandFailed) -> None:
        """Answer a command that failed."""
        if failure.status == "BAD":
            self.bad(tag, str(failure))
        else:
            self.tagged(tag, failure.status, str(failure))

    def perform(self, tag: str, name: str, steps: Generator[None, None, None]) -> None:
        """Run a command whose handler yields between slices of its work
        (a large mailbox).  What fits in one slice is done at once; the rest
        goes on between other sessions' work, paused while the client does
        not read what was written, and later commands wait."""
        try:
            next(steps)
        except StopIteration:
            return
        self.busy = True
        task = self.factory.cooperator.cooperate(steps)
        self.sliced = (task, steps)
        transport: Any = self.transport
        transport.registerProducer(_TaskProducer(task), True)

        def finished(result: Any) -> None:
            self.sliced = None
            # A stopped command's clean-up (a mailbox half opened) runs
            # now, not at some later garbage collection.
            steps.close()
            transport.unregisterProducer()
            if not self.connected:
                return
            if isinstance(result, Failure):
                if isinstance(result.value, CommandFailed):
                    self.failed(tag, result.value)
                else:
                    self.log.failure("IMAP command {name} failed", result, name=name)
                    self.tagged(tag, "NO", "[SERVERBUG] internal error")
            self.busy = False
            self.run_queue()

        task.whenDone().addBoth(finished)

    def raw_line(self, data: bytes) -> None:
        """A line read in raw mode: SASL data or IDLE's DONE."""
        if self.exchange is not None:
            self.busy = True
            self.exchange.line(data)
        elif self.idling is not None:
            tag, _ = self.idling
            self.stop_idle()
            if data.strip().upper() == b"DONE":
                self.tagged(tag, "OK", "IDLE terminated")
            else:
                self.bad(tag, "expected DONE")

    # -- helpers for handlers ----------------------------------------------

    @staticmethod
    def arguments(arguments: list[Argument], low: int, high: int | None = None) -> None:
        """Check the number of arguments."""
        high = low if high is None else high
        if not low <= len(arguments) <= high:
            raise CommandFailed("wrong number of arguments", "BAD")

    @staticmethod
    def text(argument: Argument) -> bytes:
        """An astring argument as bytes."""
        if isinstance(argument, list):
            raise CommandFailed("expected a string, not a list", "BAD")
        if isinstance(argument, SpooledMessage):
            raise CommandFailed("string too long", "BAD")
        return argument if isinstance(argument, bytes) else argument.encode("ascii")

    def updates(self, expunges: bool = True) -> None:
        """Send what other sessions changed in the selected mailbox."""
        if self.selected is not None:
            for line in self.selected.refresh(expunges, since=self._arrival):
                self.send(line)

    # -- any state ---------------------------------------------------------

    def do_CAPABILITY(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.1.1."""
        self.send(b"* CAPABILITY " + self.capabilities())
        self.tagged(tag, "OK", "CAPABILITY completed")

    def do_NOOP(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.1.2: also reports mailbox changes.

        Two ``stat`` calls say whether the mailbox changed (Dovecot syncs on
        NOOP too), so a NOOP sent right after a change made elsewhere sees
        it whatever order the events reach this process in; nothing is
        polled between commands."""
        self.updates()
        self.tagged(tag, "OK", "NOOP completed")

    def do_LOGOUT(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.1.3."""
        self.send(b"* BYE logging out")
        self.tagged(tag, "OK", "LOGOUT completed")
        self.close()

    def do_ID(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 2971: our name and version."""
        self.send(b'* ID ("name" "communigate" "version" "%s")' % __version__.encode())
        self.tagged(tag, "OK", "ID completed")

    def do_ENABLE(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 5161: no extension here needs enabling."""
        self.send(b"* ENABLED")
        self.tagged(tag, "OK", "ENABLE completed")

    # -- not authenticated -------------------------------------------------

    def do_STARTTLS(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.2.1; what the client pipelined after it is dropped."""
        if self.factory.tls is None or self.secure:
            raise CommandFailed("STARTTLS is not available", "BAD")
        self.tagged(tag, "OK", "begin TLS negotiation now")
        switch_to_tls(self.transport, self.factory.tls, self.queue, self.reader)
        self.secure = True
        self.connection = self.service.connection(self.transport, "imap4", True)

    def do_LOGIN(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.2.3 (refused where clear text is, LOGINDISABLED)."""
        self.arguments(arguments, 2)
        assert self.connection is not None
        if not self.service.clear_text_allowed(self.connection):
            raise CommandFailed("[PRIVACYREQUIRED] LOGIN is disabled on this link; use STARTTLS")
        user, password = self.text(arguments[0]), self.text(arguments[1])
        self.login(tag, LoginPassword(user, password, self.connection, None, "LOGIN"))

    def do_AUTHENTICATE(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 3501 §6.2.2 with an initial response (RFC 4959)."""
        self.arguments(arguments, 1, 2)
        assert self.connection is not None
        name = self.text(arguments[0]).decode("ascii", "replace").upper()
        if name in registry.CLEAR_TEXT and not self.service.clear_text_allowed(self.connection):
            raise CommandFailed("[PRIVACYREQUIRED] clear-text mechanisms are disabled here")
        mechanism = registry.create(
            name, self.service.exchange_context(self.connection, self.transport)
        )
        if mechanism is None:
            raise CommandFailed("unsupported authentication mechanism")
        initial = None
        if len(arguments) > 1:
            try:
                initial = framing.decode(self.text(arguments[1]))
            except (framing.Aborted, MalformedResponse):
                raise CommandFailed("invalid initial response", "BAD") from None
        self.busy = True
        self.auth_tag = tag
        self.reader.raw_lines = True
        self.exchange = SASLExchange(
            mechanism, self.service, IIMAPAccount, self._challenge, self._exchange_done
        )
        self.exchange.start(initial)

    def _challenge(self, data: bytes) -> None:
        self.send(b"+ " + data)
        self._resume()

    def _exchange_done(self, result: Any) -> None:
        self.exchange = None
        self.reader.raw_lines = False
        tag = self.auth_tag or "*"
        if isinstance(result, Failure):
            self._refused(result, tag)
        else:
            self._accepted(result, tag)
        self._resume()

    def login(self, tag: str, credentials: Any) -> None:
        """Ask the portal; later commands wait."""
        self.busy = True
        self.pending = self.service.login(credentials, IIMAPAccount)
        self.pending.addCallbacks(
            self._accepted, self._refused, callbackArgs=(tag,), errbackArgs=(tag,)
        )
        self.pending.addBoth(lambda _: self._resume())

    def _resume(self) -> None:
        self.pending = None
        self.busy = False
        self.run_queue()

    def _accepted(self, result: tuple[Any, Any, Any], tag: str) -> None:
        _, self.account, self.logout = result
        if not self.connected:
            return
        self.state = State.AUTHENTICATED
        # Avatars of this realm can be ended from outside (account deleted).
        watch = getattr(self.account, "watch", None)
        if watch is not None:
            watch(self.ended_from_outside)
        assert self.timers is not None and self.limits is not None
        self.timers.logged_in()
        # Literals in memory are bounded by the line length from now on;
        # APPEND messages may be larger and go to the spool.
        self.reader.max_literal = self.limits.max_line
        self.reader.max_message = self.factory.max_message
        self.reader.spool = self.open_spool
        self.tagged(tag, "OK", "[CAPABILITY " + self.capabilities().decode() + "] logged in")

    def _refused(self, failure: Failure, tag: str) -> None:
        if not self.connected:
            return
        error = failure.value
        if not isinstance(error, LoginFailure):
            self.log.failure("IMAP login failed unexpectedly", failure)
            self.tagged(tag, "NO", "[UNAVAILABLE] authentication failed, try again later")
            return
        code = "UNAVAILABLE" if error.temporary else "AUTHENTICATIONFAILED"
        self.tagged(tag, "NO", f"[{code}] {error.reply}")
        self.login_failures += 1
        if error.fatal or self.login_failures >= MAX_LOGIN_FAILURES:
            self.send(b"* BYE too many failed logins")
            self.close()

    def open_spool(self) -> MessageSpool:
        """A spool file for an APPEND message as it arrives."""
        return MessageSpool(self.factory.spool)

    # -- IDLE ----------------------------------------------------------------

    def do_IDLE(self, tag: str, arguments: list[Argument]) -> None:
        """RFC 2177: report changes as they happen until DONE.

        Nothing is polled: the session subscribes to its mailbox's change
        notifications (:mod:`communigate.store.changes`) before it reports
        what changed so far, so no change falls between the two."""
        self.send(b"+ idling")
        watch = None
        if self.selected is not None:
            watch = self.factory.changes.subscribe(self.selected.mailbox.path, self.mailbox_changed)
        self.idling = (tag, watch)
        self.reader.raw_lines = True
        self.updates()

    def mailbox_changed(self) -> None:
        """A notification: the selected mailbox changed; tell an idling
        client at once."""
        if self.idling is None or self.selected is None or not self.connected:
            return
        for line in self.selected.refresh(changed=True):
            self.send(line)

    def stop_idle(self) -> None:
        """Leave IDLE."""
        if self.idling is not None:
            _, watch = self.idling
            if watch is not None:
                watch.cancel()
            self.idling = None
            self.reader.raw_lines = False


class IMAP4Factory(Factory):
    """Builds IMAP sessions that log in through one login service.

    Each new connection takes its limits from ``limits``, by default the
    ``Limits`` server setting; APPEND messages are spooled into the folder
    ``spool`` (the server passes ``Spool/`` of the base directory) and
    flushed to disk in the thread pool ``pool``.  IDLE sessions learn of
    changes from ``changes`` (the server shares one notifier, with
    inotify, between its IMAP listeners); without one, a notifier of this
    process's own changes that polls for the others' is made."""

    protocol = IMAP4Server  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        service: LoginService,
        reactor: Any,
        tls: Any = None,
        implicit_tls: bool = False,
        max_message: int = 64 * 1024 * 1024,
        limits: LimitsReader | None = None,
        spool: Path | None = None,
        pool: Any = None,
        changes: IMailboxChanges | None = None,
    ) -> None:
        self.service = service
        self.reactor = reactor
        #: Runs commands that work in slices (large mailboxes), a few
        #: milliseconds at a time between the reactor's other work.
        self.cooperator = Cooperator(
            terminationPredicateFactory=_budget, scheduler=lambda work: reactor.callLater(0, work)
        )
        self.changes = changes if changes is not None else MailboxNotifier(reactor)
        #: APPEND flushes messages to disk in ``pool`` (at once without one).
        self.writer = DurableWriter(reactor, pool)
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.max_message = max_message
        if limits is None:
            limits = LimitsReader("imap4", None, service.resolver.directory.server_settings)
        self.limits = limits
        self.spool = spool if spool is not None else default_spool()
        #: Mailbox caches holding values commands worked out, appended to
        #: their files together :data:`CACHE_FLUSH_DELAY` after the first.
        self._unflushed: set[MessageCache] = set()
        self._flush_call: IDelayedCall | None = None

    def flush_soon(self, cache: MessageCache) -> None:
        """Append the values a command added to ``cache`` to its file within
        :data:`CACHE_FLUSH_DELAY`: the commands of every session meanwhile
        share one append per mailbox (losing them costs time, not data)."""
        if not cache.waiting:
            return
        self._unflushed.add(cache)
        if self._flush_call is None:
            self._flush_call = self.reactor.callLater(CACHE_FLUSH_DELAY, self._flush_caches)

    def _flush_caches(self) -> None:
        self._flush_call = None
        caches, self._unflushed = self._unflushed, set()
        for cache in caches:
            cache.flush()

    def stopFactory(self) -> None:
        """The last listener closed: what waits is appended now."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_caches()
