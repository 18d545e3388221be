"""The OS password (``UseSysPassword``), checked through PAM.

The OS user name comes from the account setting ``OSUserName`` (default
``*``): ``*`` stands for the account name, so ``*`` is the account's own
name and ``x-*`` maps john to ``x-john``.  A ``%`` separates an OS domain:
``*%comp1`` maps john to ``john@comp1``, the form PAM modules for directory
domains (SSSD, winbind) expect.  The PAM service is the server setting
``PAMService`` (default ``communigate``; without an ``/etc/pam.d`` file of
that name PAM uses ``other``, which on Debian is the system's own login
rules).  PAM calls block, so they run in the thread pool.
"""

from __future__ import annotations

from typing import Any

import pam
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from communigate.cred.interfaces import IPasswordSource
from communigate.store.directory import IDirectory

DEFAULT_SERVICE = "communigate"


def os_user_name(pattern: str, account_name: str) -> str | None:
    """The OS user for an account, from its ``OSUserName`` pattern."""
    name = (pattern or "*").replace("*", account_name)
    user, _, domain = name.partition("%")
    if not user or any(char in user for char in "/:\0\n"):
        return None
    return f"{user}@{domain}" if domain else user


def _authenticate(user: str, password: bytes, service: str) -> bool:
    # One PAM handle per call: handles are not shared between threads.
    handle = pam.pam()
    return bool(handle.authenticate(user, password.decode("utf-8", "replace"), service=service))


@implementer(IPasswordSource)
class SystemPassword:
    """Checks the OS password of the account's OS user through PAM."""

    name = "os"
    setting = "UseSysPassword"

    def __init__(self, reactor: Any, threadpool: ThreadPool, directory: IDirectory) -> None:
        self._reactor = reactor
        self._threadpool = threadpool
        self._directory = directory

    def verify(self, account: Any, password: bytes) -> Deferred[bool]:
        """PAM's answer, from the thread pool."""
        user = os_user_name(str(account.settings.get("OSUserName", "*")), account.name)
        if user is None or not password:
            return succeed(False)
        service = self._directory.server_settings().get("PAMService", DEFAULT_SERVICE)
        return deferToThreadPool(
            self._reactor, self._threadpool, _authenticate, user, password, str(service)
        )

    def clear_secret(self, account: Any) -> str | None:
        """OS passwords are never available in clear."""
        return None


@implementer(ICredentialsChecker)
class PAMChecker:
    """A plain twisted.cred checker: a user name and its OS password."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, reactor: Any, threadpool: ThreadPool, service: str) -> None:
        self._reactor = reactor
        self._threadpool = threadpool
        self.service = service

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        """The user name when PAM accepts the password."""
        user = credentials.username.decode("utf-8", "replace")
        result = deferToThreadPool(
            self._reactor,
            self._threadpool,
            _authenticate,
            user,
            credentials.password,
            self.service,
        )

        def decide(accepted: bool) -> bytes:
            if not accepted:
                raise UnauthorizedLogin("PAM refused")
            return bytes(credentials.username)

        return result.addCallback(decide)
