"""Which File Storage file a TFTP name means, and whether TFTP may use it
(spec §9).

* ``name`` or ``dir/name``: a file of the Default Storage account (server
  setting ``TFTPDefaultStorage``: a name of the Main Domain or a full
  ``name@domain``; none by default, so plain names are refused until it is
  set);
* ``/name`` (no other slash): a Default Storage file too;
* ``/john/dir/name`` and ``~john/dir/name``: a file of john in the Main
  Domain; ``~john@d.dom/dir/name``: of john in d.dom.

TFTP has no login: everything runs on behalf of the Main Domain account
``tftpuser``.  A file can be read when its directory is not private (the
storage is the account's web site) or ``tftpuser`` was granted ``r``; written
only where ``tftpuser`` was granted ``w``.  The target account must have the
``WebSite`` service.  Refusals say why in protocol-neutral terms
(:class:`Reason`); the TFTP server turns that into its error code.

A name that names an account (``~john/...``, ``/john/...``) is refused with
one answer whatever the cause (no such account, not an account, storage not
shared, private, missing file, no right), so TFTP cannot be used to find out
which accounts exist; the log keeps the real cause.  The answer depends only
on the direction: a read gets "file not found", a write "access denied".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from communigate.portal.accounts import access_modes
from communigate.store.acl import Identity
from communigate.store.directory import (
    DirectoryError,
    IDirectory,
    ObjectKind,
    check_domain_name,
    check_object_name,
)
from communigate.store.filestorage import FileStorage, StorageError, normalise, parse_size

TFTP_USER = "tftpuser"


class Reason(Enum):
    """Why a request was refused."""

    NOT_FOUND = "not found"
    ACCESS_DENIED = "access denied"
    NO_SUCH_USER = "no such user"


class Refused(Exception):
    """The request cannot be served, for ``reason``; ``str()`` is the text
    for the client, ``detail`` the cause for the log."""

    def __init__(self, reason: Reason, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = detail or message


@dataclass(frozen=True)
class Target:
    """A resolved TFTP file."""

    storage: FileStorage
    path: str
    local: Path
    limit: int | None


@dataclass(frozen=True)
class _Name:
    """A TFTP name split into the account it names and the storage path."""

    account: str
    domain: str
    path: str
    #: Whether the client named the account (else: the Default Storage).
    named: bool


def _hidden(write: bool, detail: str) -> Refused:
    """The one refusal for a name that names an account."""
    if write:
        return Refused(Reason.ACCESS_DENIED, "access denied", detail)
    return Refused(Reason.NOT_FOUND, "file not found", detail)


class TFTPFiles:
    """Maps TFTP names to File Storage files and checks tftpuser's rights."""

    def __init__(self, directory: IDirectory) -> None:
        self.directory = directory

    def _owner(self, text: str) -> tuple[str, str]:
        """``name`` (Main Domain) or ``name@domain``: a full name stays full."""
        account, _, domain = text.partition("@")
        return account, domain or self.directory.main_domain()

    def _split(self, name: str) -> _Name:
        if name.startswith("~"):
            owner, _, rest = name[1:].partition("/")
            return _Name(*self._owner(owner), rest, True)
        if name.startswith("/"):
            first, _, rest = name[1:].partition("/")
            if rest:
                return _Name(first, self.directory.main_domain(), rest, True)
            name = first
        default = self.directory.server_settings().get("TFTPDefaultStorage")
        if not isinstance(default, str) or not default:
            raise Refused(Reason.NOT_FOUND, "no Default Storage account is configured")
        return _Name(*self._owner(default), name, False)

    def resolve(self, name: str, write: bool) -> Target:
        """The file a request names, if TFTP may read (or write) it."""
        parts = self._split(name)
        try:
            path = normalise(parts.path)
        except StorageError as error:
            raise Refused(Reason.ACCESS_DENIED, str(error)) from None
        try:
            return self._resolve(parts, path, write)
        except OSError as error:
            # A name the file system cannot take (too long, ...): as missing.
            refusal = Refused(Reason.NOT_FOUND, "file not found", str(error))
        except Refused as refused:
            refusal = refused
        if parts.named:
            raise _hidden(write, refusal.detail)
        raise refusal

    def _resolve(self, parts: _Name, path: str, write: bool) -> Target:
        full = f"{parts.account}@{parts.domain}"
        try:
            account = check_object_name(parts.account)
            domain = check_domain_name(parts.domain)
        except DirectoryError as error:
            raise Refused(Reason.NO_SUCH_USER, "no such account", str(error)) from None
        record = self.directory.domain(domain)
        found = self.directory.find_object(record.name, account) if record else None
        if record is None or found is None or found.kind is not ObjectKind.ACCOUNT:
            if parts.named:
                raise Refused(Reason.NO_SUCH_USER, "no such account", f"no account {full}")
            raise Refused(
                Reason.NO_SUCH_USER,
                "the Default Storage account does not exist",
                f"TFTPDefaultStorage {full} is not an account",
            )
        settings = self.directory.account_settings(record.name, found.name)
        modes = access_modes(settings.get("AccessModes", "All"))
        if modes is not None and "website" not in modes:
            raise Refused(Reason.ACCESS_DENIED, "the account's File Storage is not shared")
        storage = FileStorage(
            self.directory.account_path(record.name, found.name), Identity(record.name, found.name)
        )
        try:
            local = storage.local(path)
        except StorageError as error:
            raise Refused(Reason.ACCESS_DENIED, str(error)) from None
        folder = str(Path(path).parent)
        rights = self._rights(storage, folder)
        needed = "w" if write else "r"
        if needed not in rights:
            raise Refused(Reason.ACCESS_DENIED, "access denied", f"no {needed} right on {folder}")
        if write:
            if not local.parent.is_dir():
                raise Refused(Reason.NOT_FOUND, "no such directory")
            quota = parse_size(settings.get("MaxWebSize"))
            limit = None
            if quota is not None:
                existing = local.stat().st_size if local.is_file() else 0
                limit = max(0, quota - storage.usage() + existing)
            return Target(storage, path, local, limit)
        if not local.is_file():
            raise Refused(Reason.NOT_FOUND, "file not found")
        return Target(storage, path, local, None)

    def _rights(self, storage: FileStorage, folder: str) -> str:
        main = self.directory.main_domain()
        found = self.directory.find_object(main, TFTP_USER)
        rights = set(storage.rights(folder, None))
        if found is not None and found.kind is ObjectKind.ACCOUNT:
            rights |= set(storage.rights(folder, Identity(main, TFTP_USER)))
        return "".join(sorted(rights))
