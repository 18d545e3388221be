"""The CommuniGate password: the account's own ``Password`` setting.

Clear passwords compare in constant time on the calling thread; one-way
hashes (bcrypt, crypt, LDAP digests) are verified in the thread pool given
to the constructor, never on the reactor thread.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from communigate.cred import passwords
from communigate.cred.interfaces import IPasswordSource


@implementer(IPasswordSource)
class InternalPassword:
    """Checks the ``Password`` account setting (``UseAppPassword``)."""

    name = "internal"
    setting = "UseAppPassword"

    def __init__(self, reactor: Any, threadpool: ThreadPool) -> None:
        self._reactor = reactor
        self._threadpool = threadpool

    @staticmethod
    def _stored(account: Any) -> str:
        stored = account.settings.get("Password")
        return stored if isinstance(stored, str) else ""

    def verify(self, account: Any, password: bytes) -> Deferred[bool]:
        """Whether ``password`` matches; hashes are checked in the thread pool."""
        stored = self._stored(account)
        if passwords.is_one_way(stored):
            return deferToThreadPool(
                self._reactor, self._threadpool, passwords.verify, stored, password
            )
        return succeed(passwords.verify(stored, password))

    def clear_secret(self, account: Any) -> str | None:
        """The clear password, unless it is stored one-way or empty."""
        return passwords.clear_secret(self._stored(account)) or None
