"""The LMTP server (RFC 2033): an MTA such as Postfix delivers here.

Each RCPT is routed as mail through the Router (aliases, groups, ``Mail:``
records); unknown or non-local recipients get 550 at RCPT time.  After DATA
one reply per accepted recipient says whether its copy was stored.  The
same delivery code serves ``communigate deliver``.  LMTP has no login:
listen only where trusted MTAs can connect (loopback or a Unix socket).

The message text is spooled to a file as it arrives
(:mod:`communigate.store.spool`) and linked into each recipient's INBOX, so
a connection needs little memory whatever the message size; line length
and idle time-out are the shared connection limits
(:mod:`communigate.protocols.limits`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from communigate.portal.delivery import DeliveryError, deliver_durably, resolve_recipients
from communigate.portal.durable import DurableWriter
from communigate.portal.names import BadLoginName, FullName
from communigate.portal.router import LocalAccount, Router
from communigate.protocols.limits import LimitsReader
from communigate.protocols.lines import LineTooLong
from communigate.protocols.replies import CodedReplyServer
from communigate.store.directory import IDirectory
from communigate.store.spool import MessageSpool, default_spool

MAX_RECIPIENTS = 1000


def _address(argument: bytes, keyword: bytes) -> str | None:
    """The address in ``FROM:<a@b> SIZE=1`` / ``TO:<a@b>``."""
    if not argument.upper().startswith(keyword):
        return None
    rest = argument[len(keyword) :].strip()
    if not rest.startswith(b"<") or b">" not in rest:
        return None
    return rest[1 : rest.index(b">")].decode("utf-8", "replace")


class LMTPServer(CodedReplyServer):
    """One LMTP session."""

    log = Logger()
    timeout_code = 421
    login_required = False
    factory: LMTPFactory

    def __init__(self) -> None:
        super().__init__()
        self.greeted = False
        self.sender: str | None = None
        self.recipients: list[tuple[str, list[LocalAccount]]] = []
        #: The message being received, after DATA.
        self.data: MessageSpool | None = None
        self.in_data = False
        self.too_big = False
        self.header_size = 0

    def greet(self) -> None:
        """The LMTP greeting."""
        self.reply(220, f"{self.factory.hostname} LMTP ready")

    def line(self, event: bytes | LineTooLong) -> None:
        """A command, or message text after DATA."""
        if self.in_data:
            self.data_line(event)
        elif isinstance(event, LineTooLong):
            self.reply(500, "line too long")
        else:
            self.command(event)

    def connectionLost(self, reason: Any = None) -> None:
        """Drop a message that was being received."""
        super().connectionLost(reason)
        self.discard()

    def command(self, line: bytes) -> None:
        """Dispatch one command."""
        verb, _, argument = line.partition(b" ")
        name = verb.upper().decode("ascii", "replace")
        handler = getattr(self, f"do_{name}", None) if name.isalpha() else None
        if handler is None:
            self.reply(500, "unknown command")
            return
        handler(argument.strip())

    def do_LHLO(self, argument: bytes) -> None:
        """RFC 2033 §4.1."""
        self.greeted = True
        self.reset()
        self.transport.write(  # type: ignore[union-attr]
            f"250-{self.factory.hostname}\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
            f"250-SIZE {self.factory.max_message}\r\n250 8BITMIME\r\n".encode()
        )

    def do_HELO(self, argument: bytes) -> None:
        """LMTP requires LHLO (RFC 2033 §4.1)."""
        self.reply(500, "5.5.1 use LHLO")

    do_EHLO = do_HELO

    def reset(self) -> None:
        """Forget the transaction."""
        self.discard()
        self.sender, self.recipients = None, []
        self.in_data, self.too_big = False, False

    def discard(self) -> None:
        """Drop the spooled message, if any."""
        if self.data is not None:
            self.data.discard()
            self.data = None

    def do_RSET(self, argument: bytes) -> None:
        """Abort the transaction."""
        self.reset()
        self.reply(250, "2.0.0 OK")

    def do_NOOP(self, argument: bytes) -> None:
        """Nothing."""
        self.reply(250, "2.0.0 OK")

    def do_QUIT(self, argument: bytes) -> None:
        """Close."""
        self.reply(221, "2.0.0 bye")
        self.transport.loseConnection()  # type: ignore[union-attr]

    def do_MAIL(self, argument: bytes) -> None:
        """The envelope sender."""
        if not self.greeted:
            self.reply(503, "5.5.1 send LHLO first")
            return
        if self.sender is not None:
            self.reply(503, "5.5.1 nested MAIL command")
            return
        sender = _address(argument, b"FROM:")
        if sender is None:
            self.reply(501, "5.5.4 syntax: MAIL FROM:<address>")
            return
        self.sender = sender
        self.reply(250, "2.1.0 sender OK")

    def do_RCPT(self, argument: bytes) -> None:
        """A recipient, routed now so unknown ones are refused at once."""
        if self.sender is None:
            self.reply(503, "5.5.1 send MAIL first")
            return
        recipient = _address(argument, b"TO:")
        if recipient is None:
            self.reply(501, "5.5.4 syntax: RCPT TO:<address>")
            return
        if len(self.recipients) >= MAX_RECIPIENTS:
            self.reply(452, "4.5.3 too many recipients")
            return
        try:
            address = FullName.parse(recipient, self.factory.directory.main_domain())
            accounts = resolve_recipients(self.factory.router, address)
        except (DeliveryError, BadLoginName) as error:
            self.reply(550, f"5.1.1 {recipient}: {error}")
            return
        self.recipients.append((recipient, accounts))
        self.reply(250, "2.1.5 recipient OK")

    def do_DATA(self, argument: bytes) -> None:
        """Start the message text."""
        if not self.recipients:
            self.reply(503, "5.5.1 no valid recipients")
            return
        self.in_data = True
        try:
            self.data = MessageSpool(self.factory.spool)
        except OSError:
            self.log.failure("LMTP could not open a spool file")
        else:
            header = f"Return-Path: <{self.sender}>\r\n".encode("utf-8", "replace")
            self.data.write(header)
            self.header_size = len(header)
        self.reply(354, "end data with <CR><LF>.<CR><LF>")

    def data_line(self, event: bytes | LineTooLong) -> None:
        """A line of the message (written to the spool), or its end."""
        if isinstance(event, LineTooLong):
            self.too_big = True
            self.discard()
            return
        if event == b".":
            self.finish()
            return
        if self.data is None:
            return
        self.data.write((event[1:] if event.startswith(b".") else event) + b"\r\n")
        if self.data.size - self.header_size > self.factory.max_message:
            self.too_big = True
            self.discard()

    def finish(self) -> None:
        """Store one copy per recipient; one reply each (RFC 2033 §4.2),
        sent once the copies are on disk (flushed in the thread pool;
        pipelined commands wait until then)."""
        spool, self.data = self.data, None
        message = None
        if spool is not None and not self.too_big:
            try:
                message = spool.finish()
            except OSError:
                self.log.failure("LMTP could not spool the message")
        outcomes: list[Deferred[Any]] = []
        for _recipient, accounts in self.recipients:
            if self.too_big or message is None:
                outcomes.append(succeed(None))
                continue
            outcomes.append(
                deliver_durably(self.factory.directory, self.factory.writer, accounts, message)
            )
        # Every copy is staged (linked): the spool itself can go.
        if message is not None:
            message.discard()
        elif spool is not None:
            spool.discard()
        recipients, too_big, stored = self.recipients, self.too_big, message is not None
        self.reset()
        self.busy = True
        waiting = DeferredList(outcomes, consumeErrors=True)
        waiting.addCallback(self._delivered, recipients, too_big, stored)
        waiting.addErrback(lambda failure: self.log.failure("LMTP replies failed", failure))
        waiting.addBoth(lambda _: self.resume())

    def _delivered(
        self,
        outcomes: list[tuple[bool, Any]],
        recipients: list[tuple[str, list[LocalAccount]]],
        too_big: bool,
        stored: bool,
    ) -> None:
        """One reply per recipient, in order, for the finished deliveries."""
        if not self.connected:
            return
        for (recipient, _), (success, result) in zip(recipients, outcomes, strict=True):
            if too_big:
                self.reply(552, f"5.3.4 message too big for {recipient}")
            elif not stored:
                self.reply(451, f"4.3.0 {recipient}: temporary failure, try again")
            elif not success:
                self.log.failure("LMTP delivery to {recipient} failed", result, recipient=recipient)
                self.reply(451, f"4.3.0 {recipient}: temporary failure, try again")
            else:
                self.log.info("LMTP delivered to {recipient}", recipient=recipient)
                self.reply(250, f"2.0.0 {recipient} delivered")


class LMTPFactory(Factory):
    """Builds LMTP sessions delivering into the directory's mail store.

    Each connection takes its limits from ``limits``, by default the
    ``Limits`` server setting; messages are spooled into the folder
    ``spool`` (the server passes ``Spool/`` of the base directory) and
    flushed to disk in the thread pool ``pool``."""

    protocol = LMTPServer  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        directory: IDirectory,
        reactor: Any,
        hostname: str,
        max_message: int,
        limits: LimitsReader | None = None,
        spool: Path | None = None,
        pool: Any = None,
    ) -> None:
        self.directory = directory
        #: Deliveries are flushed to disk in ``pool`` (at once without one).
        self.writer = DurableWriter(reactor, pool)
        self.router = Router(directory)
        self.reactor = reactor
        self.hostname = hostname
        self.max_message = max_message
        self.limits = (
            limits if limits is not None else LimitsReader("lmtp", None, directory.server_settings)
        )
        self.spool = spool if spool is not None else default_spool()
