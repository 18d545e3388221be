"""POP3 commands, states and replies, without I/O (RFC 1939, RFC 2449).

:func:`parse` turns one command line into a :class:`Command` after checking
the keyword, the number and form of its arguments and whether the current
:class:`State` allows it (the table :data:`ALLOWED`); anything else raises
:class:`CommandError` with the text of the ``-ERR`` reply.  Response codes
are those of RFC 2449 §8 and RFC 3206.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: RFC 2449 §4 limits command lines to 255 octets, but SASL responses
#: (RFC 5034 §4) are longer; this bounds both.
MAX_LINE = 8192


class State(enum.Enum):
    """RFC 1939 §3 session states (UPDATE is the end of the session)."""

    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"


# keyword → (fewest arguments, most arguments)
_SIGNATURES: dict[str, tuple[int, int]] = {
    "USER": (1, 1),
    "PASS": (0, 1),
    "QUIT": (0, 0),
    "CAPA": (0, 0),
    "NOOP": (0, 0),
    "STAT": (0, 0),
    "LIST": (0, 1),
    "UIDL": (0, 1),
    "RETR": (1, 1),
    "DELE": (1, 1),
    "RSET": (0, 0),
    "TOP": (2, 2),
    "APOP": (2, 2),
    "AUTH": (0, 2),
    "STLS": (0, 0),
}

#: Which commands each state accepts.
ALLOWED: dict[State, frozenset[str]] = {
    State.AUTHORIZATION: frozenset({"USER", "PASS", "QUIT", "CAPA", "APOP", "AUTH", "STLS"}),
    State.TRANSACTION: frozenset(
        {"STAT", "LIST", "UIDL", "RETR", "DELE", "RSET", "TOP", "NOOP", "QUIT", "CAPA"}
    ),
}

#: Commands whose arguments are message numbers and a line count.
_NUMERIC = frozenset({"LIST", "UIDL", "RETR", "DELE", "TOP"})


class CommandError(Exception):
    """A command that cannot be run; ``str()`` is the ``-ERR`` text."""


@dataclass(frozen=True)
class Command:
    """A parsed command: its keyword and raw arguments."""

    keyword: str
    arguments: tuple[bytes, ...]

    def numbers(self) -> tuple[int, ...]:
        """The arguments as numbers (validated by :func:`parse`)."""
        return tuple(int(argument) for argument in self.arguments)


def parse(line: bytes, state: State) -> Command:
    """Parse and validate one command line (without CR LF) for ``state``."""
    keyword_bytes, _, rest = line.partition(b" ")
    try:
        keyword = keyword_bytes.decode("ascii").upper()
    except UnicodeDecodeError:
        raise CommandError("unknown command") from None
    if keyword not in _SIGNATURES:
        raise CommandError("unknown command")
    if keyword not in ALLOWED[state]:
        raise CommandError(f"{keyword} is not allowed in the {state.value} state")
    if keyword == "PASS":
        # RFC 1939 §7: the password is everything after the keyword, spaces
        # included.
        return Command(keyword, (rest,))
    arguments = tuple(rest.split())
    low, high = _SIGNATURES[keyword]
    if not low <= len(arguments) <= high:
        raise CommandError(f"wrong number of arguments for {keyword}")
    if keyword in _NUMERIC:
        for argument in arguments:
            if not argument.isdigit() or len(argument) > 9:
                raise CommandError("invalid message number")
    return Command(keyword, arguments)


def ok(text: str = "") -> bytes:
    """A positive reply line."""
    return b"+OK " + text.encode("utf-8") + b"\r\n" if text else b"+OK\r\n"


def err(text: str) -> bytes:
    """A negative reply line."""
    return b"-ERR " + text.encode("utf-8") + b"\r\n"


def capabilities(
    state: State,
    implementation: str,
    mechanisms: list[str],
    clear_text: bool,
    starttls: bool,
) -> list[bytes]:
    """The CAPA list (RFC 2449 §5, RFC 2595 §4, RFC 5034 §3) for a state."""
    lines = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
    lines.append(b"EXPIRE NEVER")
    if state is State.AUTHORIZATION:
        if clear_text:
            lines.append(b"USER")
        if mechanisms:
            lines.append(b"SASL " + " ".join(mechanisms).encode("ascii"))
        if starttls:
            lines.append(b"STLS")
    lines.append(b"IMPLEMENTATION " + implementation.encode("ascii"))
    return lines


def top_of(message: bytes, lines: int) -> bytes:
    """The header and the first ``lines`` body lines of a message (RFC 1939 §7)."""
    head_end = message.find(b"\r\n\r\n")
    if head_end < 0:
        return message
    body_start = head_end + 4
    position = body_start
    for _ in range(lines):
        next_end = message.find(b"\r\n", position)
        if next_end < 0:
            return message
        position = next_end + 2
    return message[:position]
