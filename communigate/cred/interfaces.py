"""The seams between the portal and the places passwords are checked.

A password source (Dovecot would say "passdb") answers one question: does
this secret belong to this account?  Sources are consulted in CommuniGate's
order (spec §2) by :class:`~communigate.portal.checker.AccountChecker`; none
knows about login names, the Router or protocols.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IPasswordSource(Interface):
    """One place an account's password can be checked."""

    name = Attribute("Short name for logs: 'internal', 'os', 'external'.")
    setting = Attribute("The account setting that enables this source.")

    def verify(account: object, password: bytes) -> object:
        """A Deferred firing True when ``password`` is right for ``account``
        (a :class:`~communigate.portal.accounts.Account`), False when it is
        wrong; it fails with TemporaryFailure when the source cannot tell."""

    def clear_secret(account: object) -> str | None:
        """The account's clear password if this source can give it (needed
        by CRAM-MD5, DIGEST-MD5, APOP), else None."""
