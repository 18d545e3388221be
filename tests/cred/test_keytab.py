"""The keytab parser and writer (MIT format 0x0502), sans-IO."""

from __future__ import annotations

import struct

import pytest

from communigate.cred.kerberos import keytab
from communigate.cred.kerberos.keytab import KeytabEntry, KeytabError

#: Written by MIT ``kadmin.local ktadd`` for imap/client1.com (a throwaway test realm).
MIT_KEYTAB = bytes.fromhex(
    "05020000005a00020012544553543345434433452e4558414d504c450004696d6170000b636c69656e74312e"
    "636f6d000000016b0d74ad02001200202b607e4760cde88a12dfe6668dd8cf254a2053c688a50c1272b11ff0"
    "789573c1000000020000004a00020012544553543345434433452e4558414d504c450004696d6170000b636c"
    "69656e74312e636f6d000000016b0d74ad0200110010af5963e277b64dbf9e9d6197a3b7d8fa00000002"
)
REALM = "TEST3ECD3E.EXAMPLE"


def entry(kvno: int = 2, enctype: int = 18, name: str = "imap/client1.com") -> KeytabEntry:
    """A key of ``name`` in REALM."""
    return KeytabEntry(REALM, tuple(name.split("/")), 3, 1700000000, kvno, enctype, b"k" * 32)


def test_parses_mit_keytab() -> None:
    """Both keys of a kadmin keytab are read with principal, kvno and enctype."""
    entries = keytab.parse(MIT_KEYTAB)
    assert [(e.principal, e.kvno, keytab.enctype_name(e.enctype)) for e in entries] == [
        (f"imap/client1.com@{REALM}", 2, "aes256-cts-hmac-sha1-96"),
        (f"imap/client1.com@{REALM}", 2, "aes128-cts-hmac-sha1-96"),
    ]
    assert [len(e.key) for e in entries] == [32, 16]
    assert entries[0].name_type == keytab.NT_PRINCIPAL


def test_writes_what_mit_wrote() -> None:
    """Formatting the parsed entries gives MIT's bytes back."""
    assert keytab.format_keytab(keytab.parse(MIT_KEYTAB)) == MIT_KEYTAB


def test_long_kvno_round_trip() -> None:
    """A kvno above 255 survives through the 32-bit field."""
    data = keytab.format_keytab([entry(kvno=300)])
    assert keytab.parse(data)[0].kvno == 300


def test_holes_are_skipped() -> None:
    """A negative size marks a deleted entry, which is skipped."""
    data = keytab.VERSION + struct.pack(">i", -6) + b"\0" * 6 + keytab.format_entry(entry())
    assert keytab.parse(data) == [entry()]


def test_repr_hides_key() -> None:
    """An entry's repr never shows the key."""
    text = repr(entry())
    assert "kkkk" not in text and "imap/client1.com" in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"\x05\x01\x00\x00", "0x0501"),
        (b"hello world", "not a keytab"),
        (MIT_KEYTAB[:-10], "truncated"),
        (MIT_KEYTAB[:3], "truncated"),
        (keytab.VERSION + struct.pack(">i", 4) + b"\0\0\0\0", "without components"),
    ],
)
def test_bad_files(data: bytes, message: str) -> None:
    """Anything but a well-formed 0x0502 keytab raises KeytabError."""
    with pytest.raises(KeytabError, match=message):
        keytab.parse(data)


def test_merge_replaces_same_key_keeps_other_versions() -> None:
    """Import replaces principal+kvno+enctype and keeps older kvnos."""
    old = [entry(kvno=2), entry(kvno=2, enctype=17)]
    newer = KeytabEntry(REALM, ("imap", "client1.com"), 3, 1800000000, 2, 18, b"n" * 32)
    merged = keytab.merge(old, [newer, entry(kvno=3)])
    assert merged == [entry(kvno=2, enctype=17), newer, entry(kvno=3)]


def test_remove_by_principal_and_kvno() -> None:
    """Delete takes a principal with or without realm, and optionally a kvno."""
    entries = [entry(kvno=2), entry(kvno=3), entry(name="company.com")]
    assert keytab.remove(entries, "imap/client1.com", 2) == entries[1:]
    assert keytab.remove(entries, f"imap/client1.com@{REALM}") == entries[2:]
    assert keytab.remove(entries, "imap/client1.com@OTHER") == entries
