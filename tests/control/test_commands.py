"""The control request handlers, over a session table, the realm's session
registry and a Clock (no network)."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool
from zope.interface.verify import verifyObject

from communigate import __version__
from communigate.control.commands import KICK_REASON, ControlCommands
from communigate.control.interfaces import IControlCommands
from communigate.control.sessions import LiveSessions
from communigate.cred.checkers.external import ExternalHelper, HelperSettings
from communigate.portal.sessions import LiveSession, SessionRegistry
from tests.control.test_sessions import connection


class Avatar(LiveSession):
    """An avatar that records why it was ended."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.watch(self.reasons.append)


def commands(**extra: Any) -> tuple[ControlCommands, Clock]:
    """Handlers over an empty table and registry, started at t=100."""
    clock = Clock()
    clock.advance(100)
    table = LiveSessions(clock.seconds)
    registry = SessionRegistry(None)  # type: ignore[arg-type]
    return ControlCommands(table, registry, clock.seconds, **extra), clock


def test_provides_the_interface() -> None:
    """ControlCommands provides IControlCommands."""
    assert verifyObject(IControlCommands, commands()[0])


def test_unknown_command_is_an_error() -> None:
    """An unknown command gets an error answer naming the known ones."""
    answer = commands()[0].answer("shutdown", {})
    assert answer["ok"] is False
    assert "unknown command 'shutdown'" in str(answer["error"])
    assert "sessions" in str(answer["error"])


def test_sessions_lists_and_filters() -> None:
    """sessions gives every entry with its duration; of= filters."""
    control, clock = commands()
    control.sessions.opened(connection(session="a"), "info@company.com", "LOGIN")
    control.sessions.opened(connection(session="b"), "info@client1.com", "PLAIN")
    clock.advance(3)
    answer = control.answer("sessions", {})
    assert answer["ok"] is True
    assert [s["session"] for s in answer["sessions"]] == ["a", "b"]  # type: ignore[attr-defined]
    assert answer["sessions"][0]["duration"] == 3.0  # type: ignore[index]
    only = control.answer("sessions", {"of": "client1.com"})
    assert [s["account"] for s in only["sessions"]] == ["info@client1.com"]  # type: ignore[attr-defined]


def test_sessions_argument_must_be_text() -> None:
    """of= that is not a string is an error answer, not an exception."""
    answer = commands()[0].answer("sessions", {"of": 3})
    assert answer == {"ok": False, "error": "of must be a string"}


def test_kick_ends_every_session_of_the_account() -> None:
    """kick ends each live avatar of the account with the reason, counts
    them, and leaves other accounts alone."""
    control, _ = commands()
    mine, also, other = Avatar(), Avatar(), Avatar()
    control.registry.opened("company.com", "info", mine)
    control.registry.opened("company.com", "info", also)
    control.registry.opened("company.com", "sales", other)
    answer = control.answer("kick", {"account": "INFO@Company.com"})
    assert answer == {"ok": True, "account": "info@company.com", "ended": 2}
    assert mine.reasons == also.reasons == [KICK_REASON]
    assert other.reasons == []
    assert control.answer("kick", {"account": "info@company.com"})["ended"] == 0


def test_kick_with_reason() -> None:
    """kick passes the given reason, on one line."""
    control, _ = commands()
    avatar = Avatar()
    control.registry.opened("company.com", "info", avatar)
    control.answer("kick", {"account": "info@company.com", "reason": "the account\r\nwas deleted"})
    assert avatar.reasons == ["the account was deleted"]


def test_kick_needs_an_account() -> None:
    """kick without NAME@DOMAIN is an error answer."""
    control, _ = commands()
    for arguments in ({}, {"account": "info"}, {"account": "@company.com"}):
        answer = control.answer("kick", arguments)
        assert answer["ok"] is False
        assert "NAME@DOMAIN" in str(answer["error"])


def test_status() -> None:
    """status gives version, uptime, sessions of every protocol (zero
    included), listeners, threads and the External helper's state."""
    pool = ThreadPool(minthreads=1, maxthreads=4)
    helper = ExternalHelper(Clock(), ".")  # type: ignore[arg-type]
    control, clock = commands(listeners=lambda: ["imap4:tcp:143"], helper=helper, pool=pool)
    control.sessions.opened(connection("imap4"), "info@company.com", "LOGIN")
    clock.advance(61)
    answer = control.answer("status", {})
    assert answer["ok"] is True
    assert answer["version"] == __version__
    assert (answer["started"], answer["uptime"]) == (100.0, 61.0)
    assert answer["sessions"] == {"imap4": 1, "pop3": 0, "ftp": 0, "pwd": 0}
    assert answer["listeners"] == ["imap4:tcp:143"]
    assert answer["threads"] == {"min": 1, "max": 4, "running": 0}
    assert answer["external"] == {"enabled": False, "running": False, "starts": 0, "pending": 0}


def test_status_external_configured() -> None:
    """A configured helper is reported enabled."""
    helper = ExternalHelper(Clock(), ".")  # type: ignore[arg-type]
    helper.settings = HelperSettings(True, "/bin/helper", 10.0, 5.0)
    answer = commands(helper=helper)[0].answer("status", {})
    assert answer["external"]["enabled"] is True  # type: ignore[index]
    assert answer["threads"] is None


def test_reload_calls_the_replaceable_callback() -> None:
    """reload answers with the default text, then with a replaced callback's."""
    control, _ = commands()
    assert "re-read" in str(control.answer("reload", {})["message"])
    called: list[bool] = []

    def reload() -> str:
        called.append(True)
        return "listeners reloaded"

    control.reload = reload
    assert control.answer("reload", {}) == {"ok": True, "message": "listeners reloaded"}
    assert called == [True]


def test_failing_handler_is_an_error_answer() -> None:
    """A handler that raises gives an error answer, not an exception."""
    control, _ = commands()

    def broken() -> str:
        raise RuntimeError("disk on fire")

    control.reload = broken
    answer = control.answer("reload", {})
    assert answer == {"ok": False, "error": "reload failed: disk on fire"}
    assert control.answer("status", {})["ok"] is True


def test_status_lists_the_workers() -> None:
    """With worker processes, status lists what the pool says of each;
    without, ``workers`` is None."""
    control, _ = commands()
    assert control.answer("status", {})["workers"] is None
    described = [{"number": 1, "pid": 42, "ready": True, "connections": 3, "sessions": 2}]
    control.workers = lambda: described
    assert control.answer("status", {})["workers"] == described
