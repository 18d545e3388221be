"""An account's archive of one-to-one chat messages (XEP-0313, MAM).

The archive is ``<account folder>/archive.log``, append-only, one message
a line::

    <id> TAB <seconds since the epoch> TAB <the other party's JID> TAB
    <length of the stanza> TAB <the stanza> LF

The stanza is written as it is when it is one line of XML (from ``<`` to
``>``, without CR, LF or NUL: nearly every chat), else in base64, which
never starts with ``<`` (archives written before the raw form hold base64
only; those versions skip raw lines, so a downgrade hides them).

Messages are appended through a :class:`~communigate.store.writes.FileWrites`
(in the server, in its thread pool, one append at a time, the messages
that arrive meanwhile going in the next one); a message still waiting to
be written is in :meth:`Archive.pending`.  An append that a crash cut
short leaves a line without its end, or whose stanza is shorter than
its length says (or a raw one that no longer ends with ``>``, or holds a
hole of zeros): reading skips it, and the next append starts a new line.
The archive is bounded (:data:`MAX_BYTES`): past it nothing more is
archived until an administrator removes the file (a rotation is not done
here).

Reading the whole file (:func:`read_records`) is for the writer's thread
pool, not the reactor.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import os
import secrets
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from communigate.store.atomic import fsync_directory
from communigate.store.writes import INLINE, FileWrites

FILE_NAME = "archive.log"
#: The largest archive file; past it messages are no longer archived.
MAX_BYTES = 64 * 1024 * 1024
#: Stamps from the epoch to before this are read (and written).
MAX_STAMP = 1e11


class Record(NamedTuple):
    """One archived message: its archive id (XEP-0313 §4.2: unique, opaque),
    when it was archived, the other party's JID as the stanza named it, and
    the stanza as it was routed.  (A named tuple: one is made per line
    read, and a tuple is the cheapest to make.)"""

    id: str
    stamp: float
    with_jid: str
    stanza: bytes


def _raw(stanza: bytes) -> bool:
    """Whether ``stanza`` is stored as it is (else in base64): one line of
    XML, from ``<`` to ``>``, without NUL."""
    # A byte value (an int) is looked for with memchr; a one-byte bytes
    # needle costs a buffer export and is five times slower.
    return (
        stanza.startswith(b"<")
        and stanza.endswith(b">")
        and 10 not in stanza
        and 13 not in stanza
        and 0 not in stanza
    )


def _tail(stanza: bytes) -> bytes:
    """The end of a stanza's line: its length and the stanza as stored."""
    data = stanza if _raw(stanza) else base64.b64encode(stanza)
    return b"%d\t%s\n" % (len(stanza), data)


def format_record(record: Record) -> bytes:
    """The line of ``record`` in the file."""
    id_, stamp, with_jid, stanza = record
    return _line(id_, f"{stamp:.6f}".encode(), with_jid, _tail(stanza))


def _line(id_: str, stamp: bytes, with_jid: str, tail: bytes) -> bytes:
    return b"\t".join((id_.encode("ascii"), stamp, with_jid.encode("utf-8"), tail))


def parse_record(line: bytes) -> Record | None:
    """The record of one line (without its end), None for a broken one."""
    parts = line.split(b"\t", 4)
    if len(parts) != 5:
        return None
    try:
        stamp = float(parts[1])
        if not 0 <= stamp < MAX_STAMP:  # a hand-edited line: no usable time
            return None
        data = parts[4]
        if data[:1] != b"<":
            stanza = base64.b64decode(data, validate=True)
        elif _raw(data):
            stanza = data
        else:
            # Not what was written raw: a hole of zeros a crash left, say.
            return None
        if len(stanza) != int(parts[3]):
            return None
        return Record(parts[0].decode("ascii"), stamp, parts[2].decode("utf-8"), stanza)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def read_records(path: Path) -> list[Record]:
    """Every whole record in the file, oldest first (blocking: run it in
    the thread pool)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    records = []
    lines = data.split(b"\n")
    # The last piece has no line end: empty, or an append cut short.
    for line in lines[:-1]:
        record = parse_record(line)
        if record is not None:
            records.append(record)
    return records


def _append(path: Path, lines: list[bytes]) -> None:
    """Append formatted ``lines`` durably (in the writer's thread); an
    unfinished last line is ended first."""
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        data = b"".join(lines)
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_directory(path.parent)


#: Archive ids: a random prefix per process and a counter, unique without
#: asking the system for randomness per message.
_ID_PREFIX = secrets.token_urlsafe(9)
_ID_COUNTER = itertools.count(1)


def _new_id() -> str:
    """A fresh archive id (unique, opaque: XEP-0313 §4.2)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):x}"


class _Batch(list[bytes]):
    """The lines of records appended together, their length, and what the
    file held when the batch began: its size and the running append."""

    size = 0
    before = 0


class _Message(NamedTuple):
    """A stanza being archived: its stamp and the parts of its lines that
    do not depend on the archive."""

    stanza: bytes
    stamp: float
    stamp_text: bytes
    tail: bytes


#: The message archived last.  The sender's and the recipient's archive
#: take the same stanza one after the other: the second record shares the
#: first one's stamp and formatting (one message, archived at one moment).
_last: _Message = _Message(b"", math.nan, b"nan", _tail(b""))
#: How long after the first record the second may share its stamp.
_SAME_MOMENT = 0.5


class Archive:
    """The archive of one account."""

    def __init__(
        self,
        folder: Path,
        writes: FileWrites = INLINE,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] | None = None,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.path = Path(folder) / FILE_NAME
        self._writes = writes
        self._clock = clock
        self._new_id = new_id or _new_id
        self.max_bytes = max_bytes
        #: The writer's waiting batch of the file, as of its count of
        #: changes (looked up again only once that moved); weakly, so a
        #: batch written is not kept until the next message.
        self._waiting: weakref.ref[_Batch] | None = None
        self._changes = -1

    def add(self, with_jid: str, stanza: bytes) -> str | None:
        """Archive a message exchanged with ``with_jid``: its archive id, or
        None when it is not archived (the archive is full, or the JID cannot
        be stored, or the clock gives no usable time).
        Constant work per message however many wait to be appended: the
        waiting batch grows in place (the writer holds it already) and
        knows the length of its lines.

        The same ``stanza`` object given again within half a second is
        taken for the same message (the sender's and the recipient's
        record): it gets the same stamp.  The router serializes every
        message it routes anew."""
        if not with_jid or "\t" in with_jid or "\n" in with_jid or "\r" in with_jid:
            return None
        # The waiting append (never the running one) takes the new record.
        writes = self._writes
        if writes.changes != self._changes:
            waiting = writes.waiting(self.path)
            self._waiting = weakref.ref(waiting) if isinstance(waiting, _Batch) else None
            self._changes = writes.changes
        batch = None if self._waiting is None else self._waiting()
        fresh = not isinstance(batch, _Batch)
        if fresh:
            # The file's size is looked at once per append, not per message
            # (what the running append has written by now counts twice).
            batch = _Batch()
            try:
                batch.before = os.stat(self.path).st_size
            except FileNotFoundError:
                pass
            batch.before += sum(
                getattr(state, "size", 0) for state in self._writes.queue(self.path)
            )
        assert isinstance(batch, _Batch)
        global _last
        message, now = _last, self._clock()
        if message.stanza is not stanza or not 0 <= now - message.stamp < _SAME_MOMENT:
            stanza = bytes(stanza)
            message = _last = _Message(stanza, now, f"{now:.6f}".encode(), _tail(stanza))
        if not 0 <= message.stamp < MAX_STAMP:
            return None
        id_ = self._new_id()
        line = _line(id_, message.stamp_text, with_jid, message.tail)
        if batch.before + batch.size + len(line) > self.max_bytes:
            return None
        batch.append(line)
        batch.size += len(line)
        if fresh:
            self._writes.replace(self.path, batch, _append)
        return id_

    def pending(self) -> list[Record]:
        """The records being appended or waiting to be, oldest first."""
        pending = []
        for state in self._writes.queue(self.path):
            for line in state:
                record = parse_record(line[:-1])
                if record is not None:
                    pending.append(record)
        return pending
