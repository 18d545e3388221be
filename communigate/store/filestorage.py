"""Each account's File Storage (``<account>.macnt/account.web/``).

The storage is the account's personal web site, as in CommuniGate: its
directories are readable by anyone (TFTP without ``tftpuser``, later HTTP)
unless marked private.  Other accounts get rights per directory, kept in
``<account>.macnt/fileaccess.settings`` (outside the storage, so no client
can read or overwrite it)::

    { "/" = { Access = { anyone@ = r; }; };
      "/private" = { Private = YES; };
      "/upload" = { Access = { john@client1.com = rw; "#team" = r; }; }; }

Rights are ``r`` (list and download) and ``w`` (upload, rename, delete,
make and remove directories); identifiers are those of mailbox ACLs
(``anyone``, ``anyone@``, ``name``, ``name@domain``, ``#group``, with ``-``
to take rights away).  A directory's entry applies to everything below it
until a deeper entry; a private directory is closed to everyone but the
owner.  The owner has every right.

``MaxWebSize`` (account setting, bytes or ``10M``/``1G``; default
unlimited) caps the total size of the storage.  Paths are always resolved
inside the storage: ``..``, absolute paths, NUL bytes and symbolic links
that lead out are refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath

from communigate.store import settingsformat
from communigate.store.acl import Identity, matches
from communigate.store.atomic import write_atomic
from communigate.store.settingsformat import Value

STORAGE = "account.web"
ACCESS_FILE = "fileaccess.settings"
_SIZE = re.compile(r"(\d+)\s*([kmgt]?)b?\Z", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class StorageError(ValueError):
    """A path or operation outside what the storage allows."""


def parse_size(value: Value) -> int | None:
    """``MaxWebSize``: a byte count, ``10M``, ``1G``; None for unlimited."""
    if value is None or (isinstance(value, str) and value.lower() in ("", "unlimited")):
        return None
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value).strip())
    if match is None:
        raise StorageError(f"not a size: {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def normalise(path: str) -> str:
    """A storage path as ``/a/b``; refuses ``..``, NUL and control bytes."""
    if "\0" in path or any(ord(char) < 32 for char in path):
        raise StorageError("invalid character in path")
    parts = [part for part in path.replace("\\", "/").split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise StorageError("'..' is not allowed")
    return "/" + "/".join(parts)


class FileStorage:
    """One account's File Storage."""

    def __init__(self, account_path: Path, owner: Identity) -> None:
        self.account_path = Path(account_path)
        self.root = self.account_path / STORAGE
        self.owner = owner

    def create(self) -> None:
        """Make the storage folder if it is missing.  Never the account's
        folder: only account creation makes that (a deleted account must
        not come back through a session that was open)."""
        self.root.mkdir(exist_ok=True)

    def local(self, path: str) -> Path:
        """The file system path of a storage path, never outside the root."""
        relative = normalise(path).lstrip("/")
        target = self.root / relative if relative else self.root
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(target)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise StorageError("path leads outside the storage")
        return target

    # -- access --------------------------------------------------------------

    def access(self) -> dict[str, Value]:
        """The stored per-directory settings."""
        try:
            text = (self.account_path / ACCESS_FILE).read_text("utf-8")
        except FileNotFoundError:
            return {}
        return settingsformat.loads_dictionary(text)

    def set_access(self, directory: str, entry: Mapping[str, Value] | None) -> None:
        """Replace (or with None remove) one directory's settings."""
        settings = self.access()
        key = normalise(directory)
        if entry:
            settings[key] = dict(entry)
        else:
            settings.pop(key, None)
        text = settingsformat.dumps_dictionary(settings)
        write_atomic(self.account_path / ACCESS_FILE, text.encode("utf-8"))

    def move_access(self, old: str, new: str) -> None:
        """A directory was renamed: its entries and those below it follow."""
        source, target = normalise(old), normalise(new)
        settings = self.access()
        moved = {}
        for key, value in settings.items():
            if key == source or key.startswith(source + "/"):
                moved[target + key[len(source) :]] = value
            else:
                moved[key] = value
        if moved != settings:
            text = settingsformat.dumps_dictionary(moved)
            write_atomic(self.account_path / ACCESS_FILE, text.encode("utf-8"))

    def _entries(self, path: str) -> list[dict[str, Value]]:
        """Settings of the directory and its ancestors, nearest first."""
        settings = self.access()
        found = []
        current = PurePosixPath(normalise(path))
        while True:
            entry = settings.get(str(current))
            if isinstance(entry, dict):
                found.append(entry)
            if str(current) == "/":
                return found
            current = current.parent

    def is_private(self, path: str) -> bool:
        """Whether the directory or one above it is marked private."""
        return any(settingsformat.as_bool(entry.get("Private")) for entry in self._entries(path))

    def rights(
        self,
        path: str,
        who: Identity | None,
        in_group: Callable[[str, str], bool] = lambda _group, _domain: False,
    ) -> str:
        """``rw``, ``r`` or ``""`` for ``who`` (None: an anonymous reader)."""
        if who == self.owner:
            return "rw"
        if self.is_private(path):
            return ""
        granted: set[str] = set()
        for entry in self._entries(path):
            access = entry.get("Access")
            if not isinstance(access, dict):
                continue
            revoked: set[str] = set()
            for identifier, rights in access.items():
                if who is None or not isinstance(rights, str):
                    continue
                if matches(identifier.lstrip("+-").lower(), self.owner.domain, who, in_group):
                    target = revoked if identifier.startswith("-") else granted
                    target.update(rights)
            granted -= revoked
            break
        if who is None:
            granted.add("r")
        return "".join(right for right in "rw" if right in granted)

    # -- space -----------------------------------------------------------------

    def usage(self) -> int:
        """Bytes used by all files in the storage."""
        total = 0
        for folder, _, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except FileNotFoundError:
                    continue
        return total
