"""The realm: from an account's full name to the avatar a protocol asked for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.cred.portal import IRealm
from zope.interface import implementer

from communigate.observe.events import ISessionMind
from communigate.portal.avatars import IIMAPAccount, IMAPAccount, IPOP3Maildrop, POP3Maildrop
from communigate.portal.filesession import FileSession, IFileSession
from communigate.portal.passwordchange import IPasswordChange, PasswordChange
from communigate.portal.sessions import LiveSession, SessionRegistry
from communigate.portal.submission import ISubmitter, Submitter
from communigate.portal.websession import IWebUser, WebUser
from communigate.portal.xmppsession import IXMPPAccount, XMPPAccount
from communigate.store.directory import IDirectory
from communigate.store.mailbox import INBOX, Mailbox


@implementer(IRealm)
class AccountRealm:
    """Opens accounts of the directory for the protocols."""

    def __init__(self, directory: IDirectory, reactor: Any = None, pool: Any = None) -> None:
        self.directory = directory
        self._reactor = reactor
        self._pool = pool
        #: Every avatar handed out, so that deleting an account ends them.
        self.sessions = SessionRegistry(directory)

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, Any, Callable[[], None]]:
        """An avatar for the first interface this realm can serve; its
        logout forgets it in :attr:`sessions`.  A :class:`ISessionMind` is
        told which account was opened (for the logout event)."""
        # IRealm's contract: NotImplementedError when no avatar can be given.
        if not isinstance(avatarId, bytes):
            raise NotImplementedError("anonymous access is not served")
        name, _, domain = avatarId.decode("utf-8").rpartition("@")
        self.directory.ensure_account_folder(domain, name)
        for interface in interfaces:
            avatar = self._avatar(interface, domain, name)
            if avatar is not None:
                if ISessionMind.providedBy(mind):
                    mind.opened(domain, name)
                return interface, avatar, self.sessions.opened(domain, name, avatar)
        raise NotImplementedError(f"no avatar for {interfaces!r}")

    def _avatar(self, interface: Any, domain: str, name: str) -> LiveSession | None:
        if interface is IPOP3Maildrop:
            mailbox = Mailbox.of_account(self.directory.account_path(domain, name))
            mailbox.create()
            return POP3Maildrop(f"{name}@{domain}", mailbox)
        if interface is IPasswordChange:
            return PasswordChange(self.directory, domain, name, self._reactor, self._pool)  # type: ignore[arg-type]
        if interface is IFileSession:
            return FileSession(self.directory, domain, name)
        if interface is ISubmitter:
            return Submitter.open(self.directory, domain, name)
        if interface is IWebUser:
            return WebUser(self.directory, domain, name)
        if interface is IXMPPAccount:
            return XMPPAccount(self.directory, domain, name)
        if interface is IIMAPAccount:
            account = IMAPAccount(self.directory, domain, name)
            account.store.mailbox(INBOX).create()
            return account
        return None
