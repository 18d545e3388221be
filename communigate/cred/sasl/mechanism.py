"""The mechanism interface and the results of one step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zope.interface import Attribute, Interface


@dataclass(frozen=True)
class Challenge:
    """Send these bytes to the client and wait for its answer."""

    data: bytes


@dataclass(frozen=True)
class Success:
    """The exchange is complete; ``credentials`` go to the portal.

    ``final`` is data the server must still give the client once the portal
    accepted the credentials (SCRAM's server signature, DIGEST-MD5's
    rspauth); ``final_data()`` reads it then, since it may only be known
    after the check.
    """

    credentials: Any
    final_data: Any = None


@dataclass(frozen=True)
class Failure:
    """The exchange failed before the portal was asked (malformed input)."""

    reason: str


Step = Challenge | Success | Failure


class ISASLMechanism(Interface):
    """One exchange of one mechanism, from the server's side."""

    name = Attribute("The IANA name, e.g. 'CRAM-MD5'.")

    def start(initial: bytes | None) -> Step:
        """Begin, with the client's initial response if it sent one."""

    def respond(data: bytes) -> Step:
        """The client's answer to the last challenge."""


class MalformedResponse(ValueError):
    """Client data that does not follow the mechanism's syntax."""
