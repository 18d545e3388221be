"""The avatar SMTP submission logs in for: who may send, as which addresses.

A submission session (RFC 6409) needs to know only the account that
authenticated and whether an envelope sender belongs to it; it never reads
account settings itself.

The sender rule (RFC 6409 §6.1 lets a submission server check the sender):
``MAIL FROM`` must be the empty path ``<>`` (notifications), or an address
that the Router, routing it as mail, leads to the very account that logged
in: its own ``name@domain``, an alias of it, an address a Router record
sends to it, or the same name in a domain alias.  Anything else (another
account, a group, a remote address) is refused.

Access: logging in over SMTP needs the ``Relay`` service (the checker maps
the protocol ``smtp`` to it, :data:`communigate.portal.accounts.SERVICES`);
this avatar is only handed to an account that has the ``Mail`` service too
(``AccessModes``, capped by the domain's ``DomainAccessModes``), so an
account that may not use mail cannot submit any.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface, implementer

from communigate.portal.accounts import Account, AccountResolver
from communigate.portal.names import BadLoginName, FullName
from communigate.portal.router import LocalAccount, RouteKind, Router
from communigate.portal.sessions import LiveSession
from communigate.store.directory import IDirectory


class ISubmitter(Interface):
    """An account that may submit mail (RFC 6409)."""

    account = Attribute("The account's full name, name@domain.")

    def may_send_as(address: str) -> bool:
        """Whether ``address`` (an envelope sender, ``""`` for ``<>``) may
        be used by this account."""


@implementer(ISubmitter)
class Submitter(LiveSession):
    """The submission avatar of one account."""

    def __init__(self, directory: IDirectory, domain: str, name: str) -> None:
        self.directory = directory
        self.identity = LocalAccount(domain, name)
        self.account = f"{name}@{domain}"
        self._router = Router(directory)

    @classmethod
    def open(cls, directory: IDirectory, domain: str, name: str) -> Submitter:
        """The avatar, once the account is known to have the ``Mail``
        service; raises :class:`~communigate.cred.errors.ServiceDisabled`."""
        settings = directory.account_settings(domain, name)
        AccountResolver(directory).check_service(Account(domain, name, settings), "mail")
        return cls(directory, domain, name)

    def may_send_as(self, address: str) -> bool:
        """``<>``, or an address the Router leads to this account."""
        if address == "":
            return True
        if "@" not in address:
            return False
        try:
            full = FullName.parse(address, self.identity.domain)
        except BadLoginName:
            return False
        return self._router.route(full, RouteKind.MAIL) == self.identity
