"""``communigate alias|group|forwarder``: the named objects beside accounts."""

from __future__ import annotations

import argparse
from typing import Any

from communigate.cli.arguments import CommandFailed, address
from communigate.store import settingsformat
from communigate.store.acl import ACLError, Identity, check_identifier
from communigate.store.directory import DirectoryError, ObjectKind, check_object_name
from communigate.store.files import FileDirectory
from communigate.store.filestorage import FileStorage, StorageError, normalise


def add_parsers(sub: Any) -> None:
    """Add the alias, group and forwarder subcommands."""
    alias = sub.add_parser("alias", help="account aliases: another name for an account")
    alias.add_argument("action", choices=["add", "remove", "list"])
    alias.add_argument("name", nargs="?", metavar="ALIAS@DOMAIN | DOMAIN")
    alias.add_argument("target", nargs="?", metavar="ACCOUNT")

    group = sub.add_parser("group", help="groups: a name that delivers to its members")
    group.add_argument(
        "action", choices=["create", "delete", "add-member", "remove-member", "list"]
    )
    group.add_argument("name", nargs="?", metavar="GROUP@DOMAIN | DOMAIN")
    group.add_argument("members", nargs="*", metavar="MEMBER")

    forwarder = sub.add_parser("forwarder", help="forwarders: a name that leads to an address")
    forwarder.add_argument("action", choices=["create", "delete", "list"])
    forwarder.add_argument("name", nargs="?", metavar="NAME@DOMAIN | DOMAIN")
    forwarder.add_argument("target", nargs="?", metavar="ADDRESS")


def add_files_parser(sub: Any) -> None:
    """The ``files`` subcommand: File Storage access rights."""
    files = sub.add_parser("files", help="File Storage: per-directory rights and privacy")
    files.add_argument("action", choices=["show", "set", "private", "public"])
    files.add_argument("owner", metavar="OWNER@DOMAIN")
    files.add_argument("path", nargs="?", default="/", metavar="DIRECTORY")
    files.add_argument("identifier", nargs="?", metavar="IDENTIFIER")
    files.add_argument("rights", nargs="?", metavar="RIGHTS", help="r, rw, or '' to remove")


def cmd_files(args: argparse.Namespace, directory: FileDirectory) -> None:
    """Show or change who may read and write a directory of a File Storage."""
    domain, name = _split(directory, args.owner, "files")
    found = directory.find_object(domain, name)
    if found is None or found.kind is not ObjectKind.ACCOUNT:
        raise CommandFailed(f"unknown account {name}@{domain}")
    storage = FileStorage(directory.account_path(domain, name), Identity(domain, name))
    try:
        path = normalise(args.path)
        entries = storage.access()
        stored = entries.get(path)
        entry: dict[str, settingsformat.Value] = dict(stored) if isinstance(stored, dict) else {}
        if args.action in ("private", "public"):
            entry["Private"] = "YES" if args.action == "private" else "NO"
            storage.set_access(path, entry)
        elif args.action == "set":
            if not args.identifier:
                raise CommandFailed("files set needs an identifier and rights")
            rights = args.rights or ""
            if any(letter not in "rw" for letter in rights):
                raise CommandFailed("file rights are r and w")
            current = entry.get("Access")
            access: dict[str, settingsformat.Value] = (
                dict(current) if isinstance(current, dict) else {}
            )
            identifier = check_identifier(args.identifier)
            if rights:
                access[identifier] = "".join(letter for letter in "rw" if letter in rights)
            else:
                access.pop(identifier, None)
            entry["Access"] = access
            storage.set_access(path, entry)
    except (StorageError, ACLError) as error:
        raise CommandFailed(str(error)) from None
    for directory_path, settings in sorted(storage.access().items()):
        print(f"{directory_path} {settingsformat.dumps(settings)}")


def _split(directory: FileDirectory, text: str | None, what: str) -> tuple[str, str]:
    if not text:
        raise CommandFailed(f"{what} needs NAME@DOMAIN")
    full = address(text, directory)
    return full.domain, full.local


def _list(directory: FileDirectory, kind: ObjectKind, domain: str | None) -> None:
    record = directory.domain(domain or directory.main_domain())
    if record is None:
        raise CommandFailed(f"unknown domain {domain}")
    for name, value in sorted(directory.objects(record.name, kind).items()):
        targets = value.get("Members") if isinstance(value, dict) else value
        print(f"{name}@{record.name} -> {', '.join(settingsformat.as_string_list(targets))}")


def _simple_object(
    args: argparse.Namespace, directory: FileDirectory, kind: ObjectKind, value: Any
) -> None:
    """list, create (``value(domain)`` gives what to store) or remove."""
    if args.action == "list":
        _list(directory, kind, args.name)
        return
    domain, name = _split(directory, args.name, f"{kind.value} {args.action}")
    if args.action in ("add", "create"):
        directory.add_object(kind, domain, name, value(domain))
    else:
        directory.change_object(kind, domain, name, lambda _old: None)


def cmd_alias(args: argparse.Namespace, directory: FileDirectory) -> None:
    """Add, remove or list account aliases."""

    def account(domain: str) -> str:
        if not args.target:
            raise DirectoryError("alias add needs the account it names")
        name = check_object_name(args.target.split("@")[0])
        found = directory.find_object(domain, name)
        if found is None or found.kind is not ObjectKind.ACCOUNT:
            raise DirectoryError(f"no account {name}@{domain}")
        return name

    _simple_object(args, directory, ObjectKind.ALIAS, account)


def cmd_group(args: argparse.Namespace, directory: FileDirectory) -> None:
    """Create, delete or list groups; add or remove members."""
    if args.action == "list":
        _list(directory, ObjectKind.GROUP, args.name)
        return
    domain, name = _split(directory, args.name, f"group {args.action}")
    members = [member.lower() for member in args.members]
    if args.action == "create":
        directory.add_object(ObjectKind.GROUP, domain, name, {"Members": members})
    elif args.action == "delete":
        directory.change_object(ObjectKind.GROUP, domain, name, lambda _old: None)
    else:
        adding = args.action == "add-member"

        def change(old: Any) -> Any:
            current = [m for m in old.get("Members", []) if isinstance(m, str)]
            if adding:
                current += [m for m in members if m not in current]
            else:
                missing = [m for m in members if m not in current]
                if missing:
                    raise DirectoryError(f"not members of {name}@{domain}: {', '.join(missing)}")
                current = [m for m in current if m not in members]
            return {**old, "Members": current}

        directory.change_object(ObjectKind.GROUP, domain, name, change)


def cmd_forwarder(args: argparse.Namespace, directory: FileDirectory) -> None:
    """Create, delete or list forwarders."""

    def target(domain: str) -> str:
        if not args.target or "@" not in args.target:
            raise DirectoryError("forwarder create needs the address it forwards to")
        return str(args.target).lower()

    _simple_object(args, directory, ObjectKind.FORWARDER, target)
