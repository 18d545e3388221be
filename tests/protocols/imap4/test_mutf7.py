"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from communigate.protocols.imap4 import mutf7
from communigate.store.mailstore import MailboxError


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("INBOX", "INBOX"),
        ("Entw&APw-rfe", "Entwürfe"),
        ("&ZeVnLIqe-", "日本語"),
        ("A&-B", "A&B"),
        ("~peter/&U,BTFw-", "~peter/台北"),
    ],
)
def test_round_trip(name: str, text: str) -> None:
    """RFC 3501's examples decode to the text and encode back unchanged."""
    assert mutf7.decode(name) == text
    assert mutf7.encode(text) == name
    assert mutf7.mailbox_name(name.encode("ascii")) == name


@pytest.mark.parametrize(
    "raw",
    [b"&AAA", b"\xff\xfe", b"&Jjo", b"&AGE-", b"&Jjo-&Jjo-", b"a\x00b", b"&,,,-"],
)
def test_invalid_names_refused(raw: bytes) -> None:
    """Unterminated shifts, 8-bit bytes, encoded ASCII, split shifts and bad
    base64 are refused with a MailboxError (a clear NO)."""
    with pytest.raises(MailboxError):
        mutf7.mailbox_name(raw)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.text())
def test_any_text_encodes_to_a_valid_name(text: str) -> None:
    """Whatever Unicode a user types encodes to a name the check accepts."""
    if any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        return
    name = mutf7.encode(text)
    assert mutf7.mailbox_name(name.encode("ascii")) == name
    assert mutf7.decode(name) == text


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_anything_else(raw: bytes) -> None:
    """Any bytes give a name or a MailboxError, nothing else."""
    try:
        mutf7.mailbox_name(raw)
    except MailboxError:
        pass
