"""The FTP server: a Twisted control connection around :mod:`.parser`.

Written for this project (Twisted's FTP server executed plaintext pipelined
behind AUTH TLS inside TLS, committed truncated uploads and leaked TLS
sessions).  This module owns the transport, timers, TLS and the portal
call; commands are parsed and checked by :mod:`.parser`, files are the
logged-in account's :class:`~communigate.portal.filesession.IFileSession`,
data connections are :mod:`.data`.

Commands run strictly one after another: while a login, a transfer or an
upload's commit is pending, later commands wait in the queue — except ABOR
and STAT, which act on a running transfer at once (RFC 959 §4.1.3).  What
was pipelined behind AUTH TLS is discarded.  A bare login name takes the
domain named by HOST (RFC 7151), else of the TLS SNI name, else of the
local address.  Uploads are committed only when the data connection ended
cleanly; anything else is a 426 and the old file stays (see
:mod:`communigate.store.uploads`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from ipaddress import ip_address
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from communigate import __version__
from communigate.cred.credentials import LoginPassword
from communigate.cred.errors import LoginFailure
from communigate.portal.filesession import FileError, IFileSession
from communigate.protocols.access import LoginService
from communigate.protocols.ftp import listing, parser
from communigate.protocols.ftp.datatls import DataContexts
from communigate.protocols.ftp.files import FileCommands
from communigate.protocols.ftp.parser import CommandError, State, reply
from communigate.protocols.ftp.transfers import TransferCommands, TransferFailed
from communigate.protocols.limits import DEFAULTS, LimitsReader
from communigate.protocols.lines import LineTooLong
from communigate.protocols.tls import switch_to_tls

#: vsftpd's idle_session_timeout.
IDLE_TIMEOUT = DEFAULTS["ftp"].idle_timeout
#: Seconds from the greeting to a completed login; bytes do not extend it.
LOGIN_TIMEOUT = DEFAULTS["ftp"].login_timeout
#: Failed logins tolerated in one session (vsftpd's max_login_fails).
MAX_LOGIN_FAILURES = 3
#: Lines queued while a command is pending before reading pauses.
MAX_QUEUE = 64


def _is_urgent(line: bytes) -> str | None:
    """ABOR or STAT (acted on during a transfer), else None."""
    word = parser.decode(line).strip().upper()
    return word if word in ("ABOR", "STAT") else None


class FTPServer(TransferCommands, FileCommands):
    """One FTP control connection."""

    # -- connection --------------------------------------------------------------

    def connectionMade(self) -> None:
        """Apply the connection limits, start the timers, greet with the
        domain of the address the client reached."""
        clock = self.factory.reactor
        self.limits = self.factory.limits()
        self.lines.max_length = self.limits.max_line
        self._idle = clock.callLater(self.limits.idle_timeout, self._timed_out, "idle time-out")
        self._deadline = clock.callLater(
            self.limits.login_timeout, self._timed_out, "login time-out"
        )
        self.secure = self.protected = self.factory.implicit_tls
        # Replies are small and come in pairs (150 then 226): without
        # TCP_NODELAY the second waits for the client's delayed ACK.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        domain = self.service.domain(self.connection())
        self.send(reply(220, f"{domain} FTP server ready"))

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Stop timers, abort a transfer (an upload is discarded), log out."""
        for timer in (self._idle, self._deadline):
            if timer is not None and timer.active():
                timer.cancel()
        self.connected = False
        if self.login is not None:
            self.login.cancel()
        if self.transfer is not None:
            self._abort_transfer()
        self._drop_data()
        if self.logout is not None:
            self.logout()
            self.logout = None

    # -- reading commands ----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Queue complete lines and run them in order (ABOR/STAT at once
        while a transfer runs)."""
        if self._idle is not None and self._idle.active():
            self._idle.reset(self.limits.idle_timeout)
        for event in self.lines.feed(data):
            if self.transfer is not None and isinstance(event, bytes):
                urgent = _is_urgent(event)
                if urgent == "ABOR":
                    self._abort_transfer()
                    continue
                if urgent == "STAT":
                    self._transfer_status()
                    continue
            self.queue.append(event)
        if len(self.queue) > MAX_QUEUE and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        self.run_queue()

    def run_queue(self) -> None:
        """Run queued commands until one has to wait."""
        while self.queue and not self.busy and self.connected:
            event = self.queue.popleft()
            # RNTO must come right after RNFR (RFC 959 §4.1.3): any other
            # line, even a refused one, forgets the RNFR.
            self.renaming, self.rename_from = self.rename_from, None
            if isinstance(event, LineTooLong):
                self.protocol_error(500, f"command line too long (at most {event.limit} octets)")
                continue
            try:
                command = parser.parse(event, self.state)
            except CommandError as error:
                self.protocol_error(error.code, error.text)
                continue
            self.run(command)
        if self.paused and not self.queue and self.transport is not None and self.connected:
            self.paused = False
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def run(self, command: parser.Command) -> None:
        """Run one command; a Deferred result holds the queue until it fires."""
        handler = getattr(self, f"ftp_{command.keyword}")
        try:
            result = handler(command.argument)
        except CommandError as error:
            self.protocol_error(error.code, error.text)
            return
        except FileError as error:
            self.send(self.file_reply(error))
            return
        except Exception:
            self.log.failure("FTP {keyword} failed", keyword=command.keyword)
            self.send(reply(451, "local error in processing"))
            return
        if isinstance(result, Deferred):
            self.busy = True
            result.addErrback(self._failed, command.keyword)
            result.addBoth(self._resume)

    def _failed(self, failure: Failure, keyword: str) -> None:
        error = failure.value
        if isinstance(error, CommandError):
            self.protocol_error(error.code, error.text)
        elif isinstance(error, FileError):
            self.send(self.file_reply(error))
        elif isinstance(error, TransferFailed):
            self.send(reply(error.code, error.text))
        elif not self.connected:
            return
        else:
            self.log.failure("FTP {keyword} failed", failure, keyword=keyword)
            self.send(reply(451, "local error in processing"))

    def _resume(self, result: object) -> None:
        self.busy = False
        self.run_queue()

    # -- login: USER, PASS, AUTH, PBSZ, PROT, CCC, HOST -------------------------------

    def ftp_USER(self, name: str) -> None:
        """Remember the name (if clear text may be used on this link)."""
        if not self.service.clear_text_allowed(self.connection()):
            raise CommandError(530, "clear-text login is not allowed here; use AUTH TLS")
        self.user = name.strip()
        self.state = State.PASSWORD
        self.send(reply(331, "please send the password"))

    def ftp_PASS(self, password: str) -> Deferred[None] | None:
        """Log in through the portal."""
        if self.state is State.READY:
            raise CommandError(503, "already logged in")
        if self.user is None:
            raise CommandError(503, "send USER first")
        user, self.user = self.user, None
        self.state = State.LOGIN
        credentials = LoginPassword(
            user.encode("utf-8"), password.encode("utf-8"), self.connection(), None, "USER"
        )
        self.login = login = self.service.login(credentials, IFileSession)
        login.addCallbacks(self._logged_in, self._login_failed)
        return login.addBoth(self._login_over)

    def _login_over(self, result: object) -> object:
        self.login = None
        return result

    def _logged_in(self, result: tuple[Any, Any, Callable[[], None]]) -> None:
        _, self.files, self.logout = result
        if not self.connected:
            self.logout()
            self.logout = None
            return
        self.state = State.READY
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        watch = getattr(self.files, "watch", None)
        if watch is not None:
            watch(self._ended_from_outside)
        self.send(reply(230, "logged in"))

    def _ended_from_outside(self, reason: str) -> None:
        """The account was deleted: say so, stop any transfer, close."""
        if self.transfer is not None:
            self._abort_transfer()
        self.send(reply(421, f"{reason}, closing the control connection"))
        self.close()

    def _login_failed(self, failure: Failure) -> None:
        if not self.connected:
            return
        error = failure.value
        if not isinstance(error, LoginFailure):
            self.log.failure("FTP login failed unexpectedly", failure)
            self.send(reply(421, "authentication failed, try again later"))
            self.close()
            return
        self.login_failures += 1
        if error.temporary or error.fatal:
            self.send(reply(421, error.reply))
            self.close()
            return
        self.send(reply(530, error.reply))
        if self.login_failures >= MAX_LOGIN_FAILURES:
            self.send(reply(421, "too many failed logins, closing the control connection"))
            self.close()

    def ftp_AUTH(self, mechanism: str) -> None:
        """RFC 4217 §4: the control connection becomes TLS; what was
        pipelined behind AUTH in plaintext is dropped."""
        kind = mechanism.strip().upper()
        if kind not in ("TLS", "TLS-C", "SSL", "TLS-P"):
            raise CommandError(504, "AUTH TLS only")
        if self.factory.tls is None:
            raise CommandError(431, "TLS is not available")
        if self.secure:
            raise CommandError(503, "TLS is already on")
        self.send(reply(234, f"AUTH {kind} successful"))
        switch_to_tls(self.transport, self._contexts(), self.queue, self.lines)
        self.secure = True
        self.protected = kind in ("SSL", "TLS-P")
        self.user = None
        self.state = State.LOGIN

    def ftp_PBSZ(self, size: str) -> None:
        """RFC 4217 §8: the buffer size is 0 over TLS."""
        if not self.secure:
            raise CommandError(503, "AUTH TLS first")
        if not size.strip().isdigit():
            raise CommandError(501, "PBSZ takes a number")
        self.send(reply(200, "PBSZ=0"))

    def ftp_PROT(self, level: str) -> None:
        """RFC 4217 §9: P protects data connections with TLS, C does not."""
        if not self.secure:
            raise CommandError(503, "AUTH TLS first")
        wanted = level.strip().upper()
        if wanted not in ("P", "C"):
            raise CommandError(536, "only PROT P and PROT C are supported")
        self.protected = wanted == "P"
        self.send(reply(200, f"protection level {wanted}"))

    def ftp_CCC(self, argument: str) -> None:
        """RFC 4217 §11: the control connection stays protected."""
        raise CommandError(534, "CCC is not allowed: the control connection stays protected")

    def ftp_HOST(self, name: str) -> None:
        """RFC 7151: the domain for bare login names (and its certificate)."""
        if self.state is not State.LOGIN or self.user is not None:
            raise CommandError(503, "HOST must come before USER")
        # A name, or an address (bare, as lftp sends it, or in brackets).
        text = name.strip().lower().removeprefix("[").removesuffix("]")
        try:
            address = str(ip_address(text))
        except ValueError:
            domain = self.service.known_domain(text)
        else:
            domain = self.service.resolver.directory.domain_for_address(address)
        if domain is None:
            raise CommandError(504, "unknown host")
        self.host = domain
        self.send(reply(220, f"{domain} FTP server ready"))

    def ftp_ACCT(self, argument: str) -> None:
        """RFC 959: no accounts needed."""
        self.send(reply(202, "ACCT is not needed"))

    def ftp_REIN(self, argument: str) -> None:
        """Not supported: close and reconnect instead."""
        raise CommandError(502, "REIN is not supported")

    def ftp_QUIT(self, argument: str) -> None:
        """End the session."""
        self.send(reply(221, "goodbye"))
        self.close()

    # -- simple commands -------------------------------------------------------------

    def ftp_NOOP(self, argument: str) -> None:
        """Do nothing."""
        self.send(reply(200, "NOOP ok"))

    def ftp_SYST(self, argument: str) -> None:
        """RFC 959 system type (what clients expect for ``ls`` listings)."""
        self.send(reply(215, "UNIX Type: L8"))

    def ftp_FEAT(self, argument: str) -> None:
        """RFC 2389 §3."""
        self.send(parser.multiline(211, "Features:", list(parser.FEATURES), "End"))

    def ftp_OPTS(self, option: str) -> None:
        """RFC 2389 §4: UTF8 (always on), MLST facts (all are shown)."""
        name = option.strip().split(" ")[0].upper()
        if name == "UTF8":
            self.send(reply(200, "always in UTF8 mode"))
        elif name == "MLST":
            self.send(reply(200, "MLST OPTS type;size;modify;"))
        else:
            raise CommandError(501, "option not understood")

    def ftp_HELP(self, argument: str) -> None:
        """RFC 959: the commands, or one command's syntax."""
        word = argument.strip().upper()
        if word:
            spec = parser.COMMANDS.get(word)
            if spec is None:
                raise CommandError(501, "unknown command")
            self.send(reply(214, spec.help))
            return
        self.send(
            parser.multiline(
                214, "The following commands are recognized:", parser.help_lines(), "Help OK"
            )
        )

    def ftp_SITE(self, argument: str) -> None:
        """Only SITE HELP."""
        if argument.strip().upper() == "HELP":
            self.send(reply(214, "no SITE commands besides HELP"))
            return
        raise CommandError(504, "SITE command not supported")

    def ftp_TYPE(self, kind: str) -> None:
        """A (ASCII), I (image), L 8; data is sent as stored in every type."""
        words = kind.strip().upper().split()
        if words in (["A"], ["A", "N"], ["I"], ["L", "8"]):
            self.send(reply(200, f"type set to {words[0]}"))
            return
        raise CommandError(504, "TYPE A or I only")

    def ftp_MODE(self, mode: str) -> None:
        """Stream mode only."""
        if mode.strip().upper() != "S":
            raise CommandError(504, "MODE S only")
        self.send(reply(200, "mode S"))

    def ftp_STRU(self, structure: str) -> None:
        """File structure only."""
        if structure.strip().upper() != "F":
            raise CommandError(504, "STRU F only")
        self.send(reply(200, "structure F"))

    def ftp_ALLO(self, argument: str) -> None:
        """RFC 959: no allocation needed."""
        self.send(reply(202, "ALLO is not needed"))

    def ftp_STAT(self, argument: str) -> None:
        """RFC 959: the session's status, or a listing on the control
        connection."""
        if not argument.strip():
            who = "not logged in" if self.files is None else f"logged in as {self._account()}"
            lines = [
                f"communigate {__version__} FTP server",
                who,
                f"control connection {'TLS' if self.secure else 'clear'}, "
                f"data connections {'TLS' if self.protected else 'clear'}",
            ]
            self.send(parser.multiline(211, "FTP server status:", lines, "End of status"))
            return
        if self.files is None:
            raise CommandError(530, "please log in with USER and PASS")
        entries = self.files.listing(self._path(parser.list_argument(argument)))
        body = listing.list_lines(entries, time.time()).decode("utf-8", "replace")
        self.send(parser.multiline(213, "status:", body.splitlines(), "End of status"))

    def _account(self) -> str:
        identity = getattr(self.files, "identity", None)
        return f"{identity.name}@{identity.domain}" if identity else "?"


class FTPFactory(Factory):
    """Builds FTP sessions that log in through one login service.

    ``tls`` is the DomainContexts (AUTH TLS, PROT P, implicit TLS on
    ``--ftps`` where the listener wraps the connection); ``pool`` runs the
    blocking parts of uploads.  Each connection takes its limits from
    ``limits``, by default the ``Limits`` server setting over
    ``idle_timeout`` and ``login_timeout``.
    """

    protocol = FTPServer  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        service: LoginService,
        reactor: Any,
        tls: Any = None,
        implicit_tls: bool = False,
        passive_ports: range | None = None,
        pool: Any = None,
        idle_timeout: int = IDLE_TIMEOUT,
        login_timeout: int = LOGIN_TIMEOUT,
        limits: LimitsReader | None = None,
    ) -> None:
        self.service = service
        self.reactor = reactor
        self.tls = tls
        self.data_tls = DataContexts(tls.directory) if tls is not None else None
        self.implicit_tls = implicit_tls
        self.passive_ports = passive_ports
        self.pool = pool
        if limits is None:
            defaults = replace(
                DEFAULTS["ftp"], idle_timeout=idle_timeout, login_timeout=login_timeout
            )
            limits = LimitsReader("ftp", defaults, service.resolver.directory.server_settings)
        self.limits = limits
