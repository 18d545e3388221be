"""``communigate roster show ACCOUNT``: an account's XMPP roster.

One line per contact, as RFC 6121 §2.1.2 shows an item: the JID, the
``subscription`` state, ``ask=subscribe`` for the user's pending request,
``pending-in`` for the contact's, the name and the groups; items the server
keeps only for a contact's request waiting for approval are marked
``(request only)``.  The roster version comes first.
"""

from __future__ import annotations

import argparse
from typing import Any

from communigate.cli.arguments import CommandFailed, address
from communigate.store.directory import ObjectKind
from communigate.store.files import FileDirectory
from communigate.store.roster import Roster


def add_parser(sub: Any) -> None:
    """Add the ``roster`` subcommand."""
    parser = sub.add_parser("roster", help="show an account's XMPP roster")
    parser.add_argument("action", choices=["show"])
    parser.add_argument("account", metavar="NAME@DOMAIN")


def cmd_roster(args: argparse.Namespace, directory: FileDirectory) -> None:
    """Run ``roster show``."""
    full = address(args.account, directory)
    found = directory.find_object(full.domain, full.local)
    if found is None or found.kind is not ObjectKind.ACCOUNT:
        raise CommandFailed(f"no account {full}")
    try:
        roster = Roster.load(directory.account_path(full.domain, full.local))
    except ValueError as error:
        raise CommandFailed(f"{full}: unreadable roster: {error}") from None
    items = roster.items()
    print(f"roster of {full}: version {roster.version}, {len(items)} items")
    for item in items:
        parts = [item.jid, f"subscription={item.subscription}"]
        if item.ask:
            parts.append("ask=subscribe")
        if item.pending_in:
            parts.append("pending-in")
        if item.name:
            parts.append(f"name={item.name!r}")
        if item.groups:
            parts.append("groups=" + ",".join(item.groups))
        if not item.listed:
            parts.append("(request only)")
        print("  " + " ".join(parts))
