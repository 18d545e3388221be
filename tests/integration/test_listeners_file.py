"""Listeners in Settings/Listeners.settings: the real server listens on
them (instead of the standard ports when no option names a listener); a
changed file is applied to a running server without touching the others."""

from __future__ import annotations

import imaplib
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.testing import MemoryReactor

from communigate.protocols.configured import ConfiguredListeners
from communigate.store import listeners
from communigate.store.files import FileDirectory
from communigate.store.listeners import Listener
from tests.integration.conftest import (
    TWISTD,
    admin,
    free_port,
    free_udp_port,
    stop_server,
    wait_for_port,
)


def serve_from_file(tmp_path: Path) -> tuple[Path, int, Path, subprocess.Popen[bytes]]:
    """A base whose only listener, in Listeners.settings, is IMAP on a free
    loopback port, and a real server on it (listening): base, port, log,
    process."""
    base = tmp_path / "base"
    admin(base, "init", "--main-domain", "x.org", "--postmaster-password", "pm")
    port = free_port()
    admin(base, "listener", "add", "imap4", "--address", "127.0.0.1", "--port", str(port))
    log = tmp_path / "twistd.log"
    command = [*TWISTD, "--nodaemon", "--pidfile=", f"--logfile={log}", "communigate"]
    process = subprocess.Popen(
        [*command, f"--base={base}"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port("127.0.0.1", port, process, log)
    except BaseException:
        stop_server(process)
        raise
    return base, port, log, process


def configured(tmp_path: Path, reactor: MemoryReactor) -> ConfiguredListeners:
    """A running ConfiguredListeners serving imap4, imaps and tftp."""
    service = ConfiguredListeners(reactor, FileDirectory(tmp_path), tmp_path)
    service.serve_stream("imap4", Factory.forProtocol(Protocol))
    service.serve_stream("imaps", Factory.forProtocol(Protocol))
    service.serve_datagrams("tftp", lambda interface: DatagramProtocol())
    return service


def test_reload_adds_and_stops(tmp_path: Path) -> None:
    """reload listens on a new listener, stops a removed one and keeps the others."""
    reactor = MemoryReactor()
    service = configured(tmp_path, reactor)
    service.add([Listener("imap4", 1143, "127.0.0.1"), Listener("imap4", 1993, tls="implicit")])
    service.startService()
    assert [port for port, *_ in reactor.tcpServers] == [1143, 1993]
    kept, removed = list(service)
    listeners.path(tmp_path).parent.mkdir(parents=True)
    listeners.write(tmp_path, [Listener("imap4", 1143, "127.0.0.1"), Listener("imap4", 1144)])
    changes = service.reload()
    assert changes.started == ["imap4:tcp:1144:backlog=1024@*"]
    assert changes.stopped == ["imaps:tcp:1993:backlog=1024@*"]
    assert changes.failed == []
    assert kept.running and kept.parent is service
    assert not removed.running and removed.parent is None
    assert [port for port, *_ in reactor.tcpServers] == [1143, 1993, 1144]
    assert "stopped listening on imaps" in str(changes)


def test_reload_of_bad_file_changes_nothing(tmp_path: Path) -> None:
    """A file with a problem is reported and every listener stays."""
    reactor = MemoryReactor()
    service = configured(tmp_path, reactor)
    service.add([Listener("imap4", 1143)])
    service.startService()
    listeners.path(tmp_path).parent.mkdir(parents=True)
    listeners.path(tmp_path).write_text("{imap4 = ({Port = #0;});}")
    changes = service.reload()
    assert changes.started == changes.stopped == []
    assert "Port must be a number" in changes.failed[0]
    assert len(list(service)) == 1


@pytest.mark.integration
def test_reload_reports_a_port_in_use(tmp_path: Path) -> None:
    """A new listener whose port is taken is reported; the service keeps running."""
    from twisted.internet import reactor

    service = configured(tmp_path, reactor)  # type: ignore[arg-type]
    service.startService()
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            changes = service.apply(
                [Listener("imap4", port, "127.0.0.1"), Listener("tftp", free_udp_port())]
            )
        assert "address already in use" in changes.failed[0].lower()
        assert [item.name for item in service] == [changes.started[0]]
        assert changes.started[0].startswith("tftp:udp:")
    finally:
        service.stopService()


@pytest.mark.integration
def test_server_listens_on_file_only(tmp_path: Path) -> None:
    """With no listener option, the server listens on the file's IMAP port and logs in."""
    _, port, log, process = serve_from_file(tmp_path)
    try:
        client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        try:
            assert client.login("postmaster@x.org", "pm")[0] == "OK"
        finally:
            client.logout()
        # The standard ports were not asked for: the file replaces them.
        assert "starting on 110" not in log.read_text()
        assert "starting on 143\n" not in log.read_text()
    finally:
        stop_server(process)
    assert "Traceback" not in log.read_text()


def test_reload_keeps_a_port_whose_options_changed(tmp_path: Path) -> None:
    """A listener changed in place (same port, now implicit TLS) is
    listening again after ``communigate reload`` on a real reactor: the new
    one starts once the old socket has closed."""
    base, port, log, process = serve_from_file(tmp_path)
    try:
        admin(base, "listener", "remove", "imap4", "--address", "127.0.0.1", "--port", str(port))
        admin(
            base,
            "listener",
            "add",
            "imap4",
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
            "--tls",
            "implicit",
        )
        admin(base, "reload")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + 10
        while True:
            try:
                client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=context, timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            assert client.login("postmaster@x.org", "pm")[0] == "OK"
        finally:
            client.logout()
        assert "could not listen" not in log.read_text()
    finally:
        stop_server(process)
    assert "Traceback" not in log.read_text()


@pytest.mark.integration
def test_file_and_options_together(tmp_path: Path) -> None:
    """Listeners of the file are added to those the options name."""
    base = tmp_path / "base"
    admin(base, "init", "--main-domain", "x.org", "--postmaster-password", "pm")
    from_file, from_option = free_port(), free_port()
    admin(base, "listener", "add", "pop3", "--address", "127.0.0.1", "--port", str(from_file))
    log = tmp_path / "twistd.log"
    command = [*TWISTD, "--nodaemon", "--pidfile=", f"--logfile={log}", "communigate"]
    option = f"--imap4=tcp:{from_option}:interface=127.0.0.1"
    process = subprocess.Popen(
        [*command, f"--base={base}", option], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port("127.0.0.1", from_option, process, log)
        with socket.create_connection(("127.0.0.1", from_file), timeout=5) as pop3:
            assert pop3.recv(100).startswith(b"+OK")
    finally:
        stop_server(process)


@pytest.mark.integration
def test_bad_file_stops_the_start(tmp_path: Path) -> None:
    """A Listeners.settings with a problem ends the start with one line naming it."""
    base = tmp_path / "base"
    admin(base, "init", "--main-domain", "x.org", "--postmaster-password", "pm")
    listeners.path(base).write_text("{imap4 = ({Port = #143; TLS = maybe;});}")
    result = subprocess.run(
        [*TWISTD, "--nodaemon", "--pidfile=", "communigate", f"--base={base}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "Listeners.settings: imap4 listener: TLS must be starttls or implicit" in line
