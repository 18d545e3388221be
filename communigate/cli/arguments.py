"""Reading the arguments every subcommand shares: the base directory and
account addresses; and the one-line error they raise."""

from __future__ import annotations

import os
from pathlib import Path

from communigate.portal.names import BadLoginName, FullName
from communigate.store.files import FileDirectory

DEFAULT_BASE = "/var/lib/communigate"


class CommandFailed(Exception):
    """An error to report on one line."""


def base_directory(argument: str | None) -> Path:
    """The base directory from ``--base``, the environment or the default."""
    return Path(argument or os.environ.get("COMMUNIGATE_BASE") or DEFAULT_BASE)


def address(text: str, directory: FileDirectory) -> FullName:
    """A ``name@domain`` argument (``%`` accepted); a bare name is in the
    Main Domain; a domain alias gives the real domain."""
    if "@" not in text:
        text = text.replace("%", "@")
    try:
        full = FullName.parse(text, directory.main_domain())
    except BadLoginName as error:
        raise CommandFailed(str(error)) from None
    record = directory.domain(full.domain)
    if record is None:
        raise CommandFailed(f"unknown domain {full.domain}")
    return FullName(full.local, record.name)
