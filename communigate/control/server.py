"""The control socket's listener: a UNIX socket in the base directory,
mode 0600 in a folder of mode 0700, so only the server's own user (and
root) can talk to it.

A socket file left by a server that died is replaced; one that a live
server answers on is not (two servers on one base directory would fight over
it).  The file is removed when the server stops.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path
from typing import Any

from twisted.application.service import IServiceCollection, Service
from twisted.internet import error
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

from communigate.control.interfaces import IControlCommands
from communigate.control.requests import (
    MAX_REQUEST,
    RequestError,
    error_answer,
    format_answer,
    parse_request,
)

#: Mode of the socket file.
SOCKET_MODE = 0o600
#: Mode of the folder that holds it.
FOLDER_MODE = 0o700


class ControlProtocol(LineReceiver):
    """One client of the control socket: a request per line, an answer per
    line."""

    delimiter = b"\n"
    # The line end is allowed on top of the request's own bytes.
    MAX_LENGTH = MAX_REQUEST + 2

    def __init__(self, commands: IControlCommands) -> None:
        self.commands = commands

    def lineReceived(self, line: bytes) -> None:
        """Parse the request and send the answer."""
        try:
            request = parse_request(line)
        except RequestError as problem:
            self.sendLine(format_answer(error_answer(str(problem))).rstrip(b"\n"))
            return
        answer = self.commands.answer(request.command, request.arguments)
        self.sendLine(format_answer(answer).rstrip(b"\n"))

    def lineLengthExceeded(self, line: bytes) -> None:
        """Refuse, then hang up: the rest of the line cannot be trusted to
        be one request."""
        self.sendLine(
            format_answer(error_answer(f"request longer than {MAX_REQUEST} bytes")).rstrip(b"\n")
        )
        assert self.transport is not None
        self.transport.loseConnection()


class ControlFactory(Factory):
    """Makes a :class:`ControlProtocol` per client."""

    noisy = False

    def __init__(self, commands: IControlCommands) -> None:
        self.commands = commands

    def buildProtocol(self, addr: Any) -> ControlProtocol:
        """A protocol answering with :attr:`commands`."""
        protocol = ControlProtocol(self.commands)
        protocol.factory = self
        return protocol


def clear_stale(path: Path) -> None:
    """Remove the socket file at ``path`` if no server answers on it;
    raise :class:`~twisted.internet.error.CannotListenError` if one does,
    or if something other than a socket is there."""
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISSOCK(mode):
        raise error.CannotListenError("unix", str(path), "not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError as problem:
        if problem.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise error.CannotListenError("unix", str(path), problem) from None
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise error.CannotListenError("unix", str(path), "another server answers on it")


class ControlService(Service):
    """Listens on the control socket while the server runs."""

    log = Logger()

    def __init__(self, path: Path, commands: IControlCommands, reactor: Any) -> None:
        self.path = Path(path)
        self.commands = commands
        self.reactor = reactor
        self.port: Any = None

    def privilegedStartService(self) -> None:
        """Replace a stale socket file; refuse to start (``CannotListenError``,
        which the service tree reports in one line) if another server
        answers on it."""
        super().privilegedStartService()
        clear_stale(self.path)

    def startService(self) -> None:
        """Create the folder and listen (after twistd dropped privileges, so
        the socket belongs to the server's user).  A socket that cannot be
        made is logged: the server still serves mail without it."""
        super().startService()
        try:
            self.path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
            os.chmod(self.path.parent, FOLDER_MODE)
            clear_stale(self.path)
            self.port = self.reactor.listenUNIX(
                str(self.path), ControlFactory(self.commands), mode=SOCKET_MODE, wantPID=False
            )
        except (OSError, error.CannotListenError) as problem:
            self.log.error(
                "no control socket on {path}: {problem}", path=str(self.path), problem=problem
            )
            return
        self.log.info("control socket on {path}", path=str(self.path))

    def stopService(self) -> Any:
        """Stop listening (which removes the socket file)."""
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None


def service_names(parent: IServiceCollection) -> list[str]:
    """The listeners under ``parent``, at any depth: the services named
    ``kind:description`` (``imap4:tcp:143``, ``metrics:tcp:9100``)."""
    names: list[str] = []
    for child in parent:
        name = getattr(child, "name", None)
        if isinstance(name, str) and ":" in name:
            names.append(name)
        if IServiceCollection.providedBy(child):
            names += service_names(child)
    return names
