"""Credentials that know the connection they came from.

A bare login name is completed with the domain of the connection (spec §1.2),
so credentials carry a :class:`ConnectionInfo`: the local address the client
connected to, its own address, whether the link is encrypted and the TLS SNI
name.  Checkers that do not care (any plain twisted.cred checker) see an
ordinary :class:`~twisted.cred.credentials.IUsernamePassword`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.cred.credentials import IUsernamePassword
from zope.interface import Attribute, Interface, implementer


@dataclass(frozen=True)
class ConnectionInfo:
    """Where a login attempt comes from and arrives at.

    ``session`` names the connection in log events (short random hex, the
    same for every login on one connection); it and the ports are not part
    of equality, which compares where the client stands, not which socket.
    """

    protocol: str
    local_host: str | None = None
    remote_host: str | None = None
    secure: bool = False
    server_name: str | None = None
    local_port: int | None = field(default=None, compare=False)
    remote_port: int | None = field(default=None, compare=False)
    session: str | None = field(default=None, compare=False)


class IConnectionCredentials(IUsernamePassword):
    """A user name and password with the connection they arrived on."""

    connection = Attribute("The ConnectionInfo of the login attempt.")
    authzid = Attribute("The account to open instead (impersonation), or None.")
    mechanism = Attribute("How the secret was given: 'USER', 'LOGIN', 'PLAIN', ...")


class IClearSecretCredentials(Interface):
    """A proof that needs the account's clear password to be checked
    (CRAM-MD5, DIGEST-MD5, APOP, SCRAM).  Checkers that can give a clear
    secret call :meth:`check` with it."""

    username = Attribute("The login name (bytes).")
    authzid = Attribute("The account to open instead (impersonation), or None.")
    connection = Attribute("The ConnectionInfo of the login attempt.")
    mechanism = Attribute("The SASL mechanism name.")

    def check(secret: str) -> bool:
        """Whether the client's proof matches ``secret``.  May be slow (SCRAM
        derives keys): checkers call it in a thread pool."""


@implementer(IConnectionCredentials)
class LoginPassword:
    """A login name and clear password, as USER/PASS, LOGIN or PLAIN give.

    ``username`` and ``password`` are bytes (wire data); ``repr`` never
    shows the password.
    """

    def __init__(
        self,
        username: bytes,
        password: bytes,
        connection: ConnectionInfo,
        authzid: bytes | None = None,
        mechanism: str = "USER",
    ) -> None:
        self.username = username
        self.password = password
        self.connection = connection
        self.authzid = authzid or None
        self.mechanism = mechanism

    def checkPassword(self, password: bytes) -> bool:
        """Compare with a clear password in constant time."""
        return hmac.compare_digest(self.password, password)

    def __repr__(self) -> str:
        return f"<LoginPassword {self.username!r} via {self.connection.protocol}>"


@implementer(IClearSecretCredentials)
class ClearSecretProof:
    """A login name with a function that checks the client's proof."""

    def __init__(
        self,
        username: bytes,
        check: Callable[[str], bool],
        connection: ConnectionInfo,
        mechanism: str,
        authzid: bytes | None = None,
    ) -> None:
        self.username = username
        self._check = check
        self.connection = connection
        self.mechanism = mechanism
        self.authzid = authzid or None

    def check(self, secret: str) -> bool:
        """Whether the proof matches ``secret``."""
        return self._check(secret)

    def __repr__(self) -> str:
        return f"<ClearSecretProof {self.username!r} via {self.mechanism}>"
