"""An account's vCard (XEP-0054 vcard-temp), kept in its folder.

The ``<vCard xmlns='vcard-temp'>`` element a client stores is kept as the
bytes it sent, in ``<account folder>/vcard.xml``, replaced atomically
(through a :class:`~communigate.store.writes.FileWrites`: at once by
default; a vCard waiting to be written is what :func:`get` answers).  Its
size is bounded (:data:`MAX_SIZE`; avatars are inline base64, so a little
room is left for one).  No reactor here.
"""

from __future__ import annotations

from pathlib import Path

from communigate.store.atomic import write_atomic
from communigate.store.writes import INLINE, REMOVED, FileWrites, Ticket

FILE_NAME = "vcard.xml"
MAX_SIZE = 64 * 1024


def _save(path: Path, xml: bytes) -> None:
    """Write the vCard file (in the writer's thread)."""
    write_atomic(path, xml)


def get(folder: Path, writes: FileWrites = INLINE) -> bytes | None:
    """The stored vCard element of the account in ``folder``, or None."""
    path = Path(folder) / FILE_NAME
    waiting = writes.latest(path)
    if waiting is not None:
        return None if waiting is REMOVED else bytes(waiting)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def set(folder: Path, xml: bytes, writes: FileWrites = INLINE) -> Ticket:
    """Replace the account's vCard with ``xml``; ``ValueError`` past
    :data:`MAX_SIZE`; the ticket of the write (which fails with ``OSError``
    if the account's folder is gone; at once by default)."""
    if len(xml) > MAX_SIZE:
        raise ValueError(f"vCard larger than {MAX_SIZE} bytes")
    return writes.replace(Path(folder) / FILE_NAME, bytes(xml), _save)


def delete(folder: Path, writes: FileWrites = INLINE) -> Ticket:
    """Remove the account's vCard if it has one."""
    return writes.remove(Path(folder) / FILE_NAME)
