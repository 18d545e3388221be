"""Credentials that know the connection they came from.

A bare login name is completed with the domain of the connection (spec §1.2),
so credentials carry a :class:`ConnectionInfo`: the local address the client
connected to, its own address, whether the link is encrypted and the TLS SNI
name.  Checkers that do not care (any plain twisted.cred checker) see an
ordinary :class:`~twisted.cred.credentials.IUsernamePassword`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from twisted.cred.credentials import IUsernamePassword
from zope.interface import Attribute, implementer


@dataclass(frozen=True)
class ConnectionInfo:
    """Where a login attempt comes from and arrives at."""

    protocol: str
    local_host: str | None = None
    remote_host: str | None = None
    secure: bool = False
    server_name: str | None = None


class IConnectionCredentials(IUsernamePassword):
    """A user name and password with the connection they arrived on."""

    connection = Attribute("The ConnectionInfo of the login attempt.")


@implementer(IConnectionCredentials)
class LoginPassword:
    """A login name and clear password, as USER/PASS, LOGIN or PLAIN give.

    ``username`` and ``password`` are bytes (wire data); ``repr`` never
    shows the password.
    """

    def __init__(self, username: bytes, password: bytes, connection: ConnectionInfo) -> None:
        self.username = username
        self.password = password
        self.connection = connection

    def checkPassword(self, password: bytes) -> bool:
        """Compare with a clear password in constant time."""
        return hmac.compare_digest(self.password, password)

    def __repr__(self) -> str:
        return f"<LoginPassword {self.username!r} via {self.connection.protocol}>"
