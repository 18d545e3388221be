"""Typed login failures.

Every refusal has a type (for logs and counters) and a ``reply``: the one
text a client is shown, chosen by the portal.  Protocols only frame the
reply in their syntax (``-ERR``, ``NO``, ``535``); they never decide whether
an unknown account may be told apart from a wrong password
(``HideAccountUnknown``, spec §4).
"""

from __future__ import annotations

from twisted.cred.error import UnauthorizedLogin

WRONG_PASSWORD_TEXT = "incorrect password or account name"  # noqa: S105
UNKNOWN_ACCOUNT_TEXT = "unknown user account"


class LoginFailure(UnauthorizedLogin):
    """A refused login.  ``reason`` is for the log, ``reply`` for the client."""

    kind = "failed"
    default_reply = WRONG_PASSWORD_TEXT
    temporary = False
    fatal = False

    def __init__(self, reason: str = "", reply: str | None = None) -> None:
        super().__init__(reason or self.kind)
        self.reason = reason or self.kind
        self.reply = reply or self.default_reply


class WrongPassword(LoginFailure):
    """The account exists, the secret does not match."""

    kind = "wrong-password"


class UnknownAccount(LoginFailure):
    """The name leads to no account (unknown, or not an account).
    ``address`` is set when it names nothing in a local domain."""

    kind = "unknown-account"
    default_reply = UNKNOWN_ACCOUNT_TEXT
    address: str | None = None


class AccountLocked(LoginFailure):
    """Too many failed logins (``FailedLoginFlow``)."""

    kind = "locked"


class ServiceDisabled(LoginFailure):
    """The account may not use this protocol (``AccessModes``)."""

    kind = "service-disabled"
    default_reply = "access to this service is not allowed for this account"


class SecureMethodRequired(LoginFailure):
    """Clear text on an insecure link where the account or domain forbids it."""

    kind = "secure-method-required"
    default_reply = "clear-text passwords are not allowed on this link; use TLS or a secure method"


class IdentityRefused(LoginFailure):
    """A proven identity (Kerberos ticket, client certificate) that may not
    open the account it names: the account lies in another domain than the
    key or CA that proved it, or does not allow that method.  Answered as a
    wrong password, and not counted towards the account's lockout (nobody
    guessed a password)."""

    kind = "identity-refused"


class ImpersonationRefused(LoginFailure):
    """An authorization identity the authenticating account may not open."""

    kind = "impersonation-refused"
    default_reply = "not authorized to log in as that account"


class ClientAddressRefused(LoginFailure):
    """Logins from addresses that are not Client IP Addresses are prohibited;
    the protocol closes the connection after this reply."""

    kind = "address-refused"
    default_reply = "logins from your address are not allowed"
    fatal = True


class TemporaryFailure(LoginFailure):
    """The password could not be checked now; the client may try later."""

    kind = "temporary"
    default_reply = "authentication service temporarily unavailable"
    temporary = True
