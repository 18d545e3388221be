"""What FETCH and SEARCH need of each message, kept beside the mailbox.

Like Dovecot's ``dovecot.index.cache``: a file ``cache.index`` in the
mailbox folder holds, per UID, named values that are costly to work out
from the message file (its header, the IMAP ENVELOPE and BODYSTRUCTURE,
its internal date).  Messages never change once delivered and a UID is
never given twice within one UIDVALIDITY, so an entry never goes stale: it
is filled at delivery or APPEND (the header and the date) or on first use
(what a protocol derives from the message), and removed when the message
is expunged.  The store does not know what the values mean; names are
chosen by their users (``imap.envelope``, ``imap.bodystructure``).

The file is append-only: a first line ``CGCACHE1 <uidvalidity> <tag>``
(the tag is random, new for each file), then records ``<uid> <name>
<length> <crc32>`` + LF, the value's bytes and an LF.  A record named
``-`` says the UID was expunged.  Several processes append
with ``O_APPEND`` (one ``write`` per batch); a reader reads what others
appended since its last look (the file grew) and starts again when the
file was replaced (another inode, or another tag when a mailbox is
opened).  Each record carries the CRC-32 of its value; a torn or damaged
record (a crash while appending) ends what is read and the file is
rewritten from what was read, as it is when expunged entries outnumber
the live ones.  Losing the file loses nothing but time:
every value can be worked out again.

Writes are not flushed to disk: a cache need not survive a crash.  Values
worked out while serving commands are appended together (one ``write`` at
each :meth:`MessageCache.flush` — the IMAP server calls it half a second
after a command worked some out — or when :data:`PENDING_RECORDS` wait),
not one append per value.  Records a process appended itself, when nothing
came between, are not read back.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from communigate.store.atomic import read_range

CACHE_FILE = "cache.index"
_MAGIC = b"CGCACHE1"
_TOMBSTONE = "-"
#: Mailboxes whose cache one process keeps in memory at most.
MAX_OPEN = 256
#: The file is rewritten once this many expunged records are in it and
#: they outnumber the live entries.
_COMPACT_MIN_DEAD = 256
_HEADER_CHUNK = 16384
#: The longest header kept (a longer one is read from the file each time).
MAX_HEADER = 256 * 1024
#: Values added that wait at most for one append (see :meth:`MessageCache.flush`).
PENDING_RECORDS = 128


def read_header(path: str | Path) -> bytes:
    """A message's header with its blank line, read from the start of its
    file, split as :func:`split_header` splits the whole message."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = b""
        while True:
            chunk = os.read(fd, _HEADER_CHUNK)
            data += chunk
            if not chunk or b"\r\n\r\n" in data or data.startswith(b"\r\n"):
                break
            if len(data) > MAX_HEADER:
                # No end in sight: the whole file is the header.
                rest = [data]
                while chunk:
                    chunk = os.read(fd, 1024 * 1024)
                    rest.append(chunk)
                data = b"".join(rest)
                break
    finally:
        os.close(fd)
    return split_header(data)


def split_header(data: bytes) -> bytes:
    """The header (with its blank line) of a whole message or of its start;
    the whole data when it has no blank line (RFC 5322 §2.1)."""
    if data.startswith(b"\r\n"):
        return b"\r\n"
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 4]


def encode_records(records: Iterable[tuple[int, str, bytes]]) -> bytes:
    """Records in the file's format, ready for one append."""
    out = []
    for uid, name, value in records:
        out.append(b"%d %s %d %d\n" % (uid, name.encode("ascii"), len(value), zlib.crc32(value)))
        out.append(value)
        out.append(b"\n")
    return b"".join(out)


def append_records(
    folder: Path,
    validity: int,
    records: Iterable[tuple[int, str, bytes]],
    first: bytes = b"",
) -> tuple[int, int] | None:
    """Append records to a mailbox's cache file, creating it when missing;
    where in the file they went (start and end offsets), None when nothing
    was written.

    Safe from any thread and process: one ``write`` with ``O_APPEND``.
    Records are dropped, not written, when the file there was made for
    another UIDVALIDITY, or is not the file whose first line is ``first``
    (when given): the mailbox was deleted and made again meanwhile, and the
    values belong to messages it no longer has.
    """
    data = encode_records(records)
    if not data:
        return None
    path = os.path.join(folder, CACHE_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        if first:
            return None
        _create(path, validity)
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        line = os.pread(fd, 128, 0).split(b"\n", 1)[0] + b"\n"
        if not line.startswith(b"%s %d " % (_MAGIC, validity)) or (first and line != first):
            return None
        written = os.write(fd, data)
        # O_APPEND: the write went to the end, and left the offset after it.
        end = os.lseek(fd, 0, os.SEEK_CUR)
    finally:
        os.close(fd)
    return end - written, end


def _first_line(validity: int) -> bytes:
    """The first line of a new cache file: a random tag tells this file
    from one made later at the same place (inode numbers are reused)."""
    return b"%s %d %s\n" % (_MAGIC, validity, os.urandom(8).hex().encode("ascii"))


def _create(path: str, validity: int, body: bytes = b"") -> None:
    """Put a new cache file in place by a rename (readers see all or nothing)."""
    temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(_first_line(validity) + body)
    try:
        # A file another process made meanwhile wins (link fails).
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


class MessageCache:
    """The cache of one mailbox, as this process has read it.

    Used from the reactor thread; appends made by other threads and
    processes are seen on the next miss (:meth:`get` of an unknown UID)."""

    def __init__(self, folder: Path, validity: int) -> None:
        self.folder = Path(folder)
        self.path = os.path.join(self.folder, CACHE_FILE)
        #: The UIDVALIDITY the entries belong to.
        self.validity = validity
        self.entries: dict[int, dict[str, bytes]] = {}
        #: The first line of the file read (its tag tells one file from another).
        self._first = b""
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._dead = 0
        #: Records added here and not yet appended to the file.
        self._pending: list[tuple[int, str, bytes]] = []

    # -- reading -----------------------------------------------------------

    def refresh(self) -> None:
        """Read what was appended since the last look (everything when the
        file was replaced).  Values added here and not yet flushed are in
        :attr:`entries` already."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            self.entries, self._identity, self._offset, self._dead = {}, None, 0, 0
            return
        identity = (status.st_dev, status.st_ino)
        if identity != self._identity:
            self.entries, self._identity, self._offset, self._dead = {}, identity, 0, 0
        if status.st_size <= self._offset:
            return
        try:
            data = read_range(self.path, self._offset, status.st_size - self._offset)[0]
        except FileNotFoundError:
            return
        used, damaged = self._parse(data)
        self._offset += used
        if damaged:
            # A torn record (a crash while appending) or a file that is not
            # ours: keep what was read and start a new file.
            self._rewrite()

    def _parse(self, data: bytes) -> tuple[int, bool]:
        """Take in whole records from ``data``: how many bytes they took,
        and whether what follows is damaged (rather than still being
        written)."""
        position = 0
        if self._offset == 0:
            end = data.find(b"\n")
            if end < 0:
                return 0, len(data) > 64
            first = data[:end].split()
            if len(first) != 3 or first[0] != _MAGIC or first[1] != b"%d" % self.validity:
                # Made for another UIDVALIDITY (or not ours): nothing in it holds.
                return 0, True
            self._first = data[: end + 1]
            position = end + 1
        entries = self.entries
        while position < len(data):
            end = data.find(b"\n", position)
            if end < 0:
                return position, end - position > 200
            parts = data[position:end].split(b" ")
            if len(parts) != 4 or not all(part.isdigit() for part in (parts[0], *parts[2:])):
                return position, True
            stop = end + 1 + int(parts[2])
            if stop >= len(data):
                return position, False
            value = data[end + 1 : stop]
            if data[stop : stop + 1] != b"\n" or zlib.crc32(value) != int(parts[3]):
                return position, True
            uid, name = int(parts[0]), parts[1].decode("ascii", "replace")
            if name == _TOMBSTONE:
                if entries.pop(uid, None) is not None:
                    self._dead += 1
            else:
                entries.setdefault(uid, {})[name] = value
            position = stop + 1
        return position, False

    def check(self) -> None:
        """Forget what was read if the file was replaced or removed since
        (the mailbox deleted and made again: UIDs start afresh)."""
        if self._identity is None and not self.entries:
            return
        try:
            start = read_range(self.path, 0, 128)[0]
        except FileNotFoundError:
            start = b""
        end = start.find(b"\n")
        first = start[: end + 1] if end >= 0 else start
        if first != self._first:
            self.entries, self._identity, self._offset, self._dead = {}, None, 0, 0
            self._first = b""
            # Values waiting belong to messages of the file that went.
            self._pending = []

    def get(self, uid: int) -> Mapping[str, bytes]:
        """What is cached for a UID (empty when nothing is)."""
        found = self.entries.get(uid)
        if found is None:
            self.refresh()
            found = self.entries.get(uid)
        return found or {}

    def header(self, uid: int, path: str) -> bytes:
        """A message's header: from the cache, else read from the start of
        its file (and cached)."""
        header = self.get(uid).get("header")
        if header is None:
            header = read_header(path)
            if len(header) <= MAX_HEADER:
                self.add(uid, {"header": header})
        return header

    def value(self, uid: int, name: str, compute: Callable[[], bytes]) -> bytes:
        """A named value for a UID: from the cache, else ``compute()``'s
        (then cached)."""
        found = self.get(uid).get(name)
        if found is None:
            found = compute()
            self.add(uid, {name: found})
        return found

    # -- writing -----------------------------------------------------------

    def add(self, uid: int, values: Mapping[str, bytes]) -> None:
        """Cache values worked out for a UID: here at once, for other
        processes at the next :meth:`flush`."""
        self.entries.setdefault(uid, {}).update(values)
        self._pending.extend((uid, name, value) for name, value in values.items())
        if len(self._pending) >= PENDING_RECORDS:
            self.flush()

    @property
    def waiting(self) -> bool:
        """Whether values added here wait for :meth:`flush`."""
        return bool(self._pending)

    def flush(self) -> None:
        """Append the values added since the last flush, in one write."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._append(pending)

    def _append(self, records: list[tuple[int, str, bytes]]) -> None:
        """Append records of this object's own (their values are in
        :attr:`entries` already) to the file it read."""
        try:
            span = append_records(self.folder, self.validity, records, self._first)
        except OSError:
            # A cache that cannot be written costs time, not data.
            return
        if span is not None and self._identity is not None and span[0] == self._offset:
            # Nobody appended since the last look: what follows is ours,
            # known already, not to be read and parsed again.
            self._offset = span[1]

    def forget(self, uids: Iterable[int]) -> None:
        """Drop the entries of expunged messages."""
        gone = list(uids)
        if not gone:
            return
        for uid in gone:
            if self.entries.pop(uid, None) is not None:
                self._dead += 1
        # Values still waiting go in the same append, before the tombstones,
        # and only to the file they were read from: a file made since holds
        # at worst entries of expunged UIDs, which are never given again.
        pending, self._pending = self._pending, []
        pending.extend((uid, _TOMBSTONE, b"") for uid in gone)
        self._append(pending)
        if self._dead >= _COMPACT_MIN_DEAD and self._dead > len(self.entries):
            self.refresh()
            self._rewrite()

    def _rewrite(self) -> None:
        """Replace the file by one holding only the live entries."""
        self._pending = []
        body = encode_records(
            (uid, name, value)
            for uid, values in sorted(self.entries.items())
            for name, value in values.items()
        )
        temporary = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        header = _first_line(self.validity)
        try:
            with open(temporary, "wb") as handle:
                handle.write(header + body)
            os.replace(temporary, self.path)
            status = os.stat(self.path)
        except OSError:
            Path(temporary).unlink(missing_ok=True)
            return
        self._identity = (status.st_dev, status.st_ino)
        self._offset = len(header) + len(body)
        self._first = header
        self._dead = 0


_OPEN: OrderedDict[tuple[str, int], MessageCache] = OrderedDict()


def cache_of(folder: Path, validity: int) -> MessageCache:
    """This process's cache of the mailbox in ``folder`` with that
    UIDVALIDITY (one object each, the least recently used dropped beyond
    :data:`MAX_OPEN`).  A mailbox made again under the same name gets
    another UIDVALIDITY, and another cache file: either way it never sees
    the old one's entries."""
    key = (str(folder), validity)
    cache = _OPEN.get(key)
    if cache is None:
        cache = _OPEN[key] = MessageCache(folder, validity)
        if len(_OPEN) > MAX_OPEN:
            _OPEN.popitem(last=False)
    else:
        _OPEN.move_to_end(key)
        cache.check()
    return cache
