"""What the server answers on its control socket.

``sessions`` lists the live sessions (of an account or a domain), ``kick``
ends those of an account, ``status`` says how the server is doing,
``reload`` calls the server's reload callback.  Every answer is a JSON-able
dictionary (:mod:`.requests`); a handler that fails is answered with an
error, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from twisted.logger import Logger
from zope.interface import implementer

from communigate import __version__
from communigate.control.interfaces import IControlCommands
from communigate.control.requests import error_answer
from communigate.control.sessions import LiveSessions

#: Protocols whose session count ``status`` always gives, even at zero.
SESSION_PROTOCOLS = ("imap4", "pop3", "ftp", "pwd")
#: Why a kicked session ends, unless the request says otherwise.
KICK_REASON = "the administrator ended the session"
#: Longest reason a kick request may give.
MAX_REASON = 200


class SessionEnder(Protocol):
    """What ``kick`` asks: the realm's session registry, or one reaching
    the worker processes too."""

    def end(self, domain: str, name: str, reason: str) -> int:
        """End every live session of ``name@domain``; how many."""
        ...


def settings_reloaded() -> str:
    """The default reload: nothing to do, the store re-reads settings."""
    return (
        "settings, domains and accounts are re-read from disk within a second;"
        " nothing else to reload"
    )


@implementer(IControlCommands)
class ControlCommands:
    """The handlers of the control requests, over the server's state."""

    log = Logger()

    def __init__(
        self,
        sessions: LiveSessions,
        registry: SessionEnder,
        clock: Callable[[], float],
        listeners: Callable[[], Sequence[str]] = tuple,
        helper: Any = None,
        pool: Any = None,
    ) -> None:
        self.sessions = sessions
        self.registry = registry
        #: Seconds since the epoch.
        self.clock = clock
        #: The names of the listening services (``imap4:tcp:143``).
        self.listeners = listeners
        #: The External Authentication helper (``ExternalHelper``), if any.
        self.helper = helper
        #: The thread pool (``ThreadPool``), if any.
        self.pool = pool
        self.started = float(clock())
        #: The worker processes as ``status`` lists them (``--workers``).
        self.workers: Callable[[], list[dict[str, object]]] | None = None
        #: Called by ``reload``; its text is the answer's ``message``.  The
        #: server may replace it (or wrap it) to re-read more.
        self.reload: Callable[[], str] = settings_reloaded
        self._handlers: dict[str, Callable[[Mapping[str, object]], dict[str, object]]] = {
            "sessions": self.do_sessions,
            "kick": self.do_kick,
            "status": self.do_status,
            "reload": self.do_reload,
        }

    def answer(self, command: str, arguments: Mapping[str, object]) -> dict[str, object]:
        """Run the handler of ``command``; an unknown command, a wrong
        argument or a failing handler get an error answer."""
        handler = self._handlers.get(command)
        if handler is None:
            return error_answer(f"unknown command {command!r}; known: {', '.join(self._handlers)}")
        try:
            return handler(arguments)
        except ValueError as error:
            return error_answer(str(error))
        except Exception as error:
            self.log.failure("control command {command} failed", command=command)
            return error_answer(f"{command} failed: {error}")

    def do_sessions(self, arguments: Mapping[str, object]) -> dict[str, object]:
        """``sessions [of=ACCOUNT|DOMAIN]``: the live sessions."""
        selector = _text(arguments, "of")
        now = float(self.clock())
        entries = self.sessions.matching(selector)
        return {"ok": True, "now": now, "sessions": [entry.as_answer(now) for entry in entries]}

    def do_kick(self, arguments: Mapping[str, object]) -> dict[str, object]:
        """``kick account=NAME@DOMAIN [reason=TEXT]``: end the account's
        sessions; ``ended`` says how many."""
        account = _text(arguments, "account")
        name, _, domain = (account or "").lower().rpartition("@")
        if not name or not domain:
            raise ValueError("kick needs account=NAME@DOMAIN")
        reason = _text(arguments, "reason") or KICK_REASON
        reason = " ".join(reason.split())[:MAX_REASON] or KICK_REASON
        ended = self.registry.end(domain, name, reason)
        if ended:
            self.log.info(
                "{count} sessions of {account} ended by the administrator: {reason}",
                count=ended,
                account=f"{name}@{domain}",
                reason=reason,
            )
        return {"ok": True, "account": f"{name}@{domain}", "ended": ended}

    def do_status(self, arguments: Mapping[str, object]) -> dict[str, object]:
        """``status``: version, uptime, sessions per protocol, listeners,
        threads, External helper, worker processes."""
        now = float(self.clock())
        counts = dict.fromkeys(SESSION_PROTOCOLS, 0)
        counts.update(self.sessions.per_protocol())
        return {
            "ok": True,
            "version": __version__,
            "started": self.started,
            "uptime": max(0.0, now - self.started),
            "sessions": counts,
            "listeners": list(self.listeners()),
            "threads": self._threads(),
            "external": self._external(),
            "workers": self.workers() if self.workers is not None else None,
        }

    def do_reload(self, arguments: Mapping[str, object]) -> dict[str, object]:
        """``reload``: call the reload callback."""
        return {"ok": True, "message": str(self.reload())}

    def _threads(self) -> dict[str, int] | None:
        if self.pool is None:
            return None
        return {
            "min": int(self.pool.min),
            "max": int(self.pool.max),
            "running": len(self.pool.threads),
        }

    def _external(self) -> dict[str, object] | None:
        helper = self.helper
        if helper is None:
            return None
        settings = helper.settings
        return {
            "enabled": bool(settings is not None and settings.enabled and settings.program),
            "running": helper.process is not None,
            "starts": int(helper.starts),
            "pending": len(helper.pending),
        }


def _text(arguments: Mapping[str, object], name: str) -> str | None:
    """The string argument ``name``, None if absent; ValueError if it is
    not a string."""
    value = arguments.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value
