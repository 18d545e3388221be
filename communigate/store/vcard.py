"""An account's vCard (XEP-0054 vcard-temp), kept in its folder.

The ``<vCard xmlns='vcard-temp'>`` element a client stores is kept as the
bytes it sent, in ``<account folder>/vcard.xml``, replaced atomically.  Its
size is bounded (:data:`MAX_SIZE`; avatars are inline base64, so a little
room is left for one).  Pure file code, no reactor.
"""

from __future__ import annotations

from pathlib import Path

from communigate.store.atomic import write_atomic

FILE_NAME = "vcard.xml"
MAX_SIZE = 64 * 1024


def get(folder: Path) -> bytes | None:
    """The stored vCard element of the account in ``folder``, or None."""
    try:
        return (Path(folder) / FILE_NAME).read_bytes()
    except FileNotFoundError:
        return None


def set(folder: Path, xml: bytes) -> None:
    """Replace the account's vCard with ``xml``; ``ValueError`` past
    :data:`MAX_SIZE`, ``OSError`` if the account's folder is gone."""
    if len(xml) > MAX_SIZE:
        raise ValueError(f"vCard larger than {MAX_SIZE} bytes")
    write_atomic(Path(folder) / FILE_NAME, xml)


def delete(folder: Path) -> None:
    """Remove the account's vCard if it has one."""
    (Path(folder) / FILE_NAME).unlink(missing_ok=True)
