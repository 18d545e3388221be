"""Where the control socket of a base directory lives (server and command
line agree through this one function)."""

from __future__ import annotations

from pathlib import Path

#: Folder of the base directory for what only a running server holds.
RUN_FOLDER = "Run"
#: File name of the socket in :data:`RUN_FOLDER`.
SOCKET_NAME = "control.sock"


def socket_path(base: Path | str) -> Path:
    """The control socket of the server running on ``base``."""
    return Path(base) / RUN_FOLDER / SOCKET_NAME
