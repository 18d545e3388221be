"""Equal time for failed logins: on every listener with a login, a failure
(unknown name or wrong password, from loopback too) is answered no earlier
than ``FailedLoginDelay`` after it was sent, while a good login at the same
moment is answered at once; with the default (2 s) an unknown name, a wrong
clear password and a wrong bcrypt password take the same time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from tests.hostile.conftest import SETTLE
from tests.hostile.listeners import Client, Listener, having
from tests.integration.conftest import FAILED_LOGIN_DELAY, Server, admin

pytestmark = pytest.mark.integration

#: The floor the per-listener test sets: above a bcrypt check's time, so
#: only the floor can explain a reply that late.
FLOOR = 1.0


@contextmanager
def failed_login_delay(running: Server, value: str) -> Iterator[None]:
    """``FailedLoginDelay=value`` for the block ("" for the default), then
    the test suite's value again."""
    admin(running.base, "server", "settings", f"FailedLoginDelay={value}")
    time.sleep(SETTLE)
    try:
        yield
    finally:
        admin(running.base, "server", "settings", f"FailedLoginDelay={FAILED_LOGIN_DELAY}")
        time.sleep(SETTLE)


def login_seconds(running: Server, listener: Listener, user: bytes, password: bytes) -> float:
    """Seconds from the last login line to its reply (the reply must be a
    refusal unless the password is the right one)."""
    client = Client(running, listener, timeout=30)
    try:
        client.greet()
        steps = listener.login_as(user, password)
        for line, prefix in steps[:-1]:
            client.command(line, prefix)
        last, success = steps[-1]
        start = time.monotonic()
        client.send(last + b"\r\n")
        reply = client.line()
        while reply.startswith(b"* "):
            reply = client.line()
        elapsed = time.monotonic() - start
        good = password == b"pw-company.com" and user == b"info"
        assert reply.startswith(success) == good, (listener.name, reply)
        return elapsed
    finally:
        client.close()


@pytest.fixture(scope="module")
def hashed(server: Server) -> Server:
    """An account whose password is stored as bcrypt (UB-crpt)."""
    admin(
        server.base,
        "account",
        "create",
        "delayhash@company.com",
        "PasswordEncryption=UB-crpt",
        "--password",
        "right",
    )
    time.sleep(SETTLE)
    return server


@pytest.mark.parametrize("listener", having("logs_in"), ids=str)
def test_failures_wait_for_the_floor(server: Server, listener: Listener) -> None:
    """With FailedLoginDelay=1s an unknown name and a wrong password are each
    answered after at least 1 s; a good login sent meanwhile is answered at
    once (the floor holds up no one else)."""
    with failed_login_delay(server, f"{FLOOR}s"), ThreadPoolExecutor(2) as pool:
        unknown = pool.submit(login_seconds, server, listener, b"nosuch", b"x")
        wrong = pool.submit(login_seconds, server, listener, b"info", b"wrong")
        time.sleep(0.1)
        good = login_seconds(server, listener, b"info", b"pw-company.com")
        assert good < FLOOR / 2
        assert unknown.result() >= FLOOR and wrong.result() >= FLOOR
        assert unknown.result() < FLOOR + 2 and wrong.result() < FLOOR + 2


def test_default_floor_makes_failures_alike(hashed: Server) -> None:
    """With the default floor (2 s), IMAP failures for an unknown name, a
    wrong clear password and a wrong bcrypt password are all answered
    between 2 and 3 s, their medians within 5 % of each other.  One attempt
    at a time, kinds interleaved: how several attempts queue for the
    hashing threads on a busy machine is not what is measured here."""
    imap = next(item for item in having("logs_in") if item.name == "imap4")
    kinds = {"unknown": (b"nosuch", b"x"), "clear": (b"info", b"x"), "bcrypt": (b"delayhash", b"x")}
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    with failed_login_delay(hashed, ""):
        for _ in range(2):
            for kind, user in kinds.items():
                times[kind].append(login_seconds(hashed, imap, *user))
    for kind, values in times.items():
        assert all(2.0 <= value < 3.0 for value in values), (kind, values)
    medians = [statistics.median(values) for values in times.values()]
    assert (max(medians) - min(medians)) / min(medians) < 0.05, times
