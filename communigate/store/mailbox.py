"""Mailboxes: one folder per mailbox, one file per message.

Layout of a mailbox folder (``<account>.macnt/INBOX.mdir/``)::

    tmp/                 messages being written
    new/<uid>,S=<size>[,N]   delivered messages (``,N``: no line starts
                         with a dot, so POP3 sends the file as it is)
    uids.settings        { UIDValidity = #…; UIDNext = #…; }
    .lock                serialises UID assignment between processes

Delivery writes the message to ``tmp/``, flushes it to disk, takes the next
UID under the lock (recording the new UIDNext before the message appears)
and renames the file into ``new/``.  A crash at any point leaves either no
message or a whole one: at worst a UID is skipped and a file is left in
``tmp/`` (removed by :meth:`Mailbox.clean_tmp`).  The UID and size are part
of the file name, so listing a mailbox never reads message bodies.

Messages are stored with CRLF line ends, so the size on disk is the size a
client is told (POP3 LIST, IMAP RFC822.SIZE).
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from communigate.store import settingsformat
from communigate.store.atomic import fsync_directory, write_atomic, write_durable

INBOX = "INBOX"
MAILBOX_SUFFIX = ".mdir"
_NAME = re.compile(r"(\d+),S=(\d+)(,N)?\Z")
_LINE_END = re.compile(rb"\r?\n")
_TMP_MAX_AGE = 36 * 3600


def to_crlf(data: bytes) -> bytes:
    """Every line ending as CRLF; a final line gets one too."""
    data = _LINE_END.sub(b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


@dataclass(frozen=True)
class MessageInfo:
    """A message as listed: its UID, its size in octets and its file."""

    uid: int
    size: int
    path: Path
    dot_free: bool = False


class Mailbox:
    """One mailbox folder; safe to use from several processes at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def of_account(cls, account_path: Path, name: str = INBOX) -> Mailbox:
        """The mailbox ``name`` of the account whose folder is given."""
        return cls(Path(account_path) / f"{name}{MAILBOX_SUFFIX}")

    def create(self) -> None:
        """Create the folders and the UID file if they are missing."""
        for sub in ("tmp", "new"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        if not (self.path / "uids.settings").exists():
            with self._locked():
                if not (self.path / "uids.settings").exists():
                    self._write_uids(int(time.time()), 1)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_uids(self) -> tuple[int, int]:
        try:
            text = (self.path / "uids.settings").read_text("utf-8")
        except FileNotFoundError:
            return 0, 1
        values = settingsformat.loads_dictionary(text)
        validity, next_uid = values.get("UIDValidity"), values.get("UIDNext")
        return (
            validity if isinstance(validity, int) else 0,
            next_uid if isinstance(next_uid, int) else 1,
        )

    def _write_uids(self, validity: int, next_uid: int) -> None:
        text = settingsformat.dumps_dictionary({"UIDValidity": validity, "UIDNext": next_uid})
        write_atomic(self.path / "uids.settings", text.encode("utf-8"))

    @property
    def uidvalidity(self) -> int:
        """The UIDVALIDITY of the mailbox (RFC 3501 §2.3.1.1)."""
        return self._read_uids()[0]

    def deliver(self, message: bytes) -> int:
        """Store a whole message and return its UID."""
        self.create()
        data = to_crlf(message)
        temporary = self.path / "tmp" / f"{time.time_ns()}.{os.getpid()}.{id(data):x}"
        write_durable(temporary, data)
        with self._locked():
            validity, uid = self._read_uids()
            self._write_uids(validity or int(time.time()), uid + 1)
            dot_free = not data.startswith(b".") and b"\n." not in data
            name = f"{uid},S={len(data)}{',N' if dot_free else ''}"
            os.rename(temporary, self.path / "new" / name)
        fsync_directory(self.path / "new")
        return uid

    def messages(self) -> list[MessageInfo]:
        """The messages in UID order, read from file names only."""
        found = []
        folder = self.path / "new"
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        for entry in entries:
            match = _NAME.match(entry.name)
            if match:
                uid, size, dot_free = match.groups()
                found.append(MessageInfo(int(uid), int(size), Path(entry.path), bool(dot_free)))
        found.sort(key=lambda info: info.uid)
        return found

    def open(self, info: MessageInfo) -> BinaryIO:
        """The message's bytes, for reading."""
        return open(info.path, "rb")

    def remove(self, infos: list[MessageInfo]) -> None:
        """Expunge messages; ones another session removed already are fine."""
        for info in infos:
            try:
                os.unlink(info.path)
            except FileNotFoundError:
                continue
        if infos:
            fsync_directory(info.path.parent)

    def clean_tmp(self, now: float | None = None) -> None:
        """Remove files left in ``tmp/`` by deliveries that crashed."""
        limit = (now if now is not None else time.time()) - _TMP_MAX_AGE
        try:
            entries = list(os.scandir(self.path / "tmp"))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.stat().st_mtime < limit:
                os.unlink(entry.path)
