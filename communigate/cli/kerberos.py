"""``communigate domain kerberos``: a domain's Kerberos keys (GSSAPI).

``domain kerberos import DOMAIN FILE.keytab`` merges the keys of a keytab
(as ``kadmin ktadd`` or ``ktutil`` write it) into the domain's own
``Settings/kerberos.keytab``: a key of the same principal, version and
encryption type is replaced, keys of other versions stay (tickets issued
before a rekey keep working until they expire).  ``domain kerberos list
DOMAIN`` shows realm, principal, issue time, version and encryption type of
each key (never the key); ``domain kerberos delete DOMAIN PRINCIPAL
[--kvno N]`` removes a principal's keys, or only one version of them.

The keys name the services the domain answers for: ``imap/company.com``
(or ``pop/...``, or a bare ``company.com``) in any realm; the server picks
the domain from the service name of a client's ticket and accepts the
ticket with that domain's keys only.  A file that is not a keytab is
refused with one line and nothing is written.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from communigate.cli.arguments import CommandFailed
from communigate.cred.kerberos import keytab
from communigate.cred.kerberos.keys import keytab_path, read_keys, store_keys

ACTIONS = ("import", "list", "delete")
USAGE = (
    "usage: domain kerberos import DOMAIN FILE.keytab | list DOMAIN | "
    "delete DOMAIN PRINCIPAL [--kvno N]"
)


def add_arguments(domain: argparse.ArgumentParser) -> None:
    """The options of ``domain kerberos`` on the ``domain`` parser."""
    domain.add_argument("--kvno", type=int, help="kerberos delete: only this key version")


def _issued(timestamp: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def rows(entries: list[keytab.KeytabEntry]) -> list[tuple[str, str, str, str, str]]:
    """The listed columns of each key: realm, principal, issued, version,
    encryption type."""
    return [
        (
            entry.realm,
            "/".join(entry.components),
            _issued(entry.timestamp),
            str(entry.kvno),
            keytab.enctype_name(entry.enctype),
        )
        for entry in entries
    ]


def table(lines: list[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell."""
    header = ("REALM", "PRINCIPAL", "ISSUED", "VERSION", "ENCRYPTION")
    every = [header, *lines]
    widths = [max(len(line[column]) for line in every) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in every
    )


def check_keytab(path: Path) -> str | None:
    """Why a stored keytab cannot be used, None if it parses."""
    try:
        read_keys(path)
    except keytab.KeytabError as error:
        return str(error)
    except OSError as error:
        return f"cannot be read: {error.strerror}"
    return None


def _stored(path: Path) -> list[keytab.KeytabEntry]:
    try:
        return read_keys(path)
    except (keytab.KeytabError, OSError) as error:
        raise CommandFailed(f"{path}: {error}") from None


def cmd_kerberos(args: argparse.Namespace, directory: Any) -> None:
    """Run ``domain kerberos ACTION DOMAIN [ARGUMENT]`` (the action is in
    ``args.name``, the rest in ``args.settings``)."""
    action, rest = args.name, list(args.settings)
    if action not in ACTIONS or not rest:
        raise CommandFailed(USAGE)
    name = rest.pop(0)
    record = directory.domain(name)
    if record is None or record.name != name.lower():
        raise CommandFailed(f"unknown domain {name}")
    path = keytab_path(directory.domain_folder(record.name))
    if action == "list":
        if rest:
            raise CommandFailed(USAGE)
        entries = _stored(path)
        if entries:
            print(table(list(rows(entries))))
        else:
            print(f"{record.name} has no Kerberos keys")
        return
    if len(rest) != 1:
        raise CommandFailed(USAGE)
    if action == "import":
        _import(path, Path(rest[0]), record.name)
    else:
        _delete(path, rest[0], args.kvno, record.name)


def _import(path: Path, source: Path, domain: str) -> None:
    try:
        data = source.read_bytes()
    except OSError as error:
        raise CommandFailed(f"{source}: {error.strerror}") from None
    try:
        new = keytab.parse(data)
    except keytab.KeytabError as error:
        raise CommandFailed(f"{source}: {error}") from None
    if not new:
        raise CommandFailed(f"{source}: the keytab holds no keys")
    store_keys(path, keytab.merge(_stored(path), new))
    principals = sorted({entry.principal for entry in new})
    print(f"imported {len(new)} key{'s' * (len(new) != 1)} into {domain}: {', '.join(principals)}")


def _delete(path: Path, principal: str, kvno: int | None, domain: str) -> None:
    entries = _stored(path)
    kept = keytab.remove(entries, principal, kvno)
    removed = len(entries) - len(kept)
    if not removed:
        version = f" version {kvno}" if kvno is not None else ""
        raise CommandFailed(f"{domain} has no key of {principal}{version}")
    store_keys(path, kept)
    print(f"deleted {removed} key{'s' * (removed != 1)} of {principal} from {domain}")
