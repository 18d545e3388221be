"""Message Archive Management (XEP-0313, ``urn:xmpp:mam:2``) for chats.

Every ``chat`` or ``normal`` message with a body that a local user sends
to a local JID is archived twice (Prosody's ``mod_mam`` does the same for
its users): in the sender's archive (``with`` the recipient as addressed)
and, unless both are the same account, in the recipient's (``with`` the
sender's full JID); messages a block list stopped never get here, and
those with a ``no-store`` or ``no-permanent-store`` hint (XEP-0334) are
not archived.  The
archives are :class:`communigate.store.archive.Archive`, written through
the server's writer.

A user queries their own archive only (``forbidden`` otherwise): an iq
get of ``<query/>`` answers the form of §5.1 (``with``, ``start``,
``end``); an iq set filters by those fields (a bare ``with`` matches every
resource, §4.1.1; times in XEP-0082 form) and pages the matches with
Result Set Management (XEP-0059: ``max``, ``after``, ``before``, an empty
``before`` for the last page).  Each match goes to the asking resource as
a ``<message><result queryid id><forwarded>`` with its delay stamp (§4.2),
then the iq result carries ``<fin>`` with the RSM ``first``/``last``/
``count`` and ``complete='true'`` when the page reached the end in the
direction of paging (§4.3).  An ``after``/``before`` id that is not among
the matches is ``item-not-found``; a malformed query ``bad-request``.
The file is read in the thread pool; the session waits for the answer.
The feature is announced on the account's bare JID (§6.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twisted.python.failure import Failure
from twisted.words.xish import domish

from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.jid import JID, InvalidJID, parse
from communigate.protocols.xmpp.modules.offline import parse_stored
from communigate.protocols.xmpp.modules.replies import error, result
from communigate.protocols.xmpp.xmlstream import NS_CLIENT
from communigate.store.archive import Record, read_records

NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_DATA = "jabber:x:data"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
#: Processing hints that keep a message out of archives (XEP-0334 §4).
NO_STORE = frozenset({("urn:xmpp:hints", "no-store"), ("urn:xmpp:hints", "no-permanent-store")})
#: Results in one page when the client names no ``max``, and at most.
DEFAULT_MAX = 50
LARGEST_MAX = 250


class BadQuery(ValueError):
    """A query that is not well-formed (``bad-request``)."""


@dataclass(frozen=True)
class Query:
    """What a MAM query asks for."""

    with_jid: JID | None = None
    start: float | None = None
    end: float | None = None
    max: int = DEFAULT_MAX
    after: str | None = None
    before: str | None = None


def _time(text: str) -> float:
    """A XEP-0082 date-time as seconds since the epoch."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise BadQuery("a date-time needs its time zone")
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise BadQuery(f"not a date-time: {text!r}") from None


def parse_query(query: domish.Element) -> Query:
    """The filters and paging of a ``<query/>`` (raises :class:`BadQuery`)."""
    fields: dict[str, str] = {}
    for form in query.elements(NS_DATA, "x"):
        for field in form.elements(NS_DATA, "field"):
            value = next(iter(field.elements(NS_DATA, "value")), None)
            fields[field.getAttribute("var", "")] = str(value) if value is not None else ""
    for name in fields:
        if name not in ("FORM_TYPE", "with", "start", "end"):
            raise BadQuery(f"unknown field {name!r}")
    with_jid = None
    if fields.get("with"):
        try:
            with_jid = parse(fields["with"])
        except InvalidJID:
            raise BadQuery("with is not a JID") from None
    start = _time(fields["start"]) if fields.get("start") else None
    end = _time(fields["end"]) if fields.get("end") else None
    limit, after, before = DEFAULT_MAX, None, None
    for rsm in query.elements(NS_RSM, "set"):
        for child in rsm.elements():
            text = str(child).strip()
            if child.name == "max":
                if not text.isascii() or not text.isdigit():
                    raise BadQuery("max is not a number")
                limit = min(int(text), LARGEST_MAX)
            elif child.name == "after":
                after = text
            elif child.name == "before":
                before = text
    if after is not None and before is not None:
        raise BadQuery("after and before together")
    return Query(with_jid, start, end, limit, after, before)


def matches(record: Record, query: Query) -> bool:
    """Whether ``record`` passes the query's filters."""
    if query.start is not None and record.stamp < query.start:
        return False
    if query.end is not None and record.stamp > query.end:
        return False
    if query.with_jid is None:
        return True
    try:
        other = parse(record.with_jid)
    except InvalidJID:
        return False
    if query.with_jid.resource is None:
        return other.bare() == query.with_jid
    return other == query.with_jid


def page(found: list[Record], query: Query) -> tuple[list[Record], int, bool]:
    """The page of ``found`` the query asks for, the index of its first
    record and whether it reaches the end in the direction of paging
    (XEP-0059 §2); ``KeyError`` for an unknown ``after``/``before`` id."""
    ids = [record.id for record in found]
    if query.after is not None:
        start = ids.index(query.after) + 1 if query.after in ids else None
        if start is None:
            raise KeyError(query.after)
        rest = found[start:]
        return rest[: query.max], start, len(rest) <= query.max
    if query.before is not None:
        end = len(found)
        if query.before:
            if query.before not in ids:
                raise KeyError(query.before)
            end = ids.index(query.before)
        first = max(0, end - query.max)
        return found[first:end], first, end <= query.max
    return found[: query.max], 0, len(found) <= query.max


def _stamp(seconds: float) -> str:
    """A XEP-0082 date-time."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class MAMModule:
    """Archives chats and answers archive queries."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def archive(self, session: Any, stanza: domish.Element) -> bool:
        """Archive a chat message on its way (never stops it).  The router
        has written the prepared ``to`` and the sender's full JID into it."""
        attributes = stanza.attributes
        if attributes.get("type", "normal") not in ("chat", "normal"):
            return False
        to = attributes.get("to")
        if not to:
            return False
        body = False
        for child in stanza.children:
            if isinstance(child, domish.Element):
                if child.name == "body" and child.uri == NS_CLIENT:
                    body = True
                elif (child.uri, child.name) in NO_STORE:
                    return False
        if not body:
            return False
        target = self.hub.target(stanza)
        if target is None or target.local is None:
            return False
        data = self.hub.serialized(stanza)
        session.avatar.stores.archive.add(to, data)
        if target.bare() == session.jid.bare():
            return False
        stores = self.hub.target_stores(stanza, target)
        if stores is not None:
            stores.archive.add(attributes.get("from") or str(session.jid), data)
        return False

    def handle(self, hub: Hub, session: Any, iq: domish.Element, target: JID) -> None:
        """``<query xmlns='urn:xmpp:mam:2'/>``: the form, or a query."""
        if target != session.jid.bare():
            session.send(error(iq, "cancel", "forbidden"))
            return
        payload = next(iter(iq.elements()))
        if iq["type"] == "get":
            session.send(self.form(iq))
            return
        try:
            query = parse_query(payload)
        except BadQuery:
            session.send(error(iq, "modify", "bad-request"))
            return
        stores = session.avatar.stores
        archive = stores.archive
        waiting = archive.pending()
        reading = stores.writes.read(read_records, archive.path)

        def answer(on_disk: list[Record]) -> None:
            seen = {record.id for record in on_disk}
            records = on_disk + [record for record in waiting if record.id not in seen]
            self.send_page(session, iq, payload.getAttribute("queryid"), records, query)

        def failed(reason: Failure) -> None:
            self.hub.log.error(
                "could not read {path}: {error}", path=str(archive.path), error=reason.value
            )
            session.send(error(iq, "wait", "internal-server-error"))

        reading.addCallbacks(answer, failed)
        session.hold(reading)

    def send_page(
        self,
        session: Any,
        iq: domish.Element,
        query_id: str | None,
        records: list[Record],
        query: Query,
    ) -> None:
        """The results of one page, then the iq result with ``<fin/>``."""
        found = [record for record in records if matches(record, query)]
        try:
            selected, first, complete = page(found, query)
        except KeyError:
            session.send(error(iq, "cancel", "item-not-found"))
            return
        for record in selected:
            stored = parse_stored(record.stanza)
            if stored is None:
                continue
            message = domish.Element((NS_CLIENT, "message"))
            message["to"] = str(session.jid)
            found_result = message.addElement((NS_MAM, "result"))
            if query_id:
                found_result["queryid"] = query_id
            found_result["id"] = record.id
            forwarded = found_result.addElement((NS_FORWARD, "forwarded"))
            forwarded.addElement((NS_DELAY, "delay"))["stamp"] = _stamp(record.stamp)
            forwarded.addChild(stored)
            session.send(message)
        reply = result(iq)
        fin = reply.addElement((NS_MAM, "fin"))
        if complete:
            fin["complete"] = "true"
        rsm = fin.addElement((NS_RSM, "set"))
        if selected:
            rsm.addElement("first", content=selected[0].id)["index"] = str(first)
            rsm.addElement("last", content=selected[-1].id)
        rsm.addElement("count", content=str(len(found)))
        session.send(reply)

    @staticmethod
    def form(iq: domish.Element) -> domish.Element:
        """The query form (§5.1)."""
        reply = result(iq)
        form = reply.addElement((NS_MAM, "query")).addElement((NS_DATA, "x"))
        form["type"] = "form"
        kinds = (
            ("FORM_TYPE", "hidden"),
            ("with", "jid-single"),
            ("start", "text-single"),
            ("end", "text-single"),
        )
        for name, kind in kinds:
            field = form.addElement("field")
            field["var"], field["type"] = name, kind
            if name == "FORM_TYPE":
                field.addElement("value", content=NS_MAM)
        return reply


def register(hub: Hub) -> None:
    """Archive chats; answer queries on the account's own archive."""
    module = MAMModule(hub)
    hub.register_iq(NS_MAM, "query", module.handle)
    # An account's archive, not the server's (§6.1).
    hub.features.discard(NS_MAM)
    hub.account_features.add(NS_MAM)
    hub.on("message-out", module.archive)
