"""Sending queued messages to the smart host, retrying, bouncing.

The server setting ``SubmitRelayHost`` (``host:port``, port 25 when left
out; ``[v6addr]:port`` for an IPv6 literal) names the smart host every
non-local recipient of a submitted message is sent through; without it
the submission server refuses such recipients.  :class:`Relay` is the
service that owns the queue (:mod:`.queue`):

- a message queued by the submission server is tried at once;
- every ``scan`` seconds (5 by default) the queue folder is read again
  and entries whose time has come are tried, so entries a previous run
  left (the queue survives restarts) and entries ``communigate queue
  flush`` made due now are sent without a restart;
- after a temporary failure (4xx, no connection, a dropped connection)
  the next attempt waits 1, 5, 15, 30 minutes, then every hour
  (:data:`BACKOFF`);
- a permanent refusal (5xx) of a recipient, or a message that waited
  longer than ``SubmitQueueExpiry`` (default ``5d``), sends a delivery
  status notification (:mod:`.bounce`) to the sender's local mailbox
  (none for ``<>``) and the recipient leaves the queue.

The client (:class:`RelayClient`) speaks ESMTP: EHLO (HELO if refused),
STARTTLS when the smart host offers it (opportunistic: the certificate is
not verified, as between MTAs; ``SubmitRelayTLS=No`` turns it off), MAIL,
one RCPT per recipient, DATA with dot-stuffing, QUIT; the message file is
sent by a producer, so memory stays bounded.  With the server settings
``SubmitRelayUser`` and ``SubmitRelayPassword`` it authenticates with
``AUTH PLAIN`` (RFC 4954) after EHLO, but only over TLS or to a smart host
on loopback: where neither holds, or the smart host does not offer PLAIN
or refuses the login, the message waits in the queue (a configuration to
mend, not a reason to bounce).  Without them it does not authenticate: use
a smart host that trusts this server's address.
"""

from __future__ import annotations

import base64
import enum
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import ClientFactory
from twisted.internet.ssl import CertificateOptions, optionsForClientTLS
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.basic import FileSender, LineOnlyReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from communigate.cred.sasl.registry import is_loopback
from communigate.portal.delivery import DeliveryError, deliver_durably, resolve_recipients
from communigate.portal.durable import DurableWriter
from communigate.portal.names import BadLoginName, FullName
from communigate.portal.router import Router
from communigate.protocols.smtp.bounce import FailedRecipient, delivery_status, status_of
from communigate.protocols.smtp.queue import MailQueue, QueueEntry, queue_folder
from communigate.store.directory import IDirectory
from communigate.store.settingsformat import as_seconds
from communigate.store.spool import SpooledMessage

#: Seconds before the n-th retry (the last value repeats).
BACKOFF = (60, 5 * 60, 15 * 60, 30 * 60, 60 * 60)
#: How long a message may wait in the queue, unless SubmitQueueExpiry says.
DEFAULT_EXPIRY = 5 * 24 * 3600
#: Seconds the smart host may stay silent during one exchange.
CLIENT_TIMEOUT = 300


def backoff(attempts: int) -> int:
    """Seconds to wait after ``attempts`` failed attempts."""
    return BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]


def parse_host(value: str) -> tuple[str, int] | None:
    """``host:port``, ``host`` (port 25) or ``[v6]:port``; None if empty."""
    text = value.strip()
    if not text:
        return None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "25"
    else:
        host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "25")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not host:port: {value!r}")
    return host, int(port)


class Outcome(enum.Enum):
    """What became of one recipient in one attempt."""

    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


#: recipient → (outcome, what the server said or why).
Results = dict[str, tuple[Outcome, str]]


class Step(enum.Enum):
    """Where the client is in its exchange."""

    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    HELO = "helo"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    BODY = "body"
    QUIT = "quit"


class RelayClient(LineOnlyReceiver, TimeoutMixin):
    """Sends one queued message to the smart host; ``done`` fires with
    the :data:`Results` of every recipient (never fails)."""

    MAX_LENGTH = 64 * 1024

    def __init__(
        self,
        hostname: str,
        entry: QueueEntry,
        message: Any,
        done: Deferred[Results],
        clock: Any = None,
        tls: Any = None,
        credentials: tuple[str, str] | None = None,
        loopback: bool = False,
    ) -> None:
        if clock is not None:
            # TimeoutMixin's timer, on the reactor given (not the global one).
            self.callLater = clock.callLater  # type: ignore[method-assign]
        self.hostname = hostname
        #: Client TLS options for STARTTLS when the smart host offers it
        #: (None: never).
        self.tls = tls
        self.tls_started = False
        #: User and password for AUTH PLAIN (None: no AUTH); sent only over
        #: TLS or to a smart host on ``loopback``.
        self.credentials = credentials
        self.loopback = loopback
        #: The lines of the last reply (EHLO: the extensions).
        self.last: list[str] = []
        self.entry = entry
        self.message = message
        self.done = done
        self.step = Step.GREETING
        self.results: Results = {}
        self.accepted: list[str] = []
        self._next = 0
        self._reply: list[str] = []
        self._line_start = True

    def connectionMade(self) -> None:
        """Wait for the greeting, within the time-out."""
        self.setTimeout(CLIENT_TIMEOUT)

    def lineReceived(self, line: bytes) -> None:
        """Collect one reply (multi-line: ``250-``) and act on it."""
        self.resetTimeout()
        text = line.decode("utf-8", "replace")
        self._reply.append(text)
        if len(text) > 3 and text[3] == "-":
            return
        lines, self._reply = self._reply, []
        self.last = lines
        code = int(text[:3]) if text[:3].isdigit() else 0
        self.handle(code, " ".join(one[4:] for one in lines).strip(), f"{code} {lines[-1][4:]}")

    def send(self, line: str) -> None:
        """One command."""
        self.sendLine(line.encode("utf-8"))

    def handle(self, code: int, text: str, said: str) -> None:
        """The exchange, one reply at a time."""
        ok = 200 <= code < 300
        if self.step is Step.GREETING:
            if not ok:
                return self.all_remaining(Outcome.TEMPORARY, said)
            self.step = Step.EHLO
            return self.send(f"EHLO {self.hostname}")
        if self.step is Step.EHLO:
            if not ok:
                self.step = Step.HELO
                return self.send(f"HELO {self.hostname}")
            offered = {line[4:].strip().upper() for line in self.last}
            if self.tls is not None and not self.tls_started and "STARTTLS" in offered:
                self.step = Step.STARTTLS
                return self.send("STARTTLS")
            if self.credentials is not None:
                return self.authenticate(offered)
            return self.mail()
        if self.step is Step.AUTH:
            if code != 235:
                return self.all_remaining(Outcome.TEMPORARY, f"smart host login refused: {said}")
            return self.mail()
        if self.step is Step.STARTTLS:
            if code != 220:
                return self.mail()
            # RFC 3207 §4.2: after the handshake the session starts again.
            self.tls_started = True
            self.transport.startTLS(self.tls)  # type: ignore[union-attr]
            self.step = Step.EHLO
            return self.send(f"EHLO {self.hostname}")
        if self.step is Step.HELO:
            return self.mail() if ok else self.all_remaining(self.kind(code), said)
        if self.step is Step.MAIL:
            if not ok:
                return self.all_remaining(self.kind(code), said)
            self.step = Step.RCPT
            return self.rcpt()
        if self.step is Step.RCPT:
            recipient = self.entry.recipients[self._next - 1]
            if ok:
                self.accepted.append(recipient)
            else:
                self.results[recipient] = (self.kind(code), said)
            return self.rcpt()
        if self.step is Step.DATA:
            if code != 354:
                return self.all_remaining(self.kind(code), said)
            self.step = Step.BODY
            sender = FileSender()
            sending = sender.beginFileTransfer(self.message, self.transport, self.stuff)
            sending.addCallbacks(lambda _: self.send("."), self.failed)
            return None
        if self.step is Step.BODY:
            outcome = Outcome.SENT if ok else self.kind(code)
            return self.all_remaining(outcome, said)
        return None

    def authenticate(self, offered: set[str]) -> None:
        """``AUTH PLAIN`` with the configured credentials, if it may be
        sent here; else the recipients wait for a later attempt."""
        assert self.credentials is not None
        mechanisms = {
            word
            for line in offered
            if line.startswith("AUTH ") or line.startswith("AUTH=")
            for word in line[5:].split()
        }
        if not (self.tls_started or self.loopback):
            return self.all_remaining(
                Outcome.TEMPORARY, "the smart host password is not sent over a clear link"
            )
        if "PLAIN" not in mechanisms:
            return self.all_remaining(Outcome.TEMPORARY, "the smart host offers no AUTH PLAIN")
        user, password = self.credentials
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
        self.step = Step.AUTH
        # Not through send(): nothing that logs commands may see this line.
        self.sendLine(b"AUTH PLAIN " + token.encode("ascii"))
        return None

    @staticmethod
    def kind(code: int) -> Outcome:
        """5xx is for good; anything else may pass."""
        return Outcome.PERMANENT if 500 <= code < 600 else Outcome.TEMPORARY

    def mail(self) -> None:
        """MAIL FROM."""
        self.step = Step.MAIL
        self.send(f"MAIL FROM:<{self.entry.sender}>")

    def rcpt(self) -> None:
        """The next RCPT TO, or DATA once every recipient was named."""
        if self._next < len(self.entry.recipients):
            self._next += 1
            self.send(f"RCPT TO:<{self.entry.recipients[self._next - 1]}>")
            return
        if not self.accepted:
            self.finish()
            return
        self.step = Step.DATA
        self.send("DATA")

    def stuff(self, chunk: bytes) -> bytes:
        """Dot-stuffing across chunks (RFC 5321 §4.5.2); the file is CRLF."""
        self.resetTimeout()
        if self._line_start and chunk.startswith(b"."):
            chunk = b"." + chunk
        chunk = chunk.replace(b"\n.", b"\n..")
        if chunk:
            self._line_start = chunk.endswith(b"\n")
        return chunk

    def all_remaining(self, outcome: Outcome, said: str) -> None:
        """Every recipient without a result so far gets ``outcome``."""
        for recipient in self.entry.recipients:
            self.results.setdefault(recipient, (outcome, said))
        self.finish()

    def failed(self, failure: Failure) -> None:
        """The transfer broke off."""
        self.all_remaining(Outcome.TEMPORARY, f"transfer failed: {failure.getErrorMessage()}")

    def finish(self) -> None:
        """Report once, say QUIT, close."""
        if self.step is not Step.QUIT:
            self.step = Step.QUIT
            if self.transport is not None and self.connected:
                self.send("QUIT")
                self.transport.loseConnection()
        self.report()

    def report(self) -> None:
        """Fire ``done`` once."""
        if not self.done.called:
            self.setTimeout(None)
            self.done.callback(dict(self.results))

    def timeoutConnection(self) -> None:
        """The smart host went silent."""
        self.all_remaining(Outcome.TEMPORARY, "the smart host did not answer in time")
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure | None = None) -> None:
        """A connection that ends early leaves recipients for later."""
        self.setTimeout(None)
        if not self.done.called:
            why = reason.getErrorMessage() if reason is not None else "connection lost"
            for recipient in self.entry.recipients:
                self.results.setdefault(recipient, (Outcome.TEMPORARY, why))
            self.report()


class _OneClient(ClientFactory):
    """Hands out one prepared client protocol."""

    noisy = False

    def __init__(self, client: RelayClient) -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> RelayClient:
        """The client."""
        self.client.factory = self
        return self.client


class Relay(Service):
    """The queue and its smart host (see the module documentation)."""

    log = Logger()

    def __init__(
        self,
        directory: Any,
        reactor: Any,
        hostname: str,
        pool: Any = None,
        scan: float = 5.0,
        connect: Callable[[str, int, ClientFactory], Deferred[Any]] | None = None,
    ) -> None:
        #: The directory (a FileDirectory: the queue is ``Queue/`` of its base).
        self.directory: IDirectory = directory
        self.reactor = reactor
        self.hostname = hostname
        self.pool = pool
        self.scan_interval = scan
        self.queue = MailQueue(queue_folder(directory.base))
        self.router = Router(directory)
        self.writer = DurableWriter(reactor, pool)
        self.in_flight: set[str] = set()
        self._connect = connect or self._tcp
        self._loop: LoopingCall | None = None

    # -- settings ----------------------------------------------------------

    def smart_host(self) -> tuple[str, int] | None:
        """The smart host of ``SubmitRelayHost``; None if unset or bad."""
        value = self.directory.server_settings().get("SubmitRelayHost")
        if not isinstance(value, str):
            return None
        try:
            return parse_host(value)
        except ValueError:
            self.log.warn("SubmitRelayHost {value!r} is not host:port", value=value)
            return None

    def configured(self) -> bool:
        """Whether remote recipients are accepted."""
        return self.smart_host() is not None

    def client_tls(self, host: str = "", verify: bool = False) -> Any:
        """TLS options for STARTTLS towards the smart host: used whenever it
        is offered, the certificate not verified (opportunistic, as between
        MTAs, RFC 3207 §4.1) unless ``verify``: a smart host we log in to
        must prove its name with a certificate the system trusts, else the
        password could go to whoever answers; None when ``SubmitRelayTLS``
        is ``No``."""
        value = self.directory.server_settings().get("SubmitRelayTLS", "Opportunistic")
        if str(value).lower() == "no":
            return None
        if verify and host:
            return optionsForClientTLS(host)
        return CertificateOptions()

    def credentials(self) -> tuple[str, str] | None:
        """``SubmitRelayUser`` and ``SubmitRelayPassword``, when both are set."""
        settings = self.directory.server_settings()
        user, password = settings.get("SubmitRelayUser"), settings.get("SubmitRelayPassword")
        if isinstance(user, str) and isinstance(password, str) and user and password:
            return user, password
        return None

    def expiry(self) -> int:
        """Seconds a message may wait in the queue."""
        value = self.directory.server_settings().get("SubmitQueueExpiry")
        try:
            return as_seconds(value) if value is not None else DEFAULT_EXPIRY
        except ValueError:
            return DEFAULT_EXPIRY

    # -- the service -------------------------------------------------------

    def startService(self) -> None:
        """Remove what a crash left half-queued; scan now and then."""
        super().startService()
        self._blocking(self.queue.remove_orphans).addErrback(
            lambda failure: self.log.failure("could not clean the queue", failure)
        )
        self._loop = LoopingCall(self.scan)
        self._loop.clock = self.reactor
        self._loop.start(self.scan_interval, now=True).addErrback(
            lambda failure: self.log.failure("queue scans stopped", failure)
        )

    def stopService(self) -> None:
        """Stop scanning (attempts in flight finish or are retried later)."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _blocking(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """File work in the pool (at once without one)."""
        if self.pool is None:
            try:
                return succeed(function(*args))
            except Exception:
                return fail()
        return deferToThreadPool(self.reactor, self.pool, function, *args)

    def enqueue(
        self,
        message: SpooledMessage,
        sender: str,
        recipients: list[str],
        account: str,
        hold: bool = False,
    ) -> Deferred[QueueEntry]:
        """Queue a message durably (fires once it is on disk), then try it;
        with ``hold``, not before :meth:`release` (or never: :meth:`withdraw`),
        so a submission can store its local copies first and take the
        queued one back if they fail."""
        now = self.reactor.seconds()
        queued = self._blocking(self.queue.add, message, sender, recipients, now, account)

        def added(entry: QueueEntry) -> QueueEntry:
            self.log.info(
                "queued {id} from <{sender}> for {recipients}",
                id=entry.id,
                sender=sender,
                recipients=", ".join(recipients),
            )
            if hold:
                # attempt() and the scan skip entries in flight.
                self.in_flight.add(entry.id)
            else:
                self.reactor.callLater(0, self.attempt, entry)
            return entry

        return queued.addCallback(added)

    def release(self, entry: QueueEntry) -> None:
        """Send a held entry now."""
        self.in_flight.discard(entry.id)
        self.reactor.callLater(0, self.attempt, entry)

    def withdraw(self, entry: QueueEntry) -> Deferred[Any]:
        """Take a held entry out of the queue (its message was refused)."""
        self.in_flight.discard(entry.id)
        self.log.info("queued {id} withdrawn", id=entry.id)
        return self._blocking(self.queue.remove, entry.id)

    def scan(self) -> Deferred[None]:
        """Try every entry whose time has come."""
        now = self.reactor.seconds()

        def due(entries: list[QueueEntry]) -> None:
            for entry in entries:
                if entry.id not in self.in_flight and entry.next_attempt <= now:
                    self.attempt(entry)

        return self._blocking(self.queue.entries).addCallback(due)

    # -- one attempt -------------------------------------------------------

    def attempt(self, entry: QueueEntry) -> Deferred[None] | None:
        """Send one entry to the smart host; record the outcome."""
        if entry.id in self.in_flight or not self.running:
            return None
        target = self.smart_host()
        if target is None:
            return None
        self.in_flight.add(entry.id)
        try:
            message = open(self.queue.message_path(entry.id), "rb")
        except OSError:
            self.in_flight.discard(entry.id)
            return None
        done: Deferred[Results] = Deferred()
        credentials = self.credentials()
        client = RelayClient(
            self.hostname,
            entry,
            message,
            done,
            self.reactor,
            self.client_tls(target[0], credentials is not None),
            credentials,
            is_loopback(target[0]),
        )
        factory = _OneClient(client)
        connecting = self._connect(target[0], target[1], factory)

        def unreachable(failure: Failure) -> None:
            if not done.called:
                why = f"cannot connect to {target[0]}:{target[1]}: {failure.getErrorMessage()}"
                done.callback({one: (Outcome.TEMPORARY, why) for one in entry.recipients})

        connecting.addErrback(unreachable)

        def close(results: Results) -> Results:
            message.close()
            return results

        recorded = done.addCallback(close).addCallback(self.record, entry)
        recorded.addErrback(
            lambda failure: self.log.failure("queue entry {id}", failure, id=entry.id)
        )
        return recorded.addBoth(lambda _: self.in_flight.discard(entry.id))

    def _tcp(self, host: str, port: int, factory: ClientFactory) -> Deferred[Any]:
        return HostnameEndpoint(self.reactor, host, port, timeout=30).connect(factory)

    def record(self, results: Results, entry: QueueEntry) -> Deferred[Any]:
        """Sent recipients leave the queue; refused ones are bounced; the
        rest wait for the next attempt (or expire)."""
        now = self.reactor.seconds()
        remaining = [one for one in entry.recipients if results[one][0] is Outcome.TEMPORARY]
        failed = [
            FailedRecipient(one, status_of(results[one][1]), results[one][1])
            for one in entry.recipients
            if results[one][0] is Outcome.PERMANENT
        ]
        for one in entry.recipients:
            self.log.info(
                "queue {id}: <{recipient}> {outcome}: {said}",
                id=entry.id,
                recipient=one,
                outcome=results[one][0].value,
                said=results[one][1],
            )
        if remaining and now - entry.created >= self.expiry():
            failed += [
                FailedRecipient(one, "4.4.7", f"expired in the queue; last: {results[one][1]}")
                for one in remaining
            ]
            remaining = []
        bounced = self.bounce(entry, failed) if failed else succeed(None)
        if not remaining:
            return bounced.addCallback(lambda _: self._blocking(self.queue.remove, entry.id))
        entry.recipients = remaining
        entry.attempts += 1
        entry.next_attempt = now + backoff(entry.attempts)
        entry.last_error = results[remaining[0]][1]
        return bounced.addCallback(lambda _: self._blocking(self.queue.save, entry))

    def bounce(self, entry: QueueEntry, failed: list[FailedRecipient]) -> Deferred[Any]:
        """Deliver a DSN to the sender's local mailbox."""
        if not entry.sender:
            self.log.info("queue {id}: no bounce for the null sender", id=entry.id)
            return succeed(None)
        try:
            address = FullName.parse(entry.sender, self.directory.main_domain())
            accounts = resolve_recipients(self.router, address)
        except (DeliveryError, BadLoginName) as error:
            self.log.warn(
                "queue {id}: cannot bounce to {sender}: {error}",
                id=entry.id,
                sender=entry.sender,
                error=str(error),
            )
            return succeed(None)
        return self._blocking(self._dsn, entry, failed).addCallback(
            lambda dsn: deliver_durably(self.directory, self.writer, accounts, dsn)
        )

    def _dsn(self, entry: QueueEntry, failed: list[FailedRecipient]) -> bytes:
        """The DSN text (reads the original's header: blocking)."""
        try:
            with open(self.queue.message_path(entry.id), "rb") as original:
                header = original.read(64 * 1024)
        except OSError:
            header = b""
        now = self.reactor.seconds()
        return delivery_status(
            self.hostname,
            entry.sender,
            failed,
            header,
            format_datetime(datetime.fromtimestamp(now, UTC)),
            f"<{secrets.token_hex(12)}@{self.hostname}>",
            f"dsn-{secrets.token_hex(8)}",
            format_datetime(datetime.fromtimestamp(entry.created, UTC)),
        )
