"""The shared connection limits: reading them from the server settings, and
the login deadline and idle timer every protocol runs."""

from __future__ import annotations

from twisted.internet.task import Clock

from communigate.protocols.limits import (
    DEFAULTS,
    Limits,
    LimitsReader,
    SessionTimers,
    read_limits,
)
from communigate.store.files import FileDirectory
from tests.conftest import ManualClock


def test_defaults_apply_without_a_setting() -> None:
    """Without a Limits setting every protocol keeps its defaults."""
    for protocol, defaults in DEFAULTS.items():
        assert read_limits({}, protocol, defaults) == defaults
    assert DEFAULTS["imap4"].idle_timeout == 30 * 60
    assert DEFAULTS["pop3"].idle_timeout == 10 * 60
    assert all(limits.login_timeout == 60 for limits in DEFAULTS.values())


def test_top_level_and_per_protocol_values() -> None:
    """Top-level values apply to every protocol; a protocol's own dictionary wins."""
    settings = {
        "Limits": {
            "LoginTimeout": "30s",
            "PreLoginData": "4K",
            "IdleTimeout": "2m",
            "imap4": {"IdleTimeout": "1h", "MaxLineLength": "128K"},
        }
    }
    imap = read_limits(settings, "imap4", DEFAULTS["imap4"])
    assert imap == Limits(
        max_line=128 * 1024, prelogin_data=4096, login_timeout=30, idle_timeout=3600
    )
    pop3 = read_limits(settings, "pop3", DEFAULTS["pop3"])
    assert (pop3.login_timeout, pop3.idle_timeout, pop3.max_line) == (30, 120, 8192)


def test_unreadable_and_tiny_values() -> None:
    """A value that cannot be read is ignored; one below the floor is raised to it."""
    settings = {"Limits": {"LoginTimeout": "soon", "MaxLineLength": 10, "IdleTimeout": 0}}
    limits = read_limits(settings, "pwd", DEFAULTS["pwd"])
    assert limits.login_timeout == DEFAULTS["pwd"].login_timeout
    assert limits.max_line == 512
    assert limits.idle_timeout == 1
    assert read_limits({"Limits": "junk"}, "pwd", DEFAULTS["pwd"]) == DEFAULTS["pwd"]


def test_reader_sees_setting_changes(directory: FileDirectory, clock: ManualClock) -> None:
    """A reader reads the server settings again for every connection."""
    reader = LimitsReader("ftp", None, directory.server_settings)
    assert reader() == DEFAULTS["ftp"]
    directory.update_server_settings({"Limits": {"ftp": {"LoginTimeout": 7}}})
    clock.advance(1)
    assert reader().login_timeout == 7
    assert LimitsReader("ftp")() == DEFAULTS["ftp"]


def timers(login: bool = True) -> tuple[Clock, SessionTimers, list[str]]:
    clock = Clock()
    fired: list[str] = []
    limits = Limits(max_line=1000, login_timeout=60, idle_timeout=300)
    session = SessionTimers(clock, limits, fired.append, login)
    session.start()
    return clock, session, fired


def test_deadline_is_not_extended_by_activity() -> None:
    """Bytes restart the idle timer but never the login deadline."""
    clock, session, fired = timers()
    for _ in range(59):
        clock.advance(1)
        session.activity()
    assert fired == [] and session.awaiting_login
    clock.advance(1)
    assert fired == ["login time-out"]
    assert not clock.getDelayedCalls()


def test_after_login_only_idle_time_counts() -> None:
    """Once logged in the deadline is gone and silence closes after the idle time-out."""
    clock, session, fired = timers()
    clock.advance(30)
    session.activity()
    session.logged_in()
    clock.advance(299)
    session.activity()
    clock.advance(299)
    assert fired == []
    clock.advance(1)
    assert fired == ["idle time-out"]


def test_without_login_there_is_no_deadline() -> None:
    """A protocol without login (LMTP) only has the idle timer."""
    clock, session, fired = timers(login=False)
    assert not session.awaiting_login
    clock.advance(299)
    session.activity()
    clock.advance(299)
    assert fired == []
    session.stop()
    clock.advance(1000)
    assert fired == [] and not clock.getDelayedCalls()


class _CountingCalls(list):  # type: ignore[type-arg]
    """A clock's list of calls that counts removals (cancellations)."""

    removed = 0

    def remove(self, call: object) -> None:
        self.removed += 1
        super().remove(call)


def test_one_call_per_connection_and_none_cancelled_at_login() -> None:
    """The deadline and the idle timer share one scheduled call, and a
    login cancels nothing: a cancelled call would stay in the reactor's
    queue until its time, for every logged-in session."""
    clock = Clock()
    clock.calls = calls = _CountingCalls()
    fired: list[str] = []
    session = SessionTimers(
        clock, Limits(max_line=1000, login_timeout=60, idle_timeout=300), fired.append
    )
    session.start()
    assert len(calls) == 1
    clock.advance(10)
    session.activity()
    session.logged_in()
    assert not session.awaiting_login
    clock.advance(60)
    assert len(calls) == 1 and calls.removed == 0 and fired == []
    clock.advance(239)
    assert fired == []
    clock.advance(1)
    assert fired == ["idle time-out"] and not calls


class _SteppingClock(Clock):
    """A clock whose reading can step back, as the wall clock can."""

    offset = 0.0

    def seconds(self) -> float:
        return super().seconds() + self.offset


def test_a_clock_stepping_back_does_not_delay_the_idle_time_out() -> None:
    """Bytes after the clock stepped back an hour restart the idle time
    from their own moment, not from an hour later."""
    clock = _SteppingClock()
    fired: list[str] = []
    session = SessionTimers(
        clock, Limits(max_line=1000, login_timeout=60, idle_timeout=300), fired.append
    )
    session.start()
    session.logged_in()
    clock.advance(10)
    clock.offset = -3600.0
    session.activity()
    clock.advance(299)
    assert fired == []
    clock.advance(1)
    assert fired == ["idle time-out"]
