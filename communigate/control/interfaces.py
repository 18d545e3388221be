"""The seams of the control socket: the live-session table the login
service feeds, and the command handler the listener asks."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from zope.interface import Interface

from communigate.cred.credentials import ConnectionInfo


class ISessionTable(Interface):
    """Told of every logged-in session by the login service."""

    def opened(connection: ConnectionInfo, account: str, mechanism: str) -> Callable[[], None]:
        """A session of ``account`` (``name@domain``) logged in on
        ``connection`` with ``mechanism``; the returned callable forgets it
        (called once, at logout)."""


class IControlCommands(Interface):
    """Answers the requests of the control socket."""

    def answer(command: str, arguments: Mapping[str, object]) -> dict[str, object]:
        """The answer to one request: ``{"ok": True, ...}`` or
        ``{"ok": False, "error": "..."}``; never raises."""
