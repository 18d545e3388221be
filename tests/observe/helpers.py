"""A login service and IMAP/POP3 sessions whose activity the test sees."""

from __future__ import annotations

from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from communigate.cred.checkers.internal import InternalPassword
from communigate.observe.events import (
    EventLog,
    Fanout,
    IActivityObserver,
    LockoutEvent,
    LoginEvent,
    LogoutEvent,
)
from communigate.observe.traffic import CountingFactory
from communigate.portal.accounts import AccountResolver
from communigate.portal.checker import AccountChecker
from communigate.portal.realm import AccountRealm
from communigate.protocols.access import LoginService
from communigate.protocols.imap4.server import IMAP4Factory
from communigate.protocols.pop3.server import POP3Factory
from communigate.store.files import FileDirectory
from tests.conftest import Exchange, SyncClockReactor, SyncThreadPool

CLIENT = IPv4Address("TCP", "127.0.0.9", 40001)
SERVER = IPv4Address("TCP", "127.0.0.1", 143)


@implementer(IActivityObserver)
class Recorder:
    """Keeps every event it is told of."""

    def __init__(self) -> None:
        self.logins: list[LoginEvent] = []
        self.logouts: list[LogoutEvent] = []
        self.lockouts: list[LockoutEvent] = []
        self.open: list[str] = []

    def login(self, event: LoginEvent) -> None:
        self.logins.append(event)

    def opened(self, protocol: str) -> None:
        self.open.append(protocol)

    def logout(self, event: LogoutEvent) -> None:
        self.logouts.append(event)

    def lockout(self, event: LockoutEvent) -> None:
        self.lockouts.append(event)


def observed_service(
    directory: FileDirectory, observer: IActivityObserver
) -> tuple[LoginService, SyncClockReactor]:
    """A login service on a Clock reactor that reports to ``observer``
    (and to the log)."""
    reactor = SyncClockReactor()
    pool = SyncThreadPool()
    resolver = AccountResolver(directory)
    source = InternalPassword(reactor, pool)  # type: ignore[arg-type]
    both = Fanout([EventLog(), observer])
    checker = AccountChecker(resolver, [source], reactor, pool, both)  # type: ignore[arg-type]
    portal = Portal(AccountRealm(directory), [checker])
    service = LoginService(
        portal,
        resolver,
        scram_key=b"k" * 32,
        hostname="test.host",
        observer=both,
        clock=reactor.seconds,
    )
    return service, reactor


class Wire(Exchange):
    """A protocol server behind a counting wrapper on a StringTransport."""

    def __init__(self, factory: Any, reactor: SyncClockReactor, host: IPv4Address = SERVER):
        self.reactor = reactor
        self.counting = CountingFactory(factory)
        wrapper = self.counting.buildProtocol(CLIENT)
        self.transport = StringTransport(hostAddress=host, peerAddress=CLIENT)
        wrapper.makeConnection(self.transport)
        self.wrapper = wrapper
        self.server = wrapper
        self.take()


def imap(service: LoginService, reactor: SyncClockReactor) -> Wire:
    """An IMAP session through a counting wrapper."""
    return Wire(IMAP4Factory(service, reactor, max_message=10**6), reactor)


def pop3(service: LoginService, reactor: SyncClockReactor) -> Wire:
    """A POP3 session through a counting wrapper."""
    host = IPv4Address("TCP", "127.0.0.1", 110)
    return Wire(POP3Factory(service, reactor, 600, None), reactor, host)
