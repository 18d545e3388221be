"""The IMAP server through StringTransport: one test per known defect of
Twisted's IMAP server, and the session rules."""

from __future__ import annotations

import base64

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from communigate.protocols.imap4.server import IMAP4Factory, IMAP4Server
from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox
from tests.conftest import Exchange, login_service


class TLSRecordingTransport(StringTransport):
    """Records a STARTTLS switch."""

    tls_started = False

    def startTLS(self, context: object) -> None:
        self.tls_started = True


class Session(Exchange):
    """An IMAP server on a StringTransport."""

    def __init__(self, directory: FileDirectory, tls: object = None, max_message: int = 10**6):
        service = login_service(directory)
        self.clock = Clock()
        factory = IMAP4Factory(service, self.clock, tls=tls, max_message=max_message)
        self.server = factory.buildProtocol(IPv4Address("TCP", "127.0.0.9", 4000))
        assert isinstance(self.server, IMAP4Server)
        self.transport = TLSRecordingTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 143),
            peerAddress=IPv4Address("TCP", "127.0.0.9", 4000),
        )
        self.server.makeConnection(self.transport)
        self.take()


@pytest.fixture
def session(directory: FileDirectory) -> Session:
    inbox = Mailbox.of_account(directory.account_path("company.com", "info"))
    inbox.deliver(
        b"From: Ann <ann@example.org>\r\nTo: Bob <bob@example.net>\r\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= report\r\nDate: Tue, 1 Feb 2022 10:00:00 +0000\r\n"
        b"X-Tag: alpha\r\n\r\n0123456789\r\n"
    )
    return Session(directory)


def login(session: Session) -> None:
    assert b"a OK" in session.send(b"a LOGIN info pw-company.com\r\n")


def test_login_with_quote_and_backslash(directory: FileDirectory) -> None:
    """LOGIN with " and \\ in a quoted password works."""
    directory.update_account_settings("company.com", "info", {"Password": 'p"w\\d'})
    session = Session(directory)
    assert b"a OK" in session.send(b'a LOGIN info "p\\"w\\\\d"\r\n')


def test_search_by_header_and_dates(session: Session) -> None:
    """SEARCH by SUBJECT (encoded words), FROM, TO, HEADER and dates works."""
    login(session)
    session.send(b"s SELECT INBOX\r\n")
    for query, expected in [
        (b"SUBJECT gr\xc3\xbc\xc3\x9fe", b"* SEARCH 1"),
        (b"FROM ann", b"* SEARCH 1"),
        (b"TO bob@example.net", b"* SEARCH 1"),
        (b"HEADER X-Tag alpha", b"* SEARCH 1"),
        (b"SENTON 1-Feb-2022", b"* SEARCH 1"),
        (b"SENTBEFORE 1-Feb-2022", b"* SEARCH"),
        (b"SINCE 1-Jan-2000 NOT DELETED", b"* SEARCH 1"),
        (b"OR FROM nobody TO nobody", b"* SEARCH"),
        (b"BODY 456", b"* SEARCH 1"),
        (b"LARGER 10000", b"* SEARCH"),
    ]:
        literal = b"{%d}\r\n%s" % (len(query.split(b" ", 1)[1]), query.split(b" ", 1)[1])
        if b"\xc3" in query:
            command = b"t SEARCH CHARSET UTF-8 SUBJECT " + literal + b"\r\n"
        else:
            command = b"t SEARCH " + query + b"\r\n"
        lines = [line for line in session.send(command).split(b"\r\n") if line[:1] == b"*"]
        assert lines == [expected], (query, lines)


def test_partial_fetch_is_exact(session: Session) -> None:
    """BODY[]<n.m> returns exactly m bytes from n."""
    login(session)
    session.send(b"s SELECT INBOX\r\n")
    out = session.send(b"f FETCH 1 (BODY.PEEK[TEXT]<2.5>)\r\n")
    assert b"BODY[TEXT]<2> {5}\r\n23456)" in out


def test_append_to_missing_mailbox_says_trycreate(session: Session) -> None:
    """APPEND to a missing mailbox answers NO [TRYCREATE], not BAD."""
    login(session)
    assert session.send(b"p APPEND Missing {1+}\r\nx\r\n") == (
        b"p NO [TRYCREATE] no mailbox Missing\r\n"
    )


def test_append_has_a_size_limit(directory: FileDirectory) -> None:
    """A literal over the limit is refused before it is sent."""
    session = Session(directory, max_message=100)
    login(session)
    out = session.send(b"p APPEND INBOX {101}\r\n")
    assert out == b"p BAD [TOOBIG] literal too large\r\n"
    assert b"q OK" in session.send(b"q NOOP\r\n")


def test_long_sasl_challenges_stay_on_one_line(directory: FileDirectory) -> None:
    """A challenge longer than 76 base64 characters is not wrapped."""
    session = Session(directory)
    out = session.send(b"a AUTHENTICATE DIGEST-MD5\r\n")
    assert out.startswith(b"+ ") and out.count(b"\r\n") == 1
    assert len(out) > 80
    assert b"realm=" in base64.b64decode(out[2:-2])


def test_starttls_drops_pipelined_commands(directory: FileDirectory) -> None:
    """Commands pipelined after STARTTLS in clear text are not run in TLS."""
    session = Session(directory, tls=object())
    out = session.send(b"a STARTTLS\r\nb LOGIN info pw-company.com\r\n")
    assert out == b"a OK begin TLS negotiation now\r\n"
    assert session.transport.tls_started
    assert session.server.state.value == "not authenticated"


def test_sasl_hook_sees_the_connection(directory: FileDirectory) -> None:
    """AUTHENTICATE goes through the portal with the connection (its domain
    decides the bare name) and accepts an initial response (SASL-IR)."""
    session = Session(directory)
    response = base64.b64encode(b"\0info\0pw-company.com")
    assert b"a OK" in session.send(b"a AUTHENTICATE PLAIN " + response + b"\r\n")


def test_states_and_errors(session: Session) -> None:
    """Commands out of state get BAD; many errors end the session."""
    assert session.send(b"a SELECT INBOX\r\n").startswith(b"a BAD SELECT is not allowed")
    assert session.send(b"b FETCH 1 FLAGS\r\n").startswith(b"b BAD")
    out = session.send(b"c XYZZY\r\n" * 40)
    assert b"* BYE too many errors" in out and session.transport.disconnecting


def test_flags_and_recent(session: Session) -> None:
    """The first SELECT sees the message as \\Recent; STORE reports flags."""
    login(session)
    out = session.send(b"s SELECT INBOX\r\n")
    assert b"* 1 EXISTS" in out and b"* 1 RECENT" in out
    out = session.send(b"t STORE 1 +FLAGS (\\Flagged $Work)\r\n")
    assert b"* 1 FETCH (FLAGS ($Work \\Flagged \\Recent))" in out
    out = session.send(b"u FETCH 1 (FLAGS BODY[HEADER.FIELDS (SUBJECT)])\r\n")
    assert b"\\Seen" in out and b"Subject:" in out


def test_sessions_see_each_other(session: Session, directory: FileDirectory) -> None:
    """Another session's flag change, new message and expunge are reported
    on NOOP."""
    login(session)
    session.send(b"s SELECT INBOX\r\n")
    other = Session(directory)
    login(other)
    other.send(b"s SELECT INBOX\r\n")
    session.send(b"t STORE 1 +FLAGS (\\Deleted)\r\n")
    assert b"* 1 FETCH (UID 1 FLAGS (\\Deleted))" in other.send(b"n NOOP\r\n")
    Mailbox.of_account(directory.account_path("company.com", "info")).deliver(b"Subject: 2\r\n\r\n")
    out = other.send(b"n NOOP\r\n")
    assert b"* 2 EXISTS" in out
    session.send(b"e EXPUNGE\r\n")
    assert b"* 1 EXPUNGE" in other.send(b"n NOOP\r\n")
    assert b"* SEARCH 1" in other.send(b"x SEARCH ALL\r\n")
