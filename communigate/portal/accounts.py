"""From a login name and a connection to an account (spec §1, §9).

:class:`AccountResolver` joins :mod:`~communigate.portal.names` (the full
name), the :mod:`~communigate.portal.router` (where the name leads) and the
directory (the account's settings).  Only a name that reaches a local account
may log in; anything else is an :class:`~communigate.cred.errors.UnknownAccount`
whose reply follows ``HideAccountUnknown``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from communigate.cred.credentials import ConnectionInfo
from communigate.cred.errors import WRONG_PASSWORD_TEXT, ServiceDisabled, UnknownAccount
from communigate.portal.names import BadLoginName, full_name
from communigate.portal.router import LocalAccount, RouteKind, Router, Unknown
from communigate.store.directory import DirectoryError, IDirectory
from communigate.store.settingsformat import Value, as_bool, as_string_list

#: Protocol name (as in ConnectionInfo) → CommuniGate's service name.
SERVICES = {
    "pop3": "POP",
    "imap4": "IMAP",
    "ftp": "FTP",
    "xmpp": "XMPP",
    "pwd": "PWD",
    "smtp": "Relay",
    "http": "WebMail",
}


@dataclass(frozen=True)
class Account:
    """A local account that a login name led to, with its effective settings."""

    domain: str
    name: str
    settings: Mapping[str, Value] = field(default_factory=dict, compare=False)

    @property
    def full_name(self) -> str:
        """``name@domain``."""
        return f"{self.name}@{self.domain}"


def access_modes(value: Value) -> frozenset[str] | None:
    """Read ``AccessModes``: None for ``All``, else the enabled services."""
    if isinstance(value, str):
        if value.lower() == "all":
            return None
        if value.lower() == "none":
            return frozenset()
    return frozenset(item.lower() for item in as_string_list(value))


class AccountResolver:
    """Resolves login names for every protocol through one path."""

    def __init__(self, directory: IDirectory, router: Router | None = None) -> None:
        self.directory = directory
        self.router = router or Router(directory)

    def connection_domain(self, connection: ConnectionInfo) -> str:
        """The domain a bare name belongs to on this connection (spec §1.2–1.3)."""
        if connection.server_name:
            record = self.directory.domain(connection.server_name)
            if record is not None:
                return record.name
        if connection.local_host:
            return self.directory.domain_for_address(connection.local_host)
        return self.directory.main_domain()

    def hide_unknown(self) -> bool:
        """Whether unknown accounts get the wrong-password text."""
        return as_bool(self.directory.server_settings().get("HideAccountUnknown"))

    def unknown(self, reason: str) -> UnknownAccount:
        """An UnknownAccount failure with the reply the server settings ask for."""
        return UnknownAccount(reason, WRONG_PASSWORD_TEXT if self.hide_unknown() else None)

    def resolve(self, login: str, connection: ConnectionInfo) -> Account:
        """The account ``login`` opens on ``connection``, or raise UnknownAccount."""
        try:
            address = full_name(login, self.connection_domain(connection))
        except BadLoginName as error:
            raise self.unknown(str(error)) from None
        route = self.router.route(address, RouteKind.ACCESS)
        if not isinstance(route, LocalAccount):
            failure = self.unknown(f"{address} routes to {route}")
            if isinstance(route, Unknown):
                failure.address = str(route.address)
            raise failure
        try:
            settings = self.directory.account_settings(route.domain, route.name)
        except DirectoryError as error:
            raise self.unknown(str(error)) from None
        return Account(route.domain, route.name, settings)

    def check_service(self, account: Account, protocol: str) -> None:
        """Refuse a protocol the account (or its domain) has not enabled."""
        service = SERVICES.get(protocol, protocol).lower()
        enabled = access_modes(account.settings.get("AccessModes", "All"))
        record = self.directory.domain(account.domain)
        cap = access_modes(record.settings.get("DomainAccessModes", "All")) if record else None
        for modes in (enabled, cap):
            if modes is not None and service not in modes:
                raise ServiceDisabled(f"{SERVICES.get(protocol, protocol)} is not enabled")
