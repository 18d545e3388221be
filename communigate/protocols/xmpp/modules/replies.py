"""Building iq replies, shared by the feature modules (RFC 6120 §8.2.3),
and answering only once a change is on disk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
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


def when_written(
    session: Any, iq: domish.Element, written: Deferred[None], answer: Callable[[], None]
) -> None:
    """Call ``answer`` (it sends the reply) once a change is durable, or
    reply ``internal-server-error`` (type ``wait``, RFC 6120 §8.3.3.6: try
    again later) if the write failed (the writer logged why).  Until then
    the session handles nothing more from its client, so its answers keep
    their order and a client that pipelines waits its turn."""

    def failed(reason: Failure) -> None:
        session.send(error(iq, "wait", "internal-server-error"))

    written.addCallbacks(lambda _: answer(), failed)
    session.hold(written)
