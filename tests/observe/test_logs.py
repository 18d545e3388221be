"""JSON log lines, log rotation and how the plugin gives twistd its observer."""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import Application
from twisted.logger import ILogObserver, Logger, LogLevel, textFileLogObserver
from twisted.python import usage
from twisted.python.failure import Failure

from communigate.observe import logs
from communigate.observe.events import EventLog, LoginEvent
from communigate.observe.logs import (
    KeptDailyLogFile,
    event_as_json_line,
    flat_event,
    json_file_observer,
    log_observer,
    open_log_file,
    parse_rotate,
    text_file_observer,
)
from communigate.tap import Options, ServerTree


def test_flat_event_has_time_level_namespace_text_and_fields() -> None:
    """A log event becomes one flat object with its plain fields."""
    out = io.StringIO()
    log = Logger(namespace="test.ns", observer=json_file_observer(out))
    log.warn("hello {who}", who="world", thing=object(), count=3)
    record = json.loads(out.getvalue())
    assert record["text"] == "hello world" and record["level"] == "warn"
    assert record["namespace"] == "test.ns" and record["who"] == "world"
    assert record["count"] == 3 and "thing" not in record
    assert record["time"].endswith("+00:00")
    assert not any(key.startswith("log_") for key in record)


def test_failure_carries_its_traceback() -> None:
    """An event with a failure has the traceback text in one JSON line."""
    try:
        raise ValueError("boom")
    except ValueError:
        failure = Failure()
    event = {"log_format": "oops", "log_failure": failure, "log_level": LogLevel.critical}
    line = event_as_json_line(event)
    assert line.count("\n") == 1
    assert "ValueError: boom" in json.loads(line)["traceback"]


def test_login_event_as_json_line() -> None:
    """EventLog's login event is a JSON line with every session field."""
    out = io.StringIO()
    observer = json_file_observer(out)
    from twisted.logger import globalLogPublisher

    globalLogPublisher.addObserver(observer)
    try:
        EventLog().login(
            LoginEvent(
                "0a1b2c3d4e5f", "imap4", "192.0.2.1", 5000, "127.0.0.1", 143, True, "a.com",
                "bob", "bob@a.com", "a.com", "PLAIN", "ok", latency=0.01,
            )
        )  # fmt: skip
    finally:
        globalLogPublisher.removeObserver(observer)
    [record] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert record["event"] == "login" and record["namespace"] == "communigate.session"
    assert record["session"] == "0a1b2c3d4e5f" and record["tls"] is True
    assert record["server_name"] == "a.com" and record["remote_port"] == 5000
    assert "bob@a.com" in record["text"]


def test_odd_values_never_break_a_line() -> None:
    """A NaN or unserialisable field still gives a JSON line."""
    line = event_as_json_line({"log_format": "x", "value": float("nan")})
    assert "value" not in json.loads(line)
    assert flat_event({"log_format": "{a}", "a": [1, "b"]})["a"] == [1, "b"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("10M", 10 * 1024**2), ("500k", 500 * 1024), ("1048576", 1048576), ("daily", "daily"),
     ("never", None), ("2GB", 2 * 1024**3)],
)  # fmt: skip
def test_parse_rotate(text: str, value: object) -> None:
    """--log-rotate takes sizes with K/M/G, 'daily' and 'never'."""
    assert parse_rotate(text) == value


def test_parse_rotate_refuses_nonsense() -> None:
    """Anything else is refused."""
    with pytest.raises(ValueError):
        parse_rotate("weekly")


def test_size_rotation_keeps_n_files(tmp_path: Path) -> None:
    """A size-rotated log keeps only --log-keep old files."""
    log = open_log_file(str(tmp_path / "server.log"), 100, 2)
    for _ in range(10):
        log.write("x" * 60 + "\n")
    log.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["server.log", "server.log.1", "server.log.2"]


def test_daily_rotation_keeps_n_files(tmp_path: Path) -> None:
    """A daily log deletes the oldest rotated files beyond keep."""
    log = KeptDailyLogFile("server.log", str(tmp_path), keep=2)
    for day in range(5):
        # Each rotation names the file after the day it covered.
        log.lastDate = (2020, 1, day + 1)
        log.write("line\n")
        log.rotate()
        os.utime(tmp_path / f"server.log.2020_1_{day + 1}", (day * 100, day * 100))
    log.close()
    old = sorted(name for name in os.listdir(tmp_path) if name != "server.log")
    assert len(old) == 2


def test_observer_follows_twistd_destination(tmp_path: Path) -> None:
    """--logfile FILE writes there, '-' writes to standard output."""
    out = io.StringIO()
    to_stdout = log_observer("-", True, "json", stdout=out)
    Logger(observer=to_stdout).info("hi")
    assert json.loads(out.getvalue())["text"] == "hi"
    to_file = log_observer(str(tmp_path / "x.log"), True, "text")
    Logger(observer=to_file).info("there")
    assert "there" in (tmp_path / "x.log").read_text()


def test_options_check_log_options() -> None:
    """Wrong --log-format, --log-rotate, --log-keep are usage errors."""
    for argv in (["--log-format", "xml"], ["--log-rotate", "weekly"], ["--log-keep", "0"]):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(argv)


def test_server_tree_gives_twistd_the_observer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under twistd (options with a parent), --log-format json makes the
    top service install a JSON observer as the application's ILogObserver."""
    monkeypatch.setattr(signal, "signal", _KeptSignals(monkeypatch).set)
    options = Options()
    options.parseOptions(["--log-format", "json", "--log-rotate", "1M", "--log-keep", "3"])
    options.parent = {"logfile": str(tmp_path / "t.log"), "nodaemon": True}  # type: ignore[assignment]
    observer = options.log_observer()
    assert observer is not None
    application = Application("test")
    ServerTree(observer).setServiceParent(application)
    assert application.getComponent(ILogObserver) is observer


def test_no_log_option_still_gives_the_text_observer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without log options the server still writes twistd's text lines to
    twistd's file through its own observer, SIGUSR1 rotating it as twistd
    does; --syslog, and a daemon asked to log to standard output, stay
    twistd's own."""
    monkeypatch.setattr(signal, "signal", _KeptSignals(monkeypatch).set)
    plain = Options()
    plain.parseOptions([])
    path = tmp_path / "x.log"
    plain.parent = {"logfile": str(path), "nodaemon": False}  # type: ignore[assignment]
    observer = plain.log_observer()
    assert observer is not None
    Logger(observer=observer).info("first {n}", n=1)
    assert path.read_text().endswith(" [tests.observe.test_logs#info] first 1\n")
    from twisted.internet import reactor

    monkeypatch.setattr(reactor, "callFromThread", lambda f, *a: f(*a))
    handler = signal.getsignal(signal.SIGUSR1)
    assert callable(handler)
    handler(signal.SIGUSR1, None)
    Logger(observer=observer).info("second")
    assert "first 1" in (tmp_path / "x.log.1").read_text()
    assert "first" not in path.read_text() and "second" in path.read_text()
    twistd_parents = (
        {"syslog": True, "nodaemon": True},
        {"logfile": "-", "nodaemon": False},
        {"logger": "x.make", "logfile": str(tmp_path / "unused.log"), "nodaemon": False},
        {"logFile": str(tmp_path / "unused.log")},  # the ``twist`` runner's options
    )
    for parent in twistd_parents:
        for argv in ([], ["--log-format", "json"]):
            twistd_own = Options()
            twistd_own.parseOptions(argv)
            twistd_own.parent = parent  # type: ignore[assignment]
            assert twistd_own.log_observer() is None
    assert not (tmp_path / "unused.log").exists()


def test_daily_log_is_not_rotated_by_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGUSR1 does not rotate a log rotated daily (a rotation in the day
    would take the name the midnight rotation needs), nor end the server:
    it is logged."""
    kept = _KeptSignals(monkeypatch)
    monkeypatch.setattr(signal, "signal", kept.set)
    options = Options()
    options.parseOptions(["--log-rotate", "daily"])
    path = tmp_path / "d.log"
    options.parent = {"logfile": str(path), "nodaemon": False}  # type: ignore[assignment]
    observer = options.log_observer()
    assert observer is not None
    from twisted.internet import reactor

    monkeypatch.setattr(reactor, "callFromThread", lambda f, *a: f(*a))
    published = []
    monkeypatch.setattr(logs._log, "observer", published.append)
    kept.handlers[signal.SIGUSR1](signal.SIGUSR1, None)
    assert [event["log_format"] for event in published] == [
        "SIGUSR1: a daily log is rotated at midnight only"
    ]
    assert sorted(os.listdir(tmp_path)) == ["d.log"]


class _KeptSignals:
    """signal.signal for one test: handlers kept here (none set at first),
    the process's own untouched; getsignal answers from them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.handlers: dict[int, Any] = {}
        monkeypatch.setattr(signal, "getsignal", lambda n: self.handlers.get(n, signal.SIG_DFL))

    def set(self, number: int, handler: Any) -> Any:
        previous = self.handlers.get(number)
        self.handlers[number] = handler
        return previous


def test_text_lines_are_twisteds() -> None:
    """The text observer writes what twistd's own text observer writes
    (its time text, made once a second, included)."""
    ours, theirs = io.StringIO(), io.StringIO()
    mine, twisteds = text_file_observer(ours), textFileLogObserver(theirs)
    for when in (1_700_000_000.25, 1_700_000_000.75, 1_700_000_001.5, 1_800_000_000.0, None):
        event = {
            "log_format": "login {name}",
            "name": "x",
            "log_time": when,
            "log_level": LogLevel.info,
            "log_namespace": "communigate.session",
        }
        mine(dict(event))
        twisteds(dict(event))
    assert ours.getvalue() == theirs.getvalue()
    assert ours.getvalue().count("\n") == 5


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    def method(self) -> str:
        return "called"


class _Odd:
    """Formats one way, prints another; one of its fields cannot be formatted."""

    def __format__(self, spec: str) -> str:
        if spec == "fail":
            raise KeyboardInterrupt
        return "FORMAT"

    def __str__(self) -> str:
        return "STR"


def test_every_kind_of_event_reads_as_twisted_writes_it() -> None:
    """Messages made by the fast path (``str.format_map``) and by Twisted's
    formatter for what it cannot do read the same as Twisted's lines, in
    text and JSON: conversions, format specs, attribute and item access,
    ``{name()}`` calls, missing fields, several lines, a failure, a bytes
    format, a system set, an event with no format."""
    try:
        raise ValueError("boom")
    except ValueError:
        failure = Failure()
    odd = _Unprintable()
    events: list[dict[str, object]] = [
        {"log_format": "{a!r} {b:.3f} {c.real} {d[0]}", "a": "x", "b": 1.5, "c": 3, "d": [7]},
        {"log_format": "call {o.method()} and {name}", "o": odd, "name": "n"},
        {"log_format": "missing {nothing}"},
        {"log_format": "two\nlines {x}", "x": 1},
        {"log_format": "failed {x}", "x": 2, "log_failure": failure},
        {"log_format": b"bytes {x}", "x": 3},
        {"log_format": "system {x}", "x": 4, "log_system": "imap4,127.0.0.1"},
        {"log_format": "odd system", "log_system": odd},
        {"log_format": "braces {{literal}} {x}", "x": 5},
        {"log_format": "cannot {x:fail}", "x": _Odd()},
        {"log_format": "dunder {x.__class__.__name__}", "x": 1},
        {"log_format": "system object", "log_system": _Odd()},
        {"x": 6},
        {"log_format": ""},
    ]
    for base in events:
        event = {"log_time": 1_700_000_000.5, "log_level": LogLevel.warn, **base}
        event.setdefault("log_namespace", "tests")
        ours, theirs = io.StringIO(), io.StringIO()
        text_file_observer(ours)(dict(event))
        textFileLogObserver(theirs)(dict(event))
        assert ours.getvalue() == theirs.getvalue(), base
        from twisted.logger import formatEvent

        assert flat_event(dict(event))["text"] == formatEvent(dict(event)), base
