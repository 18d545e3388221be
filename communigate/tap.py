"""``twistd communigate``: options and the service tree.

One :class:`~twisted.cred.portal.Portal` (resolver, password sources, realm)
serves every protocol listener.  On its first start with an empty base
directory the server initialises it (Main Domain, postmaster with a generated
password, printed once).

What administrators watch (:mod:`communigate.observe`): every login
attempt is one structured log event, every logged-in session's end another
(with its session id, duration and bytes); ``--log-format json`` writes the
log as one JSON object per line, ``--log-rotate``/``--log-keep`` rotate it
by size or by day and keep a number of old files; ``--metrics`` serves
Prometheus/OpenMetrics text at ``/metrics``.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from twisted.application import internet, strports
from twisted.application.service import IService, MultiService, Service
from twisted.cred.portal import Portal
from twisted.internet.threads import deferToThreadPool
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.server import Site

from communigate.cli.arguments import DEFAULT_BASE, base_directory
from communigate.cred.checkers.external import ExternalHelper, ExternalPassword
from communigate.cred.checkers.internal import InternalPassword
from communigate.cred.checkers.system import SystemPassword
from communigate.observe.events import EventLog, Fanout, IActivityObserver
from communigate.observe.logs import FORMATS, install_observer, log_observer, parse_rotate
from communigate.observe.metrics import Metrics, metrics_root
from communigate.observe.traffic import CountingFactory
from communigate.portal.accounts import AccountResolver
from communigate.portal.checker import AccountChecker
from communigate.portal.realm import AccountRealm
from communigate.portal.tftpfiles import TFTPFiles
from communigate.protocols.access import LoginService, salt_key
from communigate.protocols.ftp.server import FTPFactory
from communigate.protocols.imap4.server import IMAP4Factory
from communigate.protocols.listeners import add_listeners, parse_udp
from communigate.protocols.lmtp.server import LMTPFactory
from communigate.protocols.pop3.server import IDLE_TIMEOUT, POP3Factory
from communigate.protocols.pwd import PWDFactory
from communigate.protocols.tftp.server import TFTPServer
from communigate.protocols.tls import DomainContexts
from communigate.store.changes import MailboxNotifier, inotify_watch
from communigate.store.files import FileDirectory
from communigate.store.initialise import default_main_domain, initialise
from communigate.store.spool import remove_stale, spool_folder
from communigate.store.uploads import remove_stale_everywhere

#: Seconds between checks that logged-in accounts still exist.
SESSION_SWEEP = 2

LISTENERS = ("pop3", "pop3s", "imap4", "imaps", "lmtp", "tftp", "ftp", "ftps", "pwd")


class Options(usage.Options):
    """Command-line options of ``twistd communigate``."""

    synopsis = "[options]"
    longdesc = (
        "Serve the accounts of a communigate base directory.  Listener options "
        "take Twisted endpoint descriptions and may be repeated, e.g. "
        "--pop3 tcp:110:interface=127.0.0.1 --pop3 tcp:110:interface=127.0.0.2; "
        "the domain of a connection is the one that owns the local address the "
        "client reached.  A description without backlog= listens with a backlog "
        "of 1024.  Line lengths, the login deadline and idle time-outs are the "
        "server setting Limits (see README.rst, Connection limits)."
    )
    optParameters = [
        [
            "base",
            "b",
            None,
            f"Base directory (default: $COMMUNIGATE_BASE, else {DEFAULT_BASE}); "
            "created and initialised on first start.",
        ],
        [
            "main-domain",
            None,
            None,
            "Name of the Main Domain when the base directory is created "
            "(default: this host's name).",
        ],
        ["threads", None, 4, "Threads for password hashing and other blocking work.", int],
        [
            "pop3-timeout",
            None,
            IDLE_TIMEOUT,
            "Seconds a POP3 session may stay idle (unless Limits says otherwise).",
            int,
        ],
        ["tftp-per-address", None, 8, "TFTP transfers one client address may run at once.", int],
        [
            "passive-ports",
            None,
            "0-0",
            "FTP passive port range LOW-HIGH (0-0: any free port).",
        ],
        [
            "max-message",
            None,
            64 * 1024 * 1024,
            "Largest message (bytes) a client may APPEND.",
            int,
        ],
        [
            "log-format",
            None,
            "text",
            "Log as 'text' lines or as one 'json' object per line (twistd's --logfile says where).",
        ],
        [
            "log-rotate",
            None,
            None,
            "Rotate the log file at a size (10M, 500K, bytes) or 'daily' "
            "(default: twistd's, at 1M); 'never' to keep one file.",
        ],
        ["log-keep", None, None, "Old log files to keep (default: all).", int],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus/OpenMetrics text at /metrics on this endpoint, "
            "e.g. tcp:9100:interface=127.0.0.1 (default: no metrics).",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        for name in LISTENERS:
            self[name] = []
        #: ``--log-rotate`` parsed: bytes, "daily", or None (never).
        self.rotate: int | str | None = 1_000_000

    def opt_pop3(self, description: str) -> None:
        """POP3 listener with STLS, an endpoint description (repeatable;
        default tcp:110 unless another listener is given)."""
        self["pop3"].append(description)

    def opt_pop3s(self, description: str) -> None:
        """POP3 listener with implicit TLS, e.g. tcp:995 (repeatable)."""
        self["pop3s"].append(description)

    def opt_imap4(self, description: str) -> None:
        """IMAP4 listener with STARTTLS, e.g. tcp:143 (repeatable)."""
        self["imap4"].append(description)

    def opt_imaps(self, description: str) -> None:
        """IMAP4 listener with implicit TLS, e.g. tcp:993 (repeatable)."""
        self["imaps"].append(description)

    def opt_lmtp(self, description: str) -> None:
        """LMTP listener for an MTA, e.g. tcp:24:interface=127.0.0.1 or
        unix:/run/communigate/lmtp (repeatable; no login: keep it local)."""
        self["lmtp"].append(description)

    def opt_ftp(self, description: str) -> None:
        """FTP listener with AUTH TLS, e.g. tcp:21 (repeatable)."""
        self["ftp"].append(description)

    def opt_ftps(self, description: str) -> None:
        """FTP listener with implicit TLS, e.g. tcp:990 (repeatable)."""
        self["ftps"].append(description)

    def opt_pwd(self, description: str) -> None:
        """Password service listener, e.g. tcp:106 (repeatable)."""
        self["pwd"].append(description)

    def opt_tftp(self, description: str) -> None:
        """TFTP listener, udp:PORT[:interface=ADDR], e.g. udp:69 (repeatable)."""
        self["tftp"].append(description)

    def postOptions(self) -> None:
        """Without any listener option, listen on the standard ports; check
        the log options."""
        if not any(self[name] for name in LISTENERS):
            self["pop3"] = ["tcp:110"]
            self["imap4"] = ["tcp:143"]
        if self["log-format"] not in FORMATS:
            raise usage.UsageError(f"--log-format must be one of {', '.join(FORMATS)}")
        try:
            self.rotate = parse_rotate(self["log-rotate"] or "1000000")
        except ValueError as error:
            raise usage.UsageError(f"--log-rotate: {error}") from None
        if self["log-keep"] is not None and self["log-keep"] < 1:
            raise usage.UsageError("--log-keep must be at least 1")

    def log_observer(self) -> ILogObserver | None:
        """The log observer these options ask for, None for twistd's own
        (no log option given, or not run by twistd)."""
        parent = getattr(self, "parent", None)
        custom = self["log-format"] != "text" or self["log-rotate"] or self["log-keep"]
        if parent is None or not custom:
            return None
        return log_observer(
            parent.get("logfile"),
            bool(parent.get("nodaemon")),
            self["log-format"],
            self.rotate,
            self["log-keep"],
        )


class ServerTree(MultiService):
    """The top service; it gives twistd the log observer the options chose."""

    def __init__(self, observer: ILogObserver | None = None) -> None:
        super().__init__()
        self.log_observer = observer

    def setServiceParent(self, parent: Any) -> None:
        """Join ``parent``; when it is twistd's application, make the log
        observer its ``ILogObserver`` component, which twistd then logs to."""
        if self.log_observer is not None:
            install_observer(parent, self.log_observer)
        super().setServiceParent(parent)


class ThreadPoolService(Service):
    """Starts and stops a thread pool with the application."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        """Start the threads."""
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        """Stop the threads."""
        super().stopService()
        self.pool.stop()


class StaleUploadsService(Service):
    """Removes uploads and spooled messages a crashed server left
    half-written, at start, in the thread pool (no account ever saw them)."""

    log = Logger()

    def __init__(self, directory: FileDirectory, reactor: Any, pool: ThreadPool) -> None:
        self.directory = directory
        self.reactor = reactor
        self.pool = pool

    def startService(self) -> None:
        """Sweep every account's temporary upload folder and the spool once."""
        super().startService()
        swept = deferToThreadPool(self.reactor, self.pool, self._sweep)
        swept.addCallbacks(self._swept, self._failed)

    def _sweep(self) -> int:
        spool = remove_stale(spool_folder(self.directory.base))
        return remove_stale_everywhere(self.directory) + spool

    def _swept(self, count: int) -> None:
        if count:
            self.log.info(
                "removed {count} unfinished uploads and spooled messages left by an earlier run",
                count=count,
            )

    def _failed(self, failure: Failure) -> None:
        self.log.failure("could not remove unfinished uploads", failure)


class HelperService(Service):
    """Sends QUIT to the External Authentication helper at shutdown."""

    def __init__(self, helper: ExternalHelper) -> None:
        self.helper = helper

    def stopService(self) -> None:
        """Stop the helper."""
        super().stopService()
        self.helper.stop()


class NotifierService(Service):
    """Closes the mailbox change notifier (its inotify descriptor) at
    shutdown."""

    def __init__(self, notifier: MailboxNotifier) -> None:
        self.notifier = notifier

    def stopService(self) -> None:
        """Stop watching mailboxes."""
        super().stopService()
        self.notifier.close()


def open_directory(options: Options) -> FileDirectory:
    """The base directory, initialised on first start."""
    directory = FileDirectory(base_directory(options["base"]))
    if not directory.is_initialised():
        main = options["main-domain"] or default_main_domain()
        password = initialise(directory, main)
        sys.stdout.write(
            f"communigate: initialised {directory.base} with Main Domain {main}\n"
            f"communigate: postmaster@{main} password: {password}\n"
        )
        sys.stdout.flush()
    return directory


def makeService(options: Options, reactor: Any = None) -> IService:
    """Build the service tree for ``options``."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    directory = open_directory(options)
    top = ServerTree(options.log_observer())
    metrics = Metrics() if options["metrics"] else None
    observer: IActivityObserver = Fanout([EventLog(), metrics]) if metrics else EventLog()
    pool = ThreadPool(minthreads=1, maxthreads=options["threads"], name="communigate-auth")
    ThreadPoolService(pool).setServiceParent(top)

    resolver = AccountResolver(directory)
    helper = ExternalHelper(reactor, directory.base)
    HelperService(helper).setServiceParent(top)
    if metrics is not None:
        metrics.watch_helper(helper)
    sources = [
        InternalPassword(reactor, pool),
        SystemPassword(reactor, pool, directory),
        ExternalPassword(helper, directory),
    ]
    checker = AccountChecker(resolver, sources, reactor, pool, observer)
    realm = AccountRealm(directory, reactor, pool)
    portal = Portal(realm, [checker])
    # Sessions of deleted accounts end within this many seconds.
    sweep = internet.TimerService(SESSION_SWEEP, realm.sessions.sweep)
    sweep.clock = reactor
    sweep.setServiceParent(top)
    tls = DomainContexts(directory)
    service = LoginService(
        portal, resolver, tls, salt_key(directory.base), observer=observer, clock=reactor.seconds
    )

    def counted(protocol: str, factory: Any) -> CountingFactory:
        """``factory`` with session ids and byte counts per connection."""
        return CountingFactory(factory, metrics.handshake(protocol) if metrics else None)

    if metrics is not None:
        site = Site(metrics_root(metrics.registry))
        site.noisy = False
        web = strports.service(options["metrics"], site, reactor=reactor)
        web.setName(f"metrics:{options['metrics']}")
        web.setServiceParent(top)

    timeout = options["pop3-timeout"]
    pop3 = POP3Factory(service, reactor, timeout, tls)
    add_listeners(top, "pop3", options["pop3"], counted("pop3", pop3), reactor, None, directory)
    pop3s = POP3Factory(service, reactor, timeout, tls, implicit_tls=True)
    add_listeners(top, "pop3s", options["pop3s"], counted("pop3s", pop3s), reactor, tls, directory)
    limit = options["max-message"]
    # Messages are spooled beside the mailboxes, so delivery is a hard link.
    spool = spool_folder(directory.base)
    # IDLE sessions of both IMAP listeners wait on one notifier: this
    # process's changes and, through inotify, every other process's.
    changes = MailboxNotifier(reactor, kernel=inotify_watch(reactor))
    NotifierService(changes).setServiceParent(top)
    imap4 = IMAP4Factory(
        service, reactor, tls, max_message=limit, spool=spool, pool=pool, changes=changes
    )
    add_listeners(top, "imap4", options["imap4"], counted("imap4", imap4), reactor, None, directory)
    imaps = IMAP4Factory(
        service,
        reactor,
        tls,
        implicit_tls=True,
        max_message=limit,
        spool=spool,
        pool=pool,
        changes=changes,
    )
    add_listeners(top, "imaps", options["imaps"], counted("imaps", imaps), reactor, tls, directory)
    lmtp = LMTPFactory(directory, reactor, service.hostname, limit, spool=spool, pool=pool)
    add_listeners(top, "lmtp", options["lmtp"], lmtp, reactor, None, directory)
    low, _, high = str(options["passive-ports"]).partition("-")
    passive = range(int(low), int(high or low) + 1)
    StaleUploadsService(directory, reactor, pool).setServiceParent(top)
    ftp = FTPFactory(service, reactor, tls, passive_ports=passive, pool=pool)
    add_listeners(top, "ftp", options["ftp"], counted("ftp", ftp), reactor, None, directory)
    ftps = FTPFactory(service, reactor, tls, implicit_tls=True, passive_ports=passive, pool=pool)
    add_listeners(top, "ftps", options["ftps"], counted("ftps", ftps), reactor, tls, directory)
    pwd = counted("pwd", PWDFactory(service, reactor))
    add_listeners(top, "pwd", options["pwd"], pwd, reactor, None, directory)
    files = TFTPFiles(directory)
    for description in options["tftp"]:
        port, interface = parse_udp(description)
        server = TFTPServer(files, reactor, interface, options["tftp-per-address"])
        udp = internet.UDPServer(port, server, interface=interface)
        udp.setName(f"tftp:{description}")
        udp.setServiceParent(top)
    # What start-up built (modules, functions, the service tree) lives as
    # long as the process: out of the cyclic collector's way, so its full
    # collections walk only what sessions make.
    reactor.callWhenRunning(gc.freeze)
    return top
