"""Each domain's Kerberos keys: a keytab in the domain's Settings folder.

``<domain folder>/Settings/kerberos.keytab`` (mode 0600) holds the keys of
the domain's service principals (``imap/company.com@REALM``,
``company.com@REALM``, ...), imported with ``communigate domain kerberos
import``.  :class:`DomainKeys` tells the login service which domains have
keys (GSSAPI is offered only there) and gives the GSSAPI mechanism
acceptor credentials made from one domain's keytab only, so a key a domain
imported can never accept a ticket meant for another domain.  A keytab is
read again when its file changes (inode, mtime or size; looked at again
after half a second, not for each login), as the TLS certificates are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zope.interface import Interface, implementer

from communigate.cred.kerberos import keytab
from communigate.recent import Recent
from communigate.store.atomic import write_atomic

#: The keytab's name inside a domain's Settings folder.
KEYTAB = "kerberos.keytab"


class IKerberosKeys(Interface):
    """The domains' Kerberos keys, as the GSSAPI mechanism uses them."""

    def serves(domain: str) -> bool:
        """Whether ``domain`` (a real domain name) has keys."""

    def domain(name: str) -> str | None:
        """The real name of the domain (or alias) ``name``, None if unknown."""

    def acceptor(domain: str) -> Any:
        """GSS acceptor credentials of ``domain``'s keytab, None without keys."""


def keytab_path(folder: Path) -> Path:
    """The keytab of a domain whose folder is ``folder``."""
    return Path(folder) / "Settings" / KEYTAB


def read_keys(path: Path) -> list[keytab.KeytabEntry]:
    """The entries of a stored keytab; none if there is no file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return keytab.parse(data)


def store_keys(path: Path, entries: list[keytab.KeytabEntry]) -> None:
    """Replace the stored keytab with ``entries``, atomically, mode 0600;
    no entries at all removes the file."""
    if not entries:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, keytab.format_keytab(entries), 0o600)


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


@implementer(IKerberosKeys)
class DomainKeys:
    """The keytabs of a directory's domains, re-read when they change."""

    def __init__(
        self,
        directory: Any,
        locate: Callable[[str], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        #: The real domain of a service's host name (the server routes
        #: ``LoginPage@name``: :meth:`communigate.portal.router.Router.login_page_domain`).
        self._locate = locate
        #: domain -> (file identity, has entries, acceptor credentials or None)
        self._cache: dict[str, tuple[tuple[int, int, int], bool, Any]] = {}
        #: A keytab is looked at again after a moment, not for every login.
        self._recent = Recent(clock)

    def path(self, domain: str) -> Path:
        """Where ``domain`` keeps its keytab."""
        return keytab_path(self.directory.domain_folder(domain))

    def _load(self, domain: str) -> tuple[bool, Any]:
        found: tuple[bool, Any] = self._recent.get(domain, lambda: self._read(domain))
        return found

    def _read(self, domain: str) -> tuple[bool, Any]:
        path = self.path(domain)
        identity = _identity(path)
        if identity is None:
            self._cache.pop(domain, None)
            return False, None
        cached = self._cache.get(domain)
        if cached is not None and cached[0] == identity:
            return cached[1], cached[2]
        try:
            has_keys = bool(read_keys(path))
        except (OSError, keytab.KeytabError):
            has_keys = False
        credentials = None
        if has_keys:
            credentials = _acquire(path)
            has_keys = credentials is not None
        self._cache[domain] = (identity, has_keys, credentials)
        return has_keys, credentials

    def serves(self, domain: str) -> bool:
        """Whether ``domain`` has a keytab with at least one key."""
        return self._load(domain)[0]

    def domain(self, name: str) -> str | None:
        """The real domain a service name stands for (``locate``, by
        default a domain or domain alias of that name), None if unknown."""
        if self._locate is not None:
            return self._locate(name)
        record = self.directory.domain(name.lower())
        return record.name if record is not None else None

    def acceptor(self, domain: str) -> Any:
        """Acceptor credentials of ``domain``'s keytab (and of no other
        keytab: the GSS credential store names the file), None without keys."""
        return self._load(domain)[1]


def _acquire(path: Path) -> Any:
    """GSS acceptor credentials for any principal in the keytab ``path``."""
    import gssapi.raw

    try:
        return gssapi.raw.acquire_cred_from(
            {b"keytab": f"FILE:{path}".encode()}, usage="accept"
        ).creds
    except gssapi.raw.GSSError:
        return None
