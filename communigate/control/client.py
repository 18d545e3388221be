"""The blocking client the command line uses to ask the running server."""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
from pathlib import Path

from communigate.control.location import socket_path
from communigate.control.requests import MAX_ANSWER, RequestError, format_request, parse_answer

#: Seconds to wait for the server's answer.
TIMEOUT = 10.0


class NoServer(Exception):
    """No server runs on the base directory (no control socket, or nobody
    listening on it)."""

    def __init__(self, base: Path) -> None:
        super().__init__(f"no server is running on {base} (no control socket)")
        self.base = base


class ControlFailed(Exception):
    """The server refused the request or answered nonsense; the text says
    why."""


def ask(
    base: Path,
    command: str,
    arguments: Mapping[str, str | int | bool | None] | None = None,
    timeout: float = TIMEOUT,
) -> dict[str, object]:
    """Send one request to the server running on ``base``; its answer.
    Raises :class:`NoServer` or :class:`ControlFailed`."""
    path = socket_path(base)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        try:
            connection.connect(str(path))
        except OSError as problem:
            if problem.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
                raise NoServer(Path(base)) from None
            raise ControlFailed(f"cannot reach the server on {path}: {problem}") from None
        try:
            connection.sendall(format_request(command, **(arguments or {})))
            line = _read_line(connection)
        except OSError as problem:
            raise ControlFailed(f"the server on {path} did not answer: {problem}") from None
    try:
        answer = parse_answer(line)
    except RequestError as problem:
        raise ControlFailed(str(problem)) from None
    if not answer["ok"]:
        raise ControlFailed(str(answer.get("error") or "the server refused the request"))
    return answer


def _read_line(connection: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            raise ControlFailed("the server closed the connection without answering")
        end = chunk.find(b"\n")
        if end >= 0:
            chunks.append(chunk[:end])
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER:
            raise ControlFailed("the server's answer is too long")
