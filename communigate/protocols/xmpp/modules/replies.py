"""Building iq replies, shared by the feature modules (RFC 6120 §8.2.3)."""

from __future__ import annotations

from twisted.words.xish import domish

from communigate.protocols.xmpp.stream import stanza_error
from communigate.protocols.xmpp.xmlstream import NS_CLIENT


def result(iq: domish.Element) -> domish.Element:
    """An empty ``result`` to ``iq``, addressed back to its sender."""
    reply = domish.Element((NS_CLIENT, "iq"))
    reply["type"] = "result"
    if iq.hasAttribute("id"):
        reply["id"] = iq["id"]
    if iq.hasAttribute("from"):
        reply["to"] = iq["from"]
    if iq.hasAttribute("to"):
        reply["from"] = iq["to"]
    return reply


def error(iq: domish.Element, error_type: str, condition: str) -> domish.Element:
    """An error reply to ``iq`` (RFC 6120 §8.3)."""
    return stanza_error(iq, error_type, condition)
