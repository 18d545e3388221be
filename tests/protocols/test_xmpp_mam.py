"""Message Archive Management (XEP-0313) on StringTransports: chats are
archived for both accounts, queries filter and page with RSM."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.words.xish import domish

from communigate.protocols.xmpp import hub as hub_module
from communigate.protocols.xmpp.server import XMPPFactory
from communigate.protocols.xmpp.stream import serialize
from communigate.store.archive import read_records
from communigate.store.files import FileDirectory
from tests.protocols.test_xmpp_durability import Held
from tests.protocols.xmpp_client import Stream, make_factory

J1 = ("j.smith", "js", "client1.com")
NS = "urn:xmpp:mam:2"


@pytest.fixture
def factory(directory: FileDirectory) -> XMPPFactory:
    return make_factory(directory, Clock())


def chat(to: str, body: str) -> bytes:
    return f"<message to='{to}' type='chat'><body>{body}</body></message>".encode()


def query(
    fields: dict[str, str] | None = None, rsm: str = "", query_id: str = "q1", to: str = ""
) -> bytes:
    """A MAM query iq with form fields and an RSM <set/> body."""
    form = ""
    if fields:
        form = (
            "<x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{NS}</value></field>"
            + "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
            + "</x>"
        )
    page = f"<set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set>" if rsm else ""
    address = f" to='{to}'" if to else ""
    return (
        f"<iq type='set' id='mq'{address}><query xmlns='{NS}' queryid='{query_id}'>"
        f"{form}{page}</query></iq>"
    ).encode()


def bodies(out: bytes) -> list[str]:
    """The bodies of the results, in order."""
    return re.findall(r"<body>([^<]*)</body>", out.decode())


def result_ids(out: bytes) -> list[str]:
    return re.findall(r"<result xmlns='urn:xmpp:mam:2' queryid='q1' id='([^']+)'", out.decode())


@pytest.fixture
def talk(factory: XMPPFactory) -> tuple[Stream, Stream]:
    """alice (info@company.com) and john, who exchanged five chats."""
    alice = Stream(factory).online("a")
    john = Stream(factory).online("pc", *J1)
    for n in range(3):
        alice.send(chat("j.smith@client1.com", f"a{n}"))
    for n in range(2):
        john.send(chat("info@company.com", f"j{n}"))
    alice.take()
    john.take()
    return alice, john


def test_feature_on_the_account_not_the_server(factory: XMPPFactory) -> None:
    """disco#info of the user's bare JID lists urn:xmpp:mam:2; the server's does not."""
    alice = Stream(factory).online("a")
    disco = "<query xmlns='http://jabber.org/protocol/disco#info'/>"
    mine = alice.send(f"<iq type='get' id='d' to='info@company.com'>{disco}</iq>".encode())
    server = alice.send(f"<iq type='get' id='d' to='company.com'>{disco}</iq>".encode())
    assert NS.encode() in mine and NS.encode() not in server


def test_chats_archived_for_both(talk: tuple[Stream, Stream]) -> None:
    """Both archives hold the five chats, oldest first, forwarded with a
    delay stamp; <fin complete='true'> with the RSM count."""
    alice, john = talk
    out = alice.send(query())
    assert bodies(out) == ["a0", "a1", "a2", "j0", "j1"]
    assert out.count(b"<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay'") == 5
    assert b"from='info@company.com/a'" in out and b"to='info@company.com/a'" in out
    assert b"<fin xmlns='urn:xmpp:mam:2' complete='true'>" in out
    assert b"<count>5</count>" in out and b"<first index='0'>" in out
    assert bodies(john.send(query())) == ["a0", "a1", "a2", "j0", "j1"]


def test_with_filter(talk: tuple[Stream, Stream], factory: XMPPFactory) -> None:
    """A bare ``with`` matches every resource; a full one only itself."""
    alice, _ = talk
    other = Stream(factory).online("x", "info", "pw-client1.com", "client1.com")
    other.send(chat("info@company.com", "other"))
    alice.take()
    assert bodies(alice.send(query({"with": "j.smith@client1.com"}))) == [
        "a0",
        "a1",
        "a2",
        "j0",
        "j1",
    ]
    assert bodies(alice.send(query({"with": "j.smith@client1.com/pc"}))) == ["j0", "j1"]
    assert bodies(alice.send(query({"with": "info@client1.com"}))) == ["other"]


def test_time_filters(talk: tuple[Stream, Stream]) -> None:
    """start after every message finds none; a range around them finds all;
    a malformed date is bad-request."""
    alice, _ = talk
    assert bodies(alice.send(query({"start": "2999-01-01T00:00:00Z"}))) == []
    everything = {"start": "2000-01-01T00:00:00Z", "end": "2999-01-01T00:00:00.5+02:00"}
    assert len(bodies(alice.send(query(everything)))) == 5
    assert b"bad-request" in alice.send(query({"start": "yesterday"}))
    assert b"bad-request" in alice.send(query({"start": "2000-01-01T00:00:00"}))


def test_rsm_paging(talk: tuple[Stream, Stream]) -> None:
    """max pages forward with after, backward with before; an empty
    before is the last page; complete only on the last page."""
    alice, _ = talk
    first = alice.send(query(rsm="<max>2</max>"))
    assert bodies(first) == ["a0", "a1"] and b"complete" not in first
    last_id = result_ids(first)[-1]
    second = alice.send(query(rsm=f"<max>2</max><after>{last_id}</after>"))
    assert bodies(second) == ["a2", "j0"] and b"<first index='2'>" in second
    third = alice.send(query(rsm=f"<max>2</max><after>{result_ids(second)[-1]}</after>"))
    assert bodies(third) == ["j1"] and b"complete='true'" in third
    tail = alice.send(query(rsm="<max>2</max><before/>"))
    assert bodies(tail) == ["j0", "j1"] and b"<first index='3'>" in tail
    earlier = alice.send(query(rsm=f"<max>2</max><before>{result_ids(tail)[0]}</before>"))
    assert bodies(earlier) == ["a1", "a2"] and b"complete" not in earlier
    count_only = alice.send(query(rsm="<max>0</max>"))
    assert bodies(count_only) == [] and b"<count>5</count>" in count_only


def test_errors(talk: tuple[Stream, Stream]) -> None:
    """Unknown RSM id: item-not-found; another's archive: forbidden;
    unknown field or bad max: bad-request; the form answers a get."""
    alice, _ = talk
    assert b"item-not-found" in alice.send(query(rsm="<after>nope</after>"))
    assert b"forbidden" in alice.send(query(to="j.smith@client1.com"))
    assert b"bad-request" in alice.send(query({"color": "red"}))
    assert b"bad-request" in alice.send(query(rsm="<max>-1</max>"))
    form = alice.send(f"<iq type='get' id='f'><query xmlns='{NS}'/></iq>".encode())
    assert b"var='with'" in form and b"var='start'" in form and b"type='form'" in form


def test_blocked_and_bodiless_messages_are_not_archived(factory: XMPPFactory) -> None:
    """A message the block list stops, a chat state without body, a
    headline and a message hinted no-store are not archived."""
    alice = Stream(factory).online("a")
    alice.send(
        b"<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>"
        b"<item jid='j.smith@client1.com'/></block></iq>"
    )
    alice.send(chat("j.smith@client1.com", "blocked"))
    alice.send(
        b"<message to='info@client1.com' type='chat'>"
        b"<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    )
    alice.send(b"<message to='info@client1.com' type='headline'><body>h</body></message>")
    alice.send(
        b"<message to='info@client1.com' type='chat'><body>secret</body>"
        b"<no-store xmlns='urn:xmpp:hints'/></message>"
    )
    alice.take()
    assert b"<count>0</count>" in alice.send(query())


def test_query_sees_messages_still_being_written(directory: FileDirectory) -> None:
    """With the archive write still in the pool, a query already finds the
    message, and once written it is found once."""
    held = Held(directory)
    alice = Stream(held.factory).online("a")
    alice.send(chat("info@company.com", "pending"))
    alice.take()
    assert alice.send(query()) == b""  # the file is read in the pool
    reads = [n for n, job in enumerate(held.pool.jobs) if job[1] is read_records]
    assert len(reads) == 1 and len(held.pool.jobs) == 2
    held.pool.run(reads[0])
    assert bodies(alice.take()) == ["pending"]
    held.pool.run_all()
    alice.send(query())
    held.pool.run_all()
    assert bodies(alice.take()) == ["pending"]


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2020-13-01T00:00:00Z"]
)
def test_extreme_dates_are_bad_requests_or_work(factory: XMPPFactory, moment: str) -> None:
    """Dates at the ends of the calendar never break the session."""
    alice = Stream(factory).online("a")
    reply = alice.send(query({"start": moment}))
    assert b"<fin" in reply or b"bad-request" in reply
    assert b"id='p'" in alice.send(
        b"<iq type='get' id='p' to='company.com'><ping xmlns='urn:xmpp:ping'/></iq>"
    )


def test_a_chat_is_serialized_once_for_archive_and_delivery(
    factory: XMPPFactory, directory: FileDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bytes archived are the bytes delivered, made once; the next
    message is serialized afresh."""
    made: list[bytes] = []

    def counting(element: domish.Element) -> bytes:
        made.append(serialize(element))
        return made[-1]

    monkeypatch.setattr(hub_module, "serialize", counting)
    alice = Stream(factory).online("a")
    john = Stream(factory).online("pc", *J1)
    alice.take(), john.take()
    made.clear()
    alice.send(chat("j.smith@client1.com/pc", "once"))
    delivered = john.take()
    assert len(made) == 1 and made[0] in delivered
    archive = Path(directory.account_path("client1.com", "j.smith")) / "archive.log"
    assert made[0] in [record.stanza for record in read_records(archive)]
    made.clear()
    alice.send(chat("j.smith@client1.com/pc", "twice"))
    assert len(made) == 1 and b">twice<" in made[0] and made[0] in john.take()
