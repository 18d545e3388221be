"""LoginThrottle.share and take: failures and successes counted in one
process are told to the others, and what others tell is counted here."""

from __future__ import annotations

import pytest

from communigate.portal.policy import LoginThrottle
from communigate.store.settingsformat import Value

FLOW: dict[str, Value] = {"FailedLoginFlow": ["3", "10s"]}
PER_ADDRESS: dict[str, Value] = {"FailedLoginsPerAddress": ["1", "60s"]}


class Shared:
    """Records what the throttle shares."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, str | None]] = []

    def __call__(self, kind: str, account: str | None, address: str | None) -> None:
        self.calls.append((kind, account, address))


@pytest.fixture
def throttle() -> LoginThrottle:
    return LoginThrottle(lambda: 100.0)


def test_failed_is_shared(throttle: LoginThrottle) -> None:
    """failed() counts here and calls share("failed", account, address)."""
    shared = Shared()
    throttle.share = shared
    throttle.failed("a@b", "192.0.2.1")
    assert shared.calls == [("failed", "a@b", "192.0.2.1")]


def test_succeeded_is_shared(throttle: LoginThrottle) -> None:
    """succeeded() calls share("succeeded", account, None)."""
    shared = Shared()
    throttle.share = shared
    throttle.succeeded("a@b")
    assert shared.calls == [("succeeded", "a@b", None)]


def test_without_share_nothing_breaks(throttle: LoginThrottle) -> None:
    """With no share set, failed() still counts."""
    for _ in range(3):
        throttle.failed("a@b", None)
    assert throttle.locked("a@b", FLOW)


def test_take_does_not_share(throttle: LoginThrottle) -> None:
    """take() never calls share (what another process told is not told back)."""
    shared = Shared()
    throttle.share = shared
    throttle.take("failed", "a@b", "192.0.2.1")
    throttle.take("succeeded", "a@b", None)
    assert shared.calls == []


def test_take_failed_counts_toward_lock(throttle: LoginThrottle) -> None:
    """take("failed") counts like failed(): three lock the account."""
    throttle.take("failed", "a@b", None)
    throttle.take("failed", "a@b", None)
    assert not throttle.locked("a@b", FLOW)
    throttle.take("failed", "a@b", None)
    assert throttle.locked("a@b", FLOW)


def test_take_failed_counts_toward_address_delay(throttle: LoginThrottle) -> None:
    """take("failed") with an address slows that address."""
    assert throttle.delay("192.0.2.1", PER_ADDRESS) == 0.0
    throttle.take("failed", None, "192.0.2.1")
    throttle.take("failed", None, "192.0.2.1")
    assert throttle.delay("192.0.2.1", PER_ADDRESS) > 0.0
    assert throttle.delay("192.0.2.2", PER_ADDRESS) == 0.0


def test_take_succeeded_clears(throttle: LoginThrottle) -> None:
    """take("succeeded") clears the account's failures."""
    for _ in range(3):
        throttle.take("failed", "a@b", None)
    throttle.take("succeeded", "a@b", None)
    assert not throttle.locked("a@b", FLOW)


@pytest.mark.parametrize("kind", ["", "bogus", "FAILED", "None"])
def test_take_unknown_kind_changes_nothing(throttle: LoginThrottle, kind: str) -> None:
    """An unknown kind neither counts a failure nor clears one."""
    for _ in range(2):
        throttle.take("failed", "a@b", "192.0.2.1")
    for _ in range(5):
        throttle.take(kind, "a@b", "192.0.2.1")
    assert not throttle.locked("a@b", FLOW)
    throttle.take("failed", "a@b", None)
    assert throttle.locked("a@b", FLOW)
    assert throttle.delay("192.0.2.1", PER_ADDRESS) == 0.5


def test_windows_and_merge_carry_every_failure() -> None:
    """windows() gives every failure time held; merge() into another
    throttle keeps each, also ones that happened at the same moment."""
    clock = [100.0]
    source = LoginThrottle(lambda: clock[0])
    for _ in range(3):
        source.failed("a@company.com", "192.0.2.1")
    copy = LoginThrottle(lambda: clock[0])
    for kind, key, times in source.windows():
        copy.merge(kind, key, times)
    flow: dict[str, Value] = {"FailedLoginFlow": ["3", "1m"]}
    assert copy.locked("a@company.com", flow)
    assert sorted(source.windows()) == sorted(copy.windows())
    copy.merge("other", "x", [1.0])
    copy.merge("account", "", [1.0])
    assert len(list(copy.windows())) == 2
