"""``communigate listener``, and the Listeners.settings file it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from communigate.cli.main import main
from communigate.store import listeners, settingsformat
from communigate.store.listeners import Listener, ListenersError


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """An initialised base directory."""
    path = tmp_path / "base"
    command = ["--base", str(path), "init", "--main-domain", "x.org", "--postmaster-password", "p"]
    assert main(command) == 0
    return path


def run(base: Path, *args: str) -> int:
    return main(["--base", str(base), "listener", *args])


def test_add_list_remove(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Listeners added are listed and written in CGP syntax; remove takes one away."""
    assert run(base, "add", "imap4", "--address", "127.0.0.1", "--port", "1143") == 0
    assert run(base, "add", "imap4", "--port", "1993", "--tls", "implicit") == 0
    assert run(base, "add", "lmtp", "--address", "::1", "--port", "2424", "--backlog", "50") == 0
    capsys.readouterr()
    assert run(base, "list") == 0
    assert capsys.readouterr().out.splitlines() == [
        "imap4 127.0.0.1:1143 tls=starttls backlog=1024",
        "imap4 *:1993 tls=implicit backlog=1024",
        "lmtp [::1]:2424 tls=none backlog=50",
    ]
    text = listeners.path(base).read_text()
    assert "Port = #1143;" in text and "TLS = implicit;" in text and 'Address = "::1";' in text
    assert run(base, "remove", "imap4", "--port", "1993") == 0
    assert "removed imap4 *:1993 tls=implicit" in capsys.readouterr().out
    assert [item.port for item in listeners.read(base)] == [1143, 2424]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("add", "imap4", "--port", "70000"), "Port must be a number from 1 to 65535"),
        (("add", "imap4", "--port", "x"), "Port must be a number"),
        (("add", "imap4", "--port", "1143", "--address", "host"), "is not an IP address"),
        (("add", "imap4", "--port", "1143", "--tls", "none"), "TLS must be starttls or implicit"),
        (("add", "lmtp", "--port", "24", "--tls", "implicit"), "TLS must be none"),
        (("add", "pop3", "--port", "1143"), "overlaps the imap4 listener on 127.0.0.1:1143"),
        (
            ("add", "imap4", "--port", "1143", "--address", "127.0.0.1"),
            "127.0.0.1:1143 overlaps the imap4",
        ),
        (("add", "imap4"), "needs PROTOCOL and --port"),
        (("remove", "imap4", "--port", "1144"), "no imap4 listener on *:1144"),
    ],
)
def test_bad_input_writes_nothing(
    base: Path, capsys: pytest.CaptureFixture[str], arguments: tuple[str, ...], message: str
) -> None:
    """Bad input is one error line, exit 1, and the file is left as it was."""
    assert run(base, "add", "imap4", "--address", "127.0.0.1", "--port", "1143") == 0
    before = listeners.path(base).read_bytes()
    capsys.readouterr()
    assert run(base, *arguments) == 1
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert listeners.path(base).read_bytes() == before


def test_unknown_protocol_refused(base: Path) -> None:
    """An unknown protocol is a usage error; no file is written."""
    assert run(base, "add", "smtp", "--port", "25") == 2
    assert not listeners.path(base).exists()


def test_udp_and_tcp_share_a_port(base: Path) -> None:
    """TFTP (UDP) and a TCP listener may use the same port number."""
    assert run(base, "add", "tftp", "--port", "6969") == 0
    assert run(base, "add", "ftp", "--port", "6969") == 0
    assert [item.name() for item in listeners.read(base)] == ["tftp", "ftp"]


def test_file_problems_name_the_file(base: Path) -> None:
    """A hand-edited file with an unknown key or protocol is refused, naming it."""
    file = listeners.path(base)
    file.write_text("{imap4 = ({Port = #143; Adress = 127.0.0.1;});}")
    with pytest.raises(ListenersError, match=r"Listeners.settings: imap4 listener: unknown key"):
        listeners.read(base)
    file.write_text("{smtp = ({Port = #25;});}")
    with pytest.raises(ListenersError, match="unknown protocol 'smtp'"):
        listeners.read(base)
    file.write_text("{imap4 = ({Address = 127.0.0.1;});}")
    with pytest.raises(ListenersError, match="Port is required"):
        listeners.read(base)


def test_descriptions() -> None:
    """Listeners become endpoint descriptions and listener names the options use."""
    assert Listener("imap4", 143).description() == "tcp:143:backlog=1024"
    implicit = Listener("imap4", 993, "::1", "implicit", 50)
    assert implicit.description() == "tcp6:993:interface=\\:\\:1:backlog=50"
    assert implicit.name() == "imaps"
    assert Listener("ftp", 21).tls == "starttls" and Listener("pwd", 106).tls == "none"
    assert Listener("tftp", 69, "127.0.0.1").description() == "udp:69"
    # SMTP submission: STARTTLS on 587, implicit TLS (smtps) on 465.
    assert Listener("submission", 587).tls == "starttls"
    assert Listener("submission", 465, tls="implicit").name() == "smtps"


def test_round_trip() -> None:
    """What dumps writes, parse reads back the same."""
    written = [Listener("pop3", 110), Listener("pop3", 995, "10.0.0.1", "implicit")]
    read = listeners.parse(settingsformat.loads_dictionary(listeners.dumps(written)))
    assert read == written
