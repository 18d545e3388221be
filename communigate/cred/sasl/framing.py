"""The ``+ base64`` framing of IMAP (RFC 3501 §6.2.2), POP3 (RFC 5034) and
SMTP (RFC 4954): pure encoding and decoding of one line.

Challenges are encoded on one line, however long (some servers wrap long
base64 at 76 characters, which breaks clients).
"""

from __future__ import annotations

import base64
import binascii

from communigate.cred.sasl.mechanism import MalformedResponse


class Aborted(Exception):
    """The client sent ``*`` to cancel the exchange."""


def encode(data: bytes) -> bytes:
    """The base64 text of a challenge, on one line."""
    return base64.b64encode(data)


def decode(line: bytes) -> bytes:
    """A client response line: ``*`` aborts; ``=`` is an empty initial
    response (RFC 4959); anything else must be valid base64."""
    line = line.strip()
    if line == b"*":
        raise Aborted()
    if line == b"=":
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedResponse("invalid base64") from None
