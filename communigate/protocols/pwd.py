"""The password service (PWD, TCP port 106; spec §9), for changing passwords.

Dialogue as CommuniGate's::

    200 <domain> CommuniGate password server ready <timestamp@host>
    USER name            300 please send the PASS
    PASS password        200 login OK
    NEWPASS new          200 password changed   (needs PWDAllowed)
    QUIT                 200 bye

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

from communigate.cred.credentials import LoginPassword
from communigate.cred.errors import LoginFailure
from communigate.portal.passwordchange import IPasswordChange
from communigate.protocols.access import LoginService
from communigate.protocols.limits import LimitsReader
from communigate.protocols.lines import LineTooLong
from communigate.protocols.replies import CodedReplyServer


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

    def greet(self) -> None:
        """The PWD greeting, naming the connection's domain."""
        self.connection = self.factory.service.connection(self.transport, "pwd", False)
        domain = self.factory.service.domain(self.connection)
        self.reply(200, f"{domain} CommuniGate password server ready")

    def line(self, event: bytes | LineTooLong) -> None:
        """One command (pipelined ones wait their turn in the queue)."""
        if isinstance(event, LineTooLong):
            self.reply(500, "line too long")
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

        def accepted(result: tuple[Any, Any, Any]) -> None:
            _, self.avatar, self.logout = result
            if not self.connected:
                self.logout()
                return
            watch = getattr(self.avatar, "watch", None)
            if watch is not None:
                watch(self.ended_from_outside)
            self.logged_in()
            self.reply(200, "login OK")

        def refused(failure: Failure) -> None:
            error = failure.value
            self.reply(500, error.reply if isinstance(error, LoginFailure) else "login failed")

        def done(_: Any) -> None:
            self.resume()

        self.factory.service.login(credentials, IPasswordChange).addCallbacks(
            accepted, refused
        ).addBoth(done)

    def ended_from_outside(self, reason: str) -> None:
        """The account was deleted: say so and close."""
        self.reply(500, reason)
        self.queue.clear()
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Forget the session."""
        super().connectionLost(reason)
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
