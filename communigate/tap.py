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
from typing import Any

from twisted.application import internet, strports
from twisted.application.service import IService, MultiService, Service
from twisted.internet.error import CannotListenError
from twisted.internet.threads import deferToThreadPool
from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.server import Site

from communigate.control.commands import ControlCommands, settings_reloaded
from communigate.control.location import socket_path
from communigate.control.server import ControlService, service_names
from communigate.control.sessions import LiveSessions
from communigate.observe.events import EventLog, Fanout, IActivityObserver
from communigate.observe.logs import install_observer
from communigate.observe.metrics import Metrics, metrics_root
from communigate.observe.traffic import CountingFactory
from communigate.options import (
    FirstStart,
    Options,
    fail_start,
    open_directory,
)
from communigate.portal.tftpfiles import TFTPFiles
from communigate.protocols.configured import ConfiguredListeners
from communigate.protocols.ftp.server import FTPFactory
from communigate.protocols.http.site import add_http
from communigate.protocols.listeners import add_listeners, parse_udp
from communigate.protocols.lmtp.server import LMTPFactory
from communigate.protocols.pwd import PWDFactory
from communigate.protocols.smtp.service import add_submission
from communigate.protocols.tftp.server import TFTPServer
from communigate.protocols.xmpp.service import add_xmpp
from communigate.sdnotify import NotifyService
from communigate.serving import MAIL_LISTENERS, login_core, mail_factories, mailbox_changes
from communigate.store.files import FileDirectory
from communigate.store.listeners import Listener, ListenersError
from communigate.store.listeners import read as listeners_file
from communigate.store.spool import remove_stale, spool_folder
from communigate.store.uploads import remove_stale_everywhere
from communigate.workers.handoff import HandoffFactory, HandoffReactor, add_mail_listeners
from communigate.workers.pool import EveryProcess, add_worker_pool
from communigate.workpool import hashing_width


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
    if workers is not None:
        control.workers = workers.describe
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
