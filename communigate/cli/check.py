"""``communigate check``: every problem of a base directory, one line each.

Like ``doveconf -n`` or ``prosodyctl check``: the server settings, every
domain's and every account's settings are checked against
:mod:`communigate.store.schema` as they are on disk, the other settings
files of each domain and account (such as the XMPP roster) for their
syntax, and the Router table with the Router's own parser.  Each problem
is one line naming the file (relative to the base directory) and the key.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from communigate.cli.arguments import CommandFailed
from communigate.cli.kerberos import check_keytab
from communigate.cred.kerberos.keys import KEYTAB
from communigate.portal.router import RouterTableError, parse_table
from communigate.store import listeners as listenersfile
from communigate.store import schema, settingsformat, trustedca
from communigate.store.files import ACCOUNT_SUFFIX, FileDirectory
from communigate.store.settingsformat import SettingsSyntaxError, Value


def add_parser(sub: Any) -> None:
    """Add the ``check`` subcommand."""
    sub.add_parser(
        "check", help="check every settings file and the Router table; exit 1 on problems"
    )


class _Report:
    """Problems found so far, and how many files were read."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.lines: list[str] = []
        self.files = 0

    def name(self, path: Path) -> str:
        return str(path.relative_to(self.base))

    def read(self, path: Path) -> dict[str, Value] | None:
        """A settings file's dictionary ({} if absent); None, with a
        problem reported, if it cannot be read."""
        if not path.is_file():
            return {}
        self.files += 1
        try:
            return settingsformat.loads_dictionary(path.read_bytes().decode("utf-8"))
        except (SettingsSyntaxError, UnicodeDecodeError) as error:
            self.lines.append(f"{self.name(path)}: cannot be read: {error}")
        except OSError as error:
            self.lines.append(f"{self.name(path)}: cannot be read: {error.strerror}")
        return None

    def settings(self, path: Path, level: schema.Level) -> dict[str, Value] | None:
        """Read a settings file and report its unknown keys and bad values."""
        settings = self.read(path)
        for problem in schema.problems(schema.TABLES[level], settings or {}):
            self.lines.append(f"{self.name(path)}: {problem.message}")
        return settings


def _domains(base: Path, main: str) -> Iterator[tuple[str, Path]]:
    """Every domain with its folder, the Main Domain first (from the disk,
    not from the directory's table, so one unreadable file spoils nothing
    else)."""
    yield main, base / "Accounts"
    folder = base / "Domains"
    if folder.is_dir():
        for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
            if entry.is_dir() and not entry.name.startswith("."):
                yield entry.name, Path(entry.path)


def problems(directory: FileDirectory) -> tuple[list[str], int]:
    """The problem lines of a base directory and how many files (or, for a
    directory kept elsewhere such as LDAP, entries) were read."""
    if type(directory) is not FileDirectory:
        return _stored_elsewhere(directory)
    base = directory.base
    report = _Report(base)
    server = report.settings(base / "Settings" / "Main.settings", schema.Level.SERVER)
    main = (server or {}).get("MainDomainName")
    if server is not None and not isinstance(main, str):
        report.lines.append("Settings/Main.settings: MainDomainName is missing")
    router = base / "Settings" / "Router.data"
    if router.is_file():
        report.files += 1
        try:
            parse_table(router.read_bytes().decode("utf-8"))
        except (RouterTableError, UnicodeDecodeError) as error:
            report.lines.append(f"{report.name(router)}: {error}")
    _listeners_file(report)
    if not isinstance(main, str):
        return report.lines, report.files
    for _name, folder in _domains(base, main):
        settings = folder / "Settings"
        report.settings(settings / "Domain.settings", schema.Level.DOMAIN)
        if settings.is_dir():
            for other in sorted(settings.glob("*.settings")):
                if other.name != "Domain.settings":
                    report.read(other)
        _domain_files(report, settings)
        for entry in sorted(folder.glob(f"*{ACCOUNT_SUFFIX}")):
            if entry.is_dir() and not entry.name.startswith("."):
                report.settings(entry / "account.settings", schema.Level.ACCOUNT)
                # The account's other files in the same syntax (the XMPP
                # roster and block list, File Storage rights): syntax only.
                for other in sorted(entry.glob("*.settings")):
                    if other.name != "account.settings":
                        report.read(other)
    return report.lines, report.files


def _domain_files(report: _Report, settings: Path) -> None:
    """A domain's Kerberos keys and trusted CAs (files in either kind of
    directory)."""
    if (settings / KEYTAB).is_file():
        report.files += 1
        if (trouble := check_keytab(settings / KEYTAB)) is not None:
            report.lines.append(f"{report.name(settings / KEYTAB)}: {trouble}")
    for problem in trustedca.problems(settings):
        report.lines.append(f"{report.name(settings)}/{problem}")


def _listeners_file(report: _Report) -> None:
    """``Settings/Listeners.settings``, read as the server reads it."""
    base = report.base
    if listenersfile.path(base).is_file():
        report.files += 1
        try:
            listenersfile.read(base)
        except (listenersfile.ListenersError, OSError, UnicodeDecodeError) as error:
            # The error names the file already (absolute): say it relatively.
            text = str(error).replace(f"{listenersfile.path(base)}: ", "")
            report.lines.append(f"{listenersfile.RELATIVE_PATH}: {text}")


def _stored_elsewhere(directory: FileDirectory) -> tuple[list[str], int]:
    """The problems of a directory kept outside the base directory (LDAP):
    its server, domain and account settings against the schema and its
    Router table, read through the directory; the files that stay in the
    base directory (listeners, Kerberos keys, trusted CAs, account files)
    as for the files directory.  Lines name the entry (``server``,
    ``domain company.com``, ``account info@company.com``)."""
    report = _Report(directory.base)

    def check(where: str, level: schema.Level, settings: dict[str, Value]) -> None:
        report.files += 1
        for problem in schema.problems(schema.TABLES[level], settings):
            report.lines.append(f"{where}: {problem.message}")

    server = dict(directory.server_settings())
    server.pop("MainDomainName", None)
    check("server", schema.Level.SERVER, server)
    try:
        parse_table(directory.router_table())
    except RouterTableError as error:
        report.lines.append(f"server Router table: {error}")
    _listeners_file(report)
    for domain in directory.domain_names():
        record = directory.domain(domain)
        check(f"domain {domain}", schema.Level.DOMAIN, dict(record.settings) if record else {})
        _domain_files(report, directory.domain_folder(domain) / "Settings")
        for name in directory.account_names(domain):
            settings = directory.raw_account_settings(domain, name)
            check(f"account {name}@{domain}", schema.Level.ACCOUNT, settings)
            folder = directory.account_path(domain, name)
            for other in sorted(folder.glob("*.settings")) if folder.is_dir() else ():
                if other.name != "account.settings":
                    report.read(other)
    return report.lines, report.files


def cmd_check(args: argparse.Namespace, directory: FileDirectory) -> None:
    """Print every problem and fail, or print a one-line summary."""
    lines, files = problems(directory)
    for line in lines:
        print(line)
    if lines:
        raise CommandFailed(f"{len(lines)} problem{'s' * (len(lines) != 1)} in {directory.base}")
    what = "files" if type(directory) is FileDirectory else "entries and files"
    print(f"{directory.base}: {files} {what} checked, no problems")
