"""The password-change avatar: what the PWD service (spec §9) may do to an
account once it has logged in.

The new password is stored under the account's ``PasswordEncryption``,
hashed in the thread pool, and only while the account's ``PWDAllowed`` is on
(the default).  Logging in with an OS or External password and setting a
CommuniGate password here is the migration path of spec §2.

A new password the account cannot store (empty, not UTF-8, over bcrypt's
72 bytes under ``UB-crpt``: :func:`~communigate.cred.passwords.check_new`)
is refused at once, before any hashing, with a one-line reason the service
shows to the client.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.threads import deferToThreadPool
from zope.interface import Attribute, Interface, implementer

from communigate.cred import derived, passwords
from communigate.portal.sessions import LiveSession
from communigate.store.directory import IDirectoryAdmin
from communigate.store.settingsformat import as_bool


class IPasswordChange(Interface):
    """An account whose CommuniGate password may be changed."""

    account = Attribute("name@domain")

    def change(password: bytes) -> object:
        """A Deferred firing when the new password is stored; raises
        PermissionError (its text a one-line reason for the client) when
        ``PWDAllowed`` is off or the password cannot be stored."""


class PasswordRefused(PermissionError):
    """A new password the account cannot store; the text says why."""


@implementer(IPasswordChange)
class PasswordChange(LiveSession):
    """Stores a new password under the account's PasswordEncryption."""

    def __init__(
        self, directory: IDirectoryAdmin, domain: str, name: str, reactor: Any, pool: Any
    ) -> None:
        self.directory = directory
        self.domain, self.name = domain, name
        self.account = f"{name}@{domain}"
        self._reactor, self._pool = reactor, pool

    def change(self, password: bytes) -> Any:
        """Hash in the pool, then write the account settings."""
        settings = self.directory.account_settings(self.domain, self.name)  # type: ignore[attr-defined]
        if not as_bool(settings.get("PWDAllowed", "YES")):
            raise PermissionError("password changes are not allowed for this account")
        encryption = str(settings.get("PasswordEncryption", "clear"))
        try:
            clear = passwords.check_new(password, encryption)
        except ValueError as error:
            raise PasswordRefused(str(error)) from None
        record = self.directory.domain(self.domain)  # type: ignore[attr-defined]
        nt_hash = derived.wants_nt_hash(record.settings if record else {})
        result = deferToThreadPool(
            self._reactor, self._pool, derived.password_settings, clear, encryption, nt_hash
        )
        # Written in the pool too: a directory write may block (fsync, LDAP).
        return result.addCallback(
            lambda changes: deferToThreadPool(
                self._reactor,
                self._pool,
                self.directory.update_account_settings,
                self.domain,
                self.name,
                changes,
            )
        )
