"""The GSSAPI SASL mechanism with Kerberos V5 (RFC 4752), per domain.

The client's first token carries a ticket for a service principal; its
cleartext name (:mod:`communigate.cred.kerberos.apreq`) says which domain
the client wants: ``company.com@REALM`` or ``imap/company.com@REALM`` is
company.com (an alias leads to its domain).  Only that domain's keys may
accept the ticket, so a key imported by client1.com can never open a
company.com account.  The client principal must be a plain ``user@REALM``
of the realm of the service's key (no instance, no ``%`` or ``@`` in the
name): it becomes the account ``user@<domain>``, which the checker opens
only inside that domain and only when the account has
``UseKerberosPassword``.

After the context is established the server offers no security layer
(RFC 4752 §3.1): it sends ``01 00 00 00`` wrapped, the client answers with
its choice (which must be 1), its size and the authorization identity.

The GSS calls run on the calling thread: they do little computing, but the
library reads the keytab and writes its replay cache (``KRB5RCACHEDIR``),
small local file operations for each login.
"""

from __future__ import annotations

import enum
from typing import Any

import gssapi.raw
from zope.interface import implementer

from communigate.cred.credentials import ConnectionInfo, VerifiedIdentity
from communigate.cred.kerberos import apreq
from communigate.cred.sasl.mechanism import (
    Challenge,
    Failure,
    ISASLMechanism,
    Step,
    Success,
)

#: The account setting a GSSAPI login needs.
SETTING = "UseKerberosPassword"
#: RFC 4752 §3.1: bit 1, no security layer; max size 0 since none other is offered.
NO_LAYER = 0x01
SERVER_LAYERS = bytes([NO_LAYER, 0, 0, 0])
#: Characters a client principal's name may not contain: a realm or
#: source-route separator, an instance separator, MIT's escape.
FORBIDDEN = frozenset("@%/\\")


class State(enum.Enum):
    """Where the exchange stands."""

    CONTEXT = "waiting for a context token"
    EMPTY = "waiting for the empty answer to the last context token"
    LAYER = "waiting for the security layer choice"
    DONE = "finished"


def client_account(principal: str, realm: str) -> str | None:
    """The name part of ``principal`` if it is a plain ``name@realm``."""
    name, at, client_realm = principal.rpartition("@")
    if not at or not name or client_realm != realm:
        return None
    if any(character in FORBIDDEN for character in name):
        return None
    return name


@implementer(ISASLMechanism)
class GSSAPI:
    """One GSSAPI exchange, accepted with one domain's Kerberos keys."""

    name = "GSSAPI"

    def __init__(self, connection: ConnectionInfo, keys: Any) -> None:
        self.connection = connection
        self.keys = keys
        self.state = State.CONTEXT
        self._context: Any = None
        self._domain: str | None = None
        self._realm = ""
        self._user: str | None = None

    def start(self, initial: bytes | None) -> Step:
        """An initial response is the first context token; without one the
        server asks for it with an empty challenge."""
        if self.keys is None:
            return self._fail("GSSAPI is not configured")
        if not initial:
            return Challenge(b"")
        return self.respond(initial)

    def respond(self, data: bytes) -> Step:
        """The client's next token or answer."""
        try:
            if self.state is State.CONTEXT:
                return self._token(data)
            if self.state is State.EMPTY:
                if data:
                    return self._fail("expected an empty response after the last context token")
                return self._offer_layers()
            if self.state is State.LAYER:
                return self._choose_layer(data)
        except gssapi.raw.GSSError as error:
            return self._fail(f"GSSAPI: {error.gen_message()}")
        return self._fail("the exchange is over")

    def _fail(self, reason: str) -> Failure:
        self.state = State.DONE
        self._context = None
        return Failure(reason)

    def _token(self, token: bytes) -> Step:
        if not token:
            return self._fail("empty GSSAPI token")
        if self._context is None:
            try:
                service = apreq.ticket_service(token)
            except apreq.TokenError as error:
                return self._fail(f"not a Kerberos ticket: {error}")
            wanted = apreq.service_domain(service)
            domain = self.keys.domain(wanted) if wanted else None
            if domain is None:
                return self._fail(f"no domain for the service {service.principal}")
            credentials = self.keys.acceptor(domain)
            if credentials is None:
                return self._fail(f"{domain} has no Kerberos keys")
            self._domain, self._realm = domain, service.realm
            result = gssapi.raw.accept_sec_context(token, acceptor_creds=credentials)
        else:
            result = gssapi.raw.accept_sec_context(token, context=self._context)
        self._context = result.context
        if result.more_steps:
            return Challenge(result.token or b"")
        # The ticket's cleartext service name and realm are not protected
        # by its key (MIT tries every key of the keytab): the principal
        # whose key accepted it must belong to the chosen domain, and its
        # realm is the one the client must be of.
        served = self._served_realm(result.context)
        if served is None:
            return self._fail(f"the ticket was not accepted with a key of {self._domain}")
        self._realm = served
        principal = gssapi.raw.display_name(result.initiator_name).name.decode("utf-8", "replace")
        self._user = client_account(principal, self._realm)
        if self._user is None:
            return self._fail(f"the principal {principal} is not a user of {self._realm}")
        if result.token:
            self.state = State.EMPTY
            return Challenge(result.token)
        return self._offer_layers()

    def _served_realm(self, context: Any) -> str | None:
        """The realm of the service principal whose key accepted the
        ticket, if that principal names the exchange's domain."""
        target = gssapi.raw.inquire_context(
            context,
            initiator_name=False,
            target_name=True,
            lifetime=False,
            mech=False,
            flags=False,
            locally_init=False,
            complete=False,
        ).target_name
        if target is None:
            return None
        served = gssapi.raw.display_name(target).name.decode("utf-8", "replace")
        name, at, realm = served.rpartition("@")
        if not at or not name or not realm:
            return None
        service = apreq.TicketService(realm, tuple(name.split("/")), 0, None, 0)
        wanted = apreq.service_domain(service)
        if wanted is None or self.keys.domain(wanted) != self._domain:
            return None
        return realm

    def _offer_layers(self) -> Step:
        self.state = State.LAYER
        return Challenge(gssapi.raw.wrap(self._context, SERVER_LAYERS, confidential=False).message)

    def _choose_layer(self, data: bytes) -> Step:
        message = gssapi.raw.unwrap(self._context, data).message
        if len(message) < 4:
            return self._fail("the security layer answer is shorter than 4 bytes")
        if message[0] != NO_LAYER:
            return self._fail(f"the client chose security layer {message[0]}, not 1 (none)")
        authzid = message[4:] or None
        assert self._user is not None and self._domain is not None
        self.state = State.DONE
        self._context = None
        return Success(
            VerifiedIdentity(
                username=f"{self._user}@{self._domain}".encode(),
                domain=self._domain,
                setting=SETTING,
                connection=self.connection,
                mechanism=self.name,
                authzid=authzid,
            )
        )
