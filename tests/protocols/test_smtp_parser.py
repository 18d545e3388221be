"""The sans-IO SMTP pieces: commands, paths, dot-unstuffing, replies, the
state table, the header fields and the DSN text."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from communigate.protocols.smtp import bounce, headers
from communigate.protocols.smtp.parser import (
    Session,
    SMTPSyntaxError,
    State,
    parse_command,
    parse_path,
    refusal,
    reply,
    unstuff,
)
from communigate.store.files import FileDirectory


def test_parse_command() -> None:
    """The verb is upper-cased and the argument kept; a non-word verb is refused."""
    command = parse_command(b"mail FROM:<a@b>")
    assert (command.verb, command.argument) == ("MAIL", b"FROM:<a@b>")
    with pytest.raises(SMTPSyntaxError):
        parse_command(b"\x00\x01")


def test_parse_path() -> None:
    """Addresses in brackets with parameters; <> only for MAIL; a space after the colon."""
    path = parse_path(b"FROM: <a@b.c> SIZE=10 BODY=8BITMIME SMTPUTF8", b"FROM:", True)
    assert path.address == "a@b.c"
    assert path.parameters == {"SIZE": "10", "BODY": "8BITMIME", "SMTPUTF8": None}
    assert parse_path(b"FROM:<>", b"FROM:", True).address == ""
    assert parse_path(b"TO:<@relay:x@y.z>", b"TO:", False).address == "x@y.z"
    assert parse_path("TO:<jörg@bücher.de>".encode(), b"TO:", False).address == "jörg@bücher.de"
    for bad in (b"TO:<>", b"TO:x@y", b"TO:<x y@z>", b"TO:<nodomain>", b"FROM:<a@b>"):
        with pytest.raises(SMTPSyntaxError):
            parse_path(bad, b"TO:", False)


def test_unstuff_and_reply() -> None:
    """A lone dot ends the text; a leading dot is removed; multi-line replies."""
    assert unstuff(b".") is None
    assert unstuff(b"..x") == b".x"
    assert unstuff(b"x.") == b"x."
    assert reply(250, "a", "b") == b"250-a\r\n250 b\r\n"
    assert reply(221, "bye") == b"221 bye\r\n"


def test_state_table() -> None:
    """Commands follow EHLO → MAIL → RCPT → DATA; others are 503."""
    session = Session()
    assert not session.allows("MAIL")
    assert refusal(session, "MAIL").startswith(b"503 5.5.1 send EHLO")
    assert refusal(session, "XYZZY").startswith(b"500")
    session.advance("EHLO")
    assert session.allows("MAIL") and not session.allows("RCPT")
    session.advance("MAIL")
    assert session.allows("RCPT") and not session.allows("DATA")
    session.advance("RCPT")
    session.advance("DATA")
    assert session.state is State.DATA and not session.allows("NOOP")
    session.advance(".")
    assert session.state is State.READY
    session.restart()
    assert session.state is State.CONNECTED


def test_header_completer() -> None:
    """Message-ID and Date are added at the end of the header block only if missing."""
    completer = headers.HeaderCompleter(lambda: "<id@x>", lambda: "DATE")
    out = b"".join(completer.line(line) for line in (b"Subject: a", b" folded", b"", b"Date: no"))
    assert out == b"Subject: a\r\n folded\r\nMessage-ID: <id@x>\r\nDate: DATE\r\n\r\nDate: no\r\n"
    given = headers.HeaderCompleter(lambda: "<id@x>", lambda: "DATE")
    text = b"".join(given.line(line) for line in (b"date: d", b"message-id: <m>", b""))
    assert text + given.missing() == b"date: d\r\nmessage-id: <m>\r\n\r\n"


def test_received_field() -> None:
    """Received names the client, the account, TLS and the recipient."""
    field = headers.received("c.example", "127.0.0.1", "mx", "a@b", True, "s1", "r@x", "DATE")
    assert field == (
        b"Received: from c.example ([127.0.0.1])\r\n\tby mx (communigate) with ESMTPSA (TLS)"
        b" id s1\r\n\t(authenticated as a@b)\r\n\tfor <r@x>; DATE\r\n"
    )


def test_delivery_status() -> None:
    """The DSN is multipart/report with a delivery-status block per recipient."""
    failed = [bounce.FailedRecipient("x@far", "5.1.1", "550 5.1.1 no such user")]
    dsn = bounce.delivery_status(
        "mx", "a@b", failed, b"Subject: s\r\n\r\nbody", "DATE", "<m@mx>", "BND", "ARR"
    )
    assert b"Content-Type: multipart/report; report-type=delivery-status;" in dsn
    assert b"Final-Recipient: rfc822; x@far\r\nAction: failed\r\nStatus: 5.1.1\r\n" in dsn
    assert b"Content-Type: text/rfc822-headers\r\n\r\nSubject: s\r\n\r\n--BND--" in dsn
    assert b"body" not in dsn
    assert bounce.status_of("550 5.1.1 nope") == "5.1.1"
    assert bounce.status_of("554 transaction failed") == "5.0.0"


SMTP_WORDS = st.sampled_from(
    [
        b"EHLO x",
        b"AUTH PLAIN " + base64.b64encode(b"\0info\0pw-company.com"),
        b"AUTH LOGIN",
        b"MAIL FROM:<",
        b"MAIL FROM:<info@company.com>",
        b"RCPT TO:<",
        b"RCPT TO:<info@company.com>",
        b" SIZE=",
        b"DATA",
        b"STARTTLS",
        b"RSET",
        b".",
        b"*",
        b"=",
        b"\r\n",
        b"\n",
        b"\xff",
        b"\x00",
        b" ",
    ]
)
SMTP_STREAMS = st.one_of(
    st.binary(max_size=512),
    st.lists(st.one_of(SMTP_WORDS, st.binary(max_size=16)), max_size=40).map(b"".join),
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(SMTP_STREAMS)
def test_parser_never_raises_anything_else(data: bytes) -> None:
    """Arbitrary lines give commands and paths or SMTPSyntaxError, nothing else."""
    for line in data.split(b"\n"):
        try:
            command = parse_command(line)
            parse_path(command.argument, b"FROM:", True)
        except SMTPSyntaxError:
            pass


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(SMTP_STREAMS)
def test_server_survives_arbitrary_bytes(directory: FileDirectory, data: bytes) -> None:
    """The submission server answers arbitrary bytes without raising."""
    from tests.protocols.test_smtp_server import Session as SMTPSession

    session = SMTPSession(directory)
    session.take()
    session.send(data)
    session.send(b"\r\n.\r\nQUIT\r\n")
