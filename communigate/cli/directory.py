"""``communigate directory export|import``: move the directory between the
files of the base directory and an LDAP server.

``export --to ldap://HOST:PORT/BASE-DN`` copies the directory the command
opened (the files of ``--base``) into an LDAP directory that has not been
initialised; ``import --from ldap://...`` copies an LDAP directory into the
files of ``--base`` (whose own directory files must not exist yet: move
``Settings/Main.settings`` aside first).  Mail and File Storage stay in the
base directory either way.  Progress goes to stderr every few seconds.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from communigate.cli.arguments import CommandFailed
from communigate.store.files import FileDirectory
from communigate.store.ldap.directory import LdapDirectory
from communigate.store.migrate import copy_directory
from communigate.store.open import open_directory


def add_parser(sub: Any) -> None:
    """Add the ``directory`` subcommand."""
    parser = sub.add_parser("directory", help="move the directory to LDAP (export) and back")
    parser.add_argument("action", choices=["export", "import"])
    parser.add_argument("--to", help="export: ldap://HOST:PORT/BASE-DN or ldaps://...")
    parser.add_argument("--from", dest="source", help="import: ldap://HOST:PORT/BASE-DN")
    parser.add_argument("--ldap-bind-dn", help="the DN to bind to that LDAP directory as")
    parser.add_argument("--ldap-password-file", help="a file whose first line is its password")
    parser.add_argument("--ldap-starttls", action="store_true", help="StartTLS on ldap://")


def _report(line: str) -> None:
    print(f"communigate: {line}", file=sys.stderr, flush=True)


def cmd_directory(args: argparse.Namespace, directory: FileDirectory) -> None:
    """Copy the directory one way or the other."""
    option = "--to" if args.action == "export" else "--from"
    url = args.to if args.action == "export" else args.source
    if not url:
        raise CommandFailed(f"directory {args.action} needs {option} ldap://HOST:PORT/BASE-DN")
    ldap = open_directory(
        directory.base,
        url,
        starttls=args.ldap_starttls,
        bind_dn=args.ldap_bind_dn,
        password_file=args.ldap_password_file,
        repair=False,
        # Exporting reads nothing from LDAP; importing reads it all.
        lazy=args.action == "export",
    )
    assert isinstance(ldap, LdapDirectory)
    source, target = (directory, ldap) if args.action == "export" else (ldap, directory)
    if not source.is_initialised():
        raise CommandFailed(f"nothing to {args.action}: the source is not initialised")

    def hold(on: bool) -> None:
        # While accounts pour in, the LDAP side need not re-read itself
        # after each one; once at the end is enough.
        if target is ldap:
            ldap.on_change = (lambda: None) if on else None
            if not on:
                ldap.refresh()

    count = copy_directory(source, target, _report, hold)
    print(f"{args.action}ed {count} accounts")
