"""The realm: from an account's full name to the avatar a protocol asked for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.cred.portal import IRealm
from zope.interface import implementer

from communigate.portal.avatars import IIMAPAccount, IMAPAccount, IPOP3Maildrop, POP3Maildrop
from communigate.portal.filesession import FileSession, IFileSession
from communigate.portal.passwordchange import IPasswordChange, PasswordChange
from communigate.store.directory import IDirectory
from communigate.store.mailbox import INBOX, Mailbox


def _no_logout() -> None:
    return None


@implementer(IRealm)
class AccountRealm:
    """Opens accounts of the directory for the protocols."""

    def __init__(self, directory: IDirectory, reactor: Any = None, pool: Any = None) -> None:
        self.directory = directory
        self._reactor = reactor
        self._pool = pool

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, Any, Callable[[], None]]:
        """An avatar for the first interface this realm can serve."""
        # IRealm's contract: NotImplementedError when no avatar can be given.
        if not isinstance(avatarId, bytes):
            raise NotImplementedError("anonymous access is not served")
        name, _, domain = avatarId.decode("utf-8").rpartition("@")
        for interface in interfaces:
            if interface is IPOP3Maildrop:
                mailbox = Mailbox.of_account(self.directory.account_path(domain, name))
                mailbox.create()
                return interface, POP3Maildrop(f"{name}@{domain}", mailbox), _no_logout
            if interface is IPasswordChange:
                change = PasswordChange(self.directory, domain, name, self._reactor, self._pool)  # type: ignore[arg-type]
                return interface, change, _no_logout
            if interface is IFileSession:
                return interface, FileSession(self.directory, domain, name), _no_logout
            if interface is IIMAPAccount:
                account = IMAPAccount(self.directory, domain, name)
                account.store.mailbox(INBOX).create()
                return interface, account, _no_logout
        raise NotImplementedError(f"no avatar for {interfaces!r}")
