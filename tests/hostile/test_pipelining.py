"""Pipelining: commands sent in one write (the login and a command after
it) are answered one after another, in order, never refused for arriving
early (PWD answered ``500 one command at a time``)."""

from __future__ import annotations

import pytest

from tests.hostile.listeners import LISTENERS, Client, Listener
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("listener", LISTENERS, ids=str)
def test_pipelined_login_and_command(server: Server, listener: Listener) -> None:
    """The login commands and a probe in one write get their answers in order."""
    steps = [*listener.login, listener.probe, listener.probe]
    client = Client(server, listener)
    try:
        client.greet()
        client.send(b"".join(line + b"\r\n" for line, _ in steps))
        for line, prefix in steps:
            answer = client.line()
            while answer[:4].endswith(b"-") and answer[:3].isdigit():
                answer = client.line()  # an SMTP reply's continuation lines
            assert answer.startswith(prefix), (line, answer)
            while listener.name.startswith("pop3") and line == b"CAPA" and answer != b".":
                answer = client.line()
            if line == b"QUIT":
                break
    finally:
        client.close()
