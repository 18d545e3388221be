"""Credentials that know the connection they came from.

A bare login name is completed with the domain of the connection (spec §1.2),
so credentials carry a :class:`ConnectionInfo`: the local address the client
connected to, its own address, whether the link is encrypted and the TLS SNI
name.  Checkers that do not care (any plain twisted.cred checker) see an
ordinary :class:`~twisted.cred.credentials.IUsernamePassword`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
    #: The client certificate the TLS handshake verified against a
    #: domain's trusted CA (for SASL EXTERNAL), else None.
    client_certificate: Any = field(default=None, compare=False)


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


class IStoredSecretCredentials(IClearSecretCredentials):
    """A proof that can also be checked against secrets derived from the
    password and stored with the account (RFC 5802 §3 SCRAM keys, the NTLM
    NT hash), so accounts whose password is one-way can use it."""

    def uses_stored(settings: Mapping[str, Any]) -> bool:
        """Whether the account settings hold the derived secret it needs."""

    def check_stored(settings: Mapping[str, Any]) -> bool:
        """Whether the proof matches the stored derived secret (may be
        slow: checkers call it in a thread pool)."""


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


class IVerifiedIdentity(Interface):
    """An identity a mechanism has already proven without a password: a
    Kerberos ticket accepted with a domain's key (GSSAPI), a client
    certificate verified with a domain's CA (EXTERNAL).

    The checker routes ``username`` (a full ``name@domain``), requires the
    account to land in ``domain`` (the domain whose key or CA did the
    proving, so one domain's administrator can never open another's
    accounts) and to have ``setting`` (``UseKerberosPassword``,
    ``UseCertificateAuth``) set to YES.  No password source is asked.
    """

    username = Attribute("The account name the proof names (bytes, ``name@domain``).")
    domain = Attribute("The domain whose key or CA verified the proof.")
    setting = Attribute("The account setting that must be YES for this method.")
    authzid = Attribute("The account to open instead (impersonation), or None.")
    connection = Attribute("The ConnectionInfo of the login attempt.")
    mechanism = Attribute("The SASL mechanism name.")


@implementer(IVerifiedIdentity)
@dataclass(frozen=True)
class VerifiedIdentity:
    """The result of a mechanism that proves who the client is by itself."""

    username: bytes
    domain: str
    setting: str
    connection: ConnectionInfo
    mechanism: str
    authzid: bytes | None = None
