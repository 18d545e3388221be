"""What every process that serves sessions builds the same way.

The server (:mod:`communigate.tap`) and each of its worker processes
(:mod:`communigate.workers.child`) make one login core — thread pool,
password sources, checker, realm, portal, TLS contexts and the login
service every protocol asks — and, from it, the IMAP and POP3 factories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.application import internet
from twisted.application.service import IServiceCollection, Service
from twisted.cred.portal import Portal
from twisted.python.threadpool import ThreadPool

from communigate.cred.checkers.external import ExternalHelper, ExternalPassword
from communigate.cred.checkers.internal import InternalPassword
from communigate.cred.checkers.system import SystemPassword
from communigate.cred.kerberos.keys import DomainKeys
from communigate.observe.events import IActivityObserver
from communigate.portal.accounts import AccountResolver
from communigate.portal.checker import AccountChecker
from communigate.portal.realm import AccountRealm
from communigate.portal.router import Router
from communigate.protocols.access import LoginService, salt_key
from communigate.protocols.imap4.server import IMAP4Factory
from communigate.protocols.pop3.server import POP3Factory
from communigate.protocols.tls import DomainContexts
from communigate.store.changes import MailboxNotifier, inotify_watch
from communigate.store.files import FileDirectory
from communigate.store.open import directory_service
from communigate.store.spool import spool_folder
from communigate.workpool import BackgroundPool, HashingLane

#: Seconds between checks that logged-in accounts still exist.
SESSION_SWEEP = 2
#: The listeners whose connections worker processes can serve.
MAIL_LISTENERS = ("pop3", "pop3s", "imap4", "imaps")


class ThreadPoolService(Service):
    """Starts and stops the blocking-work thread pool with the server."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        """Start the pool."""
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        """Stop the pool (waits for running work)."""
        super().stopService()
        self.pool.stop()


class HelperService(Service):
    """Stops the External Authentication helper with the server."""

    def __init__(self, helper: ExternalHelper) -> None:
        self.helper = helper

    def stopService(self) -> None:
        """Stop the helper program, if it runs."""
        super().stopService()
        self.helper.stop()


class NotifierService(Service):
    """Stops watching mailboxes with the server."""

    def __init__(self, notifier: MailboxNotifier) -> None:
        self.notifier = notifier

    def stopService(self) -> None:
        """Close the inotify descriptor."""
        super().stopService()
        self.notifier.close()


@dataclass
class LoginCore:
    """The parts of one process that every protocol shares."""

    directory: FileDirectory
    pool: BackgroundPool
    helper: ExternalHelper
    checker: AccountChecker
    realm: AccountRealm
    tls: DomainContexts
    service: LoginService


def login_core(
    options: Any,
    reactor: Any,
    parent: IServiceCollection,
    directory: FileDirectory,
    observer: IActivityObserver,
    sessions: Any,
    hashing_threads: int | None = None,
) -> LoginCore:
    """Build the login core of ``options`` (``threads``, ``hashing-threads``
    unless ``hashing_threads`` is given) under ``parent``; ``sessions`` is
    the table of logged-in sessions."""
    pool = BackgroundPool(minthreads=1, maxthreads=options["threads"], name="communigate-auth")
    ThreadPoolService(pool).setServiceParent(parent)
    hashing = HashingLane(pool, hashing_threads or options["hashing-threads"] or None)
    refresher = directory_service(directory, reactor, pool)
    if refresher is not None:
        refresher.setServiceParent(parent)
    resolver = AccountResolver(directory)
    helper = ExternalHelper(reactor, directory.base)
    HelperService(helper).setServiceParent(parent)
    sources = [
        InternalPassword(reactor, hashing),
        SystemPassword(reactor, pool, directory),
        ExternalPassword(helper, directory),
    ]
    checker = AccountChecker(resolver, sources, reactor, hashing, observer, writes=pool)
    realm = AccountRealm(directory, reactor, pool)
    portal = Portal(realm, [checker])
    # Sessions of deleted accounts end within this many seconds.
    sweep = internet.TimerService(SESSION_SWEEP, realm.sessions.sweep)
    sweep.clock = reactor
    sweep.setServiceParent(parent)
    tls = DomainContexts(directory)
    service = LoginService(
        portal,
        resolver,
        tls,
        salt_key(directory.base),
        observer=observer,
        clock=reactor.seconds,
        sessions=sessions,
        kerberos=DomainKeys(directory, Router(directory).login_page_domain),
    )
    return LoginCore(directory, pool, helper, checker, realm, tls, service)


def mailbox_changes(reactor: Any, parent: IServiceCollection) -> MailboxNotifier:
    """The notifier IDLE sessions wait on: this process's changes and,
    through inotify, every other process's."""
    changes = MailboxNotifier(reactor, kernel=inotify_watch(reactor))
    NotifierService(changes).setServiceParent(parent)
    return changes


def mail_factories(
    options: Any, core: LoginCore, reactor: Any, changes: MailboxNotifier
) -> dict[str, Any]:
    """The factories of :data:`MAIL_LISTENERS` (an ``s`` listener is TLS
    from the first byte, which its listener adds)."""
    timeout = options["pop3-timeout"]
    service, tls, pool = core.service, core.tls, core.pool
    # Messages are spooled beside the mailboxes, so delivery is a hard link.
    spool = spool_folder(core.directory.base)
    limit = options["max-message"]

    def imap(implicit: bool) -> IMAP4Factory:
        return IMAP4Factory(
            service,
            reactor,
            tls,
            implicit_tls=implicit,
            max_message=limit,
            spool=spool,
            pool=pool,
            changes=changes,
        )

    return {
        "pop3": POP3Factory(service, reactor, timeout, tls),
        "pop3s": POP3Factory(service, reactor, timeout, tls, implicit_tls=True),
        "imap4": imap(False),
        "imaps": imap(True),
    }
