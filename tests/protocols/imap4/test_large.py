"""Large mailboxes never block the server: SELECT, FETCH, SEARCH and STORE
over many messages run in slices, between other sessions' work, paused
while the client does not read — through StringTransport and Clock."""

from __future__ import annotations

import re

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from communigate.protocols.imap4 import messages, selected
from communigate.protocols.imap4.server import IMAP4Factory, IMAP4Server
from communigate.store import mailboxindex
from communigate.store.changes import ChangeBus, MailboxNotifier
from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox
from tests.conftest import Exchange, login_service

COUNT = 600
BODY = b"Subject: m\r\n\r\nbody\r\n"


@pytest.fixture(autouse=True)
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices of a few messages, so a few hundred make a large mailbox."""
    monkeypatch.setattr(mailboxindex, "SLICE", 16)
    monkeypatch.setattr(messages, "FETCH_SLICE", 25)
    monkeypatch.setattr(messages, "SLICE", 16)
    monkeypatch.setattr(selected, "SLICE", 16)


@pytest.fixture
def inbox(directory: FileDirectory) -> Mailbox:
    """COUNT messages written straight into ``cur/``, every third \\Seen."""
    box = Mailbox.of_account(directory.account_path("company.com", "info"))
    box.create()
    for uid in range(1, COUNT + 1):
        flags = "S" if uid % 3 == 0 else ""
        (box.path / "cur" / f"{uid},S={len(BODY)}:2,{flags}").write_bytes(BODY)
    (box.path / "uids.settings").write_text(f"{{ UIDValidity = #7; UIDNext = #{COUNT + 1}; }}\n")
    return box


class Server:
    """Sessions sharing one Clock (one reactor) and one notifier."""

    def __init__(self, directory: FileDirectory) -> None:
        self.clock = Clock()
        self.factory = IMAP4Factory(
            login_service(directory),
            self.clock,
            changes=MailboxNotifier(self.clock, bus=ChangeBus()),
        )

    def session(self) -> Session:
        return Session(self)

    def turn(self, times: int = 1) -> None:
        for _ in range(times):
            self.clock.advance(0)


class Session(Exchange):
    def __init__(self, server: Server) -> None:
        protocol = server.factory.buildProtocol(IPv4Address("TCP", "127.0.0.9", 4000))
        assert isinstance(protocol, IMAP4Server)
        self.server = protocol
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 143),
            peerAddress=IPv4Address("TCP", "127.0.0.9", 4000),
        )
        protocol.makeConnection(self.transport)
        self.take()
        assert b"a OK" in self.send(b"a LOGIN info pw-company.com\r\n")


def finish(
    server: Server, session: Session, tag: bytes, out: bytes = b"", limit: int = 10_000
) -> bytes:
    """Turn the reactor until ``tag`` completes; everything written (from
    ``out``, what was already taken)."""
    out += session.take()
    for _ in range(limit):
        if re.search(rb"(^|\r\n)" + tag + rb" (OK|NO|BAD)", out):
            return out
        server.turn()
        out += session.take()
    raise AssertionError(f"{tag!r} did not complete")


def test_select_and_fetch_run_in_slices_while_others_are_served(
    directory: FileDirectory, inbox: Mailbox
) -> None:
    """SELECT of a large mailbox and FETCH 1:* are answered over several
    reactor turns; another session's NOOP is answered meanwhile, and the
    busy session's next command waits for the first to finish."""
    server = Server(directory)
    busy, other = server.session(), server.session()
    started = busy.send(b"s SELECT INBOX\r\n")
    assert b"s OK" not in started
    assert b"n OK" in other.send(b"n NOOP\r\n")
    out = finish(server, busy, b"s", started)
    assert b"* %d EXISTS" % COUNT in out and b"* OK [UNSEEN 1]" in out
    first = busy.send(b"f FETCH 1:* (UID FLAGS)\r\nq NOOP\r\n")
    assert 0 < first.count(b" FETCH (") < COUNT and b"q OK" not in first
    assert b"n OK" in other.send(b"n NOOP\r\n")
    out = finish(server, busy, b"q", first)
    numbers = [int(n) for n in re.findall(rb"\* (\d+) FETCH", out)]
    assert numbers == list(range(1, COUNT + 1))
    assert out.index(b"f OK") < out.index(b"q OK")
    assert b"* 300 FETCH (UID 300 FLAGS (\\Seen))" in out


def test_uid_fetch_by_ranges_and_search_and_store(directory: FileDirectory, inbox: Mailbox) -> None:
    """UID sets are found by range; SEARCH and STORE over many messages
    give the same answers in slices."""
    server = Server(directory)
    session = server.session()
    finish(server, session, b"s", session.send(b"s SELECT INBOX\r\n"))
    out = finish(server, session, b"u", session.send(b"u UID FETCH 590:*,3,1:2 FLAGS\r\n"))
    assert re.findall(rb"UID (\d+)", out) == [b"%d" % n for n in (1, 2, 3, *range(590, 601))]
    out = session.send(b"t STORE 1:* +FLAGS.SILENT (\\Flagged)\r\n")
    assert b"t OK" in finish(server, session, b"t", out)
    assert all("\\Flagged" in info.flags for info in inbox.messages())
    out = finish(server, session, b"x", session.send(b"x SEARCH UNSEEN\r\n"))
    found = re.search(rb"\* SEARCH([ \d]*)\r\n", out)
    assert found is not None
    assert [int(n) for n in found.group(1).split()] == [
        n for n in range(1, COUNT + 1) if n % 3 != 0
    ]


def test_a_client_that_does_not_read_pauses_its_fetch(
    directory: FileDirectory, inbox: Mailbox
) -> None:
    """While the transport asks its producer to pause, nothing more is
    produced; resumed, the FETCH completes."""
    server = Server(directory)
    session = server.session()
    finish(server, session, b"s", session.send(b"s SELECT INBOX\r\n"))
    session.send(b"f FETCH 1:* FLAGS\r\n")
    producer = session.transport.producer
    assert producer is not None
    # Transports ask again at every write over their buffer size.
    producer.pauseProducing()
    producer.pauseProducing()
    session.take()
    server.turn(50)
    assert session.take() == b""
    producer.resumeProducing()
    assert b"f OK" in finish(server, session, b"f")
    assert session.transport.producer is None


def test_a_session_that_leaves_mid_command_stops_it(
    directory: FileDirectory, inbox: Mailbox
) -> None:
    """A connection lost during a sliced command stops the work quietly."""
    server = Server(directory)
    session = server.session()
    finish(server, session, b"s", session.send(b"s SELECT INBOX\r\n"))
    session.send(b"f FETCH 1:* FLAGS\r\n")
    session.server.connectionLost(None)
    session.take()
    server.turn(100)
    assert session.take() == b"" and session.server.sliced is None


def test_a_session_that_leaves_mid_select_gives_the_listing_back(
    directory: FileDirectory, inbox: Mailbox
) -> None:
    """A connection lost while SELECT lists a large mailbox in slices gives
    the shared listing back at once (its watch ends with it)."""
    server = Server(directory)
    session = server.session()
    assert b"s OK" not in session.send(b"s SELECT INBOX\r\n")
    assert server.factory.changes.find_index(inbox.path) is not None
    session.server.connectionLost(None)
    assert server.factory.changes.find_index(inbox.path) is None
    server.turn(10)
    assert session.take() == b""


def test_leaving_a_large_mailbox_frees_it_in_slices(
    directory: FileDirectory, inbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UNSELECT of a large mailbox answers at once; what it held is freed
    by work in several slices handed to the cooperator."""
    server = Server(directory)
    session = server.session()
    finish(server, session, b"s", session.send(b"s SELECT INBOX\r\n"))
    index = server.factory.changes.find_index(inbox.path)
    assert index is not None and len(index) == COUNT
    given: list = []
    monkeypatch.setattr(server.factory.cooperator, "cooperate", given.append)
    assert session.send(b"x UNSELECT\r\n") == b"x OK UNSELECT completed\r\n"
    assert server.factory.changes.find_index(inbox.path) is None
    [steps] = given
    assert sum(1 for _ in steps) >= 2
    assert len(index) == 0 and index.listing() == []


def test_status_counts_alike_with_and_without_a_shared_listing(
    directory: FileDirectory, inbox: Mailbox
) -> None:
    """STATUS gives the same counts whether or not a session of the server
    has the mailbox selected (then they come from the shared listing)."""
    server = Server(directory)
    asking, holding = server.session(), server.session()
    query = b"t STATUS INBOX (MESSAGES RECENT UIDNEXT UNSEEN)\r\n"
    expected = b"* STATUS INBOX (MESSAGES %d RECENT 0 UIDNEXT %d UNSEEN %d)" % (
        COUNT,
        COUNT + 1,
        COUNT - COUNT // 3,
    )
    assert expected in asking.send(query)
    finish(server, holding, b"e", holding.send(b"e EXAMINE INBOX\r\n"))
    assert server.factory.changes.find_index(inbox.path) is not None
    shared = asking.send(query)
    assert expected in shared and b"t OK" in shared


def test_selecting_the_same_mailbox_again_keeps_its_listing(
    directory: FileDirectory, inbox: Mailbox
) -> None:
    """SELECT of the mailbox already selected (or EXAMINE after SELECT)
    reuses the shared listing instead of listing it again."""
    server = Server(directory)
    session = server.session()
    finish(server, session, b"s", session.send(b"s SELECT INBOX\r\n"))
    index = server.factory.changes.find_index(inbox.path)
    assert index is not None
    generation = index.generation
    out = finish(server, session, b"e", session.send(b"e EXAMINE INBOX\r\n"))
    assert b"* OK [CLOSED]" in out and b"e OK [READ-ONLY]" in out
    assert server.factory.changes.find_index(inbox.path) is index
    assert index.generation == generation and len(index) == COUNT
