"""FTP takes its login deadline, idle time-out and line length from the
shared connection limits (the ``Limits`` server setting)."""

from __future__ import annotations

from communigate.store.files import FileDirectory
from tests.protocols.ftp.test_server import Session, codes


def test_limits_from_the_server_settings(directory: FileDirectory) -> None:
    """LoginTimeout and MaxLineLength set for ftp apply to a new connection."""
    directory.update_server_settings(
        {"Limits": {"ftp": {"LoginTimeout": "5s", "MaxLineLength": 600}}}
    )
    ftp = Session(directory)
    ftp.take()
    assert codes(ftp.send(b"NOOP " + b"x" * 700 + b"\r\nNOOP\r\n")) == [500, 200]
    ftp.reactor.advance(4)
    assert not ftp.transport.disconnecting
    ftp.reactor.advance(1)
    assert ftp.take() == b"421 login time-out, closing the control connection\r\n"


def test_idle_timeout_from_the_server_settings(directory: FileDirectory) -> None:
    """IdleTimeout set at the top level applies to FTP sessions after login."""
    directory.update_server_settings({"Limits": {"IdleTimeout": "90s"}})
    ftp = Session(directory)
    ftp.login()
    ftp.take()
    ftp.reactor.advance(89)
    assert not ftp.transport.disconnecting
    ftp.reactor.advance(1)
    assert ftp.take() == b"421 idle time-out, closing the control connection\r\n"
