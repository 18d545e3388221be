"""The durable queue of messages waiting for the smart host (``Queue/``).

Each queued message is two files in ``<base>/Queue/``:

``<id>.msg``
    the message text (CRLF line ends), linked from the spool where it was
    received (or copied where linking is impossible) and flushed to disk;
``<id>.env``
    its envelope as JSON: sender, the recipients still to be served, when
    it was queued, how many attempts were made, when the next is due and
    the last error.

The envelope is written last, atomically (temporary file, ``fsync``,
rename, ``fsync`` of the folder, which also makes the ``.msg`` entry
durable): it is the commit point.  A message is in the queue once its
envelope exists, so the submission server replies 250 only after
:meth:`MailQueue.add` returned; a ``.msg`` without its envelope is what a
crash left half-way and :meth:`MailQueue.remove_orphans` deletes it at
start.  Both the server (:mod:`.relay`) and ``communigate queue`` (another
process) work on these files; an envelope that was deleted is never
written again, so ``queue delete`` wins over an attempt in flight.

Blocking file work: the server calls it in its thread pool.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from communigate.store.atomic import fsync_directory, write_atomic
from communigate.store.spool import SpooledMessage

QUEUE = "Queue"


@dataclass
class QueueEntry:
    """The envelope of one queued message."""

    id: str
    sender: str
    recipients: list[str]
    created: float
    attempts: int = 0
    #: Seconds since the epoch when the next attempt is due (0: now).
    next_attempt: float = 0.0
    last_error: str = ""
    #: The account that submitted it (for logs and the bounce).
    account: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """The envelope file's content."""
        return json.dumps(asdict(self), sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> QueueEntry:
        """Read an envelope file; ValueError if it is not one."""
        value = json.loads(data)
        if not isinstance(value, dict):
            raise ValueError("not an envelope")
        try:
            return cls(**value)
        except TypeError as error:
            raise ValueError(str(error)) from None


def queue_folder(base: Path) -> Path:
    """The queue folder of a base directory."""
    return Path(base) / QUEUE


class MailQueue:
    """The queue folder and its entries."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def message_path(self, entry_id: str) -> Path:
        """The message text of an entry."""
        return self.folder / f"{entry_id}.msg"

    def _envelope(self, entry_id: str) -> Path:
        return self.folder / f"{entry_id}.env"

    def add(
        self,
        message: SpooledMessage,
        sender: str,
        recipients: list[str],
        now: float,
        account: str = "",
    ) -> QueueEntry:
        """Queue a spooled message for ``recipients``; durable on return."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        entry_id = f"{int(now)}-{secrets.token_hex(6)}"
        target = self.message_path(entry_id)
        message.link(target)
        try:
            descriptor = os.open(target, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            entry = QueueEntry(entry_id, sender, list(recipients), now, account=account)
            write_atomic(self._envelope(entry_id), entry.to_json())
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return entry

    def entries(self) -> list[QueueEntry]:
        """Every queued entry, oldest first; unreadable envelopes are skipped."""
        found = []
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        for name in names:
            if name.endswith(".env"):
                entry = self.load(name[: -len(".env")])
                if entry is not None:
                    found.append(entry)
        return sorted(found, key=lambda entry: (entry.created, entry.id))

    def load(self, entry_id: str) -> QueueEntry | None:
        """One entry, None if it is gone (or unreadable)."""
        if "/" in entry_id or entry_id.startswith("."):
            return None
        try:
            return QueueEntry.from_json(self._envelope(entry_id).read_bytes())
        except (OSError, ValueError):
            return None

    def save(self, entry: QueueEntry) -> bool:
        """Write an entry's envelope again; False (nothing written) if it
        was deleted meanwhile."""
        path = self._envelope(entry.id)
        if not path.exists():
            return False
        write_atomic(path, entry.to_json())
        return True

    def remove(self, entry_id: str) -> bool:
        """Delete an entry (envelope first); whether it existed."""
        if self.load(entry_id) is None and not self._envelope(entry_id).exists():
            return False
        self._envelope(entry_id).unlink(missing_ok=True)
        self.message_path(entry_id).unlink(missing_ok=True)
        fsync_directory(self.folder)
        return True

    def remove_orphans(self) -> int:
        """Delete message files without an envelope (a crash before the
        commit point); how many."""
        removed = 0
        try:
            names = set(os.listdir(self.folder))
        except FileNotFoundError:
            return 0
        for name in names:
            stem, dot, kind = name.rpartition(".")
            if dot and kind == "msg" and f"{stem}.env" not in names:
                (self.folder / name).unlink(missing_ok=True)
                removed += 1
        return removed
