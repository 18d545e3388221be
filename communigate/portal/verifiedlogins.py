"""Passwords verified a moment ago, so a client that sends them with every
request does not pay a hash verification each time.

WebDAV clients send HTTP Basic credentials (RFC 7617) with every request;
with a bcrypt password each of them would cost a hash verification in the
thread pool.  As Dovecot's auth cache and Apache's ``mod_authn_socache``
do, a password the account's CommuniGate password accepted is remembered
for :data:`TTL` seconds.  What is remembered is never the password:

- the entry is found by the account (the full ``name@domain`` the login
  name resolved to on the request's domain) and the password source;
- it holds an HMAC-SHA256 of the password and one of the account's stored
  ``Password`` value, under a key made at random when the process starts
  (so neither can be tested against a dictionary, even from a core dump);
- both are compared in constant time (:func:`hmac.compare_digest`), and
  always both, so the time taken says nothing about which one differed.

The entry serves only while the stored password is the one it was verified
against: a password change (whatever process made it: the directory
follows its files) drops it on the next request.  It replaces only the
password verification: the checker still resolves the name (a deleted
account is unknown), applies the client addresses, AccessModes, Secure
Method Required and the lockout, and reports the login event.  A password
that did not verify is never remembered, and an entry is only a shortcut
to "yes": a password that differs from it is verified in full.

One entry per account and source: a wrong password does not evict the
right one, and the table is bounded by :data:`MAX_ENTRIES`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

#: Seconds a verified password is reused.  A minute covers a WebDAV
#: client's burst of requests (a folder sync) and bounds how long a
#: password verified by a source outside the account settings could be
#: reused; a change of the stored password drops the entry at once.
TTL = 60.0
#: Accounts remembered at most (the oldest entries go first).
MAX_ENTRIES = 10000


@dataclass(frozen=True)
class _Entry:
    expires: float
    stored: bytes
    password: bytes


class VerifiedLogins:
    """Recently verified passwords, by account and password source."""

    def __init__(
        self,
        clock: Callable[[], float],
        ttl: float = TTL,
        key: bytes | None = None,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._clock = clock
        self.ttl = ttl
        self._key = key if key is not None else os.urandom(32)
        self._max = max_entries
        self._entries: dict[tuple[str, str], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _mac(self, kind: bytes, value: bytes) -> bytes:
        return hmac.new(self._key, kind + b"\0" + value, hashlib.sha256).digest()

    @staticmethod
    def _key_of(account: str, source: str) -> tuple[str, str]:
        return account.lower(), source

    def fresh(self, account: str, source: str, stored: str, password: bytes) -> bool:
        """Whether ``password`` was verified for ``account`` by ``source``
        within the TTL, against the ``stored`` value the account has now.
        An entry whose stored value changed, or that expired, is dropped."""
        key = self._key_of(account, source)
        entry = self._entries.get(key)
        if entry is None:
            return False
        if self._clock() >= entry.expires:
            del self._entries[key]
            return False
        same_stored = hmac.compare_digest(entry.stored, self._mac(b"stored", stored.encode()))
        same_password = hmac.compare_digest(entry.password, self._mac(b"password", password))
        if not same_stored:
            del self._entries[key]
            return False
        return same_password

    def remember(self, account: str, source: str, stored: str, password: bytes) -> None:
        """``password`` was just verified by ``source`` against ``stored``."""
        if not password:
            return
        key = self._key_of(account, source)
        self._entries.pop(key, None)
        while len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = _Entry(
            self._clock() + self.ttl,
            self._mac(b"stored", stored.encode()),
            self._mac(b"password", password),
        )

    def forget(self, account: str) -> None:
        """Drop every entry of ``account`` (its settings changed)."""
        lowered = account.lower()
        for key in [key for key in self._entries if key[0] == lowered]:
            del self._entries[key]

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
