"""Which mechanisms exist, which a domain advertises, and building them.

A domain's ``LoginMethods`` setting lists what it advertises.  The default
is the clear-text methods only (as Dovecot's): challenge-response methods
need passwords stored in clear, and a client that picks CRAM-MD5 because it
was advertised fails for an account whose password is a bcrypt hash.  A
domain whose passwords are clear adds them, e.g.
``LoginMethods=(PLAIN,LOGIN,CRAM-MD5,DIGEST-MD5,SCRAM-SHA-1,SCRAM-SHA-256,APOP)``
(APOP: the POP3 banner timestamp).  Clear-text methods (PLAIN, LOGIN and the protocols'
own USER/PASS and LOGIN commands) are offered on an insecure link only when
the domain's ``ClearTextLogin`` is ``Always``; with the default, ``Secure``,
they need TLS or a client on the server itself (loopback), whose traffic
cannot be sniffed.  Advertising only changes the lists; a client may still
use any mechanism (spec §4), except that clear text is refused where it is
not offered.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from communigate.cred.credentials import ConnectionInfo
from communigate.cred.sasl.cram import CramMD5
from communigate.cred.sasl.digest import DigestMD5
from communigate.cred.sasl.external import External
from communigate.cred.sasl.gssapi import GSSAPI
from communigate.cred.sasl.mechanism import ISASLMechanism
from communigate.cred.sasl.ntlm import Ntlm
from communigate.cred.sasl.plain import Login, Plain
from communigate.cred.sasl.scram import Scram
from communigate.cred.sasl.sessionid import SessionID
from communigate.store.settingsformat import Value, as_string_list

#: Every mechanism the server knows, least preferred first.
MECHANISMS = (
    "SESSIONID",
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "DIGEST-MD5",
    "NTLM",
    "MSN",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256-PLUS",
    "GSSAPI",
    "EXTERNAL",
)
#: SESSIONID sends a bearer secret: clear text as far as links go.
CLEAR_TEXT = frozenset({"PLAIN", "LOGIN", "SESSIONID"})
DEFAULT_ADVERTISED = ("PLAIN", "LOGIN")
#: Offered only where the connection or the domain has what they need
#: (``available`` of :func:`advertised`): a domain's Kerberos keys, a
#: verified client certificate.
NEEDS_MORE = frozenset({"GSSAPI", "EXTERNAL"})
#: Channel-binding variants, advertised on TLS beside their base mechanism.
PLUS = {"SCRAM-SHA-1-PLUS": "SCRAM-SHA-1", "SCRAM-SHA-256-PLUS": "SCRAM-SHA-256"}


def is_loopback(host: str | None) -> bool:
    """Whether an address belongs to this machine's loopback network."""
    if not host:
        return False
    try:
        address = ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def clear_text_allowed(domain_settings: Mapping[str, Value], connection: ConnectionInfo) -> bool:
    """Whether clear-text passwords may be sent on this link."""
    if connection.secure:
        return True
    mode = str(domain_settings.get("ClearTextLogin", "Secure")).lower()
    return mode == "always" or is_loopback(connection.remote_host)


def advertised(
    domain_settings: Mapping[str, Value],
    connection: ConnectionInfo,
    available: frozenset[str] = frozenset(),
) -> list[str]:
    """The mechanisms to list for a domain on this link, in preference order.

    ``available`` names what this connection and domain can serve of
    :data:`NEEDS_MORE`: GSSAPI where the domain lists it and has keys,
    EXTERNAL whenever a verified client certificate came with the link.
    The -PLUS variants of the SCRAM mechanisms the domain lists are offered
    on TLS links (the client then sees that binding was possible).
    """
    configured = domain_settings.get("LoginMethods")
    wanted = (
        {name.upper() for name in as_string_list(configured)}
        if configured is not None
        else set(DEFAULT_ADVERTISED)
    )
    if not clear_text_allowed(domain_settings, connection):
        wanted -= CLEAR_TEXT
    if connection.secure:
        wanted |= {plus for plus, base in PLUS.items() if base in wanted}
    else:
        wanted -= set(PLUS)
    wanted -= NEEDS_MORE - available
    if "EXTERNAL" in available:
        wanted.add("EXTERNAL")
    return [name for name in reversed(MECHANISMS) if name in wanted]


def _no_binding(kind: str) -> bytes | None:
    return None


def _no_secret(login: bytes, mechanism: str) -> Any:
    return None


@dataclass(frozen=True)
class ExchangeContext:
    """What a mechanism needs from its connection."""

    connection: ConnectionInfo
    realm: str
    hostname: str
    salt_key: bytes
    #: The channel-binding data of the link for a binding type
    #: (``tls-exporter``, ``tls-server-end-point``), None when it has none.
    channel_binding: Callable[[str], bytes | None] = _no_binding
    #: The stored SCRAM secret (:class:`~.scram.StoredSecret`) of the
    #: account a login name leads to, for a mechanism; None if it has none.
    scram_secret: Callable[[bytes, str], Any] = _no_secret
    #: Kerberos acceptor of the connection's domains (GSSAPI), if any.
    kerberos: Any = None
    #: The mechanisms advertised on this link (SCRAM downgrade detection).
    offered: frozenset[str] = frozenset()
    #: The web session registry SESSIONID asks (ISessionOwners), if any.
    web_sessions: Any = None


def timestamp(hostname: str) -> bytes:
    """A unique ``<random.time@host>`` challenge (RFC 1939 §7, RFC 2195)."""
    return f"<{secrets.token_hex(8)}@{hostname}>".encode("ascii")


def _scram(name: str) -> Callable[[ExchangeContext], ISASLMechanism]:
    def make(context: ExchangeContext) -> ISASLMechanism:
        return Scram(
            name,
            context.connection,
            context.salt_key,
            context.channel_binding,
            context.scram_secret,
            plus_offered=bool(context.offered & set(PLUS)),
        )

    return make


def _ntlm(name: str) -> Callable[[ExchangeContext], ISASLMechanism]:
    def make(context: ExchangeContext) -> ISASLMechanism:
        return Ntlm(
            name,
            context.connection,
            context.realm,
            context.hostname,
            secrets.token_bytes(8),
            time.time(),
        )

    return make


#: How each mechanism's exchange is made.
FACTORIES: dict[str, Callable[[ExchangeContext], ISASLMechanism]] = {
    "PLAIN": lambda context: Plain(context.connection),
    "LOGIN": lambda context: Login(context.connection),
    "CRAM-MD5": lambda context: CramMD5(context.connection, timestamp(context.hostname)),
    "DIGEST-MD5": lambda context: DigestMD5(
        context.connection, context.realm, secrets.token_urlsafe(24).encode("ascii")
    ),
    **{name: _scram(name) for name in ("SCRAM-SHA-1", "SCRAM-SHA-256", *PLUS)},
    "EXTERNAL": lambda context: External(context.connection),
    **{name: _ntlm(name) for name in ("NTLM", "MSN")},
    "GSSAPI": lambda context: GSSAPI(context.connection, context.kerberos),
    "SESSIONID": lambda context: SessionID(
        context.connection, context.web_sessions, "SESSIONID" in context.offered
    ),
}


def create(name: str, context: ExchangeContext) -> ISASLMechanism | None:
    """A new exchange of mechanism ``name``, or None if it is not known."""
    factory = FACTORIES.get(name.upper())
    return factory(context) if factory is not None else None
