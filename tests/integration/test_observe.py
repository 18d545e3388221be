"""The real server with ``--log-format json`` and ``--metrics``: every log
line is JSON, a login is one event, /metrics counts logins by one."""

from __future__ import annotations

import imaplib
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import (
    admin,
    free_port,
    launch_server,
    stop_server,
    wait_for_port,
)


@dataclass
class Observed:
    """A running server: its IMAP and metrics ports and its log file."""

    imap_port: int
    metrics_port: int
    log: Path
    process: subprocess.Popen[bytes]

    def metrics(self) -> str:
        """The /metrics page now."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    def records(self) -> list[dict[str, object]]:
        """Every line of the log, each parsed as JSON (fails on any other)."""
        lines = self.log.read_text().splitlines()
        assert lines
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    """company.com with watcher@company.com, served on IMAP with JSON logs
    and metrics."""
    root = tmp_path_factory.mktemp("observed")
    base = root / "base"
    admin(base, "init", "--main-domain", "company.com", "--postmaster-password", "pm")
    admin(base, "server", "settings", "FailedLoginDelay=0.1s")
    admin(base, "account", "create", "watcher@company.com", "--password", "pw-watch")
    log = root / "server.log"
    imap_port, metrics_port = free_port(), free_port()
    process = launch_server(
        base,
        log,
        f"--imap4=tcp:{imap_port}:interface=127.0.0.1",
        "--log-format=json",
        "--log-rotate=10M",
        "--log-keep=3",
        f"--metrics=tcp:{metrics_port}:interface=127.0.0.1",
    )
    try:
        wait_for_port("127.0.0.1", imap_port, process, log)
        wait_for_port("127.0.0.1", metrics_port, process, log)
        yield Observed(imap_port, metrics_port, log, process)
    finally:
        stop_server(process)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text page, 0 if absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        inside = line[len(name) + 1 : line.index("}")]
        found = dict(part.split("=", 1) for part in inside.split(","))
        if {key: value.strip('"') for key, value in found.items()} == labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_logins_move_the_counters_by_one(observed: Observed) -> None:
    """One good and one bad IMAP login each move their counter by exactly
    one; no account name appears on the page."""
    labels = {"domain": "company.com", "mechanism": "LOGIN", "protocol": "imap4"}
    name = "communigate_logins_total"
    before = observed.metrics()
    client = imaplib.IMAP4("127.0.0.1", observed.imap_port, timeout=20)
    client.login("watcher", "pw-watch")
    client.logout()
    client = imaplib.IMAP4("127.0.0.1", observed.imap_port, timeout=20)
    with pytest.raises(imaplib.IMAP4.error):
        client.login("watcher", "wrong")
    client.logout()
    after = observed.metrics()
    for result in ("ok", "wrong-password"):
        moved = sample(after, name, result=result, **labels)
        assert moved - sample(before, name, result=result, **labels) == 1
    assert "watcher" not in after
    assert sample(after, "communigate_sessions_open", protocol="imap4") == 0
    assert sample(after, "communigate_login_latency_seconds_count", protocol="imap4") >= 2


def test_every_log_line_is_json_with_the_login_event(observed: Observed) -> None:
    """After a login, every line of the log parses as JSON and the login
    and logout events carry their fields, never the password."""
    client = imaplib.IMAP4("127.0.0.1", observed.imap_port, timeout=20)
    client.login("watcher@company.com", "pw-watch")
    client.logout()
    records = observed.records()
    assert all({"time", "level", "text"} <= set(record) for record in records)
    logins = [r for r in records if r.get("event") == "login" and r.get("result") == "ok"]
    login = next(r for r in logins if r["login"] == "watcher@company.com")
    assert login["account"] == "watcher@company.com" and login["domain"] == "company.com"
    assert login["protocol"] == "imap4" and login["mechanism"] == "LOGIN"
    assert login["remote_host"] == "127.0.0.1" and isinstance(login["remote_port"], int)
    assert login["local_port"] == observed.imap_port and login["tls"] is False
    assert isinstance(login["session"], str) and len(login["session"]) == 12
    deadline = time.monotonic() + 10
    # The server ends the session just after the client read its BYE.
    while True:
        logouts = [
            r
            for r in observed.records()
            if r.get("event") == "logout" and r["session"] == login["session"]
        ]
        if logouts or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    [logout] = logouts
    assert logout["account"] == "watcher@company.com"
    assert isinstance(logout["duration"], float) and logout["bytes_in"] > 0  # type: ignore[operator]
    assert "pw-watch" not in observed.log.read_text()
