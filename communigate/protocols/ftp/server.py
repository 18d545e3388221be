"""The FTP server: Twisted's FTP protocol made safe and complete.

Added to Twisted's server: login through the one portal (names resolved as
for mail: ``@``, ``%``, the local address), the clear-text rules of the
other protocols (USER/PASS refused on a clear control connection where the
domain or account requires TLS), AUTH TLS with PBSZ/PROT (RFC 2228, RFC
4217) including TLS data connections, REST and APPE, MLSD/MLST (RFC 3659),
OPTS UTF8 (RFC 2389).  Made safe: PORT/EPRT only to the client's own
address (no FTP bounce), passive data connections listen on the control
connection's address and accept only the client's address.
"""

from __future__ import annotations

import re
import time
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, reactor
from twisted.logger import Logger
from twisted.protocols import ftp
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from communigate.cred.credentials import LoginPassword
from communigate.cred.errors import LoginFailure
from communigate.protocols.access import LoginService


class _Reply(ftp.FTPCmdError):
    """A reply with our own text."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.errorCode = code
        self.text = text

    def response(self) -> str:
        """The reply line."""
        return f"{str(ftp.RESPONSE[self.errorCode]).split(' ', 1)[0]} {self.text}"


_TELNET = re.compile(rb"\xff[\xf0-\xff]")


def _refuse(code: str, text: str) -> Any:
    """A failed command with our reply text."""
    return defer.fail(_Reply(code, text))


def _fact(key: str, value: Any) -> str:
    if key == "modified":
        return "modify=" + time.strftime("%Y%m%d%H%M%S", time.gmtime(value))
    if key == "size":
        return f"size={value}"
    return ""


class FTPServer(ftp.FTP):
    """One FTP control connection."""

    log = Logger()
    PUBLIC_COMMANDS = ["FEAT", "QUIT", "AUTH", "PBSZ", "PROT", "OPTS", "NOOP", "SYST"]
    FEATURES = [
        "AUTH TLS",
        "PBSZ",
        "PROT",
        "EPRT",
        "EPSV",
        "MDTM",
        "SIZE",
        "REST STREAM",
        "MLST type*;size*;modify*;",
        "UTF8",
        "TVFS",
        "TYPE A;I",
    ]

    factory: FTPFactory
    shell: Any
    #: RFC 2640 names: UTF-8 on the control and data connections.
    _encoding = "utf-8"
    secure = False
    protected = False

    @property
    def service(self) -> LoginService:
        """The login service."""
        return self.factory.service

    def lineReceived(self, line: bytes) -> Any:
        """Drop Telnet IAC sequences (sent before ABOR) and read names that
        are not UTF-8 as Latin-1, instead of failing on them."""
        line = _TELNET.sub(b"", line)
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            line = line.decode("latin-1").encode("utf-8")
        return super().lineReceived(line)

    def connectionMade(self) -> None:
        """Note whether the link is TLS from the start."""
        self.secure = self.factory.implicit_tls
        self.protected = self.secure
        super().connectionMade()

    def connection(self) -> Any:
        """The ConnectionInfo of the control connection now."""
        return self.service.connection(self.transport, "ftp", self.secure)

    # -- TLS (RFC 2228, RFC 4217) ---------------------------------------------

    def ftp_AUTH(self, mechanism: str) -> Any:
        """AUTH TLS: the control connection becomes TLS."""
        if mechanism.upper() not in ("TLS", "TLS-C", "SSL") or self.factory.tls is None:
            return _refuse(ftp.CMD_NOT_IMPLMNTD_FOR_PARAM, "AUTH TLS only")
        if self.secure:
            return _refuse(ftp.BAD_CMD_SEQ, "TLS is already on")
        self.sendLine(b"234 AUTH TLS successful")
        assert self.transport is not None
        self.transport.startTLS(self.factory.tls)  # type: ignore[attr-defined]
        self.secure = True
        return None

    def ftp_PBSZ(self, size: str) -> Any:
        """RFC 4217 §9: the buffer size is 0 for TLS."""
        if not self.secure:
            return _refuse(ftp.BAD_CMD_SEQ, "AUTH TLS first")
        self.sendLine(b"200 PBSZ=0")
        return None

    def ftp_PROT(self, level: str) -> Any:
        """P: data connections in TLS; C: clear."""
        if not self.secure:
            return _refuse(ftp.BAD_CMD_SEQ, "AUTH TLS first")
        if level.upper() not in ("P", "C"):
            return _refuse(ftp.CMD_NOT_IMPLMNTD_FOR_PARAM, "PROT P or C")
        self.protected = level.upper() == "P"
        self.sendLine(f"200 protection level {level.upper()}".encode())
        return None

    def ftp_OPTS(self, option: str) -> Any:
        """OPTS UTF8 ON: names are UTF-8 both ways already."""
        if option.upper().startswith("UTF8"):
            self.sendLine(b"200 always in UTF8 mode")
            return None
        return super().ftp_OPTS(option)

    # -- login ---------------------------------------------------------------

    def ftp_USER(self, username: str) -> Any:
        """Refused where clear text is not allowed on this link."""
        if not self.service.clear_text_allowed(self.connection()):
            return _refuse(ftp.AUTH_FAILURE, "clear-text login is not allowed here; use AUTH TLS")
        return super().ftp_USER(username)

    def ftp_PASS(self, password: str) -> Any:
        """Log in through the portal."""
        user = self._user
        del self._user
        credentials = LoginPassword(
            user.encode("utf-8"), password.encode("utf-8"), self.connection(), None, "USER"
        )

        def accepted(result: tuple[Any, Any, Any]) -> Any:
            _, self.shell, self.logout = result
            self.workingDirectory: list[str] = []
            self.state = self.AUTHED
            return (ftp.USR_LOGGED_IN_PROCEED,)

        def refused(failure: Failure) -> Any:
            self.state = self.UNAUTH
            error = failure.value
            if isinstance(error, LoginFailure):
                code = ftp.SVC_NOT_AVAIL_CLOSING_CTRL_CNX if error.temporary else ftp.AUTH_FAILURE
                raise _Reply(code, error.reply)
            failure.trap(UnauthorizedLogin)
            raise _Reply(ftp.AUTH_FAILURE, "login incorrect")

        d = self.service.login(credentials, ftp.IFTPShell)
        return d.addCallbacks(accepted, refused)

    # -- data connections ------------------------------------------------------

    def _wrap(self, factory: Any) -> Any:
        """Only the client's address may connect; TLS when PROT P."""
        client = self.transport.getPeer().host  # type: ignore[union-attr]
        build = factory.buildProtocol

        def checked(addr: Any) -> Any:
            if getattr(addr, "host", None) != client:
                self.log.info("FTP data connection from {host} refused", host=addr.host)
                return None
            data = build(addr)
            if data is not None:
                data._encoding = "utf-8"
            return data

        factory.buildProtocol = checked
        if self.protected and self.factory.tls is not None:
            return TLSMemoryBIOFactory(self.factory.tls, False, factory)
        return factory

    def getDTPPort(self, factory: Any, interface: str = "") -> Any:
        """Passive ports listen on the control connection's address only."""
        local = self.transport.getHost().host  # type: ignore[union-attr]
        return super().getDTPPort(self._wrap(factory), interface=local)

    def _active(self, host: str, port: int) -> Any:
        peer = self.transport.getPeer().host  # type: ignore[union-attr]
        if host != peer:
            return _refuse(
                ftp.CMD_NOT_IMPLMNTD_FOR_PARAM, "data connections go to your own address only"
            )
        if self.dtpFactory is not None:
            self.cleanupDTP()
        self.dtpFactory = ftp.DTPFactory(pi=self, peerHost=peer)
        self.dtpFactory.setTimeout(self.dtpTimeout)
        self.dtpPort = reactor.connectTCP(host, port, self._wrap(self.dtpFactory))

        def connected(ignored: Any) -> Any:
            return (ftp.ENTERING_PORT_MODE,)

        def failed(error: Failure) -> Any:
            error.trap(ftp.PortConnectionError)
            return (ftp.CANT_OPEN_DATA_CNX,)

        return self.dtpFactory.deferred.addCallbacks(connected, failed)

    def ftp_PORT(self, address: str) -> Any:
        """RFC 959 PORT, to the client's own address only."""
        try:
            host, port = ftp.decodeHostPort(address)
        except ValueError:
            return _refuse(ftp.SYNTAX_ERR_IN_ARGS, "bad PORT address")
        return self._active(host, port)

    def ftp_EPRT(self, address: str) -> Any:
        """RFC 2428 EPRT, to the client's own address only."""
        parts = address.split(address[:1]) if address else []
        if len(parts) != 5 or not parts[3].isdigit():
            return _refuse(ftp.SYNTAX_ERR_IN_ARGS, "bad EPRT address")
        return self._active(parts[2], int(parts[3]))

    # -- REST, APPE, MLSD, MLST --------------------------------------------------

    def ftp_REST(self, offset: str) -> Any:
        """RFC 3659 §5: the next RETR or STOR starts there."""
        if not offset.isdigit():
            return _refuse(ftp.SYNTAX_ERR_IN_ARGS, "REST takes a byte offset")
        self.shell.restart = int(offset)
        self.sendLine(f"350 restarting at {offset}".encode())
        return None

    def ftp_APPE(self, path: str) -> Any:
        """Append to a file (or create it)."""
        self.shell.append = True
        return self.ftp_STOR(path)

    def _facts(self, name: str, attrs: dict[str, Any]) -> str:
        kind = "type=dir;" if attrs.get("directory") else "type=file;"
        facts = [_fact(key, value) for key, value in attrs.items() if key in ("size", "modified")]
        return kind + "".join(fact + ";" for fact in facts if fact) + " " + name

    def ftp_MLST(self, path: str = "") -> Any:
        """RFC 3659 §7: facts of one file on the control connection."""
        try:
            segments = ftp.toSegments(self.workingDirectory, path)
        except ftp.InvalidPath:
            return defer.fail(ftp.FileNotFoundError(path))
        keys = ("size", "directory", "modified")
        shown = "/" + "/".join(segments)

        def answer(values: list[Any]) -> Any:
            self.sendLine(f"250- listing {shown}".encode())
            self.sendLine(
                (" " + self._facts(shown, dict(zip(keys, values, strict=False)))).encode()
            )
            return (ftp.REQ_FILE_ACTN_COMPLETED_OK,)

        return self.shell.stat(segments, keys).addCallback(answer)

    def ftp_MLSD(self, path: str = "") -> Any:
        """RFC 3659 §7: facts of a directory's entries on the data connection."""
        if self.dtpInstance is None or not self.dtpInstance.isConnected:
            return defer.fail(ftp.BadCmdSequenceError("PASV or PORT first"))
        try:
            segments = ftp.toSegments(self.workingDirectory, path)
        except ftp.InvalidPath:
            return defer.fail(ftp.FileNotFoundError(path))
        keys = ("size", "directory", "modified")

        def send(entries: list[Any]) -> Any:
            self.reply(ftp.DATA_CNX_ALREADY_OPEN_START_XFR)
            for name, values in entries:
                line = self._facts(name, dict(zip(keys, values, strict=False)))
                self.dtpInstance.sendLine(line.encode("utf-8"))
            self.dtpInstance.transport.loseConnection()
            return (ftp.TXFR_COMPLETE_OK,)

        return self.shell.list(segments, keys).addCallback(send)


class FTPFactory(ftp.FTPFactory):
    """Builds FTP sessions logging in through one login service."""

    protocol = FTPServer
    noisy = False
    allowAnonymous = False
    welcomeMessage = "communigate FTP server ready"

    def __init__(
        self,
        service: LoginService,
        tls: Any = None,
        implicit_tls: bool = False,
        passive_ports: range | None = None,
    ) -> None:
        super().__init__(service.portal)
        self.service = service
        self.tls = tls
        self.implicit_tls = implicit_tls
        if passive_ports is not None:
            self.passivePortRange = passive_ports
