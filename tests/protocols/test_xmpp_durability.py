"""XMPP answers that promise durability wait for the thread pool's write:
roster set, vCard set, block/unblock, offline storage (XEP-0198 counts
the message handled only then); the new state is seen at once; failures
answer internal-server-error and the session goes on."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock

from communigate.portal.durablefiles import DurableFiles
from communigate.portal.xmppsession import XMPPDirectory
from communigate.protocols.xmpp.hub import Hub
from communigate.protocols.xmpp.modules import load_all
from communigate.protocols.xmpp.server import XMPPFactory
from communigate.store import roster as roster_store
from communigate.store import settingsformat
from communigate.store.files import FileDirectory
from tests.conftest import SyncReactor, login_service
from tests.portal.test_durablefiles import HeldPool, logged
from tests.protocols.xmpp_client import Stream, make_factory

J1 = ("j.smith", "js", "client1.com")
PING = b"<iq type='get' id='p' to='company.com'><ping xmlns='urn:xmpp:ping'/></iq>"


def roster_set(jid: str, iq_id: str = "s") -> bytes:
    """A roster set of one item."""
    return (
        f"<iq type='set' id='{iq_id}'><query xmlns='jabber:iq:roster'>"
        f"<item jid='{jid}'/></query></iq>"
    ).encode()


class Held:
    """A factory whose durable writes wait in a HeldPool."""

    def __init__(self, directory: FileDirectory) -> None:
        self.directory = directory
        self.pool = HeldPool()
        self.writes = DurableFiles(SyncReactor(), self.pool)
        self.writes.log, self.events = logged()
        hub = Hub(XMPPDirectory(directory, self.writes))
        load_all(hub)
        self.factory = XMPPFactory(login_service(directory), Clock(), hub)

    def account(self, domain: str, name: str) -> Path:
        """An account's folder."""
        return Path(self.directory.account_path(domain, name))

    def fail(self, error: OSError, folder: str | None = None) -> None:
        """The oldest job (writing in ``folder`` if named) fails with
        ``error`` instead of running."""
        for index, (onResult, _, args) in enumerate(self.pool.jobs):
            if folder is None or args[0].parent.name == folder:
                del self.pool.jobs[index]
                onResult(False, error)
                return
        raise AssertionError(f"no job in {folder}")

    def run(self, folder: str) -> None:
        """Run the oldest job writing in ``folder``."""
        for index, (_, _, args) in enumerate(self.pool.jobs):
            if args[0].parent.name == folder:
                self.pool.run(index)
                return
        raise AssertionError(f"no job in {folder}")


@pytest.fixture
def held(directory: FileDirectory) -> Held:
    return Held(directory)


def test_roster_result_waits_for_the_write(held: Held) -> None:
    """No result, push or later answer before the roster is on disk; then
    in order: the result, the push, the ping's answer."""
    alice = Stream(held.factory).online("a")
    assert alice.send(roster_set("x@example.org")) == b""
    assert alice.send(PING) == b""
    assert alice.transport.producerState == "paused"
    roster = held.account("company.com", "info") / "roster.settings"
    assert not roster.exists()
    held.pool.run()
    out = alice.take()
    assert roster.exists()
    result, push, pong = out.index(b"id='s'"), out.index(b"id='push1'"), out.index(b"id='p'")
    assert result < push < pong
    assert alice.transport.producerState == "producing"


def test_new_state_is_seen_at_once(held: Held) -> None:
    """Another resource reads the roster change while it is still being written."""
    alice = Stream(held.factory).online("a")
    other = Stream(held.factory).online("b")
    alice.send(roster_set("x@example.org"))
    other.take()
    got = other.send(b"<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>")
    assert b"jid='x@example.org'" in got and b"ver='1'" in got
    held.pool.run_all()


def test_changes_of_one_file_coalesce(held: Held) -> None:
    """Three roster changes while the first write runs cost two writes,
    and the file ends with all three."""
    streams = [Stream(held.factory).online(name) for name in ("a", "b", "c")]
    for number, stream in enumerate(streams):
        stream.send(roster_set(f"x{number}@example.org", f"s{number}"))
    assert len(held.pool.jobs) == 1
    held.pool.run_all()
    assert (held.writes.writes, held.writes.coalesced) == (2, 1)
    for number, stream in enumerate(streams):
        assert b"id='s%d'" % number in stream.take()
    text = (held.account("company.com", "info") / "roster.settings").read_text()
    items = settingsformat.loads_dictionary(text)["Items"]
    assert isinstance(items, list)
    assert [item["JID"] for item in items if isinstance(item, dict)] == [
        "x0@example.org",
        "x1@example.org",
        "x2@example.org",
    ]


def test_roster_write_failure_answers_and_goes_on(held: Held) -> None:
    """A failed write: internal-server-error (wait), no push, one log line,
    and the stream still works."""
    alice = Stream(held.factory).online("a")
    alice.send(roster_set("x@example.org"))
    held.fail(OSError(28, "No space left on device"))
    out = alice.take()
    assert b"type='error'" in out and b"<internal-server-error" in out
    assert b"type='wait'" in out and b"push" not in out
    assert len(held.events) == 1 and "No space left" in held.events[0]["reason"]
    assert b"id='p'" in alice.send(PING)
    got = alice.send(b"<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>")
    assert b"x@example.org" not in got  # back to what is on disk


def test_vcard_result_waits(held: Held) -> None:
    """vCard set is answered once written; another account sees it at once."""
    alice = Stream(held.factory).online("a")
    card = b"<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>A</FN></vCard></iq>"
    assert alice.send(card) == b""
    john = Stream(held.factory).online("pc", *J1)
    got = john.send(b"<iq type='get' id='g' to='info@company.com'><vCard xmlns='vcard-temp'/></iq>")
    assert b"<FN>A</FN>" in got
    held.pool.run()
    assert b"id='v'" in alice.take()
    assert (held.account("company.com", "info") / "vcard.xml").exists()


def test_block_result_waits_and_applies_at_once(held: Held) -> None:
    """Block is answered once written, but already stops messages."""
    alice = Stream(held.factory).online("a")
    other = Stream(held.factory).online("b")
    alice.take()
    block = (
        b"<iq type='set' id='bl'><block xmlns='urn:xmpp:blocking'>"
        b"<item jid='j.smith@client1.com'/></block></iq>"
    )
    assert alice.send(block) == b""
    refused = other.send(b"<message to='j.smith@client1.com' type='chat'><body>x</body></message>")
    assert b"not-acceptable" in refused
    held.pool.run()
    assert b"id='bl'" in alice.take()


def test_offline_message_acknowledged_only_once_stored(held: Held) -> None:
    """XEP-0198: a message stored offline counts in h only once on disk."""
    alice = Stream(held.factory).online("a")
    assert b"<enabled" in alice.send(b"<enable xmlns='urn:xmpp:sm:3'/>")
    alice.send(b"<message to='j.smith@client1.com' type='chat'><body>later</body></message>")
    assert alice.send(b"<r xmlns='urn:xmpp:sm:3'/>") == b""
    held.run("offline")
    assert b"h='1'" in alice.take()
    folder = held.account("client1.com", "j.smith") / "offline"
    assert len(list(folder.iterdir())) == 1


def test_offline_write_failure_bounces(held: Held) -> None:
    """A message whose offline write failed comes back to the sender."""
    alice = Stream(held.factory).online("a")
    alice.send(b"<message to='j.smith@client1.com' id='m' type='chat'><body>x</body></message>")
    held.fail(OSError(5, "Input/output error"), "offline")
    out = alice.take()
    assert b"<message" in out and b"internal-server-error" in out and b"id='m'" in out


def test_offline_write_failing_while_read_is_told_once(held: Held) -> None:
    """Initial presence while a stored message's write runs: the stored
    messages are read in the pool; the write then fails.  The message is
    either delivered or bounced to its sender, never both, never neither."""
    alice = Stream(held.factory).online("a")
    alice.send(b"<message to='j.smith@client1.com' id='m' type='chat'><body>x</body></message>")
    john = Stream(held.factory)
    john.login(*J1)
    john.bind("pc")
    john.take()
    assert b"<body>" not in john.send(b"<presence/>")  # waits for the read
    held.fail(OSError(5, "Input/output error"), "offline")
    held.pool.run_all()
    delivered = b"<body>x</body>" in john.take()
    bounced = b"type='error'" in alice.take()
    assert delivered != bounced
    folder = held.account("client1.com", "j.smith") / "offline"
    assert not folder.exists() or not list(folder.glob("*.xml"))


def test_offline_store_found_full_by_the_write_bounces(held: Held) -> None:
    """The bound is checked where the write runs: a full store found there
    sends service-unavailable back (no internal error, no log line) and
    writes nothing; the sender's stream goes on."""
    folder = held.account("client1.com", "j.smith") / "offline"
    folder.mkdir()
    for number in range(1, 1001):
        (folder / f"{number:010d}.xml").write_bytes(b"<message/>")
    alice = Stream(held.factory).online("a")
    alice.send(b"<message to='j.smith@client1.com' id='m' type='chat'><body>x</body></message>")
    assert alice.take() == b""
    held.run("offline")
    out = alice.take()
    assert b"id='m'" in out and b"<service-unavailable" in out and b"type='cancel'" in out
    assert held.events == []
    assert len(list(folder.iterdir())) == 1000
    assert b"id='p'" in alice.send(PING)


def test_offline_messages_are_read_in_the_pool(held: Held) -> None:
    """Stored messages are read off the reactor thread: the session
    handles nothing until they are delivered, oldest first, then removed;
    a session gone before the read ends leaves them stored."""
    alice = Stream(held.factory).online("a")
    for text in ("one", "two"):
        alice.send(
            f"<message to='j.smith@client1.com' type='chat'><body>{text}</body></message>".encode()
        )
    held.pool.run_all()
    folder = held.account("client1.com", "j.smith") / "offline"
    assert len(list(folder.glob("*.xml"))) == 2
    gone = Stream(held.factory)
    gone.login(*J1)
    gone.bind("pc")
    gone.send(b"<presence/>")
    assert held.pool.jobs  # the read waits in the pool
    gone.server.connectionLost(None)
    held.pool.run_all()
    assert len(list(folder.glob("*.xml"))) == 2
    john = Stream(held.factory)
    john.login(*J1)
    john.bind("pc")
    john.take()
    early = john.send(b"<presence/>" + PING)
    assert b"one" not in early and b"id='p'" not in early
    held.pool.run_all()
    out = john.take()
    assert out.index(b"one") < out.index(b"two") < out.index(b"id='p'")
    held.pool.run_all()
    assert list(folder.glob("*.xml")) == []


def test_pipelined_writes_finishing_at_once_do_not_recurse(
    directory: FileDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes that finish at once (no pool) for 1500 pipelined roster sets:
    every one answered, in order, without recursing per stanza."""
    monkeypatch.setattr(roster_store, "_save", lambda path, state: None)
    alice = Stream(make_factory(directory, Clock())).online("a")
    sets = b"".join(roster_set(f"x{n}@example.org", f"s{n}") for n in range(1500))
    out = alice.send(sets)
    positions = [out.index(b"id='s%d'" % n) for n in range(1500)]
    assert positions == sorted(positions)


def test_client_that_does_not_read_is_not_read(held: Held) -> None:
    """While the send buffer is full (the transport pauses the server's
    producer), the client's next requests wait; they are answered once it
    drains."""
    alice = Stream(held.factory).online("a")
    gate = alice.transport.producer
    assert gate is not None and alice.transport.streaming
    gate.pauseProducing()
    assert alice.transport.producerState == "paused"
    assert alice.send(PING) == b""
    gate.resumeProducing()
    assert b"id='p'" in alice.take()
    assert alice.transport.producerState == "producing"


def test_offline_messages_are_delivered_once(held: Held) -> None:
    """A second resource's initial presence while the first delivery's
    removals are still pending reads nothing: each stored message reaches
    one resource once; a message stored afterwards never takes the file
    name of a delivered one."""
    alice = Stream(held.factory).online("a")
    alice.send(b"<message to='j.smith@client1.com' type='chat'><body>first</body></message>")
    held.pool.run_all()
    folder = held.account("client1.com", "j.smith") / "offline"
    (old,) = [path.name for path in folder.glob("*.xml")]
    phone, tablet = Stream(held.factory), Stream(held.factory)
    for stream, resource in ((phone, "phone"), (tablet, "tablet")):
        stream.login(*J1)
        stream.bind(resource)
        stream.take()
    phone.send(b"<presence/>")
    read = held.pool.jobs[0]
    held.pool.run(0)  # the read; the removal now waits in the pool
    assert held.pool.jobs and held.pool.jobs[0] is not read
    assert b"first" in phone.take()
    waiting = len(held.pool.jobs)  # the removal
    tablet.send(b"<presence/>")
    assert len(held.pool.jobs) == waiting  # no second read of the same files
    for index in reversed(range(len(held.pool.jobs))):
        held.pool.run(index)  # newest first: a read would beat the removal
    held.pool.run_all()
    assert b"first" not in tablet.take()
    assert list(folder.glob("*.xml")) == []
    alice.send(b"<message to='j.smith@client1.com' type='chat'><body>second</body></message>")
    held.pool.run_all()
    assert b"second" in phone.take() + tablet.take()
    for stream in (phone, tablet):  # still connected, no longer available
        stream.send(b"<presence type='unavailable'/>")
    alice.send(b"<message to='j.smith@client1.com' type='chat'><body>third</body></message>")
    held.pool.run_all()
    (new,) = [path.name for path in folder.glob("*.xml")]
    assert new != old
