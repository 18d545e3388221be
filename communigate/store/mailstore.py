"""An account's mailboxes: hierarchy, subscriptions and ACLs.

Mailbox names use ``/`` as hierarchy separator; ``INBOX`` is case-insensitive.
A sub-mailbox lives inside its parent's folder (``Work.mdir/2024.mdir``) and
starts with a copy of its parent's ACL (spec §8).  Names are kept as the
client sends them (IMAP's modified UTF-7 is ASCII); control characters,
empty parts, ``.`` and ``..`` are refused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from communigate.store import settingsformat
from communigate.store.atomic import write_atomic
from communigate.store.mailbox import INBOX, MAILBOX_SUFFIX, Mailbox

MAX_NAME = 512
#: The file system's limit for one folder name.
MAX_PART = 255
MAX_DEPTH = 32


class MailboxError(ValueError):
    """A mailbox operation that cannot be done; the text says why."""


def canonical_name(name: str) -> str:
    """The stored form of a mailbox name (INBOX in upper case), or raise.

    Each part becomes a folder ``<part>.mdir``, which must fit the file
    system's 255-byte limit; names that are not valid Unicode (lone
    surrogates from undecodable bytes) are refused.
    """
    name = name.strip("/")
    parts = name.split("/")
    if (
        not name
        or len(name) > MAX_NAME
        or len(parts) > MAX_DEPTH
        or any(part in ("", ".", "..") or part.startswith(".") for part in parts)
        or any(ord(char) < 32 or char in "\\*%" for char in name)
    ):
        raise MailboxError(f"invalid mailbox name {name[:80]!r}")
    try:
        too_long = any(len((part + MAILBOX_SUFFIX).encode("utf-8")) > MAX_PART for part in parts)
    except UnicodeEncodeError:
        raise MailboxError("invalid mailbox name: not valid Unicode") from None
    if too_long:
        raise MailboxError(f"invalid mailbox name: a part is longer than {MAX_PART} bytes")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    return "/".join(parts)


class MailStore:
    """The mailboxes in one account's folder."""

    def __init__(self, account_path: Path) -> None:
        self.root = Path(account_path)

    def mailbox(self, name: str) -> Mailbox:
        """The mailbox object for a name (it may not exist yet)."""
        return Mailbox.of_account(self.root, canonical_name(name))

    def exists(self, name: str) -> bool:
        """Whether a mailbox of that name exists."""
        try:
            return self.mailbox(name).exists()
        except MailboxError:
            return False

    def names(self) -> list[str]:
        """Every mailbox name, parents before children."""
        found: list[str] = []

        def walk(folder: Path, prefix: str, depth: int) -> None:
            if depth > MAX_DEPTH:
                return
            try:
                entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
            except FileNotFoundError:
                return
            for entry in entries:
                if entry.name.endswith(MAILBOX_SUFFIX) and entry.is_dir():
                    name = prefix + entry.name[: -len(MAILBOX_SUFFIX)]
                    found.append(name)
                    walk(Path(entry.path), name + "/", depth + 1)

        walk(self.root, "", 0)
        if INBOX not in found:
            found.insert(0, INBOX)
        return found

    def has_children(self, name: str) -> bool:
        """Whether a mailbox has sub-mailboxes."""
        folder = self.mailbox(name).path
        try:
            return any(
                entry.name.endswith(MAILBOX_SUFFIX) and entry.is_dir()
                for entry in os.scandir(folder)
            )
        except FileNotFoundError:
            return False

    def create(self, name: str) -> Mailbox:
        """Create a mailbox (and missing parents); children inherit the ACL."""
        name = canonical_name(name)
        if self.exists(name):
            raise MailboxError(f"mailbox {name} already exists")
        parts = name.split("/")
        parent_acl: dict[str, str] = {}
        first_made: Mailbox | None = None
        try:
            for depth in range(1, len(parts) + 1):
                partial = "/".join(parts[:depth])
                mailbox = self.mailbox(partial)
                if not mailbox.exists():
                    mailbox.create()
                    first_made = first_made or mailbox
                    if parent_acl:
                        self.set_acl(partial, parent_acl)
                parent_acl = self.acl(partial)
        except OSError as error:
            # Nothing is created unless everything can be.
            if first_made is not None:
                shutil.rmtree(first_made.path, ignore_errors=True)
            raise MailboxError(f"cannot create mailbox {name}: {error.strerror}") from None
        return self.mailbox(name)

    def delete(self, name: str) -> None:
        """Delete a mailbox with its messages; not INBOX, not with children."""
        name = canonical_name(name)
        if name == INBOX:
            raise MailboxError("INBOX cannot be deleted")
        if not self.exists(name):
            raise MailboxError(f"no mailbox {name}")
        if self.has_children(name):
            raise MailboxError(f"mailbox {name} has sub-mailboxes")
        folder = self.mailbox(name).path
        trash = folder.with_name(f".deleted.{os.getpid()}.{folder.name}")
        os.rename(folder, trash)
        shutil.rmtree(trash)

    def rename(self, old: str, new: str) -> None:
        """Rename a mailbox with its children (not INBOX)."""
        old, new = canonical_name(old), canonical_name(new)
        if old == INBOX:
            raise MailboxError("renaming INBOX is not supported")
        if not self.exists(old):
            raise MailboxError(f"no mailbox {old}")
        if self.exists(new) or new.startswith(old + "/"):
            raise MailboxError(f"cannot rename {old} to {new}")
        if "/" in new:
            parent = new.rsplit("/", 1)[0]
            if not self.exists(parent):
                self.create(parent)
        os.rename(self.mailbox(old).path, self.mailbox(new).path)

    def acl(self, name: str) -> dict[str, str]:
        """A mailbox's ACL: identifier → rights."""
        path = self.mailbox(name).path / "acl.settings"
        try:
            values = settingsformat.loads_dictionary(path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        return {key: value for key, value in values.items() if isinstance(value, str)}

    def set_acl(self, name: str, acl: dict[str, str]) -> None:
        """Replace a mailbox's ACL."""
        mailbox = self.mailbox(name)
        if not mailbox.exists():
            raise MailboxError(f"no mailbox {name}")
        text = settingsformat.dumps_dictionary(dict(acl))
        write_atomic(mailbox.path / "acl.settings", text.encode("utf-8"))

    def subscriptions(self) -> list[str]:
        """Subscribed mailbox names."""
        path = self.root / "subscriptions.settings"
        try:
            values = settingsformat.loads_dictionary(path.read_text("utf-8"))
        except FileNotFoundError:
            return []
        return settingsformat.as_string_list(values.get("Subscribed"))

    def subscribe(self, name: str, subscribed: bool = True) -> None:
        """Add or remove a subscription."""
        name = canonical_name(name)
        current: list[settingsformat.Value] = [
            item for item in self.subscriptions() if item != name
        ]
        if subscribed:
            current.append(name)
        text = settingsformat.dumps_dictionary({"Subscribed": current})
        write_atomic(self.root / "subscriptions.settings", text.encode("utf-8"))
