"""The External Authentication helper (spec §3), with CommuniGate's protocol,
so existing helper programs work unchanged.

The server starts the program (``ProgramName``, in the base directory) and
talks to it over stdin/stdout, one line per message:

* ``nnn INTF 1`` at start (the helper answers ``nnn INTF <version>``);
* ``nnn VRFY (mode) user@domain password`` (the password an atom or a
  quoted string with ``\\"``, ``\\\\`` and ``\\ddd`` escapes), answered by
  ``nnn OK``, ``nnn ERROR text`` (refused) or ``nnn FAILURE text``
  (temporary: the client gets a temporary error);
* ``nnn QUIT`` at shutdown.

Answers are matched by number and may come in any order; lines starting
with ``*`` are logged.  A request without an answer within ``Timeout``
fails as temporary, and the helper is stopped.  When the helper stops
(time-out, crash) it is started again after ``RestartPause`` and the
requests still pending are sent again; with ``RestartPause`` absent or 0
(no auto-restart) they fail.  Settings (``Settings/Main.settings``)::

    ExternalAUTH = { Enabled = YES; ProgramName = "/path/helper args";
                     Timeout = 10s; RestartPause = 5s; LogLevel = 3; };

They are read again on each request, so ``communigate server settings``
changes take effect without a restart of the server.  Never logged: the
password.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from communigate.cred.errors import TemporaryFailure
from communigate.cred.interfaces import IPasswordSource
from communigate.store.directory import IDirectory
from communigate.store.settingsformat import Value, as_bool, as_seconds

MAX_LINE = 4096
_ATOM = re.compile(rb"[A-Za-z0-9._@\-]+\Z")


def quote(value: bytes) -> bytes:
    """An atom, or a quoted string with CommuniGate's escapes."""
    if _ATOM.match(value):
        return value
    out = bytearray(b'"')
    for byte in value:
        if byte in (0x22, 0x5C):
            out += b"\\" + bytes([byte])
        elif byte < 32 or byte == 127:
            out += b"\\%03d" % byte
        else:
            out.append(byte)
    return bytes(out + b'"')


@dataclass(frozen=True)
class HelperSettings:
    """``ExternalAUTH`` as read from the server settings."""

    enabled: bool
    program: str
    timeout: float
    restart_pause: float

    @classmethod
    def read(cls, settings: Mapping[str, Value]) -> HelperSettings:
        """From ``Settings/Main.settings``."""
        value = settings.get("ExternalAUTH")
        value = value if isinstance(value, dict) else {}

        def seconds(key: str, default: float) -> float:
            try:
                return float(as_seconds(value.get(key, default)))  # type: ignore[arg-type]
            except ValueError:
                return default

        return cls(
            enabled=as_bool(value.get("Enabled")),
            program=str(value.get("ProgramName") or ""),
            timeout=seconds("Timeout", 10),
            restart_pause=seconds("RestartPause", 0),
        )


class _HelperProcess(ProcessProtocol):
    """Line framing over the helper's stdout."""

    def __init__(self, owner: ExternalHelper) -> None:
        self.owner = owner
        self.buffer = b""

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        if len(self.buffer) > MAX_LINE:
            self.buffer = b""
        for line in lines:
            self.owner.line(line.rstrip(b"\r")[:MAX_LINE])

    def processEnded(self, reason: Failure) -> None:
        self.owner.ended(self)


class ExternalHelper:
    """Runs the helper and matches its answers to requests."""

    log = Logger()

    def __init__(self, reactor: Any, base: Path) -> None:
        self.reactor = reactor
        self.base = Path(base)
        self.settings: HelperSettings | None = None
        self.process: _HelperProcess | None = None
        self.sequence = 0
        self.pending: dict[int, tuple[Deferred[bool], bytes, Any]] = {}
        self.restarting: Any = None
        #: Helper processes spawned so far (the first start and restarts).
        self.starts = 0
        #: Called with the seconds each answered request took (metrics).
        self.on_answer: Callable[[float], None] | None = None
        self._sent: dict[int, float] = {}

    # -- process ---------------------------------------------------------------

    def configure(self, settings: HelperSettings) -> None:
        """Start, restart or stop the helper to match the settings."""
        if settings == self.settings:
            return
        self.settings = settings
        self.stop()
        if settings.enabled and settings.program:
            self.start()

    def start(self) -> None:
        """Spawn the helper and say hello."""
        self.restarting = None
        assert self.settings is not None
        argv = shlex.split(self.settings.program)
        protocol = _HelperProcess(self)
        try:
            self.reactor.spawnProcess(protocol, argv[0], argv, path=str(self.base))
        except OSError as error:
            self.log.error("EXTAUTH cannot start {program}: {error}", program=argv[0], error=error)
            return
        self.process = protocol
        self.starts += 1
        self.write(self._next(), b"INTF 1")
        for number, (_, command, _) in sorted(self.pending.items()):
            self.write(number, command)

    def stop(self) -> None:
        """QUIT and end the helper (pending requests stay pending)."""
        process, self.process = self.process, None
        if process is not None and process.transport is not None:
            try:
                process.transport.write(b"%d QUIT\n" % self._next())
                process.transport.closeStdin()
                process.transport.signalProcess("TERM")
            except Exception:  # noqa: S110 - the process is already gone
                pass

    def ended(self, protocol: _HelperProcess) -> None:
        """A helper exited: unless a new one runs, restart it after the
        pause (auto-restart), or fail what is pending."""
        if protocol is self.process:
            self.process = None
        elif self.process is not None:
            return
        self.log.info("EXTAUTH helper stopped")
        settings = self.settings
        if settings and settings.enabled and settings.restart_pause > 0:
            if self.restarting is None:
                self.restarting = self.reactor.callLater(settings.restart_pause, self.start)
            return
        for number in list(self.pending):
            self._answer(number, TemporaryFailure("External helper not running"))

    # -- requests ----------------------------------------------------------------

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    def write(self, number: int, command: bytes) -> None:
        """Send one numbered command."""
        if self.process is not None and self.process.transport is not None:
            self.process.transport.write(b"%d %s\n" % (number, command))

    def verify(self, user: str, password: bytes, mode: str = "plain") -> Deferred[bool]:
        """Ask the helper; True for OK, False for ERROR."""
        command = b"VRFY (%s) %s %s" % (
            mode.encode("ascii"),
            quote(user.encode("utf-8")),
            quote(password),
        )
        return self._request(command)

    def _request(self, command: bytes) -> Deferred[bool]:
        if self.process is None and self.restarting is None:
            return fail(TemporaryFailure("External helper not running"))
        number = self._next()
        result: Deferred[bool] = Deferred()
        assert self.settings is not None
        timer = self.reactor.callLater(self.settings.timeout, self._timed_out, number)
        self.pending[number] = (result, command, timer)
        self._sent[number] = self.reactor.seconds()
        self.write(number, command)
        return result

    def new(self, address: str) -> Deferred[bool]:
        """``NEW user@domain``: may the helper create this unknown account?"""
        return self._request(b"NEW " + quote(address.encode("utf-8")))

    def _timed_out(self, number: int) -> None:
        self.log.info("EXTAUTH request {number} timed out; stopping the helper", number=number)
        self._answer(number, TemporaryFailure("External helper did not answer in time"))
        process = self.process
        if process is not None and process.transport is not None:
            process.transport.signalProcess("KILL")

    def _answer(self, number: int, outcome: bool | Exception) -> None:
        entry = self.pending.pop(number, None)
        sent = self._sent.pop(number, None)
        if entry is None:
            return
        if sent is not None and self.on_answer is not None:
            self.on_answer(self.reactor.seconds() - sent)
        result, _, timer = entry
        if timer is not None and timer.active():
            timer.cancel()
        if isinstance(outcome, Exception):
            result.errback(outcome)
        else:
            result.callback(outcome)

    def line(self, line: bytes) -> None:
        """One line from the helper."""
        if line.startswith(b"*"):
            self.log.info("EXTAUTH {text}", text=line[1:].strip().decode("utf-8", "replace"))
            return
        number_text, _, rest = line.partition(b" ")
        if not number_text.isdigit():
            self.log.info("EXTAUTH unreadable line from the helper")
            return
        word, _, text = rest.partition(b" ")
        word = word.upper()
        number = int(number_text)
        if word == b"OK":
            self._answer(number, True)
        elif word == b"ERROR":
            self._answer(number, False)
        elif word == b"FAILURE":
            reason = text.decode("utf-8", "replace") or "External helper failure"
            self._answer(number, TemporaryFailure(reason))


@implementer(IPasswordSource)
class ExternalPassword:
    """``UseExtPassword``: the account's password checked by the helper."""

    name = "external"
    setting = "UseExtPassword"

    def __init__(self, helper: ExternalHelper, directory: IDirectory) -> None:
        self.helper = helper
        self.directory = directory

    def verify(self, account: Any, password: bytes) -> Deferred[bool]:
        """Ask the helper (started or reconfigured from the settings now)."""
        self.helper.configure(HelperSettings.read(self.directory.server_settings()))
        return self.helper.verify(account.full_name, password)

    def clear_secret(self, account: Any) -> str | None:
        """The helper never reveals passwords."""
        return None

    def consult_unknown(self, address: str) -> Deferred[bool]:
        """Ask the helper to create an unknown account (``NEW``)."""
        self.helper.configure(HelperSettings.read(self.directory.server_settings()))
        return self.helper.new(address)


@implementer(ICredentialsChecker)
class ExternalChecker:
    """A plain twisted.cred checker asking a helper about user and password."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, reactor: Any, program: str, base: Path = Path(".")) -> None:
        self.helper = ExternalHelper(reactor, base)
        self.settings = HelperSettings(True, program, 10.0, 5.0)

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        """The user name when the helper answers OK."""
        self.helper.configure(self.settings)
        user = credentials.username.decode("utf-8", "replace")

        def decide(accepted: bool) -> bytes:
            if not accepted:
                raise UnauthorizedLogin("the helper refused")
            return bytes(credentials.username)

        return self.helper.verify(user, credentials.password).addCallback(decide)
