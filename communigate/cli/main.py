"""The ``communigate`` administration command.

Every call names the base directory with ``--base`` (default: the
``COMMUNIGATE_BASE`` environment variable, else ``/var/lib/communigate``),
before or after the subcommand.  Settings are given as ``Key=Value`` with
values in CommuniGate's syntax (``FailedLoginFlow=(3,1m)``,
``HideAccountUnknown=YES``, numbers as ``#20``); ``Key=`` with nothing
after ``=`` removes the key so the default applies again.  Unknown keys and
values the server would not understand are refused
(:mod:`communigate.store.schema`).  Errors print one line on stderr and exit
with status 1; nothing is half-written.  A running server sees every change
within a second.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from typing import Any

from communigate import __version__
from communigate.cli import certificates as certificate_commands
from communigate.cli import check, objects, values
from communigate.cli import directory as directory_commands
from communigate.cli import kerberos as kerberos_commands
from communigate.cli import listeners as listener_commands
from communigate.cli import queue as queue_commands
from communigate.cli import roster as roster_commands
from communigate.cli.arguments import (
    DEFAULT_BASE,
    CommandFailed,
    address,
    base_directory,
)
from communigate.control import admin as control
from communigate.cred import derived, passwords
from communigate.cred.errors import TemporaryFailure
from communigate.portal import rights
from communigate.portal.delivery import DeliveryError, deliver
from communigate.portal.router import (
    Router,
    RouterTableError,
    parse_record,
    parse_table,
)
from communigate.store import acl, certificates, schema, settingsformat
from communigate.store.directory import DERIVED_FROM_PASSWORD, DirectoryError
from communigate.store.files import DomainNotEmpty, FileDirectory
from communigate.store.initialise import default_main_domain, initialise
from communigate.store.mailstore import MailboxError, MailStore, canonical_name
from communigate.store.open import DIRECTORY_VARIABLE, open_directory


def _directory(args: argparse.Namespace) -> FileDirectory:
    # Settings as they are stored: shown and checked without repairs.
    directory = open_directory(
        base_directory(args.base),
        args.directory or os.environ.get(DIRECTORY_VARIABLE),
        starttls=args.directory_starttls,
        bind_dn=args.directory_bind_dn,
        password_file=args.directory_password_file,
        repair=False,
        lazy=True,
    )
    if args.command not in ("init", "directory") and not directory.is_initialised():
        raise CommandFailed(f"{directory.base} is not initialised; run 'communigate init' first")
    return directory


#: Shown instead of a password: ``(set)``, which ``Password=`` refuses, so
#: output fed back in cannot set it (:data:`values.HIDDEN_MARK`).
HIDDEN_VALUE: list[settingsformat.Value] = [values.HIDDEN_MARK.strip("()")]


def hide_passwords(settings: dict[str, settingsformat.Value]) -> dict[str, settingsformat.Value]:
    """``settings`` with every password (its own, its AccountDefaults')
    replaced by ``(set)``: neither the clear nor the hashed form is shown."""
    shown = dict(settings)
    for key in ("Password", "SubmitRelayPassword", *DERIVED_FROM_PASSWORD):
        if key in shown:
            shown[key] = HIDDEN_VALUE
    defaults = shown.get("AccountDefaults")
    if isinstance(defaults, dict):
        shown["AccountDefaults"] = hide_passwords(defaults)
    return shown


def print_settings(settings: object) -> None:
    """Print a dictionary in CommuniGate's syntax, passwords hidden."""
    if isinstance(settings, dict):
        sys.stdout.write(settingsformat.dumps_dictionary(hide_passwords(settings)))


def read_password(args: argparse.Namespace) -> str | bytes:
    """``--password``, else a prompt on a terminal, else one line of stdin
    (its bytes, so that a line that is not UTF-8 is refused, not altered)."""
    if args.password is not None:
        return str(args.password)
    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != first:
            raise CommandFailed("the passwords differ")
        return first
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        return sys.stdin.readline().rstrip("\r\n")
    return bytes(stream.readline()).rstrip(b"\r\n")


def password_changes(
    directory: FileDirectory, domain: str, own: dict[str, object], password: str | bytes
) -> dict[str, settingsformat.Value | None]:
    """The settings a new password sets: ``Password`` under the account's
    effective PasswordEncryption, with its SCRAM secrets (and NT hash where
    the domain offers NTLM: :mod:`communigate.cred.derived`); an empty
    one, one that is not UTF-8 or one the scheme cannot take (bcrypt: 72
    bytes) is refused (:func:`passwords.check_new`)."""
    record = directory.domain(domain)
    encryption = own.get("PasswordEncryption")
    if not isinstance(encryption, str):
        layers = [
            directory.server_settings().get("AccountDefaults"),
            record.settings.get("AccountDefaults") if record else None,
        ]
        encryption = "clear"
        for layer in layers:
            if isinstance(layer, dict) and isinstance(layer.get("PasswordEncryption"), str):
                encryption = str(layer["PasswordEncryption"])
    nt_hash = derived.wants_nt_hash(record.settings if record else {})
    try:
        return derived.password_settings(password, encryption, nt_hash)
    except (passwords.UnknownEncryption, passwords.UnacceptablePassword) as error:
        raise CommandFailed(str(error)) from None


# -- commands ---------------------------------------------------------------


def cmd_init(args: argparse.Namespace, directory: FileDirectory) -> None:
    if args.if_missing and directory.is_initialised():
        print(f"{directory.base} is already initialised; nothing changed")
        return
    password = initialise(
        directory, args.main_domain or default_main_domain(), args.postmaster_password
    )
    print(f"initialised {directory.base}: Main Domain {directory.main_domain()}")
    if args.postmaster_password is None:
        print(f"postmaster@{directory.main_domain()} password: {password}")


def cmd_server(args: argparse.Namespace, directory: FileDirectory) -> None:
    changes = values.parse_assignments(args.settings)
    schema.check_changes(schema.Level.SERVER, changes)
    if changes:
        directory.update_server_settings(changes)
    print_settings(dict(directory.server_settings()))


def cmd_domain(args: argparse.Namespace, directory: FileDirectory) -> None:
    if args.action == "kerberos":
        kerberos_commands.cmd_kerberos(args, directory)
        return
    if args.action == "trusted-ca":
        certificate_commands.cmd_trusted_ca(args, directory)
        return
    if args.action == "list":
        for name in directory.domain_names():
            print(name)
        return
    if args.name is None:
        raise CommandFailed(f"domain {args.action} needs a domain name")
    changes = values.parse_assignments(args.settings)
    if args.ip:
        changes["IPAddresses"] = list(args.ip)
    if args.alias:
        changes["DomainAliases"] = [alias.lower() for alias in args.alias]
    schema.check_changes(schema.Level.DOMAIN, changes)
    if args.action == "create":
        settings = {key: value for key, value in changes.items() if value is not None}
        print(f"created domain {directory.create_domain(args.name, settings)}")
    elif args.action == "delete":
        try:
            directory.delete_domain(args.name, only_if_empty=not args.force)
        except DomainNotEmpty as error:
            raise CommandFailed(f"{error}; use --force to delete it with all it holds") from None
        print(f"deleted domain {args.name.lower()}")
    elif args.action == "certificate":
        record = directory.domain(args.name)
        if record is None or record.name != args.name.lower():
            raise CommandFailed(f"unknown domain {args.name}")
        if not args.cert or not args.key:
            raise CommandFailed("domain certificate needs --cert and --key")
        with open(args.cert, "rb") as cert, open(args.key, "rb") as key:
            pair = cert.read(), key.read()
        try:
            certificates.install(directory.domain_folder(record.name) / "Settings", *pair)
        except certificates.CertificateError as error:
            raise CommandFailed(str(error)) from None
        print(f"installed certificate for {record.name}")
    elif args.action == "settings":
        if changes:
            print_settings(directory.update_domain_settings(args.name, changes))
        else:
            record = directory.domain(args.name)
            if record is None or record.name != args.name.lower():
                raise CommandFailed(f"unknown domain {args.name}")
            print_settings(dict(record.settings))


def cmd_account(args: argparse.Namespace, directory: FileDirectory) -> None:
    if args.action == "list":
        domain = args.name or directory.main_domain()
        record = directory.domain(domain)
        if record is None:
            raise CommandFailed(f"unknown domain {domain}")
        for name in directory.account_names(record.name):
            print(f"{name}@{record.name}")
        return
    if args.name is None:
        raise CommandFailed(f"account {args.action} needs NAME@DOMAIN")
    full = address(args.name, directory)
    if args.action == "create":
        changes = values.parse_assignments(args.settings)
        schema.check_changes(schema.Level.ACCOUNT, changes)
        settings: dict[str, object] = {
            key: value for key, value in changes.items() if value is not None
        }
        if args.password is not None:
            for key, value in password_changes(
                directory, full.domain, settings, args.password
            ).items():
                if value is not None:
                    settings[key] = value
        print(f"created account {directory.create_account(full.domain, full.local, settings)}")  # type: ignore[arg-type]
    elif args.action == "delete":
        directory.delete_account(full.domain, full.local)
        print(f"deleted account {full}")
        # A running server ends the account's sessions now, not at its sweep.
        ended = control.end_deleted_sessions(directory, full.domain, full.local)
        if ended:
            print(f"ended {ended} live session{'' if ended == 1 else 's'} of {full}")
    elif args.action == "rename":
        if not args.settings:
            raise CommandFailed("account rename needs the new name")
        directory.rename_account(full.domain, full.local, args.settings[0])
        print(f"renamed {full} to {args.settings[0].lower()}@{full.domain}")
    elif args.action == "settings":
        changes = values.parse_assignments(args.settings)
        schema.check_changes(schema.Level.ACCOUNT, changes)
        if changes:
            print_settings(directory.update_account_settings(full.domain, full.local, changes))
        else:
            print_settings(directory.raw_account_settings(full.domain, full.local))
    elif args.action == "password":
        own = directory.raw_account_settings(full.domain, full.local)
        changes = password_changes(directory, full.domain, dict(own), read_password(args))
        directory.update_account_settings(full.domain, full.local, changes)
        print(f"password of {full} changed")


def cmd_router(args: argparse.Namespace, directory: FileDirectory) -> None:
    table = directory.router_table()
    lines = [line for line in table.splitlines() if line.strip()]
    if args.action == "show":
        sys.stdout.write("".join(line + "\n" for line in lines))
        return
    if args.action == "set":
        source = sys.stdin if args.record in (None, "-") else open(args.record, encoding="utf-8")
        with source:
            text = source.read()
        try:
            parse_table(text)
        except RouterTableError as error:
            raise CommandFailed(str(error)) from None
        directory.set_router_table(text if text.endswith("\n") or not text else text + "\n")
        return
    if not args.record:
        raise CommandFailed(f"router {args.action} needs a record")
    record = args.record.strip()
    if args.action == "add":
        try:
            parse_record(record)
        except RouterTableError as error:
            raise CommandFailed(str(error)) from None
        lines.append(record)
    elif args.action == "remove":
        if record not in [line.strip() for line in lines]:
            raise CommandFailed(f"no such record: {record}")
        lines = [line for line in lines if line.strip() != record]
    directory.set_router_table("".join(line + "\n" for line in lines))


def cmd_rights(args: argparse.Namespace, directory: FileDirectory) -> None:
    full = address(args.account, directory)
    target = address(f"x@{args.domain}", directory).domain if args.domain else full.domain
    holder = full.local if target == full.domain else str(full)
    if directory.find_object(full.domain, full.local) is None:
        raise CommandFailed(f"unknown account {full}")
    known = {right.lower(): right for right in (*rights.SERVER_RIGHTS, *rights.DOMAIN_RIGHTS)}
    wanted = []
    for name in args.rights:
        if name.lower() not in known:
            raise CommandFailed(f"unknown right {name}; known: {', '.join(known.values())}")
        right = known[name.lower()]
        if right in rights.SERVER_RIGHTS and (
            target != directory.main_domain() or full.domain != target
        ):
            raise CommandFailed("server rights are for Main Domain accounts only")
        wanted.append(right)
    if args.action == "grant":
        held = directory.update_access_rights(
            target, holder, lambda old: old + [r for r in wanted if r not in old]
        )
    elif args.action == "revoke":
        held = directory.update_access_rights(
            target, holder, lambda old: [r for r in old if r not in wanted]
        )
    else:
        held = settingsformat.as_string_list(directory.access_rights(target).get(holder))
    print(f"{full} in {target}: {', '.join(held) or '(none)'}")


def cmd_acl(args: argparse.Namespace, directory: FileDirectory) -> None:
    full = address(args.owner, directory)
    found = directory.find_object(full.domain, full.local)
    if found is None or found.kind.value != "account":
        raise CommandFailed(f"unknown account {full}")
    store = MailStore(directory.account_path(full.domain, full.local))
    try:
        name = canonical_name(args.mailbox)
        if not store.exists(name) and name != "INBOX":
            raise CommandFailed(f"no mailbox {name} in {full}")
        if name == "INBOX":
            store.mailbox(name).create()
        entries = store.acl(name)
        if args.action in ("set", "delete"):
            if not args.identifier:
                raise CommandFailed(f"acl {args.action} needs an identifier")
            identifier = acl.check_identifier(args.identifier)
            if args.action == "delete":
                entries.pop(identifier, None)
            else:
                entries[identifier] = acl.normalise_rights(args.rights or "")
                if not entries[identifier]:
                    del entries[identifier]
            store.set_acl(name, entries)
    except (MailboxError, acl.ACLError) as error:
        raise CommandFailed(str(error)) from None
    for identifier, granted in entries.items():
        print(f"{identifier} {granted}")


def cmd_deliver(args: argparse.Namespace, directory: FileDirectory) -> None:
    full = address(args.address, directory)
    message = sys.stdin.buffer.read()
    try:
        delivered = deliver(directory, Router(directory), full, message)
    except DeliveryError as error:
        raise CommandFailed(str(error)) from None
    for account in delivered:
        print(f"delivered to {account}")


COMMANDS = {
    "init": cmd_init,
    "server": cmd_server,
    "domain": cmd_domain,
    "account": cmd_account,
    "alias": objects.cmd_alias,
    "group": objects.cmd_group,
    "forwarder": objects.cmd_forwarder,
    "router": cmd_router,
    "deliver": cmd_deliver,
    "rights": cmd_rights,
    "acl": cmd_acl,
    "files": objects.cmd_files,
    "check": check.cmd_check,
    "listener": listener_commands.cmd_listener,
    "sessions": control.cmd_sessions,
    "kick": control.cmd_kick,
    "status": control.cmd_status,
    "reload": control.cmd_reload,
    "queue": queue_commands.cmd_queue,
    "roster": roster_commands.cmd_roster,
    "directory": directory_commands.cmd_directory,
}


def add_directory_options(parser: argparse.ArgumentParser, hidden: bool = False) -> None:
    """``--directory`` and its companions; ``hidden`` for the copies each
    subcommand accepts (a value given before the subcommand stays)."""

    def add(flag: str, text: str, **extra: Any) -> None:
        if hidden:
            extra["default"] = argparse.SUPPRESS
        parser.add_argument(flag, help=argparse.SUPPRESS if hidden else text, **extra)

    add(
        "--directory",
        "domains and accounts in LDAP: ldap://HOST:PORT/BASE-DN or ldaps://... "
        "(default: $COMMUNIGATE_DIRECTORY, else files in the base directory)",
    )
    add("--directory-bind-dn", "the DN to bind to the LDAP directory as")
    add("--directory-password-file", "a file whose first line is the bind password")
    add("--directory-starttls", "StartTLS on an ldap:// directory", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    top = argparse.ArgumentParser(prog="communigate", description=__doc__.split("\n")[0])
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    top.add_argument(
        "--base",
        help=f"base directory (default: $COMMUNIGATE_BASE, else {DEFAULT_BASE})",
    )
    add_directory_options(top)
    sub = top.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", help="create a base directory with its Main Domain")
    init.add_argument("--main-domain", help="name of the Main Domain (default: this host)")
    init.add_argument("--postmaster-password", help="(default: generated and printed)")
    init.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing (and succeed) if the base directory is already initialised",
    )

    server = sub.add_parser("server", help="show or change server settings")
    server.add_argument("what", choices=["settings"])
    server.add_argument("settings", nargs="*", metavar="Key=Value")

    domain = sub.add_parser("domain", help="create, delete, list domains; their settings")
    domain.add_argument(
        "action",
        choices=["create", "delete", "list", "settings", "certificate", "kerberos", "trusted-ca"],
    )
    domain.add_argument("name", nargs="?")
    domain.add_argument("settings", nargs="*", metavar="Key=Value")
    domain.add_argument("--ip", action="append", help="an IP address of the domain (repeat)")
    domain.add_argument("--alias", action="append", help="a domain alias (repeat)")
    domain.add_argument("--cert", help="certificate: a PEM file (chain, leaf first)")
    domain.add_argument("--key", help="certificate: the PEM private key file")
    kerberos_commands.add_arguments(domain)
    certificate_commands.add_arguments(domain)
    domain.add_argument(
        "--force", action="store_true", help="delete: even a domain that still has accounts"
    )

    account = sub.add_parser("account", help="create, delete, rename, list accounts")
    account.add_argument(
        "action", choices=["create", "delete", "rename", "list", "settings", "password"]
    )
    account.add_argument("name", nargs="?", metavar="NAME@DOMAIN")
    account.add_argument("settings", nargs="*", metavar="Key=Value | NEWNAME")
    account.add_argument("--password", help="set with the account's PasswordEncryption")

    objects.add_parsers(sub)
    objects.add_files_parser(sub)

    router = sub.add_parser("router", help="show or change the Router table")
    router.add_argument("action", choices=["show", "set", "add", "remove"])
    router.add_argument("record", nargs="?", help="a record, or for 'set' a file (- = stdin)")

    rights_parser = sub.add_parser(
        "rights", help="server and domain rights (Master, CanImpersonate, ...)"
    )
    rights_parser.add_argument("action", choices=["show", "grant", "revoke"])
    rights_parser.add_argument("account", metavar="NAME@DOMAIN")
    rights_parser.add_argument("rights", nargs="*", metavar="RIGHT")
    rights_parser.add_argument(
        "--domain", help="the domain the rights apply to (default: the account's own)"
    )

    acl_parser = sub.add_parser("acl", help="show or change a mailbox's access control list")
    acl_parser.add_argument("action", choices=["show", "set", "delete"])
    acl_parser.add_argument("owner", metavar="OWNER@DOMAIN")
    acl_parser.add_argument("mailbox", metavar="MAILBOX")
    acl_parser.add_argument("identifier", nargs="?", metavar="IDENTIFIER")
    acl_parser.add_argument("rights", nargs="?", metavar="RIGHTS", help="e.g. lrs")

    deliver_parser = sub.add_parser("deliver", help="deliver a message from stdin")
    deliver_parser.add_argument("address", metavar="NAME@DOMAIN")
    check.add_parser(sub)
    listener_commands.add_parser(sub)
    queue_commands.add_parser(sub)
    roster_commands.add_parser(sub)
    directory_commands.add_parser(sub)
    control.add_parsers(sub)
    for parser in sub.choices.values():
        # Accepted after the subcommand too; SUPPRESS keeps one given before.
        parser.add_argument("--base", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        add_directory_options(parser, hidden=True)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 on success, 1 with a one-line error otherwise."""
    parser = build_parser()
    try:
        return _run(parser, argv)
    except SystemExit as stop:
        # argparse's own exits (--help, --version, usage errors) as a status.
        if stop.code is None:
            return 0
        return stop.code if isinstance(stop.code, int) else 1


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args, extra = parser.parse_known_args(argv)
    # argparse does not take positionals after an option (``--password P
    # Key=Value``); such leftovers are more settings.
    if extra and args.command in ("acl", "files"):
        # "-john" is an ACL identifier, not an option.
        positional = [args.identifier, args.rights]
        filled = [value for value in positional if value is not None] + extra
        if len(filled) > 2:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.identifier, args.rights = ([*filled, None, None])[:2]
        extra = []
    if extra:
        if not hasattr(args, "settings") or any(item.startswith("-") for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.settings = [*args.settings, *extra]
    try:
        directory = _directory(args)
        COMMANDS[args.command](args, directory)
    except (
        CommandFailed,
        DirectoryError,
        TemporaryFailure,
        values.ValueSyntaxError,
        schema.SettingError,
    ) as error:
        print(f"communigate: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(
            f"communigate: error: {error.strerror or error}: {error.filename}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
