"""The SMTP command language, without I/O (RFC 5321, RFC 6409).

Bytes in, values out: :func:`parse_command` splits a command line,
:func:`parse_path` reads the ``FROM:<path> params`` / ``TO:<path>`` argument
of MAIL and RCPT, :func:`unstuff` reads one line of message text after DATA
(RFC 5321 §4.5.2), and :class:`Session` is the state machine that says
which command may come when (an enum of states and a table of allowed
commands; anything else is a sequence error, 503).  :func:`reply` formats
one reply, single or multi-line.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

#: Longest command line in octets (RFC 5321 §4.5.3.1.4 says 512; AUTH with
#: an initial response may be longer, RFC 4954 §4 suggests 12288).
MAX_COMMAND = 12288


class SMTPSyntaxError(ValueError):
    """A command whose arguments cannot be read; the text is for the reply."""


@dataclass(frozen=True)
class Command:
    """One command line: the verb in upper case and the rest."""

    verb: str
    argument: bytes


def parse_command(line: bytes) -> Command:
    """Split ``VERB argument``; an empty or non-alphabetic verb is an
    :class:`SMTPSyntaxError`."""
    verb, _, argument = line.strip(b" ").partition(b" ")
    name = verb.decode("ascii", "replace").upper()
    if not name.isalpha() or not name.isascii():
        raise SMTPSyntaxError("5.5.2 command unrecognized")
    return Command(name, argument.strip(b" "))


@dataclass(frozen=True)
class Path:
    """A MAIL or RCPT argument: the address (``""`` for ``<>``) and the
    ESMTP parameters (keyword in upper case → value or None)."""

    address: str
    parameters: dict[str, str | None] = field(default_factory=dict)


# Local part and domain are checked loosely: the Router decides what an
# address means; this only keeps control characters and spaces out.
_ADDRESS = re.compile(r"[^\s<>\x00-\x1f\x7f]+@[^\s<>@\x00-\x1f\x7f]+")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")


def parse_path(argument: bytes, keyword: bytes, null_allowed: bool) -> Path:
    """Read ``FROM:<a@b> SIZE=10`` (``keyword`` ``FROM:``) or ``TO:<a@b>``.

    A space after the colon is tolerated (many clients send one); a source
    route (``<@x:a@b>``, RFC 5321 §4.1.2) is dropped.  Addresses may be
    UTF-8 (SMTPUTF8, RFC 6531)."""
    if not argument[: len(keyword)].upper() == keyword:
        raise SMTPSyntaxError(f"5.5.4 syntax: {keyword.decode()}<address>")
    rest = argument[len(keyword) :].lstrip(b" ")
    if not rest.startswith(b"<") or b">" not in rest:
        raise SMTPSyntaxError("5.5.4 the address must be in angle brackets")
    end = rest.index(b">")
    try:
        address = rest[1:end].decode("utf-8")
    except UnicodeDecodeError:
        raise SMTPSyntaxError("5.5.4 the address is not UTF-8") from None
    if address.startswith("@") and ":" in address:
        address = address.partition(":")[2]
    if address == "":
        if not null_allowed:
            raise SMTPSyntaxError("5.1.3 a recipient cannot be empty")
    elif _ADDRESS.fullmatch(address) is None:
        raise SMTPSyntaxError(f"5.1.3 bad address syntax: {address}")
    return Path(address, _parameters(rest[end + 1 :]))


def _parameters(text: bytes) -> dict[str, str | None]:
    """``KEY=value KEY2`` → {KEY: value, KEY2: None}."""
    found: dict[str, str | None] = {}
    for item in text.decode("utf-8", "replace").split():
        name, equals, value = item.partition("=")
        if _KEYWORD.match(name) is None:
            raise SMTPSyntaxError(f"5.5.4 bad parameter {item}")
        found[name.upper()] = value if equals else None
    return found


def unstuff(line: bytes) -> bytes | None:
    """One line of message text without its line end: None for the lone
    ``.`` that ends the message, else the line with a leading dot removed
    (RFC 5321 §4.5.2)."""
    if line == b".":
        return None
    return line[1:] if line.startswith(b".") else line


def reply(code: int, *lines: str) -> bytes:
    """A reply: ``code text`` or, for several lines, ``code-text`` on all
    but the last (RFC 5321 §4.2.1)."""
    texts = list(lines) or [""]
    out = [f"{code}-{text}\r\n" for text in texts[:-1]]
    out.append(f"{code} {texts[-1]}\r\n")
    return "".join(out).encode("utf-8", "replace")


class State(enum.Enum):
    """Where a session is (RFC 5321 §4.1.4, RFC 4954, RFC 3207)."""

    #: Greeted; no EHLO/HELO yet.
    CONNECTED = "connected"
    #: After EHLO/HELO (or RSET), no transaction.
    READY = "ready"
    #: MAIL accepted, no recipient yet.
    MAIL = "mail"
    #: At least one recipient accepted.
    RCPT = "rcpt"
    #: Receiving message text.
    DATA = "data"


#: Commands allowed in any state (RFC 5321 §4.1.4: RSET, NOOP, QUIT, HELP,
#: VRFY anywhere; EHLO/HELO reset the session).
_ANYWHERE = frozenset({"EHLO", "HELO", "RSET", "NOOP", "QUIT", "HELP", "VRFY", "EXPN"})

#: The commands each state allows besides :data:`_ANYWHERE`.
ALLOWED: dict[State, frozenset[str]] = {
    State.CONNECTED: frozenset({"STARTTLS"}),
    State.READY: frozenset({"STARTTLS", "AUTH", "MAIL"}),
    State.MAIL: frozenset({"RCPT"}),
    State.RCPT: frozenset({"RCPT", "DATA"}),
    State.DATA: frozenset(),
}

#: What a command leads to, when it succeeds.
TRANSITIONS: dict[tuple[State, str], State] = {
    **{(state, "EHLO"): State.READY for state in State if state is not State.DATA},
    **{(state, "HELO"): State.READY for state in State if state is not State.DATA},
    **{(state, "RSET"): State.READY for state in State if state is not State.CONNECTED},
    (State.READY, "MAIL"): State.MAIL,
    (State.MAIL, "RCPT"): State.RCPT,
    (State.RCPT, "RCPT"): State.RCPT,
    (State.RCPT, "DATA"): State.DATA,
    (State.DATA, "."): State.READY,
}

#: Known verbs (others: 500 command unrecognized).
VERBS = frozenset(_ANYWHERE | {"STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "BDAT"})


class Session:
    """The state of one SMTP session; pure."""

    def __init__(self) -> None:
        self.state = State.CONNECTED

    def allows(self, verb: str) -> bool:
        """Whether ``verb`` may come now."""
        if self.state is State.DATA:
            return False
        return verb in _ANYWHERE or verb in ALLOWED[self.state]

    def advance(self, verb: str) -> None:
        """``verb`` succeeded: move to its next state (``"."``: the end of
        the message text).  A verb that does not move stays put."""
        self.state = TRANSITIONS.get((self.state, verb), self.state)

    def restart(self) -> None:
        """After STARTTLS: everything is forgotten (RFC 3207 §4.2)."""
        self.state = State.CONNECTED


def refusal(session: Session, verb: str) -> bytes:
    """The reply for a command that may not come now."""
    if verb not in VERBS:
        return reply(500, "5.5.2 command unrecognized")
    if session.state is State.CONNECTED and verb in ("AUTH", "MAIL"):
        return reply(503, "5.5.1 send EHLO first")
    if verb == "RCPT":
        return reply(503, "5.5.1 send MAIL first")
    if verb == "DATA":
        return reply(503, "5.5.1 no valid recipients")
    if verb == "MAIL":
        return reply(503, "5.5.1 nested MAIL command")
    return reply(503, "5.5.1 bad sequence of commands")
