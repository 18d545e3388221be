"""Login policy against guessing: account lockout and per-address slowing.

* ``FailedLoginFlow = (count, period)`` (account setting, CommuniGate's
  name; off unless set): after ``count`` failed logins within ``period``,
  in any protocol, the account refuses logins until ``period`` has passed
  since those failures.  The refusal has exactly the wrong-password reply.
* Failures are also counted per client address (server setting
  ``FailedLoginsPerAddress = (count, period)``, default ``(10, 1m)``): past
  ``count`` within ``period``, every further failure from that address is
  answered later, 0.5 s more for each, up to 10 s, so one address guessing
  many accounts slows down while users elsewhere are not affected.  The
  server's own (loopback) addresses are not slowed: local tools and
  monitoring log in from there.
* Every failed login, from any address (loopback too), is answered no
  earlier than ``FailedLoginDelay`` after the attempt began (server setting,
  default ``2s`` like Dovecot's ``auth_failure_delay``; ``0`` turns it off),
  so the reply time tells neither an unknown name from a wrong password nor
  one password scheme from another.  The reply is delayed with a timer: the
  session waits, nothing else does.

Counters live in memory.  With worker processes (``--workers``) every
process keeps its own copy: what one counts it tells the others through
the server (:attr:`LoginThrottle.share`, :meth:`LoginThrottle.take`), a
millisecond later.  Pure code with an injected clock.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping

from communigate.cred.sasl.registry import is_loopback
from communigate.store.settingsformat import Value, as_seconds, as_string_list

DEFAULT_PER_ADDRESS = (10, 60)
STEP_DELAY = 0.5
MAX_DELAY = 10.0
MAX_TRACKED = 100_000
DEFAULT_FAILURE_DELAY = 2.0
MAX_FAILURE_DELAY = 60.0
_DELAY = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?\Z", re.IGNORECASE)
_DELAY_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def flow(value: Value) -> tuple[int, int] | None:
    """Read ``(count, period)``; None when absent or malformed."""
    items = as_string_list(value) if isinstance(value, list) else []
    if len(items) != 2 or not items[0].isdigit():
        return None
    try:
        return int(items[0]), as_seconds(items[1])
    except ValueError:
        return None


def failure_delay(server: Mapping[str, Value]) -> float:
    """Seconds from the start of a failed login to its reply: the server
    setting ``FailedLoginDelay`` (``2s``, ``0.5s``, ``200ms``, ``#2``; at
    most a minute), the default when absent or malformed."""
    value = server.get("FailedLoginDelay")
    if isinstance(value, int):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DELAY.match(value.strip())):
        seconds = float(match.group(1)) * _DELAY_UNITS[(match.group(2) or "s").lower()]
    else:
        return DEFAULT_FAILURE_DELAY
    return min(max(seconds, 0.0), MAX_FAILURE_DELAY)


class _Window:
    """Failure times within a sliding period."""

    __slots__ = ("times",)

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def prune(self, now: float, period: float) -> int:
        while self.times and self.times[0] <= now - period:
            self.times.popleft()
        return len(self.times)


class LoginThrottle:
    """Failure counters per account and per client address."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._accounts: dict[str, _Window] = {}
        self._addresses: dict[str, _Window] = {}
        #: Told ``(kind, account, address)`` of every failure (``failed``)
        #: and success (``succeeded``) counted here, for other processes.
        self.share: Callable[[str, str | None, str | None], None] | None = None

    @staticmethod
    def _window(table: dict[str, _Window], key: str) -> _Window:
        window = table.get(key)
        if window is None:
            if len(table) >= MAX_TRACKED:
                table.clear()
            window = table[key] = _Window()
        return window

    def locked(self, account: str, settings: Mapping[str, Value]) -> bool:
        """Whether the account's FailedLoginFlow is exhausted."""
        limit = flow(settings.get("FailedLoginFlow"))
        window = self._accounts.get(account)
        if limit is None or window is None:
            return False
        count, period = limit
        return window.prune(self.clock(), period) >= count

    def failed(self, account: str | None, address: str | None) -> None:
        """Count a failed login."""
        self.take("failed", account, address)
        if self.share is not None:
            self.share("failed", account, address)

    def succeeded(self, account: str) -> None:
        """A successful login clears the account's failures."""
        self.take("succeeded", account, None)
        if self.share is not None:
            self.share("succeeded", account, None)

    def windows(self) -> Iterator[tuple[str, str, list[float]]]:
        """Every failure window held: ``("account" | "address", key,
        times)``, for a process that starts later (:meth:`merge`)."""
        for kind, table in (("account", self._accounts), ("address", self._addresses)):
            for key, window in list(table.items()):
                if window.times:
                    yield kind, key, list(window.times)

    def merge(self, kind: str, key: str, times: Iterable[float]) -> None:
        """Take the failure times of a window another process holds (an
        unknown kind is ignored)."""
        table = {"account": self._accounts, "address": self._addresses}.get(kind)
        if table is None or not key:
            return
        window = self._window(table, key)
        window.times = deque(sorted([*window.times, *times]))

    def take(self, kind: str, account: str | None, address: str | None) -> None:
        """Count a failure or success (``kind``) another process told of
        (and :attr:`share` is not told); an unknown kind is ignored."""
        if kind == "succeeded":
            if account:
                self._accounts.pop(account, None)
            return
        if kind != "failed":
            return
        now = self.clock()
        if account:
            self._window(self._accounts, account).times.append(now)
        if address:
            self._window(self._addresses, address).times.append(now)

    def delay(self, address: str | None, server: Mapping[str, Value]) -> float:
        """Seconds to hold back a failure reply to this address."""
        window = self._addresses.get(address or "")
        if window is None or is_loopback(address):
            return 0.0
        count, period = flow(server.get("FailedLoginsPerAddress")) or DEFAULT_PER_ADDRESS
        excess = window.prune(self.clock(), period) - count
        return 0.0 if excess <= 0 else min(MAX_DELAY, STEP_DELAY * excess)
