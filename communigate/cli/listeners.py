"""``communigate listener add|remove|list``: Settings/Listeners.settings.

The server listens on these beside its twistd listener options
(:mod:`communigate.store.listeners` describes the file).  A bad protocol,
address, port or TLS mode, or a socket another listener already uses, is
refused and nothing is written.
"""

from __future__ import annotations

import argparse
from typing import Any

from communigate.cli.arguments import CommandFailed
from communigate.store import listeners
from communigate.store.files import FileDirectory
from communigate.store.listeners import DEFAULT_BACKLOG, PROTOCOLS, Listener, ListenersError


def add_parser(sub: Any) -> None:
    """Add the ``listener`` subcommand."""
    parser = sub.add_parser(
        "listener", help="addresses and ports the server listens on (Listeners.settings)"
    )
    parser.add_argument("action", choices=["add", "remove", "list"])
    parser.add_argument("protocol", nargs="?", choices=PROTOCOLS, metavar="PROTOCOL")
    parser.add_argument("--address", default="", help="an IP address (default: every address)")
    parser.add_argument("--port", help="the port (add, remove)")
    parser.add_argument(
        "--tls",
        default="",
        help="starttls (default for pop3, imap4, ftp), implicit, or none (lmtp, pwd, tftp)",
    )
    parser.add_argument(
        "--backlog",
        default=str(DEFAULT_BACKLOG),
        help=f"listen backlog (default {DEFAULT_BACKLOG})",
    )


def describe(listener: Listener) -> str:
    """One line for ``listener list``."""
    return f"{listener.protocol} {listener.where()} tls={listener.tls} backlog={listener.backlog}"


def cmd_listener(args: argparse.Namespace, directory: FileDirectory) -> None:
    """Add, remove or list the listeners of Listeners.settings."""
    try:
        current = listeners.read(directory.base)
    except ListenersError as error:
        raise CommandFailed(str(error)) from None
    if args.action == "list":
        for listener in current:
            print(describe(listener))
        return
    if args.protocol is None or args.port is None:
        raise CommandFailed(f"listener {args.action} needs PROTOCOL and --port")
    try:
        wanted = listeners.make_listener(
            args.protocol, args.port, args.address, args.tls, args.backlog
        )
        if args.action == "add":
            listeners.check_new(current, wanted)
            changed, done = [*current, wanted], [wanted]
        else:
            place = (wanted.protocol, wanted.address, wanted.port)
            changed = [
                item for item in current if (item.protocol, item.address, item.port) != place
            ]
            done = [item for item in current if item not in changed]
            if not done:
                raise CommandFailed(f"no {wanted.protocol} listener on {wanted.where()}")
    except ListenersError as error:
        raise CommandFailed(str(error)) from None
    listeners.write(directory.base, changed)
    for listener in done:
        print(f"{'added' if args.action == 'add' else 'removed'} {describe(listener)}")
    print("restart the server, or run 'communigate reload', to apply the change")
