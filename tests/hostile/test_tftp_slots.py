"""TFTP slots per address always come back: transfers whose client port
goes away (ICMP unreachable, as for a forged source address) end at once
and free their slot, so the address is never locked out for good."""

from __future__ import annotations

import socket
import time

import pytest

from communigate.protocols.tftp.packets import RRQ, Data, Error, Request, encode, parse
from tests.hostile.conftest import SETTLE
from tests.hostile.listeners import TIMEOUT
from tests.integration.conftest import Server, admin, file_storage

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shared_file(server: Server) -> str:
    """A readable file in slots@company.com's File Storage; its TFTP name."""
    admin(server.base, "account", "create", "slots@company.com", "--password", "x")
    storage = file_storage(server, "company.com", "slots")
    storage.mkdir(parents=True, exist_ok=True)
    (storage / "f.bin").write_bytes(b"x" * 5000)
    time.sleep(SETTLE)
    return "~slots/f.bin"


def first_answer(running: Server, name: str) -> object:
    """The first packet answering a read request for ``name``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(encode(Request(RRQ, name, "octet", {})), ("127.0.0.1", running.tftp_port))
        return parse(sock.recvfrom(70000)[0])


def test_vanished_clients_free_their_slots(server: Server, shared_file: str) -> None:
    """8 read requests from a port that then closes use up the address's
    slots only until the server sees the port gone: a request a moment
    later is served, not refused, time after time."""
    for _ in range(3):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(8):
                sock.sendto(
                    encode(Request(RRQ, shared_file, "octet", {})),
                    ("127.0.0.1", server.tftp_port),
                )
            time.sleep(0.2)
        answer = first_answer(server, shared_file)
        deadline = time.monotonic() + 15
        while isinstance(answer, Error) and time.monotonic() < deadline:
            assert answer.message == "too many transfers from this address", answer
            time.sleep(0.5)
            answer = first_answer(server, shared_file)
        assert isinstance(answer, Data), answer
