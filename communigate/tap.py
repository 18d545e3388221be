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

import errno
import gc
import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

from twisted.application import internet, strports
from twisted.application.service import IService, MultiService, Service
from twisted.internet.error import CannotListenError
from twisted.internet.threads import deferToThreadPool
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.server import Site

from communigate.cli.arguments import DEFAULT_BASE, base_directory
from communigate.control.commands import ControlCommands, settings_reloaded
from communigate.control.location import socket_path
from communigate.control.server import ControlService, service_names
from communigate.control.sessions import LiveSessions
from communigate.observe.events import EventLog, Fanout, IActivityObserver
from communigate.observe.logs import FORMATS, install_observer, log_observer, parse_rotate
from communigate.observe.metrics import Metrics, metrics_root
from communigate.observe.traffic import CountingFactory
from communigate.portal.tftpfiles import TFTPFiles
from communigate.protocols.configured import ConfiguredListeners
from communigate.protocols.ftp.server import FTPFactory
from communigate.protocols.http.site import add_http
from communigate.protocols.listeners import add_listeners, parse_udp
from communigate.protocols.lmtp.server import LMTPFactory
from communigate.protocols.pop3.server import IDLE_TIMEOUT
from communigate.protocols.pwd import PWDFactory
from communigate.protocols.smtp.service import add_submission
from communigate.protocols.tftp.server import TFTPServer
from communigate.protocols.xmpp.service import add_xmpp
from communigate.sdnotify import NotifyService
from communigate.serving import MAIL_LISTENERS, login_core, mail_factories, mailbox_changes
from communigate.store import schema
from communigate.store.directory import DirectoryError
from communigate.store.files import FileDirectory
from communigate.store.initialise import default_main_domain, initialise
from communigate.store.listeners import Listener, ListenersError
from communigate.store.listeners import read as listeners_file
from communigate.store.open import DIRECTORY_VARIABLE
from communigate.store.open import open_directory as open_store
from communigate.store.spool import remove_stale, spool_folder
from communigate.store.uploads import remove_stale_everywhere
from communigate.workers.handoff import HandoffFactory, HandoffReactor, add_mail_listeners
from communigate.workers.pool import EveryProcess, add_worker_pool
from communigate.workpool import hashing_width

#: Every listener option (also the keys of the ``Listeners`` server setting).
LISTENERS = schema.LISTENER_NAMES


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
            "hashing-threads",
            None,
            0,
            "Password hashes checked at once (0: one fewer than the cores, at least one), "
            "so that a burst of logins leaves a core to the sessions.",
            int,
        ],
        [
            "pop3-timeout",
            None,
            IDLE_TIMEOUT,
            "Seconds a POP3 session may stay idle (unless Limits says otherwise).",
            int,
        ],
        [
            "workers",
            None,
            0,
            "Processes serving the IMAP and POP3 connections of the TCP listeners, "
            "besides this one (0: this process serves them).  One per core uses them all.",
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
            "http-access-log",
            None,
            None,
            "Append a line per HTTP request to this file, in the Combined Log "
            "Format (default: no access log).",
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus/OpenMetrics text at /metrics on this endpoint, "
            "e.g. tcp:9100:interface=127.0.0.1 (default: no metrics).",
        ],
        [
            "directory",
            None,
            None,
            "Keep domains, accounts and settings in LDAP: ldap://HOST:PORT/BASE-DN "
            "or ldaps://... (default: $COMMUNIGATE_DIRECTORY, else files in the "
            "base directory, which keeps mail and File Storage either way).",
        ],
        ["directory-bind-dn", None, None, "The DN to bind to the LDAP directory as."],
        [
            "directory-password-file",
            None,
            None,
            "A file whose first line is the password of --directory-bind-dn.",
        ],
        [
            "directory-stale-after",
            None,
            30.0,
            "Seconds without reaching the LDAP directory after which logins fail "
            "temporarily (the copy in memory is too old to trust).",
            float,
        ],
    ]
    optFlags = [["directory-starttls", None, "Use StartTLS on an ldap:// directory."]]

    def __init__(self) -> None:
        super().__init__()
        for name in LISTENERS:
            self[name] = []
        #: ``--log-rotate`` parsed: bytes, "daily", or None (never).
        self.rotate: int | str | None = 1_000_000
        #: No listener option given: the standard ports, unless
        #: Settings/Listeners.settings names listeners.
        self.default_listeners = False

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

    def opt_submission(self, description: str) -> None:
        """SMTP submission listener with STARTTLS, e.g. tcp:587 (repeatable)."""
        self["submission"].append(description)

    def opt_smtps(self, description: str) -> None:
        """SMTP submission listener with implicit TLS, e.g. tcp:465 (repeatable)."""
        self["smtps"].append(description)

    def opt_xmpp(self, description: str) -> None:
        """XMPP client listener with STARTTLS, e.g. tcp:5222 (repeatable)."""
        self["xmpp"].append(description)

    def opt_xmpps(self, description: str) -> None:
        """XMPP client listener with direct TLS (XEP-0368), e.g. tcp:5223 (repeatable)."""
        self["xmpps"].append(description)

    def opt_http(self, description: str) -> None:
        """HTTP listener (WebUser, File Storage, WebDAV), e.g. tcp:80 (repeatable)."""
        self["http"].append(description)

    def opt_https(self, description: str) -> None:
        """HTTPS listener, certificate by SNI, e.g. tcp:443 (repeatable)."""
        self["https"].append(description)

    def opt_tftp(self, description: str) -> None:
        """TFTP listener, udp:PORT[:interface=ADDR], e.g. udp:69 (repeatable)."""
        self["tftp"].append(description)

    def postOptions(self) -> None:
        """Without any listener option, listen on the standard ports; check
        the log options."""
        if not any(self[name] for name in LISTENERS):
            self.default_listeners = True
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


@dataclass(frozen=True)
class FirstStart:
    """The base directory this start initialised, and postmaster's
    generated password (shown once every listener is bound)."""

    base: str
    account: str
    password: str

    def announcement(self) -> str:
        """The lines that give the administrator the password."""
        return (
            f"communigate: initialised {self.base}\n"
            f"communigate: {self.account} password: {self.password}\n"
            f"communigate: change it with: communigate --base {self.base} "
            f"account password {self.account}\n"
        )

    def after_failure(self) -> str:
        """What to say when the start fails after the password was set."""
        return (
            f"communigate: {self.base} was initialised and {self.account} given a "
            f"password; set a new one with: communigate --base {self.base} "
            f"account password {self.account}\n"
        )


def listen_failure(name: str, error: CannotListenError) -> str:
    """One line saying why the listener ``name`` (``imap4:tcp:143``) could
    not bind, and what the administrator can do."""
    where = f"{error.interface or '*'}:{error.port}"
    code = getattr(error.socketError, "errno", None)
    if code == errno.EADDRINUSE:
        why = "address already in use (stop the server that listens there, or choose another port)"
    elif code == errno.EACCES and isinstance(error.port, int) and error.port < 1024:
        why = (
            f"permission denied: port {error.port} is below 1024; grant "
            "CAP_NET_BIND_SERVICE (as etc/communigate.service does) or choose a port above 1023"
        )
    elif code == errno.EADDRNOTAVAIL:
        why = "no such address on this host"
    else:
        why = str(getattr(error.socketError, "strerror", None) or error.socketError)
    return f"communigate: cannot listen on {where} ({name}): {why}"


def fail_start(message: str, first: FirstStart | None = None) -> NoReturn:
    """End a start that cannot succeed: ``message`` on the real standard
    error (twistd sends ``sys.stderr`` to the log once it logs), no
    traceback, exit status 1."""
    stream = sys.__stderr__ or sys.stderr
    stream.write(message.rstrip("\n") + "\n" + (first.after_failure() if first else ""))
    stream.flush()
    raise SystemExit(1)


class ServerTree(MultiService):
    """The top service; it gives twistd the log observer the options chose."""

    def __init__(self, observer: ILogObserver | None = None) -> None:
        super().__init__()
        self.log_observer = observer
        #: Set when this start initialised the base directory.
        self.first_start: FirstStart | None = None
        #: The listeners of Settings/Listeners.settings; ``reload()``
        #: applies the file as it is now.
        self.configured_listeners: ConfiguredListeners | None = None

    def privilegedStartService(self) -> None:
        """Bind every listener (twistd calls this before ``startService``);
        one that cannot bind ends the start with one line on stderr."""
        Service.privilegedStartService(self)
        for service in self:
            try:
                service.privilegedStartService()
            except CannotListenError as error:
                fail_start(listen_failure(str(service.name), error), self.first_start)

    def startService(self) -> None:
        """Start every service; then, every listener being bound, show a
        password generated by this start (on the real standard output: the
        terminal, or the journal under systemd; not into a log file)."""
        super().startService()
        if self.first_start is not None:
            stream = sys.__stdout__ or sys.stdout
            stream.write(self.first_start.announcement())
            stream.flush()
            self.first_start = None

    def setServiceParent(self, parent: Any) -> None:
        """Join ``parent``; when it is twistd's application, make the log
        observer its ``ILogObserver`` component, which twistd then logs to."""
        if self.log_observer is not None:
            install_observer(parent, self.log_observer)
        super().setServiceParent(parent)


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


def open_directory(options: Options) -> tuple[FileDirectory, FirstStart | None]:
    """The base directory, initialised on first start (with the password
    to show once the server listens); one that cannot be created or written
    ends the start with one line on stderr."""
    base = base_directory(options["base"])
    try:
        directory = open_store(
            base,
            options["directory"] or os.environ.get(DIRECTORY_VARIABLE),
            starttls=options["directory-starttls"],
            bind_dn=options["directory-bind-dn"],
            password_file=options["directory-password-file"],
            max_age=options["directory-stale-after"],
        )
    except DirectoryError as error:
        fail_start(f"communigate: {error}")
    try:
        if directory.is_initialised():
            return directory, None
        main = options["main-domain"] or default_main_domain()
        password = initialise(directory, main)
    except OSError as error:
        where = f" ({error.filename})" if str(error.filename or base) != str(base) else ""
        fail_start(
            f"communigate: cannot create or write the base directory {base}: "
            f"{error.strerror or error}{where}; create it for the user the server runs as, "
            "or choose another with --base"
        )
    return directory, FirstStart(str(base), f"postmaster@{directory.main_domain()}", password)


def read_listeners(directory: FileDirectory, first: FirstStart | None) -> list[Listener]:
    """The listeners of Settings/Listeners.settings; a file with a problem
    ends the start with one line on stderr."""
    try:
        return listeners_file(directory.base)
    except ListenersError as error:
        fail_start(f"communigate: {error}", first)
    except OSError as error:
        fail_start(f"communigate: cannot read {error.filename}: {error.strerror}", first)


def makeService(options: Options, reactor: Any = None) -> IService:
    """Build the service tree for ``options``."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    directory, first_start = open_directory(options)
    top = ServerTree(options.log_observer())
    top.first_start = first_start
    from_file = read_listeners(directory, first_start)
    if from_file and options.default_listeners:
        options["pop3"], options["imap4"] = [], []
    metrics = Metrics() if options["metrics"] else None
    observer: IActivityObserver = Fanout([EventLog(), metrics]) if metrics else EventLog()
    # Logged-in sessions, for the control socket (communigate sessions).
    live = LiveSessions(reactor.seconds)
    core = login_core(options, reactor, top, directory, observer, live)
    service, tls, pool, helper, realm = core.service, core.tls, core.pool, core.helper, core.realm
    if metrics is not None:
        metrics.watch_helper(helper)

    def counted(protocol: str, factory: Any) -> CountingFactory:
        """``factory`` with session ids and byte counts per connection."""
        return CountingFactory(factory, metrics.handshake(protocol) if metrics else None)

    if metrics is not None:
        site = Site(metrics_root(metrics.registry))
        site.noisy = False
        web = strports.service(options["metrics"], site, reactor=reactor)
        web.setName(f"metrics:{options['metrics']}")
        web.setServiceParent(top)

    changes = mailbox_changes(reactor, top)
    made = mail_factories(options, core, reactor, changes)
    mail = {name: counted(name, factory) for name, factory in made.items()}
    # --workers: the IMAP and POP3 connections of TCP listeners are served
    # by worker processes, each with a share of the password checks.
    width = options["hashing-threads"] or max(1, hashing_width() // max(1, options["workers"]))
    workers = add_worker_pool(
        options, reactor, top, str(directory.base), core.checker.throttle, live, width
    )
    for name in MAIL_LISTENERS:
        add_mail_listeners(top, name, options[name], mail[name], reactor, tls, directory, workers)
    limit = options["max-message"]
    # Messages are spooled beside the mailboxes, so delivery is a hard link.
    spool = spool_folder(directory.base)
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
    submission = add_submission(top, options, service, reactor, tls, limit, spool, pool, counted)
    xmpp = add_xmpp(top, options, service, reactor, tls, counted, pool)
    http = add_http(top, options, service, reactor, tls, pool, counted)
    if workers is not None:
        # What the workers do is counted here; SESSIONID works there too.
        workers.activity, workers.handshake = metrics, metrics.handshake if metrics else None
        workers.web = service.web_sessions
        service.web_sessions.watch = workers.web_session
    files = TFTPFiles(directory)
    for description in options["tftp"]:
        port, interface = parse_udp(description)
        server = TFTPServer(files, reactor, interface, options["tftp-per-address"])
        udp = internet.UDPServer(port, server, interface=interface)
        udp.setName(f"tftp:{description}")
        udp.setServiceParent(top)
    # Listeners.settings: beside the options' listeners (instead of the
    # standard ports when no option names one).
    configured = ConfiguredListeners(reactor, directory, directory.base)
    for name in MAIL_LISTENERS:
        handoff = (HandoffFactory(name, workers), HandoffReactor(reactor)) if workers else None
        configured.serve_stream(name, mail[name], tls if name.endswith("s") else None, handoff)
    for name, factory, context in (
        ("lmtp", lmtp, None),
        ("ftp", counted("ftp", ftp), None),
        ("ftps", counted("ftps", ftps), tls),
        ("pwd", pwd, None),
        ("submission", submission["submission"], None),
        ("smtps", submission["smtps"], tls),
        ("xmpp", xmpp["xmpp"], None),
        ("xmpps", xmpp["xmpps"], tls),
        ("http", http["http"], None),
        ("https", http["https"], tls),
    ):
        configured.serve_stream(name, factory, context)
    per_address = options["tftp-per-address"]
    configured.serve_datagrams(
        "tftp", lambda interface: TFTPServer(files, reactor, interface, per_address)
    )
    configured.add(from_file)
    configured.setServiceParent(top)
    top.configured_listeners = configured
    # The control socket (communigate sessions, kick, status, reload);
    # control.reload is the callable ``communigate reload`` runs.
    registry = realm.sessions if workers is None else EveryProcess(realm.sessions, workers)
    control = ControlCommands(
        live, registry, reactor.seconds, lambda: service_names(top), helper, pool
    )
    # ``communigate reload``: settings are re-read anyway; listeners from
    # Settings/Listeners.settings are started and stopped as it now says.
    control.reload = lambda: f"{settings_reloaded()}; {configured.reload()}"
    control_path = socket_path(directory.base)
    listener = ControlService(control_path, control, reactor)
    listener.setName(f"control:{control_path}")
    listener.setServiceParent(top)
    # Last: it tells systemd the server is ready once every listener is bound.
    NotifyService(reactor, os.environ).setServiceParent(top)
    # What start-up built (modules, functions, the service tree) lives as
    # long as the process: out of the cyclic collector's way, so its full
    # collections walk only what sessions make.
    reactor.callWhenRunning(gc.freeze)
    return top
