"""The password service (PWD, TCP port 106; spec §9), for changing passwords.

Dialogue as CommuniGate's::

    200 <domain> CommuniGate password server ready <timestamp@host>
    USER name            300 please send the PASS
    PASS password        200 login OK
    APOP name md5hex     200 login OK   (MD5 of the banner timestamp and password)
    AUTH mech [initial]  300 base64 challenge ... 200 login OK
    NEWPASS new          200 password changed   (needs PWDAllowed)
    QUIT                 200 bye

``AUTH`` runs the one SASL implementation every protocol shares, so every
method that logs in to POP3 or IMAP logs in here: each challenge is a
``300`` line with its base64 text (empty: ``300``), the client answers
with a base64 line (``=`` for empty, ``*`` to cancel), as in SMTP's AUTH
(RFC 4954) with this protocol's codes.  ``AUTH`` with no mechanism lists
those the domain advertises.

Login goes through the one portal, so an account that logged in with its
OS or External password may set a CommuniGate password here (the migration
path of spec §2); the new password is stored under the account's
``PasswordEncryption``, hashed in the thread pool.  Clear-text rules are
those of the other protocols.  Commands may be pipelined: they are answered
one after another, in order.  The shared connection limits apply
(:mod:`communigate.protocols.limits`).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from communigate.cred.credentials import ClearSecretProof, LoginPassword
from communigate.cred.errors import LoginFailure
from communigate.cred.sasl import framing, registry
from communigate.cred.sasl.cram import apop_check
from communigate.cred.sasl.mechanism import MalformedResponse
from communigate.portal.passwordchange import IPasswordChange
from communigate.protocols.access import LoginService
from communigate.protocols.limits import LimitsReader
from communigate.protocols.lines import LineTooLong
from communigate.protocols.replies import CodedReplyServer
from communigate.protocols.saslexchange import SASLExchange


class PWDServer(CodedReplyServer):
    """One PWD session."""

    log = Logger()
    timeout_code = 500
    factory: PWDFactory

    def __init__(self) -> None:
        super().__init__()
        self.user: bytes | None = None
        self.avatar: Any = None
        self.logout: Any = None
        self.timestamp = b""
        self.exchange: SASLExchange | None = None

    def greet(self) -> None:
        """The PWD greeting, naming the connection's domain, with the APOP
        timestamp."""
        service = self.factory.service
        self.connection = service.connection(self.transport, "pwd", False)
        self.timestamp = registry.timestamp(service.hostname)
        domain = service.domain(self.connection)
        self.reply(
            200, f"{domain} CommuniGate password server ready {self.timestamp.decode('ascii')}"
        )

    def line(self, event: bytes | LineTooLong) -> None:
        """One command (pipelined ones wait their turn in the queue)."""
        if isinstance(event, LineTooLong):
            if self.exchange is not None:
                self.exchange.cancel()
                self.exchange = None
                self.busy = False
            self.reply(500, "line too long")
        elif self.exchange is not None:
            # Later lines wait for the next challenge or the verdict.
            self.busy = True
            self.exchange.line(event)
        else:
            self.command(event)

    def command(self, line: bytes) -> None:
        """Dispatch."""
        verb, _, argument = line.partition(b" ")
        name = verb.upper()
        if name == b"USER" and argument and self.avatar is None:
            self.user = argument.strip()
            self.reply(300, "please send the PASS")
        elif name == b"PASS" and self.user is not None and self.avatar is None:
            self.login(argument)
        elif name == b"APOP" and self.avatar is None:
            self.apop(argument)
        elif name == b"AUTH" and self.avatar is None:
            self.authenticate(argument.split())
        elif name == b"NEWPASS" and self.avatar is not None:
            self.newpass(argument)
        elif name == b"QUIT":
            self.reply(200, "bye")
            self.queue.clear()
            self.transport.loseConnection()  # type: ignore[union-attr]
        else:
            self.reply(500, "unknown command or wrong sequence")

    def login(self, password: bytes) -> None:
        """PASS through the portal."""
        assert self.user is not None
        credentials = LoginPassword(self.user, password, self.connection, None, "USER")
        self.user = None
        self.busy = True
        self.factory.service.login(credentials, IPasswordChange).addBoth(self.login_done)

    def apop(self, argument: bytes) -> None:
        """``APOP name digest``: the MD5 of the greeting's timestamp and the
        password (RFC 1939 §7), checked by the portal like POP3's."""
        name, _, digest = argument.strip().rpartition(b" ")
        if not name or len(digest) != 32:
            self.reply(500, "APOP needs a name and a 32-digit digest")
            return
        proof = ClearSecretProof(name, apop_check(self.timestamp, digest), self.connection, "APOP")
        self.busy = True
        self.factory.service.login(proof, IPasswordChange).addBoth(self.login_done)

    def authenticate(self, arguments: list[bytes]) -> None:
        """``AUTH mechanism [initial-response]`` through the shared SASL layer."""
        service = self.factory.service
        if not arguments:
            self.reply(200, " ".join(service.mechanisms(self.connection)) or "none")
            return
        name = arguments[0].decode("ascii", "replace").upper()
        if name == "SESSIONID" and len(arguments) == 3:
            # ``AUTH SESSIONID name session-id``: two words, not base64 (spec §9).
            arguments = [arguments[0], framing.encode(b" ".join(arguments[1:]))]
        if name in registry.CLEAR_TEXT and not service.clear_text_allowed(self.connection):
            self.reply(500, "clear-text methods are not allowed on this link")
            return
        mechanism = registry.create(name, service.exchange_context(self.connection, self.transport))
        if mechanism is None or len(arguments) > 2:
            self.reply(500, "unsupported authentication method")
            return
        initial = None
        if len(arguments) == 2:
            try:
                initial = framing.decode(arguments[1])
            except (framing.Aborted, MalformedResponse):
                self.reply(500, "invalid initial response")
                return
        self.busy = True
        self.exchange = SASLExchange(
            mechanism, service, IPasswordChange, self._challenge, self._exchange_done
        )
        self.exchange.start(initial)

    def _challenge(self, data: bytes) -> None:
        self.reply(300, data.decode("ascii"))
        self.busy = False
        self.run_queue()

    def _exchange_done(self, result: Any) -> None:
        self.exchange = None
        self.login_done(result)

    def login_done(self, result: Any) -> None:
        """The portal's answer to any login: the avatar or a refusal."""
        if isinstance(result, Failure):
            error = result.value
            self.reply(500, error.reply if isinstance(error, LoginFailure) else "login failed")
        else:
            _, self.avatar, self.logout = result
            if not self.connected:
                self.logout()
                self.logout = None
            else:
                watch = getattr(self.avatar, "watch", None)
                if watch is not None:
                    watch(self.ended_from_outside)
                self.logged_in()
                self.reply(200, "login OK")
        self.resume()

    def ended_from_outside(self, reason: str) -> None:
        """The account was deleted: say so and close."""
        self.reply(500, reason)
        self.queue.clear()
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Forget the session."""
        super().connectionLost(reason)
        if self.exchange is not None:
            self.exchange.cancel()
            self.exchange = None
        if self.logout is not None:
            self.logout()
            self.logout = None

    def newpass(self, password: bytes) -> None:
        """Store the new CommuniGate password."""
        try:
            result = self.avatar.change(password)
        except PermissionError as error:
            self.reply(500, str(error))
            return
        self.busy = True

        def stored(_: Any) -> None:
            self.log.info("PWD password of {account} changed", account=self.avatar.account)
            self.reply(200, "password changed")

        def failed(failure: Failure) -> None:
            self.log.failure("PWD password change failed", failure)
            self.reply(500, "password not changed")

        def done(_: Any) -> None:
            self.resume()

        result.addCallbacks(stored, failed).addBoth(done)


class PWDFactory(Factory):
    """Builds PWD sessions; each takes its limits from ``limits``, by
    default the ``Limits`` server setting."""

    protocol = PWDServer  # type: ignore[assignment]
    noisy = False

    def __init__(
        self, service: LoginService, reactor: Any, limits: LimitsReader | None = None
    ) -> None:
        self.service = service
        self.reactor = reactor
        if limits is None:
            limits = LimitsReader("pwd", None, service.resolver.directory.server_settings)
        self.limits = limits
