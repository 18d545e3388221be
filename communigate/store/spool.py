"""Message data spooled to disk as it arrives (IMAP APPEND, LMTP DATA).

A protocol writes what the client sends into a :class:`MessageSpool`, chunk
by chunk: line ends are made CRLF as the mail store keeps them, and the size
and whether any line starts with a dot are worked out on the way, so the
memory a connection needs stays bounded whatever the size of the message.
:meth:`MessageSpool.finish` closes the file and gives a
:class:`SpooledMessage`, which :class:`~communigate.store.mailbox.Mailbox`
delivers by a hard link into the mailbox (one spool file serves every
recipient; a copy only where the mailbox is on another file system).  The
protocol discards the spool once it has been delivered.

Spool files live in ``Spool/`` of the base directory, beside the mailboxes
so that linking works, named ``<host>.<pid>.<random>``;
:func:`remove_stale` deletes those a crashed process left behind.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from communigate.store import temporaries

SPOOL = "Spool"
_LINE_END = re.compile(rb"\r?\n")
#: Errors after which a link is replaced by a copy.
_CANNOT_LINK = {errno.EXDEV, errno.EMLINK, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP}


class CRLFWriter:
    """Makes every line end CRLF, over a sequence of chunks (pure code).

    The result is the same as converting the whole message at once: every
    ``\\r\\n`` or bare ``\\n`` becomes ``\\r\\n`` and a message that does not end
    with a line end gets one.  A ``\\r`` at the end of a chunk is held back
    until the next one shows whether a ``\\n`` follows.  Also counts the
    octets and notes whether a line starts with a dot (POP3 then has to
    dot-stuff the message)."""

    def __init__(self) -> None:
        self.size = 0
        self.dot_free = True
        self._held_cr = False
        self._line_start = True
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        """The converted form of ``chunk`` (possibly without its last ``\\r``)."""
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._held_cr = True
        return self._count(_LINE_END.sub(b"\r\n", chunk))

    def finish(self) -> bytes:
        """What ends the message: a held ``\\r`` and a final CRLF if needed."""
        out = b""
        if self._held_cr:
            self._held_cr = False
            out = self._count(b"\r")
        if self.size and self._tail != b"\r\n":
            out += self._count(b"\r\n")
        return out

    def _count(self, out: bytes) -> bytes:
        if out:
            if (self._line_start and out[:1] == b".") or b"\n." in out:
                self.dot_free = False
            self._line_start = out[-1:] == b"\n"
            self._tail = (self._tail + out)[-2:]
            self.size += len(out)
        return out


def to_crlf(data: bytes) -> bytes:
    """Every line ending as CRLF; a final line gets one too."""
    writer = CRLFWriter()
    return writer.feed(data) + writer.finish()


@dataclass(frozen=True)
class SpooledMessage:
    """A whole message in a spool file, with CRLF line ends."""

    path: Path
    #: Octets on disk (what clients are told).
    size: int
    #: No line starts with a dot.
    dot_free: bool

    def link(self, target: Path) -> None:
        """Make ``target`` (which must not exist) a name of this message: a
        hard link, or a durable copy where linking is not possible."""
        try:
            os.link(self.path, target)
            return
        except OSError as error:
            if error.errno not in _CANNOT_LINK:
                raise
        try:
            with open(self.path, "rb") as source, open(target, "xb") as copy:
                shutil.copyfileobj(source, copy, 1024 * 1024)
                copy.flush()
                os.fsync(copy.fileno())
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def discard(self) -> None:
        """Remove the spool file (the message stays wherever it was linked)."""
        self.path.unlink(missing_ok=True)


class MessageSpool:
    """One message being received into a spool file.

    :meth:`write` never raises: an error (a full disk) is kept, the rest of
    the message is ignored, and :meth:`finish` raises it once the client
    has sent everything, so the protocol stays in step with the client."""

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = folder / temporaries.temporary_name()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: BinaryIO | None = os.fdopen(descriptor, "wb")
        self._lines = CRLFWriter()
        self.error: OSError | None = None

    @property
    def size(self) -> int:
        """Octets written so far."""
        return self._lines.size

    def write(self, data: bytes) -> None:
        """Append received bytes."""
        if self._file is None:
            return
        try:
            self._file.write(self._lines.feed(data))
        except OSError as error:
            self.error = error
            self.discard()

    def finish(self) -> SpooledMessage:
        """Close the message; raises the error :meth:`write` met.

        The file is not flushed to disk here: a spool is never read after
        a crash, and :meth:`~communigate.store.mailbox.Mailbox.commit`
        flushes the mailbox's link to it (the same data) in a thread."""
        if self._file is not None:
            try:
                self._file.write(self._lines.finish())
                self._file.close()
                self._file = None
            except OSError as error:
                self.error = error
                self.discard()
        if self.error is not None:
            raise self.error
        if self._file is None and not self.path.exists():
            raise FileNotFoundError(errno.ENOENT, "spool file was discarded", str(self.path))
        return SpooledMessage(self.path, self._lines.size, self._lines.dot_free)

    def discard(self) -> None:
        """Drop the message (the client went away, or it was refused)."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        self.path.unlink(missing_ok=True)


def spool_folder(base: Path) -> Path:
    """The spool folder of a base directory."""
    return Path(base) / SPOOL


def default_spool() -> Path:
    """Where messages are spooled when no base directory is given (unit
    tests, embedded use); deliveries may be copies then, not links."""
    return Path(tempfile.gettempdir()) / "communigate-spool"


def remove_stale(folder: Path) -> int:
    """Remove the spool files a dead process left; how many."""
    return temporaries.remove_stale(folder)
