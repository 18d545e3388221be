"""DIGEST-MD5 (RFC 2831), authentication only (qop=auth).

Written here because no maintained library implements the server side.
The server's challenge names the connection's domain as realm; the
client's response is checked against the account's clear password, and the
``rspauth`` that proves the server knew it too is sent as a last challenge.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

from zope.interface import implementer

from communigate.cred.credentials import ClearSecretProof, ConnectionInfo
from communigate.cred.sasl.mechanism import Challenge, Failure, ISASLMechanism, Step, Success

_DIRECTIVE = re.compile(rb'\s*([A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')
_MAX_RESPONSE = 4096


def parse_directives(data: bytes) -> dict[str, bytes]:
    """``key=value, key="quoted"`` pairs (RFC 2831 §7.1); raises ValueError."""
    if len(data) > _MAX_RESPONSE:
        raise ValueError("response too long")
    found: dict[str, bytes] = {}
    position = 0
    while position < len(data):
        match = _DIRECTIVE.match(data, position)
        if match is None or match.end() == position:
            raise ValueError("malformed directive")
        key, value = match.group(1).decode("ascii").lower(), match.group(2)
        if value.startswith(b'"'):
            value = re.sub(rb"\\(.)", rb"\1", value[1:-1])
        if key in found:
            raise ValueError(f"directive {key} repeated")
        found[key] = value
        position = match.end()
    return found


def _h(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _hex(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).hexdigest().encode("ascii")


def _latin1_if_possible(text: bytes, utf8: bool) -> bytes:
    """RFC 2831 §2.1.2.1: with charset=utf-8, strings that fit ISO 8859-1
    are hashed in ISO 8859-1."""
    if not utf8:
        return text
    try:
        return text.decode("utf-8").encode("iso-8859-1")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return text


@implementer(ISASLMechanism)
class DigestMD5:
    """One DIGEST-MD5 exchange."""

    name = "DIGEST-MD5"

    def __init__(self, connection: ConnectionInfo, realm: str, nonce: bytes) -> None:
        self.connection = connection
        self.realm = realm.encode("utf-8")
        self.nonce = nonce
        self.rspauth: bytes | None = None

    def start(self, initial: bytes | None) -> Step:
        """The server's digest-challenge."""
        if initial:
            return Failure("DIGEST-MD5 takes no initial response")
        return Challenge(
            b'realm="%s",nonce="%s",qop="auth",charset=utf-8,algorithm=md5-sess'
            % (self.realm, self.nonce)
        )

    def respond(self, data: bytes) -> Step:
        """Check the digest-response's form; the portal checks the digest."""
        try:
            fields = parse_directives(data)
        except ValueError as error:
            return Failure(f"malformed DIGEST-MD5 response: {error}")
        required = ("username", "nonce", "cnonce", "nc", "digest-uri", "response")
        if any(key not in fields for key in required):
            return Failure("DIGEST-MD5 response lacks a directive")
        if fields["nonce"] != self.nonce or fields.get("qop", b"auth") != b"auth":
            return Failure("DIGEST-MD5 nonce or qop mismatch")
        if fields["nc"] != b"00000001":
            return Failure("DIGEST-MD5 nonce count must be 1")
        return Success(
            ClearSecretProof(
                fields["username"],
                self._check(fields),
                self.connection,
                self.name,
                fields.get("authzid"),
            ),
            final_data=lambda: b"rspauth=" + (self.rspauth or b""),
        )

    def _check(self, fields: dict[str, bytes]) -> Callable[[str], bool]:
        utf8 = fields.get("charset", b"").lower() == b"utf-8"
        user = _latin1_if_possible(fields["username"], utf8)
        realm = _latin1_if_possible(fields.get("realm", b""), utf8)
        authzid = fields.get("authzid")

        def response_for(secret: str, a2_prefix: bytes) -> bytes:
            password = _latin1_if_possible(secret.encode("utf-8"), utf8)
            a1 = _h(b":".join((user, realm, password))) + b":" + self.nonce
            a1 += b":" + fields["cnonce"]
            if authzid:
                a1 += b":" + authzid
            a2 = a2_prefix + b":" + fields["digest-uri"]
            tail = (self.nonce, fields["nc"], fields["cnonce"], b"auth", _hex(a2))
            return _hex(_hex(a1) + b":" + b":".join(tail))

        def check(secret: str) -> bool:
            if not hmac.compare_digest(response_for(secret, b"AUTHENTICATE"), fields["response"]):
                return False
            self.rspauth = response_for(secret, b"")
            return True

        return check
