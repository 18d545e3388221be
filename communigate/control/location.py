"""Where the control socket of a base directory lives (server and command
line agree through this one function)."""

from __future__ import annotations

import os
from pathlib import Path

#: Folder of the base directory for what only a running server holds.
RUN_FOLDER = "Run"
#: File name of the socket in :data:`RUN_FOLDER`.
SOCKET_NAME = "control.sock"
#: Names another folder for it: front ends sharing one base directory (the
#: LDAP directory) each need their own.
RUN_VARIABLE = "COMMUNIGATE_RUN"


def socket_path(base: Path | str) -> Path:
    """The control socket of the server running on ``base`` (in
    ``$COMMUNIGATE_RUN`` when that is set)."""
    folder = os.environ.get(RUN_VARIABLE)
    return Path(folder) / SOCKET_NAME if folder else Path(base) / RUN_FOLDER / SOCKET_NAME
