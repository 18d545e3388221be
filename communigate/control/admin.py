"""The ``communigate`` subcommands that talk to the running server:
``sessions``, ``kick``, ``status``, ``reload``; and the hook ``account
delete`` uses to end the deleted account's sessions at once.

Each fails with one line (``no server is running on BASE (no control
socket)``) and status 1 when no server runs on the base directory.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from communigate.cli.arguments import CommandFailed, address
from communigate.control.client import ControlFailed, NoServer, ask
from communigate.store.files import FileDirectory

#: Why the sessions of a deleted account end.
DELETED_REASON = "the account was deleted"

SESSION_COLUMNS = (
    "ACCOUNT",
    "PROTOCOL",
    "REMOTE",
    "SINCE",
    "DURATION",
    "TLS",
    "MECHANISM",
    "SESSION",
)


def add_parsers(sub: Any) -> None:
    """Add ``sessions``, ``kick``, ``status`` and ``reload``."""
    sessions = sub.add_parser("sessions", help="list the live sessions of the running server")
    sessions.add_argument(
        "of", nargs="?", metavar="ACCOUNT|DOMAIN", help="only this account's or domain's"
    )
    sessions.add_argument("--json", action="store_true", help="print the server's JSON answer")
    kick = sub.add_parser("kick", help="end every live session of an account")
    kick.add_argument("account", metavar="NAME@DOMAIN")
    status = sub.add_parser("status", help="uptime, sessions, listeners of the running server")
    status.add_argument("--json", action="store_true", help="print the server's JSON answer")
    sub.add_parser("reload", help="ask the running server to re-read its configuration")


def request(directory: FileDirectory, command: str, **arguments: str | None) -> dict[str, object]:
    """Ask the server running on ``directory``; :class:`CommandFailed` if
    none runs or it refuses."""
    try:
        return ask(directory.base, command, arguments)
    except (NoServer, ControlFailed) as problem:
        raise CommandFailed(str(problem)) from None


def selector(text: str, directory: FileDirectory) -> str:
    """``NAME@DOMAIN`` (a bare name: in the Main Domain, unless a domain has
    that name) or a domain, in the names the server uses."""
    if "@" not in text and "%" not in text:
        record = directory.domain(text.lower())
        if record is not None:
            return record.name
    return str(address(text, directory))


def cmd_sessions(args: argparse.Namespace, directory: FileDirectory) -> None:
    """List the live sessions (of an account or domain) as a table."""
    of = selector(args.of, directory) if args.of else None
    answer = request(directory, "sessions", of=of)
    if args.json:
        print(json.dumps(answer, indent=2))
        return
    rows = [session_row(entry) for entry in _dicts(answer.get("sessions"))]
    if not rows:
        print(f"no live sessions{' of ' + of if of else ''}")
        return
    print_table([SESSION_COLUMNS, *rows])


def cmd_kick(args: argparse.Namespace, directory: FileDirectory) -> None:
    """End every live session of an account; print how many."""
    full = address(args.account, directory)
    answer = request(directory, "kick", account=str(full))
    ended = answer.get("ended", 0)
    print(f"ended {ended} session{'' if ended == 1 else 's'} of {full}")


def cmd_status(args: argparse.Namespace, directory: FileDirectory) -> None:
    """Print the running server's status."""
    answer = request(directory, "status")
    if args.json:
        print(json.dumps(answer, indent=2))
        return
    for line in status_lines(answer):
        print(line)


def cmd_reload(args: argparse.Namespace, directory: FileDirectory) -> None:
    """Ask the server to reload; print its answer."""
    answer = request(directory, "reload")
    print(f"reloaded: {answer.get('message', '')}")


def end_deleted_sessions(directory: FileDirectory, domain: str, name: str) -> int | None:
    """Ask a running server to end the sessions of a just deleted account
    now; how many, or None when no server runs (its sweep would end them
    anyway) or it could not be asked."""
    try:
        answer = ask(
            directory.base, "kick", {"account": f"{name}@{domain}", "reason": DELETED_REASON}
        )
    except (NoServer, ControlFailed):
        return None
    ended = answer.get("ended")
    return ended if isinstance(ended, int) else None


def session_row(entry: Mapping[str, Any]) -> list[str]:
    """One session as the cells of the ``sessions`` table."""
    return [
        str(entry.get("account")),
        str(entry.get("protocol")),
        endpoint(entry.get("remote_host"), entry.get("remote_port")),
        clock_time(float(entry.get("since") or 0)),
        duration(float(entry.get("duration") or 0)),
        "yes" if entry.get("tls") else "no",
        str(entry.get("mechanism")),
        str(entry.get("session") or "-"),
    ]


def status_lines(answer: Mapping[str, Any]) -> list[str]:
    """The ``status`` answer as lines for a person."""
    lines = [
        f"version   {answer.get('version')}",
        f"uptime    {duration(float(answer.get('uptime') or 0))}"
        f" (since {clock_time(float(answer.get('started') or 0))})",
    ]
    counts = answer.get("sessions") or {}
    total = sum(int(count) for count in counts.values())
    lines.append(f"sessions  {total}")
    lines += [f"  {protocol:<8}{count}" for protocol, count in counts.items()]
    listeners = answer.get("listeners") or []
    lines.append(f"listeners {len(listeners)}")
    lines += [f"  {listener}" for listener in listeners]
    threads = answer.get("threads")
    if isinstance(threads, dict):
        lines.append(
            f"threads   {threads.get('running')} running"
            f" (min {threads.get('min')}, max {threads.get('max')})"
        )
    external = answer.get("external")
    if isinstance(external, dict):
        if not external.get("enabled"):
            state = "not configured"
        else:
            state = "running" if external.get("running") else "not running"
            state += f" (started {external.get('starts')} times, {external.get('pending')} pending)"
        lines.append(f"external  {state}")
    workers = answer.get("workers")
    if isinstance(workers, list):
        now = float(answer.get("started") or 0) + float(answer.get("uptime") or 0)
        lines.append(f"workers   {len(workers)}")
        for worker in workers:
            if not isinstance(worker, dict):
                continue
            state = (
                "serving"
                if worker.get("ready")
                else "ending"
                if worker.get("ending")
                else "starting"
            )
            lines.append(
                f"  {worker.get('number')}  pid {worker.get('pid')}  {state}"
                f"  {worker.get('connections')} connections, {worker.get('sessions')} logged in"
                f"  up {duration(max(0.0, now - float(worker.get('started') or now)))}"
            )
    return lines


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Print rows in columns as wide as their widest cell."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def endpoint(host: object, port: object) -> str:
    """``host:port`` (``[host]:port`` for IPv6); ``-`` if unknown."""
    if not host:
        return "-"
    text = f"[{host}]" if ":" in str(host) else str(host)
    return f"{text}:{port}" if port is not None else text


def clock_time(seconds: float) -> str:
    """A time since the epoch as local date and time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def duration(seconds: float) -> str:
    """Seconds as ``[Dd ]H:MM:SS``."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
