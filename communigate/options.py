"""The options of ``twistd communigate`` and the opening of its base
directory: what the server and its worker processes
(:mod:`communigate.workers.child`) both read, kept apart from the service
tree so that a worker imports only what it serves."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import NoReturn

from twisted.logger import ILogObserver
from twisted.python import usage

from communigate.cli.arguments import DEFAULT_BASE, base_directory
from communigate.observe.logs import FORMATS, log_observer, parse_rotate
from communigate.protocols.pop3.server import IDLE_TIMEOUT
from communigate.store import schema
from communigate.store.directory import DirectoryError
from communigate.store.files import FileDirectory
from communigate.store.initialise import default_main_domain, initialise
from communigate.store.open import DIRECTORY_VARIABLE
from communigate.store.open import open_directory as open_store
from communigate.workpool import usable_cores

#: Every listener option (also the keys of the ``Listeners`` server setting).
LISTENERS = schema.LISTENER_NAMES


#: The most worker processes ``--workers`` may ask for.
MAX_WORKERS = 64


def worker_count(value: str) -> int:
    """``--workers``: a number from 0 to :data:`MAX_WORKERS`, or ``auto``
    (one per core this process may use, none on a single core, where a
    worker would only share the one core with the server); ValueError
    otherwise."""
    refused = f"--workers must be auto or a number from 0 to {MAX_WORKERS}"
    if str(value).strip().lower() == "auto":
        cores = usable_cores()
        return min(cores, MAX_WORKERS) if cores > 1 else 0
    try:
        count = int(value)
    except ValueError:
        raise ValueError(refused) from None
    if not 0 <= count <= MAX_WORKERS:
        raise ValueError(refused)
    return count


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
            "besides this one (0: this process serves them); 'auto': one per core.",
            worker_count,
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
        """The log observer these options ask for; None for twistd's own:
        not run by twistd (``twist`` included), ``--logger`` (which twistd prefers to any
        observer given), ``--syslog``, or a daemon's ``--logfile=-``
        (which twistd refuses)."""
        parent = getattr(self, "parent", None)
        if parent is None or "nodaemon" not in parent:
            # Not twistd (``twist`` has other options and no use for an
            # application's observer).
            return None
        logfile = parent.get("logfile")
        nodaemon = bool(parent.get("nodaemon"))
        if parent.get("logger") or parent.get("syslog") or (logfile == "-" and not nodaemon):
            return None
        return log_observer(
            logfile,
            nodaemon,
            self["log-format"],
            self.rotate,
            self["log-keep"],
            rotate_on_signal=True,
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


def fail_start(message: str, first: FirstStart | None = None) -> NoReturn:
    """End a start that cannot succeed: ``message`` on the real standard
    error (twistd sends ``sys.stderr`` to the log once it logs), no
    traceback, exit status 1."""
    stream = sys.__stderr__ or sys.stderr
    stream.write(message.rstrip("\n") + "\n" + (first.after_failure() if first else ""))
    stream.flush()
    raise SystemExit(1)


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
