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
those of the other protocols.
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
from communigate.protocols.lines import LineSplitter, LineTooLong
from communigate.protocols.replies import CodedReplyServer

IDLE_TIMEOUT = 300
MAX_LINE = 1024


class PWDServer(CodedReplyServer):
    """One PWD session."""

    log = Logger()
    idle_timeout = IDLE_TIMEOUT
    timeout_code = 500
    factory: PWDFactory

    def __init__(self) -> None:
        self.lines = LineSplitter(MAX_LINE)
        self.user: bytes | None = None
        self.avatar: Any = None
        self.busy = False

    def greet(self) -> None:
        """The PWD greeting, naming the connection's domain."""
        self.connection = self.factory.service.connection(self.transport, "pwd", False)
        domain = self.factory.service.domain(self.connection)
        self.reply(200, f"{domain} CommuniGate password server ready")

    def dataReceived(self, data: bytes) -> None:
        """One command at a time."""
        self.resetTimeout()
        for event in self.lines.feed(data):
            if self.busy:
                self.reply(500, "one command at a time")
            elif isinstance(event, LineTooLong):
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
        elif name == b"NEWPASS" and self.avatar is not None and argument:
            self.newpass(argument)
        elif name == b"QUIT":
            self.reply(200, "bye")
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
            self.avatar = result[1]
            self.reply(200, "login OK")

        def refused(failure: Failure) -> None:
            error = failure.value
            self.reply(500, error.reply if isinstance(error, LoginFailure) else "login failed")

        def done(_: Any) -> None:
            self.busy = False

        self.factory.service.login(credentials, IPasswordChange).addCallbacks(
            accepted, refused
        ).addBoth(done)

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
            self.busy = False

        result.addCallbacks(stored, failed).addBoth(done)


class PWDFactory(Factory):
    """Builds PWD sessions."""

    protocol = PWDServer  # type: ignore[assignment]
    noisy = False

    def __init__(self, service: LoginService, reactor: Any) -> None:
        self.service = service
        self.reactor = reactor
