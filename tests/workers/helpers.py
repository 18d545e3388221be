"""What the worker tests share: a session entry and a descriptor check."""

from __future__ import annotations

import os

from communigate.control.sessions import SessionEntry


def closed(descriptor: int) -> bool:
    """Whether ``descriptor`` is closed in this process."""
    try:
        os.fstat(descriptor)
    except OSError:
        return True
    return False


def entry(
    account: str = "info@company.com", session: str = "s1", tls: bool = False, since: float = 1.0
) -> SessionEntry:
    """A logged-in IMAP session of ``account``."""
    return SessionEntry(
        session=session,
        account=account,
        protocol="imap4",
        remote_host="192.0.2.1",
        remote_port=40000,
        local_host="192.0.2.10",
        local_port=143,
        tls=tls,
        mechanism="PLAIN",
        since=since,
    )
