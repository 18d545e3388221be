"""Temporary files that say who made them: ``<host>.<pid>.<random>``.

Uploads in progress (:mod:`.uploads`) and spooled messages (:mod:`.spool`)
live in such files until they are complete.  After a crash (``kill -9``)
they are garbage: :func:`remove_stale` deletes the files of this host's
dead processes, and never those of a live process — this one's included —
or of another host sharing the storage.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

#: This host, in a form that cannot contain the separator.
HOST = socket.gethostname().replace(".", "_")
#: Linux pids stay below this; a larger one is no process of ours.
_PID_LIMIT = 2**22


def temporary_name() -> str:
    """A new name for a temporary file of this process."""
    return f"{HOST}.{os.getpid()}.{secrets.token_hex(8)}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: Path) -> int:
    """Remove the temporaries of this host's dead processes in ``folder``;
    how many.  Blocking: meant for the thread pool at server start."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    for name in names:
        host, _, rest = name.partition(".")
        pid_text = rest.partition(".")[0]
        if host != HOST or not (pid_text.isascii() and pid_text.isdigit()):
            continue
        pid = int(pid_text)
        if pid == os.getpid() or (pid < _PID_LIMIT and _alive(pid)):
            continue
        try:
            (Path(folder) / name).unlink()
        except FileNotFoundError:
            continue
        removed += 1
    return removed
