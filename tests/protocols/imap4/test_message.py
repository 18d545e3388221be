"""MIME parts, sections, ENVELOPE and BODYSTRUCTURE."""

from __future__ import annotations

from communigate.protocols.imap4.fetch import Attribute, section_bytes
from communigate.protocols.imap4.message import Part, body_structure, envelope
from communigate.protocols.imap4.syntax import format_data

MESSAGE = (
    b'From: Joe <joe@x.org>\r\nTo: a@b.c, "B" <b@c.d>\r\nSubject: hi\r\n'
    b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\npreamble\r\n'
    b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\nworld\r\n"
    b"--XX\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; "
    b'filename="m.eml"\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--XX--\r\nepilogue\r\n'
)


def test_multipart_bodystructure() -> None:
    """Multipart with a text part and an attached message."""
    structure = format_data(body_structure(Part.parse(MESSAGE)))
    assert structure == (
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 12 2 NIL NIL NIL NIL)'
        b' ("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 28 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL'
        b' NIL) ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL)'
        b' 3 NIL ("ATTACHMENT" ("FILENAME" "m.eml")) NIL NIL) "MIXED" ("BOUNDARY" "XX")'
        b" NIL NIL NIL)"
    )
    assert b'"MIXED")' in format_data(body_structure(Part.parse(MESSAGE), extensible=False))


def test_sections() -> None:
    """Part numbers, MIME headers and an attached message's own sections."""
    part = Part.parse(MESSAGE)

    def section(path: tuple[int, ...], text: str = "") -> bytes | None:
        return section_bytes(part, Attribute("BODY[]", path, text))

    assert section((1,)) == b"hello\r\nworld"
    assert section((1,), "MIME") == b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    assert section((2,), "HEADER") == b"Subject: inner\r\n\r\n"
    assert section((2, 1)) == b"inner body"
    assert section((3,)) is None
    assert section((), "HEADER").startswith(b"From: Joe")  # type: ignore[union-attr]


def test_envelope_addresses() -> None:
    """ENVELOPE splits addresses; Sender and Reply-To default to From."""
    data = format_data(envelope(Part.parse(MESSAGE)))
    assert data == (
        b'(NIL "hi" (("Joe" NIL "joe" "x.org")) (("Joe" NIL "joe" "x.org")) '
        b'(("Joe" NIL "joe" "x.org")) ((NIL NIL "a" "b.c") ("B" NIL "b" "c.d")) NIL NIL NIL NIL)'
    )
