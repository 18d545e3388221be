"""PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login): clear text."""

from __future__ import annotations

from zope.interface import implementer

from communigate.cred.credentials import ConnectionInfo, LoginPassword
from communigate.cred.sasl.mechanism import Challenge, Failure, ISASLMechanism, Step, Success

_MAX_FIELD = 1024


@implementer(ISASLMechanism)
class Plain:
    """``authzid NUL authcid NUL password``; an authzid asks to impersonate."""

    name = "PLAIN"

    def __init__(self, connection: ConnectionInfo) -> None:
        self.connection = connection

    def start(self, initial: bytes | None) -> Step:
        """An empty challenge unless the client sent the response already."""
        if initial is None:
            return Challenge(b"")
        return self.respond(initial)

    def respond(self, data: bytes) -> Step:
        """Split the three fields and hand them to the portal."""
        parts = data.split(b"\0")
        if len(parts) != 3 or not parts[1] or any(len(p) > _MAX_FIELD for p in parts):
            return Failure("malformed PLAIN response")
        authzid, authcid, password = parts
        return Success(LoginPassword(authcid, password, self.connection, authzid, self.name))


@implementer(ISASLMechanism)
class Login:
    """Asks ``Username:`` then ``Password:``."""

    name = "LOGIN"

    def __init__(self, connection: ConnectionInfo) -> None:
        self.connection = connection
        self._user: bytes | None = None

    def start(self, initial: bytes | None) -> Step:
        """Ask for the user name unless the client sent it already."""
        if initial is None:
            return Challenge(b"Username:")
        return self.respond(initial)

    def respond(self, data: bytes) -> Step:
        """First the user name, then the password."""
        if len(data) > _MAX_FIELD:
            return Failure("LOGIN field too long")
        if self._user is None:
            self._user = data
            return Challenge(b"Password:")
        return Success(LoginPassword(self._user, data, self.connection, None, self.name))
