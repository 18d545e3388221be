"""``communigate domain trusted-ca``: a domain's CA for client certificates.

``domain trusted-ca DOMAIN --ca FILE [--crl FILE]`` installs the CA (and
revocation list) whose client certificates may log in to the domain's
accounts with SASL EXTERNAL (:mod:`communigate.store.trustedca`); without
``--crl`` a revocation list kept from before is removed.  ``--clear``
removes both.  A file that is not a PEM CA certificate or a CRL of that CA
is refused with one line and nothing is written.  The server reads the
files at the next TLS handshake.
"""

from __future__ import annotations

import argparse
from typing import Any

from communigate.cli.arguments import CommandFailed
from communigate.store import trustedca
from communigate.store.files import FileDirectory


def add_arguments(parser: Any) -> None:
    """Add the options of ``domain trusted-ca`` to the ``domain`` parser."""
    parser.add_argument("--ca", help="trusted-ca: a PEM file of CA certificates")
    parser.add_argument("--crl", help="trusted-ca: a PEM certificate revocation list of that CA")
    parser.add_argument(
        "--clear", action="store_true", help="trusted-ca: remove the domain's CA and CRL"
    )


def _read(path: str) -> bytes:
    """The bytes of a file named on the command line."""
    with open(path, "rb") as handle:
        return handle.read()


def cmd_trusted_ca(args: argparse.Namespace, directory: FileDirectory) -> None:
    """Install or clear the trusted CA of the domain ``args.name``."""
    if args.name is None:
        raise CommandFailed("domain trusted-ca needs a domain name")
    record = directory.domain(args.name)
    if record is None or record.name != args.name.lower():
        raise CommandFailed(f"unknown domain {args.name}")
    folder = directory.domain_folder(record.name) / "Settings"
    if args.clear:
        if args.ca or args.crl:
            raise CommandFailed("domain trusted-ca takes --clear or --ca, not both")
        removed = trustedca.clear(folder)
        print(f"{'removed the' if removed else 'there was no'} trusted CA of {record.name}")
        return
    if not args.ca:
        raise CommandFailed(
            "domain trusted-ca needs --ca FILE (and optionally --crl FILE) or --clear"
        )
    ca_pem = _read(args.ca)
    crl_pem = _read(args.crl) if args.crl else None
    try:
        trusted = trustedca.install(folder, ca_pem, crl_pem)
    except trustedca.TrustedCAError as error:
        raise CommandFailed(str(error)) from None
    names = ", ".join(authority.subject.rfc4514_string() for authority in trusted.authorities)
    revocations = " with its revocation list" if trusted.revocations is not None else ""
    print(f"installed trusted CA for {record.name}: {names}{revocations}")
