"""The server's log file: JSON lines or text, rotated by size or by day.

``twistd`` decides where the log goes (``--logfile``, ``--nodaemon``); the
plugin options ``--log-format json|text``, ``--log-rotate SIZE|daily`` and
``--log-keep N`` decide how it is written and kept.  The plugin hands its
observer to twistd as the application's
:class:`~twisted.logger.ILogObserver` component (:func:`install_observer`),
which twistd uses in place of its own text file — the documented way for an
application to choose its log observer; an explicit ``twistd --logger``
still wins.  It does so with no log option too (twistd's text lines, the
same file and 1 MB rotation, ``SIGUSR1`` rotating it as twistd does), since
its lines cost a third of Twisted's own (two a login).  ``--logger``,
``--syslog`` and a daemon asked to log to standard output are left to twistd
(the plugin's log options do not apply to them).

A JSON line is one flat object: ``time`` (ISO 8601, UTC), ``level``,
``namespace``, ``system``, ``text`` (the formatted message) and every field
of the event whose value is a string, number, boolean or null (or a list of
them), plus ``traceback`` when the event carries a failure.  Other values
(objects) appear only in ``text``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
)
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from twisted.python.logfile import DailyLogFile, LogFile

_log = Logger()

#: ``--log-format`` values.
FORMATS = ("text", "json")
#: ``--log-rotate`` suffixes.
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)b?\s*$", re.IGNORECASE)
_SCALARS = (str, int, float, bool, type(None))


def parse_rotate(value: str) -> int | str | None:
    """``--log-rotate``: a size (``10M``, ``500k``, ``1048576``) in bytes,
    ``daily``, or ``never`` (None); raises ValueError otherwise."""
    text = value.strip().lower()
    if text == "daily":
        return "daily"
    if text in ("never", "none", "0"):
        return None
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size or 'daily': {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _plain(value: object) -> bool:
    if isinstance(value, _SCALARS):
        return not isinstance(value, float) or value == value  # NaN is no JSON
    if isinstance(value, (list, tuple)):
        return all(isinstance(item, _SCALARS) for item in value)
    return False


def flat_event(event: LogEvent) -> dict[str, Any]:
    """The event as one flat JSON-able dict (see the module docstring)."""
    record: dict[str, Any] = {
        key: value
        for key, value in event.items()
        if not key.startswith("log_") and isinstance(key, str) and _plain(value)
    }
    level = event.get("log_level")
    record.update(
        time=datetime.fromtimestamp(event.get("log_time") or 0, UTC).isoformat(
            timespec="milliseconds"
        ),
        level=getattr(level, "name", "info"),
        namespace=event.get("log_namespace"),
        system=event.get("log_system"),
        text=message(event),
    )
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        record["traceback"] = failure.getTraceback()
    return record


def event_as_json_line(event: LogEvent) -> str:
    """One JSON object and a newline; never raises for an odd event."""
    try:
        return json.dumps(flat_event(event), ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as error:
        fallback = {"level": "error", "text": f"unloggable event: {error}"}
        return json.dumps(fallback) + "\n"


def json_file_observer(out: IO[Any]) -> FileLogObserver:
    """An observer writing one flat JSON object per line to ``out``."""
    return FileLogObserver(out, event_as_json_line)


def text_file_observer(out: IO[Any]) -> FileLogObserver:
    """An observer writing twistd's usual text lines to ``out``, the time
    text made once a second (it has no finer part; Twisted finds the
    local time zone anew for each line)."""
    last: list[Any] = [None, ""]

    def stamp(when: float | None) -> str:
        if when is None:
            return formatTime(when)
        second = int(when)
        if last[0] != second:
            last[:] = [second, formatTime(second)]
        text: str = last[1]
        return text

    def line(event: LogEvent) -> str | None:
        # Twisted's layout (formatEventAsClassicLogText), its message made
        # faster where it can be.
        text = _plain_text(event)
        head = _plain_head(event, stamp) if text else None
        if text and head:
            return (head + text).replace("\n", "\n\t") + "\n"
        return formatEventAsClassicLogText(event, stamp)

    return FileLogObserver(out, line)


def _plain_head(event: LogEvent, stamp: Callable[[float | None], str]) -> str | None:
    """``{time} [{system}] `` as Twisted writes it; None when an odd system
    or level cannot be written so (Twisted's own code does it then)."""
    try:
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            level_name = "-" if level is None else level.name
            system = f"{event.get('log_namespace', '-')}#{level_name}"
        return f"{stamp(event.get('log_time'))} [{system!s}] "
    except Exception:
        return None


def message(event: LogEvent) -> str:
    """The event's message as the log shows it (Twisted's formatting)."""
    return _plain_text(event) or formatEvent(event)


def _plain_text(event: LogEvent) -> str | None:
    """The message of an ordinary event (a text format, no failure): what
    :func:`~twisted.logger.formatEvent` gives, made by ``str.format_map``
    (Twisted's formatter, pure Python for its ``{name()}`` calls, took
    half of each line's time); None for any other event, or when
    ``format_map`` cannot do it (calls, a missing field): Twisted's own
    formatting does those."""
    text = event.get("log_format")
    if type(text) is not str or "log_failure" in event or "log_flattened" in event:
        return None
    if "__" in text:
        # Twisted shows its own wrapper for a value's dunder attributes.
        return None
    try:
        return text.format_map(event)
    except BaseException:
        # As Twisted's formatter, which catches everything: it says then
        # that the event could not be formatted.
        return None


class KeptDailyLogFile(DailyLogFile):
    """A log file rotated at midnight that keeps the newest ``keep`` old files."""

    def __init__(self, name: str, directory: str, keep: int | None = None) -> None:
        self.keep = keep
        super().__init__(name, directory)

    def rotate(self) -> None:
        """Rotate, then delete the oldest files beyond ``keep``."""
        super().rotate()
        if not self.keep:
            return
        folder = Path(self.directory)
        old = sorted(
            folder.glob(f"{self.name}.*"), key=lambda path: path.stat().st_mtime, reverse=True
        )
        for path in old[self.keep :]:
            try:
                path.unlink()
            except OSError:
                pass


def open_log_file(path: str, rotate: int | str | None, keep: int | None) -> IO[Any]:
    """``path`` opened for appending, rotated at ``rotate`` bytes or daily,
    keeping ``keep`` old files (all when None)."""
    directory, name = os.path.split(os.path.abspath(path))
    if rotate == "daily":
        daily: Any = KeptDailyLogFile(name, directory, keep)
        return daily  # a file-like object, as FileLogObserver wants
    sized: Any = LogFile(
        name,
        directory,
        rotateLength=rotate if isinstance(rotate, int) else None,
        maxRotatedFiles=keep,
    )
    return sized


def log_observer(
    logfile: str | None,
    nodaemon: bool,
    log_format: str = "text",
    rotate: int | str | None = 1_000_000,
    keep: int | None = None,
    stdout: IO[Any] | None = None,
    rotate_on_signal: bool = False,
) -> ILogObserver:
    """The observer for twistd's ``--logfile``/``--nodaemon`` choice of
    destination, as twistd chooses it (``-`` or no file with
    ``--nodaemon``: standard output; no file: ``twistd.log``);
    ``rotate_on_signal``: ``SIGUSR1`` rotates the file, as twistd's own
    does (unless the signal already has a handler); a file rotated daily
    is not rotated by it (its midnight rotation would find the day's name
    taken), the signal is only logged."""
    if logfile == "-" or (nodaemon and not logfile):
        out: IO[Any] = stdout if stdout is not None else sys.stdout
    else:
        out = open_log_file(logfile or "twistd.log", rotate, keep)
        if rotate_on_signal:
            _rotate_on_sigusr1(out, rotate != "daily")
    factory: Callable[[IO[Any]], FileLogObserver] = (
        json_file_observer if log_format == "json" else text_file_observer
    )
    return factory(out)


def _rotate_on_sigusr1(log_file: Any, rotate: bool) -> None:
    """Make ``SIGUSR1`` rotate ``log_file`` in the reactor thread, as twistd
    does for the log file it opens itself, or (``rotate`` false) only log
    that it came: either way it no longer ends the server.  A handler
    already set wins."""
    if signal.getsignal(signal.SIGUSR1) not in (None, signal.SIG_DFL):
        return

    def handle(signum: int, frame: object) -> None:
        from twisted.internet import reactor

        call = reactor.callFromThread  # type: ignore[attr-defined]
        if rotate:
            call(log_file.rotate)
        else:
            call(_log.info, "SIGUSR1: a daily log is rotated at midnight only")

    signal.signal(signal.SIGUSR1, handle)


def install_observer(application: object, observer: ILogObserver) -> bool:
    """Make ``observer`` the application's log observer, which twistd
    begins logging to (unless ``--logger`` names another); False when
    ``application`` is no twistd application."""
    if not isinstance(application, Componentized):
        return False
    application.setComponent(ILogObserver, observer)
    return True
