"""Connections to the LDAP server: where it is, how to bind, a small pool.

Every call here blocks (ldap3's synchronous strategy); the server runs them
in its thread pool, the command line directly.  A connection that fails is
dropped and the next call opens a new one, so service resumes by itself
when the LDAP server comes back.  Every network step has a time-out.
"""

from __future__ import annotations

import queue
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException

from communigate.store.directory import DirectoryError

#: Seconds to wait for a TCP (and TLS) connection to the LDAP server.
CONNECT_TIMEOUT = 3
#: Seconds to wait for the answer to one operation (ldap3 needs a whole number).
RECEIVE_TIMEOUT = 10
#: Connections kept open for reuse.
POOL_SIZE = 4
#: LDAP result codes (RFC 4511 §4.1.9) that say the server cannot serve
#: now, not that the request was wrong: timeLimitExceeded, busy,
#: unavailable.
UNAVAILABLE_CODES = frozenset({3, 51, 52})

_T = TypeVar("_T")


class DirectoryUnreachable(DirectoryError):
    """The LDAP server could not be reached or did not answer in time."""


@dataclass(frozen=True)
class Location:
    """An LDAP directory as ``--directory`` names it (RFC 4516 URL:
    ``ldap://HOST:PORT/BASE-DN`` or ``ldaps://``), with how to bind."""

    host: str
    port: int
    base: str
    tls: bool = False
    starttls: bool = False
    bind_dn: str | None = None
    password: str | None = None
    #: A CA bundle to verify the server's certificate (system CAs if None).
    ca_file: str | None = None

    def __repr__(self) -> str:
        scheme = "ldaps" if self.tls else "ldap"
        return f"<Location {scheme}://{self.host}:{self.port}/{self.base} as {self.bind_dn}>"


def parse_location(
    url: str,
    starttls: bool = False,
    bind_dn: str | None = None,
    password_file: str | Path | None = None,
    ca_file: str | None = None,
) -> Location:
    """Read ``--directory``; the password is the first line of
    ``password_file`` (never given on the command line, where ``ps`` shows
    it).  A bad URL raises :class:`DirectoryError`."""
    parts = urlsplit(url)
    if parts.scheme not in ("ldap", "ldaps"):
        raise DirectoryError(f"--directory {url!r}: use ldap://HOST:PORT/BASE-DN or ldaps://")
    base = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not base:
        raise DirectoryError(f"--directory {url!r}: needs a host and a base DN")
    tls = parts.scheme == "ldaps"
    if tls and starttls:
        raise DirectoryError("--directory-starttls is for ldap://, not ldaps://")
    password = None
    if password_file is not None:
        try:
            text = Path(password_file).read_text(encoding="utf-8")
        except OSError as error:
            raise DirectoryError(
                f"cannot read the directory password file {password_file}: {error.strerror}"
            ) from None
        password = text.splitlines()[0] if text else ""
    try:
        port = parts.port or (636 if tls else 389)
    except ValueError:
        raise DirectoryError(f"--directory {url!r}: bad port") from None
    return Location(parts.hostname, port, base, tls, starttls, bind_dn, password, ca_file)


class ConnectionPool:
    """Up to :data:`POOL_SIZE` bound connections, opened on demand; each
    is used by one thread at a time.  A connection that raised is closed,
    never returned to the pool."""

    def __init__(self, location: Location, size: int = POOL_SIZE) -> None:
        self.location = location
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue(maxsize=size)

    def _open(self) -> Any:
        where = self.location
        tls = None
        if where.tls or where.starttls:
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=where.ca_file)
        server = ldap3.Server(
            where.host,
            port=where.port,
            use_ssl=where.tls,
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=CONNECT_TIMEOUT,
        )
        connection = ldap3.Connection(
            server,
            user=where.bind_dn,
            password=where.password,
            receive_timeout=RECEIVE_TIMEOUT,
            raise_exceptions=True,
            auto_referrals=False,
        )
        try:
            connection.open()
            if where.starttls:
                connection.start_tls()
            connection.bind()
        except BaseException:
            _close(connection)
            raise
        return connection

    def _take(self) -> tuple[Any, bool]:
        """An idle connection (and True), else a new one (and False)."""
        try:
            return self._idle.get_nowait(), True
        except queue.Empty:
            pass
        try:
            return self._open(), False
        except (LDAPException, OSError) as error:
            raise DirectoryUnreachable(f"LDAP server {self._where()}: {error}") from None

    def _give_back(self, connection: Any) -> None:
        try:
            self._idle.put_nowait(connection)
        except queue.Full:
            _close(connection)

    def _where(self) -> str:
        return f"{self.location.host}:{self.location.port}"

    def call(self, operation: Callable[[Any], _T]) -> _T:
        """Run ``operation(connection)``; once more on a fresh connection
        if a pooled one turns out to be dead (the server restarted) — but
        not when a fresh one failed: the server is down or too slow, and
        trying again would only double the wait (and could apply a write
        twice)."""
        for attempt in (1, 2):
            connection, reused = self._take()
            try:
                result = operation(connection)
            except ldap3.core.exceptions.LDAPOperationResult as error:
                self._give_back(connection)
                if error.result in UNAVAILABLE_CODES:
                    raise DirectoryUnreachable(
                        f"LDAP server {self._where()}: {error.description}"
                    ) from None
                raise
            except (LDAPException, OSError) as error:
                _close(connection)
                # Every idle connection is likely as dead as this one.
                self.close()
                if not reused or attempt == 2:
                    raise DirectoryUnreachable(f"LDAP server {self._where()}: {error}") from None
                continue
            except BaseException:
                _close(connection)
                raise
            self._give_back(connection)
            return result
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close every idle connection."""
        while True:
            try:
                _close(self._idle.get_nowait())
            except queue.Empty:
                return


def _close(connection: Any) -> None:
    try:
        connection.unbind()
    except Exception:  # closing a broken connection may fail in many ways
        return
