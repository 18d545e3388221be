"""Opening the directory ``twistd communigate`` and ``communigate`` use:
the files of the base directory, or an LDAP server (``--directory
ldap://HOST:PORT/BASE-DN``) with the base directory kept for files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.python.threadpool import ThreadPool

from communigate.store.files import FileDirectory

#: The environment variable that gives ``--directory`` when it is not given.
DIRECTORY_VARIABLE = "COMMUNIGATE_DIRECTORY"


def open_directory(
    base: Path,
    spec: str | None = None,
    *,
    starttls: bool = False,
    bind_dn: str | None = None,
    password_file: str | None = None,
    repair: bool = True,
    max_age: float | None = None,
    lazy: bool = False,
) -> FileDirectory:
    """The directory: files under ``base`` without ``spec``; else the LDAP
    directory ``spec`` names, loaded once (blocking; an unreachable server
    raises :class:`~communigate.store.directory.DirectoryError`); logins
    fail temporarily once its copy in memory is ``max_age`` seconds old.
    ``lazy`` (the command line): only server and domain entries are read
    at once, objects when asked for."""
    if not spec:
        return FileDirectory(base, repair=repair)
    from communigate.store.ldap.connection import parse_location
    from communigate.store.ldap.directory import LdapDirectory

    location = parse_location(spec, starttls, bind_dn, password_file)
    directory = LdapDirectory(base, location, repair=repair, lazy=lazy)
    if max_age is not None:
        directory.max_age = max_age
    directory.refresh()
    return directory


def directory_service(directory: FileDirectory, reactor: Any, pool: ThreadPool) -> IService | None:
    """The service that keeps ``directory`` fresh in a running server
    (LDAP only: the files directory follows its files by itself)."""
    from communigate.store.ldap.directory import LdapDirectory
    from communigate.store.ldap.refresh import DirectoryRefresher

    if isinstance(directory, LdapDirectory):
        return DirectoryRefresher(directory, reactor, pool)
    return None
