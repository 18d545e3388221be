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
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_address

from communigate.cred.credentials import ConnectionInfo
from communigate.cred.sasl.cram import CramMD5
from communigate.cred.sasl.digest import DigestMD5
from communigate.cred.sasl.mechanism import ISASLMechanism
from communigate.cred.sasl.plain import Login, Plain
from communigate.cred.sasl.scram import Scram
from communigate.store.settingsformat import Value, as_string_list

MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256")
CLEAR_TEXT = frozenset({"PLAIN", "LOGIN"})
DEFAULT_ADVERTISED = ("PLAIN", "LOGIN")


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


def advertised(domain_settings: Mapping[str, Value], connection: ConnectionInfo) -> list[str]:
    """The mechanisms to list for a domain on this link, in preference order."""
    configured = domain_settings.get("LoginMethods")
    wanted = (
        {name.upper() for name in as_string_list(configured)}
        if configured is not None
        else set(DEFAULT_ADVERTISED)
    )
    if not clear_text_allowed(domain_settings, connection):
        wanted -= CLEAR_TEXT
    return [name for name in reversed(MECHANISMS) if name in wanted]


@dataclass(frozen=True)
class ExchangeContext:
    """What a mechanism needs from its connection."""

    connection: ConnectionInfo
    realm: str
    hostname: str
    salt_key: bytes


def timestamp(hostname: str) -> bytes:
    """A unique ``<random.time@host>`` challenge (RFC 1939 §7, RFC 2195)."""
    return f"<{secrets.token_hex(8)}@{hostname}>".encode("ascii")


def create(name: str, context: ExchangeContext) -> ISASLMechanism | None:
    """A new exchange of mechanism ``name``, or None if it is not known."""
    name = name.upper()
    connection = context.connection
    if name == "PLAIN":
        return Plain(connection)
    if name == "LOGIN":
        return Login(connection)
    if name == "CRAM-MD5":
        return CramMD5(connection, timestamp(context.hostname))
    if name == "DIGEST-MD5":
        return DigestMD5(connection, context.realm, secrets.token_urlsafe(24).encode("ascii"))
    if name in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
        return Scram(name, connection, context.salt_key)
    return None
