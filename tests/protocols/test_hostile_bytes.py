"""Arbitrary bytes never raise out of a reader or a line protocol.

Property tests (hypothesis) over every sans-IO reader not covered next to
its own tests — the POP3 parser, the IMAP command reader, the shared line
splitter — and over the LMTP and PWD servers as a whole (they parse inside
the protocol), driven through StringTransport.  A few hundred examples
here; ``benchmarks/parsers.py`` runs 10⁵ per reader.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from communigate.protocols.imap4.reader import CommandReader
from communigate.protocols.lines import LineSplitter
from communigate.protocols.lmtp.server import LMTPFactory
from communigate.protocols.pop3 import parser as pop3
from communigate.store.files import FileDirectory
from tests.protocols.test_pwd import Session

EXAMPLES = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
#: Inputs: raw bytes, and lines built from protocol words and junk.
WORDS = st.sampled_from(
    [
        b"USER",
        b"PASS",
        b"LHLO",
        b"MAIL FROM:<",
        b"RCPT TO:<",
        b"DATA",
        b".",
        b"NEWPASS",
        b"{5}",
        b"{99999999}",
        b"\r\n",
        b"\n",
        b"\xff",
        b"\x00",
        b"a LOGIN",
        b"APPEND",
        b" ",
    ]
)
STREAMS = st.one_of(
    st.binary(max_size=512),
    st.lists(st.one_of(WORDS, st.binary(max_size=16)), max_size=40).map(b"".join),
)


@EXAMPLES
@given(st.binary(max_size=300))
def test_pop3_parser(line: bytes) -> None:
    """The POP3 parser gives a command or its own CommandError."""
    for state in pop3.State:
        try:
            pop3.parse(line, state)
        except pop3.CommandError:
            pass


@EXAMPLES
@given(STREAMS, st.integers(min_value=1, max_value=17))
def test_imap_reader(data: bytes, step: int) -> None:
    """The IMAP reader turns any stream, in any pieces, into events."""
    reader = CommandReader(max_literal=4096, max_line=256)
    for start in range(0, len(data), step):
        reader.feed(data[start : start + step])


@EXAMPLES
@given(STREAMS, st.integers(min_value=1, max_value=17))
def test_line_splitter_bounds(data: bytes, step: int) -> None:
    """Lines never exceed the bound, whatever arrives."""
    splitter = LineSplitter(32)
    for start in range(0, len(data), step):
        for event in splitter.feed(data[start : start + step]):
            assert not isinstance(event, bytes) or len(event) <= 33


@EXAMPLES
@given(STREAMS)
def test_lmtp_server(directory: FileDirectory, tmp_path: Path, data: bytes) -> None:
    """The LMTP server answers anything with replies, never an exception."""
    factory = LMTPFactory(directory, Clock(), "mx.test", 100_000, spool=tmp_path / "Spool")
    server = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 24))
    transport = StringTransport()
    server.makeConnection(transport)
    server.dataReceived(data)
    server.connectionLost(None)
    assert b"Traceback" not in transport.value()


@EXAMPLES
@given(STREAMS)
def test_pwd_server(directory: FileDirectory, data: bytes) -> None:
    """The PWD server answers anything with replies, never an exception."""
    session = Session(directory)
    session.send(data)
    session.server.connectionLost(None)
