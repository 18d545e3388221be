"""SESSIONID: the ID of a live web session replaces the password (spec §4).

CommuniGate's non-standard method: the client's one message is
``name session-id`` (IMAP ``AUTHENTICATE SESSIONID`` with it in base64,
PWD ``AUTH SESSIONID name session-id``).  The session registry (the HTTP
module's, reached through the exchange context's ``web_sessions``) says
which account a live session belongs to, and only when ``name`` — resolved
as the portal resolves login names on this connection — is that account.
The result is a :class:`~communigate.cred.credentials.VerifiedIdentity`
proven by the session's domain; a name and ID that do not match give one
whose domain is empty, which the checker refuses as a wrong password (the
same text, delay and lockout count as any failed login).

The method is off unless the domain's ``LoginMethods`` lists ``SESSIONID``
(as in CommuniGate): an exchange started where it is not offered fails.
"""

from __future__ import annotations

from typing import Any

from zope.interface import Interface, implementer

from communigate.cred.credentials import ConnectionInfo, VerifiedIdentity
from communigate.cred.sasl.mechanism import Challenge, Failure, ISASLMechanism, Step, Success

NAME = "SESSIONID"
_MAX_RESPONSE = 1024


class ISessionOwners(Interface):
    """What the SESSIONID method asks a web session registry."""

    def owner(login: str, session_id: str, connection: ConnectionInfo) -> str | None:
        """The full account name of the live session ``session_id`` when
        ``login`` resolves to that account on ``connection``; else None."""


@implementer(ISASLMechanism)
class SessionID:
    """One SESSIONID exchange."""

    name = NAME

    def __init__(self, connection: ConnectionInfo, owners: Any, offered: bool) -> None:
        self.connection = connection
        #: The ISessionOwners asked, None where there are no web sessions.
        self.owners: Any = owners
        self._offered = offered

    def start(self, initial: bytes | None) -> Step:
        """An empty challenge unless the client sent its response already."""
        if not self._offered or self.owners is None:
            return Failure("SESSIONID is not enabled here")
        if initial is None:
            return Challenge(b"")
        return self.respond(initial)

    def respond(self, data: bytes) -> Step:
        """``name session-id``: the identity of the session's account, or
        one the checker refuses."""
        if not self._offered or self.owners is None:
            return Failure("SESSIONID is not enabled here")
        parts = data.split()
        if len(parts) != 2 or len(data) > _MAX_RESPONSE or b"\0" in data:
            return Failure("malformed SESSIONID response")
        try:
            login, session = (part.decode("utf-8") for part in parts)
        except UnicodeDecodeError:
            return Failure("malformed SESSIONID response")
        account = self.owners.owner(login, session, self.connection)
        if account is None:
            return Success(VerifiedIdentity(parts[0], "", "", self.connection, self.name))
        domain = account.rpartition("@")[2]
        return Success(
            VerifiedIdentity(account.encode("utf-8"), domain, "", self.connection, self.name)
        )
