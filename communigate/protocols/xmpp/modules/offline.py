"""Offline messages (RFC 6121 §8.5.2.1.1; Prosody's ``mod_offline``).

A ``chat`` or ``normal`` message for an account with no available resource
is stored in the account's offline store
(:class:`communigate.store.offline.OfflineStore`) with a XEP-0203 delay
stamp; past the store's bound the hub bounces it with
``service-unavailable``.  The sender's stream waits until the message is
on disk.  At the next initial presence of any resource the
stored messages are read in the thread pool, delivered to it, oldest
first, and removed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.words.xish import domish

from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.jid import parse
from communigate.protocols.xmpp.stream import serialize
from communigate.protocols.xmpp.xmlstream import (
    NS_CLIENT,
    NS_STREAMS,
    StanzaReceived,
    StreamViolation,
    XMLStreamParser,
)
from communigate.store.offline import StoreFull

NS_DELAY = "urn:xmpp:delay"
#: What stored stanzas are parsed inside (they were written in this stream
#: namespace by :func:`~communigate.protocols.xmpp.stream.serialize`).
_WRAPPER = f"<stream xmlns='{NS_CLIENT}' xmlns:s='{NS_STREAMS}'>".encode()


def parse_stored(data: bytes) -> domish.Element | None:
    """A stored stanza back as an element (None if it cannot be read)."""
    parser = XMLStreamParser()
    try:
        events = parser.feed(_WRAPPER + data)
    except StreamViolation:
        return None
    finally:
        parser.close()
    for event in events:
        if isinstance(event, StanzaReceived):
            return event.element
    return None


class OfflineModule:
    """Stores and delivers offline messages."""

    def __init__(self, hub: Hub, clock: Callable[[], float] = time.time) -> None:
        self.hub = hub
        self.clock = clock
        #: Offline folders being delivered (until their files are removed).
        self._taking: set[Any] = set()

    def store(self, stores: Any, stanza: domish.Element, sender: Any = None) -> bool:
        """Keep a message; False when the store is full or unreadable.
        The sending session handles nothing more until the message is on
        disk (so XEP-0198 counts it handled only then); if the write finds
        the store full the sender gets ``service-unavailable``, if it fails
        and the message was not delivered meanwhile ``internal-server-error``
        (type ``wait``)."""
        delay = stanza.addElement((NS_DELAY, "delay"))
        delay["from"] = parse(stanza["to"]).domain
        stamp = datetime.fromtimestamp(self.clock(), UTC)
        delay["stamp"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        offline = stores.offline
        try:
            path = offline.add(serialize(stanza))
        except OSError:
            path = None
        stanza.children.remove(delay)
        if path is None:
            return False
        written = offline.written()

        def failed(reason: Failure) -> None:
            if sender is None or offline.taken(path):
                return
            if reason.check(StoreFull):
                self.hub.bounce(sender, stanza, "cancel", "service-unavailable")
            else:
                self.hub.bounce(sender, stanza, "wait", "internal-server-error")

        written.addErrback(failed)
        if sender is not None:
            sender.hold(written)
        return True

    def initial(self, session: Any) -> None:
        """Deliver what was stored to a session sending initial presence:
        the files are read in the thread pool (the session handles nothing
        more meanwhile) and removed once sent.  A session gone before the
        read ends leaves them stored.  While one delivery runs — until its
        files are gone from the disk — another initial presence of the
        account reads nothing (they go to the first)."""
        offline = session.avatar.stores.offline
        key = offline.folder
        if key in self._taking or not offline.any():
            return
        self._taking.add(key)
        reading = offline.stored()

        def deliver(found: list[tuple[Any, bytes]]) -> None:
            removed: Deferred[None] | None = None
            try:
                if self._still_bound(session):
                    for _, data in found:
                        element = parse_stored(data)
                        if element is not None:
                            element["to"] = str(session.jid)
                            session.send(element)
                    removed = offline.forget([path for path, _ in found])
            finally:
                # The session does not wait for the removals; the next
                # delivery of the account does.
                if removed is None:
                    self._taking.discard(key)
                else:
                    removed.addBoth(lambda _: self._taking.discard(key))

        def failed(reason: Failure) -> None:
            self._taking.discard(key)
            self.hub.log.error("could not read {path}: {error}", path=str(key), error=reason.value)

        reading.addCallbacks(deliver, failed)
        session.hold(reading)

    def _still_bound(self, session: Any) -> bool:
        """Whether ``session`` is connected and still holds its resource."""
        return bool(session.connected) and self.hub.session(session.jid) is session


def register(hub: Hub) -> None:
    """Store messages for unavailable accounts, deliver them later."""
    module = OfflineModule(hub)
    hub.on("offline", module.store)
    hub.on("initial", module.initial)
    hub.features.add("msgoffline")
