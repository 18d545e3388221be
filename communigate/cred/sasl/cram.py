"""CRAM-MD5 (RFC 2195) and APOP (RFC 1939 §7): keyed digests of a
server timestamp.  Both need the account's clear password to check."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from zope.interface import implementer

from communigate.cred.credentials import ClearSecretProof, ConnectionInfo
from communigate.cred.sasl.mechanism import Challenge, Failure, ISASLMechanism, Step, Success


def apop_check(timestamp: bytes, digest: bytes) -> Callable[[str], bool]:
    """A check for APOP: MD5 of the banner timestamp and the password."""

    def check(secret: str) -> bool:
        expected = hashlib.md5(timestamp + secret.encode("utf-8"), usedforsecurity=False)
        return hmac.compare_digest(expected.hexdigest().encode("ascii"), digest.lower())

    return check


@implementer(ISASLMechanism)
class CramMD5:
    """Challenge: a timestamp; response: ``user SP hex(HMAC-MD5(password, challenge))``."""

    name = "CRAM-MD5"

    def __init__(self, connection: ConnectionInfo, timestamp: bytes) -> None:
        self.connection = connection
        self.challenge = timestamp

    def start(self, initial: bytes | None) -> Step:
        """Always begins with the challenge (no initial response)."""
        if initial:
            return Failure("CRAM-MD5 takes no initial response")
        return Challenge(self.challenge)

    def respond(self, data: bytes) -> Step:
        """Check the response's form; the portal checks the digest."""
        user, _, digest = data.rpartition(b" ")
        if not user or len(digest) != 32 or len(user) > 1024:
            return Failure("malformed CRAM-MD5 response")
        challenge = self.challenge

        def check(secret: str) -> bool:
            expected = hmac.new(secret.encode("utf-8"), challenge, "md5").hexdigest()
            return hmac.compare_digest(expected.encode("ascii"), digest.lower())

        return Success(ClearSecretProof(user, check, self.connection, self.name))
