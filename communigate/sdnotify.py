"""systemd's readiness protocol (``Type=notify``), without a dependency.

systemd passes a datagram socket in ``NOTIFY_SOCKET`` (a path, or an
abstract-namespace name when it starts with ``@``); the service sends
``READY=1`` once it serves and ``STOPPING=1`` when it begins to shut down
(sd_notify(3), "Well-known assignments").  Without the variable nothing is
sent: the same server runs by hand or under any other supervisor.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

_log = Logger()


def notify_address(environ: Mapping[str, str]) -> str | None:
    """The socket address ``NOTIFY_SOCKET`` names, None without one (or for
    a kind of address other than a Unix socket, such as ``vsock:``)."""
    name = environ.get("NOTIFY_SOCKET", "")
    if name.startswith("@"):
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    return None


def notify(state: bytes, environ: Mapping[str, str]) -> bool:
    """Send ``state`` (``b"READY=1"``, newline-separated assignments) to the
    service manager; False when there is none to tell."""
    address = notify_address(environ)
    if address is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state)
    return True


class NotifyService(Service):
    """Tells systemd the server is ready once the reactor runs, and that it
    stops when shutdown begins.

    Added to the service tree after every listener, so that its
    ``startService`` runs only once they are all bound (a listener that
    cannot bind ends the start before this runs: systemd never hears
    ``READY=1`` and reports the failure).
    """

    def __init__(self, reactor: Any, environ: Mapping[str, str]) -> None:
        self.reactor = reactor
        self.environ = dict(environ)

    def startService(self) -> None:
        """Send ``READY=1`` when the reactor runs."""
        super().startService()
        self.reactor.callWhenRunning(self._send, b"READY=1")

    def stopService(self) -> None:
        """Send ``STOPPING=1``."""
        super().stopService()
        self._send(b"STOPPING=1")

    def _send(self, state: bytes) -> None:
        try:
            notify(state, self.environ)
        except OSError as error:
            # systemd gone or the socket unreachable: the server still serves.
            _log.warn("could not notify the service manager: {error}", error=error)
