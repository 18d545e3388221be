"""What every part of an FTP session shares: its state, replies, errors.

The control connection (:mod:`.server`), the file commands (:mod:`.files`)
and the data connection commands (:mod:`.transfers`) are mixed into one
protocol class; this base holds the state they share.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from communigate.cred.credentials import ConnectionInfo
from communigate.portal.filesession import FileError, IFileSession, Problem, Segments
from communigate.protocols.access import LoginService
from communigate.protocols.ftp import parser
from communigate.protocols.ftp.data import ActiveTarget, PassivePort
from communigate.protocols.ftp.parser import State, reply
from communigate.protocols.limits import DEFAULTS, Limits
from communigate.protocols.lines import LineSplitter, LineTooLong
from communigate.protocols.tls import for_domain

if TYPE_CHECKING:
    from communigate.protocols.ftp.server import FTPFactory
    from communigate.protocols.ftp.transfers import Transfer

#: Bad commands tolerated in one session.
MAX_ERRORS = 20

_FILE_CODES = {Problem.INVALID: 553, Problem.NO_SPACE: 452}


class FTPSession(Protocol):
    """The state of one FTP control connection."""

    log = Logger()
    factory: FTPFactory

    def __init__(self) -> None:
        self.state = State.LOGIN
        self.lines = LineSplitter(parser.MAX_LINE)
        self.queue: deque[bytes | LineTooLong] = deque()
        self.busy = False
        self.paused = False
        self.secure = False
        self.protected = False
        self.host: str | None = None
        self.user: str | None = None
        self.files: IFileSession | None = None
        self.logout: Callable[[], None] | None = None
        self.cwd: Segments = ()
        self.rename_from: Segments | None = None
        self.renaming: Segments | None = None
        self.restart = 0
        self.epsv_all = False
        self.data: PassivePort | ActiveTarget | None = None
        self.transfer: Transfer | None = None
        self.errors = 0
        self.login_failures = 0
        #: The portal's answer being waited for.
        self.login: Deferred[Any] | None = None
        self._idle: Any = None
        self._deadline: Any = None
        #: The connection limits, read from the factory when it opens.
        self.limits: Limits = DEFAULTS["ftp"]

    @property
    def service(self) -> LoginService:
        """The login service."""
        return self.factory.service

    def _timed_out(self, why: str) -> None:
        self.log.info("FTP session from {remote} closed: {why}", remote=self._remote(), why=why)
        self.send(reply(421, f"{why}, closing the control connection"))
        self.close()

    def _remote(self) -> str | None:
        peer = self.transport.getPeer() if self.transport else None
        return getattr(peer, "host", None)

    def connection(self) -> ConnectionInfo:
        """The ConnectionInfo now (HOST stands in for the SNI name)."""
        info = self.service.connection(self.transport, "ftp", self.secure)
        return dataclasses.replace(info, server_name=self.host) if self.host else info

    def _contexts(self) -> Any:
        """TLS contexts: the HOST domain's certificate first, if any."""
        tls = self.factory.tls
        return for_domain(tls, self.host) if self.host and tls is not None else tls

    def send(self, data: bytes) -> None:
        """Write a reply."""
        if self.transport is not None and self.connected:
            self.transport.write(data)

    def close(self) -> None:
        """Close once the replies are sent; nothing more is read."""
        self.queue.clear()
        if self.transport is not None:
            self.transport.loseConnection()

    def protocol_error(self, code: int, text: str) -> None:
        """Answer a command that cannot run; too many end the session."""
        self.errors += 1
        self.send(reply(code, text))
        if self.errors >= MAX_ERRORS:
            self.log.info(
                "FTP session from {remote} closed after {count} errors",
                remote=self._remote(),
                count=self.errors,
            )
            self.send(reply(421, "too many errors, closing the control connection"))
            self.close()

    @staticmethod
    def file_reply(error: FileError) -> bytes:
        """A refused file operation: 550, or 553/452 for names and space."""
        return reply(_FILE_CODES.get(error.problem, 550), error.text)

    def _blocking(self, work: Callable[[], Any]) -> Deferred[Any]:
        """Run file system work that may block (fsync, copies) in the
        thread pool when there is one."""
        pool = self.factory.pool
        if pool is None:
            return maybeDeferred(work)
        return deferToThreadPool(self.factory.reactor, pool, work)

    def _session(self) -> IFileSession:
        assert self.files is not None
        return self.files

    def _path(self, argument: str) -> Segments:
        return parser.resolve(self.cwd, argument)
