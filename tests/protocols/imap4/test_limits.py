"""IMAP under the shared connection limits: literals before login, the login
deadline, and APPEND messages spooled to disk as they arrive."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from communigate.protocols.imap4.reader import (
    BadCommand,
    Command,
    CommandReader,
    Continue,
    spooled_in,
)
from communigate.protocols.imap4.server import IMAP4Factory, IMAP4Server
from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox
from communigate.store.spool import MessageSpool, SpooledMessage
from tests.conftest import Exchange, login_service


class Session(Exchange):
    """An IMAP server on a StringTransport, spooling into ``spool``."""

    def __init__(self, directory: FileDirectory, spool: Path, max_message: int = 10**7) -> None:
        service = login_service(directory)
        self.clock = Clock()
        factory = IMAP4Factory(service, self.clock, max_message=max_message, spool=spool)
        server = factory.buildProtocol(IPv4Address("TCP", "127.0.0.9", 4000))
        assert isinstance(server, IMAP4Server)
        self.server = server
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 143),
            peerAddress=IPv4Address("TCP", "127.0.0.9", 4000),
        )
        self.server.makeConnection(self.transport)
        self.take()

    def login(self) -> None:
        assert b"a OK" in self.send(b"a LOGIN info pw-company.com\r\n")


def inbox(directory: FileDirectory) -> Mailbox:
    return Mailbox.of_account(directory.account_path("company.com", "info"))


def spooled(folder: Path) -> list[Path]:
    """The files in the spool folder."""
    return sorted(folder.iterdir()) if folder.exists() else []


# -- before login ------------------------------------------------------------


def test_large_literal_before_login_is_refused_without_continuation(
    directory: FileDirectory, tmp_path: Path
) -> None:
    """``a LOGIN {60000000}`` gets a tagged BAD and no ``+``; the session goes on."""
    session = Session(directory, tmp_path / "Spool")
    out = session.send(b"a LOGIN {60000000}\r\n")
    assert out == b"a BAD [TOOBIG] literal too large\r\n"
    assert b"b OK" in session.send(b"b NOOP\r\n")
    assert b"+ " in session.send(b"c LOGIN {4}\r\n")
    assert b"c OK" in session.send(b"info {14}\r\npw-company.com\r\n")


def test_large_non_synchronising_literal_before_login_closes(
    directory: FileDirectory, tmp_path: Path
) -> None:
    """A LITERAL+ literal over the limit before login: BAD, BYE, closed, bytes not kept."""
    session = Session(directory, tmp_path / "Spool")
    out = session.send(b"a LOGIN {60000000+}\r\n" + b"x" * 100_000)
    assert out == b"a BAD literal too large\r\n* BYE unrecoverable input\r\n"
    assert session.transport.disconnecting
    session.server.dataReceived(b"y" * 1_000_000)
    assert len(session.server.reader._buffer) == 0
    assert session.take() == b""


def test_prelogin_limit_comes_from_the_settings(directory: FileDirectory, tmp_path: Path) -> None:
    """PreLoginData from the Limits server setting bounds literals before login."""
    directory.update_server_settings({"Limits": {"imap4": {"PreLoginData": 16}}})
    session = Session(directory, tmp_path / "Spool")
    assert session.send(b"a LOGIN {17}\r\n") == b"a BAD [TOOBIG] literal too large\r\n"
    assert session.send(b"a LOGIN {16}\r\n").startswith(b"+ ")


def test_login_deadline_is_not_extended_by_bytes(directory: FileDirectory, tmp_path: Path) -> None:
    """A byte every 5 s keeps no unauthenticated session past the 60 s deadline."""
    session = Session(directory, tmp_path / "Spool")
    for _ in range(11):
        session.clock.advance(5)
        session.send(b"a")
    assert not session.transport.disconnecting
    session.clock.advance(5)
    assert session.take() == b"* BYE no login in time\r\n"
    assert session.transport.disconnecting


def test_after_login_the_idle_timeout_applies(directory: FileDirectory, tmp_path: Path) -> None:
    """Logged in, the deadline is gone: 30 minutes of silence close, activity extends."""
    session = Session(directory, tmp_path / "Spool")
    session.login()
    session.clock.advance(29 * 60)
    session.send(b"n NOOP\r\n")
    session.clock.advance(29 * 60)
    assert not session.transport.disconnecting
    session.clock.advance(60)
    assert session.take() == b"* BYE autologout; idle for too long\r\n"
    assert session.transport.disconnecting


# -- after login: APPEND spooled ---------------------------------------------


def test_large_append_is_spooled_and_delivered(directory: FileDirectory, tmp_path: Path) -> None:
    """An APPEND message over the in-memory bound is written to the spool as it
    arrives, then linked into the mailbox; the spool is empty afterwards."""
    folder = tmp_path / "Spool"
    session = Session(directory, folder)
    session.login()
    body = b"Subject: big\n\n" + b"0123456789abcdef\n" * 10_000
    size = len(body)
    assert session.send(b"p APPEND INBOX (\\Flagged) {%d}\r\n" % size).startswith(b"+ ")
    for start in range(0, size, 65536):
        session.server.dataReceived(body[start : start + 65536])
        assert len(session.server.reader._literal) == 0
    assert len(spooled(folder)) == 1
    out = session.send(b"\r\n")
    assert b"p OK [APPENDUID" in out
    assert spooled(folder) == []
    info = inbox(directory).messages()[-1]
    assert inbox(directory).read(info) == body.replace(b"\n", b"\r\n")
    assert info.flags == {"\\Flagged"}


def test_append_over_the_message_limit(directory: FileDirectory, tmp_path: Path) -> None:
    """A message over max_message is refused before it is sent, and nothing is spooled."""
    folder = tmp_path / "Spool"
    session = Session(directory, folder, max_message=100_000)
    session.login()
    assert session.send(b"p APPEND INBOX {100001}\r\n") == b"p BAD [TOOBIG] literal too large\r\n"
    assert spooled(folder) == []
    assert session.send(b"p APPEND INBOX {70000}\r\n").startswith(b"+ ")


def test_other_commands_keep_literals_small(directory: FileDirectory, tmp_path: Path) -> None:
    """After login only APPEND may send a literal larger than a line."""
    session = Session(directory, tmp_path / "Spool")
    session.login()
    out = session.send(b"s SEARCH TEXT {70000}\r\n")
    assert out == b"s BAD [TOOBIG] literal too large\r\n"


def test_unfinished_append_leaves_no_spool(directory: FileDirectory, tmp_path: Path) -> None:
    """A connection lost in the middle of a literal removes its spool file."""
    folder = tmp_path / "Spool"
    session = Session(directory, folder)
    session.login()
    before = len(inbox(directory).messages())
    session.send(b"p APPEND INBOX {1000000+}\r\n" + b"x" * 300_000)
    assert len(spooled(folder)) == 1
    session.server.connectionLost(None)
    assert spooled(folder) == []
    assert len(inbox(directory).messages()) == before


def test_refused_append_drops_its_spool(directory: FileDirectory, tmp_path: Path) -> None:
    """An APPEND that fails (missing mailbox) or queues behind a lost connection leaves nothing."""
    folder = tmp_path / "Spool"
    session = Session(directory, folder)
    session.login()
    message = b"y" * 80_000
    out = session.send(b"p APPEND Missing {%d+}\r\n%s\r\n" % (len(message), message))
    assert out.startswith(b"p NO [TRYCREATE]")
    out = session.send(b"q APPEND INBOX {%d+}\r\n%s (\r\n" % (len(message), message))
    assert out.startswith(b"q BAD")
    assert spooled(folder) == []


# -- the reader alone ----------------------------------------------------------


class Sink:
    """Records what the reader spools."""

    def __init__(self, folder: Path) -> None:
        self.spool = MessageSpool(folder)
        self.chunks: list[int] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(len(data))
        self.spool.write(data)

    def finish(self) -> SpooledMessage:
        return self.spool.finish()

    def discard(self) -> None:
        self.spool.discard()


def test_reader_hands_append_messages_to_the_spool(tmp_path: Path) -> None:
    """The reader writes a large APPEND literal to its sink chunk by chunk and
    gives the spooled message as the argument; small literals stay bytes."""
    reader = CommandReader(max_literal=10, max_line=1000)
    sinks: list[Sink] = []

    def open_sink() -> Sink:
        sinks.append(Sink(tmp_path))
        return sinks[-1]

    reader.spool = open_sink
    reader.max_message = 100
    assert reader.feed(b"a APPEND {5}\r\n") == [Continue()]
    assert reader.feed(b"INBOX {50}\r\n") == [Continue()]
    assert reader.feed(b"x" * 20) == []
    events = reader.feed(b"x" * 30 + b"\r\n")
    (command,) = events
    assert isinstance(command, Command) and command.arguments[0] == b"INBOX"
    message = command.arguments[1]
    assert isinstance(message, SpooledMessage) and message.size == 52
    assert sinks[0].chunks == [20, 30] and len(reader._literal) == 0
    assert reader.feed(b"b APPEND INBOX {101}\r\n") == [
        BadCommand("b", "[TOOBIG] literal too large")
    ]
    assert reader.feed(b"c NOOP {11}\r\n") == [BadCommand("c", "[TOOBIG] literal too large")]
    message.discard()


def test_reader_discards_the_spool_of_a_bad_command(tmp_path: Path) -> None:
    """A spooled command that does not parse, or is cut off, leaves no file."""
    reader = CommandReader(max_literal=10, max_line=1000)
    reader.spool = lambda: MessageSpool(tmp_path)
    reader.max_message = 100
    events = reader.feed(b"a APPEND INBOX {20+}\r\n" + b"z" * 20 + b" (\r\n")
    assert events == [BadCommand("a", "unbalanced parenthesis")]
    reader.feed(b"b APPEND INBOX {20+}\r\n" + b"z" * 5)
    assert len(list(tmp_path.iterdir())) == 1
    reader.close()
    assert list(tmp_path.iterdir()) == []
    assert reader.feed(b"c NOOP\r\n") == []


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.sampled_from(
            [b"a APPEND INBOX {12}\r\n", b"{12+}\r\n", b"x" * 12, b"(", b"\r\n", b"b NOOP", b"{0}"]
        )
        | st.binary(max_size=30),
        max_size=12,
    )
)
def test_reader_with_a_spool_never_raises_nor_leaks(tmp_path: Path, pieces: list[bytes]) -> None:
    """Whatever arrives, the spooling reader raises nothing and, once closed,
    has left no spool file behind except those handed out in commands."""
    folder = tmp_path / f"fuzz{len(list(tmp_path.iterdir()))}"
    reader = CommandReader(max_literal=8, max_line=64)
    reader.spool = lambda: MessageSpool(folder)
    reader.max_message = 40
    handed: list[SpooledMessage] = []
    for piece in pieces:
        for event in reader.feed(piece):
            if isinstance(event, Command):
                handed.extend(spooled_in(event.arguments))
    reader.close()
    for message in handed:
        message.discard()
    assert not folder.exists() or list(folder.iterdir()) == []
