"""MIT Kerberos keytab files (format version 0x0502), parsed and written.

Sans-IO: :func:`parse` takes the bytes of a file, :func:`format_keytab`
gives the bytes to write.  The layout is MIT's (``keytab.txt`` of the krb5
sources): two bytes ``05 02``, then entries, each preceded by a signed
32-bit big-endian size (a negative size is a hole left by a deleted
entry, skipped).  An entry is::

    uint16 number of components (the realm not counted)
    counted string realm
    counted string component ...
    uint32 name type
    uint32 timestamp (seconds since 1970)
    uint8  key version number (low 8 bits)
    uint16 encryption type, counted string key contents
    [uint32 key version number, if at least 4 bytes remain]

Counted strings are a uint16 length and the bytes.  Anything after the
32-bit key version (extensions of newer writers) is ignored.  A key's
``repr`` never shows the key.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

VERSION = b"\x05\x02"
#: KRB5_NT_PRINCIPAL: the name type of ordinary principals (RFC 4120 §6.2).
NT_PRINCIPAL = 1
#: KRB5_NT_SRV_HST: a service with a host name, ``imap/host``.
NT_SRV_HST = 3

#: Encryption type numbers (RFC 3961 §8, RFC 3962, RFC 4757, RFC 8009, RFC 6803).
ENCTYPES = {
    1: "des-cbc-crc",
    3: "des-cbc-md5",
    16: "des3-cbc-sha1",
    17: "aes128-cts-hmac-sha1-96",
    18: "aes256-cts-hmac-sha1-96",
    19: "aes128-cts-hmac-sha256-128",
    20: "aes256-cts-hmac-sha384-192",
    23: "arcfour-hmac",
    24: "arcfour-hmac-exp",
    25: "camellia128-cts-cmac",
    26: "camellia256-cts-cmac",
}


class KeytabError(ValueError):
    """Bytes that are not a keytab of format 0x0502."""


def enctype_name(number: int) -> str:
    """The name of an encryption type, or its number for unknown ones."""
    return ENCTYPES.get(number, f"enctype-{number}")


@dataclass(frozen=True)
class KeytabEntry:
    """One key of one principal."""

    realm: str
    components: tuple[str, ...]
    name_type: int
    timestamp: int
    kvno: int
    enctype: int
    key: bytes = field(repr=False)

    @property
    def principal(self) -> str:
        """``comp1/comp2@REALM``."""
        return f"{'/'.join(self.components)}@{self.realm}"

    @property
    def identity(self) -> tuple[str, tuple[str, ...], int, int]:
        """What makes two entries the same key: principal, kvno, enctype."""
        return (self.realm, self.components, self.kvno, self.enctype)

    def __repr__(self) -> str:
        return f"<KeytabEntry {self.principal} kvno {self.kvno} {enctype_name(self.enctype)}>"


class _Reader:
    """Big-endian fields from a byte string, with bounds checks."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def remaining(self) -> int:
        return len(self.data) - self.offset

    def take(self, size: int) -> bytes:
        if size < 0 or self.remaining() < size:
            raise KeytabError("truncated keytab entry")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
        return int(value)

    def counted(self) -> bytes:
        return self.take(self.unpack(">H"))


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeytabError("a principal name is not UTF-8") from None


def _parse_entry(data: bytes) -> KeytabEntry:
    reader = _Reader(data)
    count = reader.unpack(">H")
    if count == 0:
        raise KeytabError("a keytab entry has a principal without components")
    realm = _text(reader.counted())
    components = tuple(_text(reader.counted()) for _ in range(count))
    name_type = reader.unpack(">I")
    timestamp = reader.unpack(">I")
    kvno = reader.unpack(">B")
    enctype = reader.unpack(">H")
    key = reader.counted()
    if not key:
        raise KeytabError("a keytab entry has an empty key")
    if reader.remaining() >= 4:
        long_kvno = reader.unpack(">I")
        if long_kvno:
            kvno = long_kvno
    if not realm:
        raise KeytabError("a keytab entry has no realm")
    return KeytabEntry(realm, components, name_type, timestamp, kvno, enctype, key)


def parse(data: bytes) -> list[KeytabEntry]:
    """The entries of a keytab file, in file order; :class:`KeytabError`
    for anything else (another format version, a truncated entry)."""
    if len(data) < 2:
        raise KeytabError("not a keytab file (too short)")
    if data[:2] != VERSION:
        if data[:1] == b"\x05":
            raise KeytabError(f"keytab format 0x{data[:2].hex()} is not supported (only 0x0502)")
        raise KeytabError("not a keytab file")
    entries = []
    reader = _Reader(data)
    reader.offset = 2
    while reader.remaining() > 0:
        if reader.remaining() < 4:
            raise KeytabError("truncated keytab (a partial entry size)")
        size = reader.unpack(">i")
        if size < 0:
            reader.take(-size)
            continue
        if size == 0:
            # MIT stops at a zero size: the rest of the file is unused.
            break
        entries.append(_parse_entry(reader.take(size)))
    return entries


def _counted(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise KeytabError("a keytab field is longer than 65535 bytes")
    return struct.pack(">H", len(data)) + data


def format_entry(entry: KeytabEntry) -> bytes:
    """One entry with its size prefix."""
    body = b"".join(
        [
            struct.pack(">H", len(entry.components)),
            _counted(entry.realm.encode("utf-8")),
            *(_counted(part.encode("utf-8")) for part in entry.components),
            struct.pack(">IIB", entry.name_type, entry.timestamp & 0xFFFFFFFF, entry.kvno & 0xFF),
            struct.pack(">H", entry.enctype),
            _counted(entry.key),
            struct.pack(">I", entry.kvno & 0xFFFFFFFF),
        ]
    )
    return struct.pack(">i", len(body)) + body


def format_keytab(entries: Iterable[KeytabEntry]) -> bytes:
    """The bytes of a keytab file holding ``entries``."""
    return VERSION + b"".join(format_entry(entry) for entry in entries)


def merge(existing: Sequence[KeytabEntry], new: Sequence[KeytabEntry]) -> list[KeytabEntry]:
    """``existing`` with ``new`` added: an entry of the same principal,
    kvno and enctype is replaced; other kvnos stay (tickets issued before
    a rekey still decrypt with the old key)."""
    replaced = {entry.identity for entry in new}
    kept = [entry for entry in existing if entry.identity not in replaced]
    unique: dict[tuple[str, tuple[str, ...], int, int], KeytabEntry] = {}
    for entry in new:
        unique[entry.identity] = entry
    return kept + list(unique.values())


def matches(entry: KeytabEntry, principal: str) -> bool:
    """Whether ``principal`` (``a/b@REALM``, or ``a/b`` for any realm)
    names the entry's principal."""
    name, at, realm = principal.rpartition("@")
    if not at:
        return "/".join(entry.components) == principal
    return "/".join(entry.components) == name and entry.realm == realm


def remove(
    entries: Sequence[KeytabEntry], principal: str, kvno: int | None = None
) -> list[KeytabEntry]:
    """``entries`` without those of ``principal`` (of one ``kvno`` if given)."""
    return [
        entry
        for entry in entries
        if not (matches(entry, principal) and (kvno is None or entry.kvno == kvno))
    ]
