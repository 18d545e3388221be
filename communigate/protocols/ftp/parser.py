"""FTP commands, states, arguments and replies, without I/O.

Written for this project (no FTP library keeps bytes, states and the file
system apart): :func:`parse` turns one control-connection line into a
:class:`Command` after checking the keyword, its argument and whether the
session's :class:`State` allows it (the table :data:`COMMANDS`); anything
else raises :class:`CommandError` carrying the reply to send.  Also here:
reply formatting (RFC 959 §4.2, multi-line replies), PORT/EPRT/PASV/EPSV
addresses (RFC 959 §4.1.2, RFC 2428), and path arithmetic over the virtual
tree a session sees (its own File Storage at ``/``, other accounts' at
``/~name`` and ``/~name@domain``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

#: Longest command line read (vsftpd's bound): a keyword and a path.
MAX_LINE = 4096


class State(enum.Enum):
    """Where a control connection is in the login sequence."""

    #: Nothing yet, or a refused login: USER (or AUTH, HOST...) expected.
    LOGIN = "login"
    #: USER was accepted: PASS expected.
    PASSWORD = "password"  # noqa: S105 - a state name
    #: Logged in: file and transfer commands.
    READY = "ready"


class Argument(enum.Enum):
    """What follows the keyword."""

    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


_ANY = frozenset(State)
_BEFORE = frozenset({State.LOGIN, State.PASSWORD})
_READY = frozenset({State.READY})


@dataclass(frozen=True)
class Spec:
    """One command: its argument and the states that accept it."""

    argument: Argument
    states: frozenset[State]
    help: str


def _spec(argument: Argument, states: frozenset[State], text: str) -> Spec:
    return Spec(argument, states, text)


_N, _O, _R = Argument.NONE, Argument.OPTIONAL, Argument.REQUIRED

#: Every command the server knows: argument, allowed states, HELP text.
COMMANDS: dict[str, Spec] = {
    # Access control (RFC 959 §4.1.1), security (RFC 2228, 4217), HOST (7151).
    "USER": _spec(_R, _BEFORE, "USER name: the account to log in as"),
    "PASS": _spec(_O, _ANY, "PASS password"),
    "ACCT": _spec(_R, _ANY, "ACCT: not needed"),
    "AUTH": _spec(_R, _BEFORE, "AUTH TLS: protect the control connection"),
    "PBSZ": _spec(_R, _ANY, "PBSZ 0: after AUTH TLS"),
    "PROT": _spec(_R, _ANY, "PROT P|C: protect data connections or not"),
    "CCC": _spec(_N, _ANY, "CCC: refused, the control connection stays protected"),
    "HOST": _spec(_R, _ANY, "HOST name: the domain bare login names belong to"),
    "REIN": _spec(_N, _ANY, "REIN: not supported"),
    "QUIT": _spec(_N, _ANY, "QUIT: end the session"),
    # Navigation.
    "CWD": _spec(_R, _READY, "CWD path: change the working directory"),
    "XCWD": _spec(_R, _READY, "XCWD path: CWD"),
    "CDUP": _spec(_N, _READY, "CDUP: go to the parent directory"),
    "XCUP": _spec(_N, _READY, "XCUP: CDUP"),
    "PWD": _spec(_N, _READY, "PWD: print the working directory"),
    "XPWD": _spec(_N, _READY, "XPWD: PWD"),
    # Transfer parameters (RFC 959 §4.1.2, RFC 2428).
    "TYPE": _spec(_R, _ANY, "TYPE A|I: ASCII or binary (both sent as stored)"),
    "MODE": _spec(_R, _ANY, "MODE S: stream mode only"),
    "STRU": _spec(_R, _ANY, "STRU F: file structure only"),
    "PORT": _spec(_R, _READY, "PORT h1,h2,h3,h4,p1,p2: active data connection"),
    "EPRT": _spec(_R, _READY, "EPRT |af|address|port|: active data connection"),
    "PASV": _spec(_N, _READY, "PASV: passive data connection (IPv4)"),
    "EPSV": _spec(_O, _READY, "EPSV [ALL]: passive data connection"),
    "REST": _spec(_R, _READY, "REST offset: restart the next RETR/STOR there"),
    "ALLO": _spec(_O, _READY, "ALLO: not needed"),
    # Service commands (RFC 959 §4.1.3, RFC 3659).
    "RETR": _spec(_R, _READY, "RETR path: download"),
    "STOR": _spec(_R, _READY, "STOR path: upload"),
    "APPE": _spec(_R, _READY, "APPE path: append to a file"),
    "STOU": _spec(_O, _READY, "STOU: upload under a unique name"),
    "DELE": _spec(_R, _READY, "DELE path: delete a file"),
    "RNFR": _spec(_R, _READY, "RNFR path: rename from"),
    "RNTO": _spec(_R, _READY, "RNTO path: rename to"),
    "MKD": _spec(_R, _READY, "MKD path: make a directory"),
    "XMKD": _spec(_R, _READY, "XMKD path: MKD"),
    "RMD": _spec(_R, _READY, "RMD path: remove an empty directory"),
    "XRMD": _spec(_R, _READY, "XRMD path: RMD"),
    "LIST": _spec(_O, _READY, "LIST [path]: long listing"),
    "NLST": _spec(_O, _READY, "NLST [path]: names only"),
    "MLSD": _spec(_O, _READY, "MLSD [path]: machine listing of a directory"),
    "MLST": _spec(_O, _READY, "MLST [path]: facts of one file"),
    "SIZE": _spec(_R, _READY, "SIZE path: size in bytes"),
    "MDTM": _spec(_R, _READY, "MDTM path: modification time"),
    "ABOR": _spec(_N, _ANY, "ABOR: abort the transfer"),
    "STAT": _spec(_O, _ANY, "STAT [path]: session status or a listing"),
    "SYST": _spec(_N, _ANY, "SYST: system type"),
    "FEAT": _spec(_N, _ANY, "FEAT: extensions"),
    "OPTS": _spec(_R, _ANY, "OPTS UTF8 ON | MLST facts"),
    "HELP": _spec(_O, _ANY, "HELP [command]"),
    "SITE": _spec(_R, _ANY, "SITE HELP"),
    "NOOP": _spec(_N, _ANY, "NOOP: do nothing"),
}

#: The RFC 775 X-commands and their RFC 959 names.
ALIASES = {"XCWD": "CWD", "XCUP": "CDUP", "XPWD": "PWD", "XMKD": "MKD", "XRMD": "RMD"}

#: RFC 2389 FEAT lines.
FEATURES = (
    "AUTH TLS",
    "PBSZ",
    "PROT",
    "HOST",
    "EPRT",
    "EPSV",
    "MDTM",
    "SIZE",
    "REST STREAM",
    "MLST type*;size*;modify*;",
    "UTF8",
    "TVFS",
)


class CommandError(Exception):
    """A command that cannot be run: ``code`` and ``text`` of the reply."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


@dataclass(frozen=True)
class Command:
    """A parsed command line: its keyword (X-aliases mapped) and argument."""

    keyword: str
    argument: str

    def __repr__(self) -> str:
        # PASS carries a password: never in a repr, so never in a log.
        shown = "***" if self.keyword == "PASS" else self.argument
        return f"Command({self.keyword!r}, {shown!r})"


#: IAC IAC (a data 0xFF), IAC WILL/WONT/DO/DONT option, IAC command.
_TELNET = re.compile(rb"\xff\xff|\xff[\xfb-\xfe].|\xff[\xf0-\xfa]", re.DOTALL)
_TELNET_COMMANDS = bytes(range(0xF0, 0x100))


def decode(line: bytes) -> str:
    """A command line as text: Telnet IAC sequences (clients send IP and
    DM before ABOR, RFC 959 §4.1.3) dropped, UTF-8 (RFC 2640) or, when the
    bytes are not UTF-8, Latin-1 so any name can be typed."""
    if b"\xff" in line:
        line = _TELNET.sub(lambda match: b"\xff" if match.group() == b"\xff\xff" else b"", line)
    if line[:1] >= b"\xf0":
        # Telnet IP/DM whose IAC came as TCP urgent data (out of band).
        line = line.lstrip(_TELNET_COMMANDS)
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def parse(line: bytes, state: State) -> Command:
    """Parse and check one command line (without CR LF) for ``state``."""
    text = decode(line)
    keyword, _, argument = text.lstrip(" ").partition(" ")
    # ASCII first: "ſtor".upper() is "STOR".
    spec = COMMANDS.get(keyword.upper()) if keyword.isascii() else None
    if spec is None:
        raise CommandError(500, "unknown command")
    keyword = keyword.upper()
    if spec.argument is Argument.NONE and argument.strip():
        raise CommandError(501, f"{keyword} takes no argument")
    if spec.argument is Argument.REQUIRED and not argument.strip():
        raise CommandError(501, f"{keyword} needs an argument")
    if state not in spec.states:
        if state is State.READY:
            raise CommandError(503, "already logged in")
        if state is State.PASSWORD and keyword != "PASS":
            raise CommandError(503, "send PASS first")
        raise CommandError(530, "please log in with USER and PASS")
    if "\0" in argument:
        raise CommandError(501, "NUL in the argument")
    return Command(ALIASES.get(keyword, keyword), argument)


# -- replies ------------------------------------------------------------------


def _clean(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def reply(code: int, text: str) -> bytes:
    """One reply line."""
    return f"{code} {_clean(text)}\r\n".encode("utf-8", "replace")


def multiline(code: int, first: str, lines: list[str], last: str) -> bytes:
    """RFC 959 §4.2 multi-line reply; body lines start with a space so none
    can look like the end."""
    body = "".join(f" {_clean(line)}\r\n" for line in lines)
    return f"{code}-{_clean(first)}\r\n{body}{code} {_clean(last)}\r\n".encode("utf-8", "replace")


def quote_path(path: str) -> str:
    """RFC 959 Appendix II: a path in a 257 reply, quotes doubled."""
    return '"' + path.replace('"', '""') + '"'


def help_lines() -> list[str]:
    """HELP: the command names, eight to a line."""
    names = sorted(COMMANDS)
    return [
        " ".join(f"{name:<5}" for name in names[i : i + 8]).rstrip()
        for i in range(0, len(names), 8)
    ]


# -- addresses ------------------------------------------------------------------


def _number(text: str) -> bool:
    """ASCII digits only (``"²".isdigit()`` is true)."""
    return text.isascii() and text.isdigit()


def parse_port(argument: str) -> tuple[str, int]:
    """RFC 959 PORT ``h1,h2,h3,h4,p1,p2`` → (address, port)."""
    parts = argument.strip().split(",")
    if len(parts) != 6 or not all(_number(part.strip()) for part in parts):
        raise CommandError(501, "PORT needs h1,h2,h3,h4,p1,p2")
    numbers = [int(part) for part in parts]
    if any(number > 255 for number in numbers):
        raise CommandError(501, "PORT numbers are bytes")
    port = numbers[4] * 256 + numbers[5]
    if port == 0:
        raise CommandError(501, "port 0 is not a port")
    return ".".join(str(number) for number in numbers[:4]), port


def parse_eprt(argument: str) -> tuple[str, int]:
    """RFC 2428 §2 EPRT ``|1|a.b.c.d|port|`` or ``|2|::1|port|``."""
    text = argument.strip()
    fields = text[1:].split(text[:1]) if len(text) > 1 else []
    if len(fields) != 4 or fields[3] != "" or not _number(fields[2]):
        raise CommandError(501, "EPRT needs |protocol|address|port|")
    family, host, port = fields[0], fields[1], int(fields[2])
    wanted = {"1": IPv4Address, "2": IPv6Address}.get(family)
    if wanted is None:
        raise CommandError(522, "network protocol not supported, use (1,2)")
    try:
        address = ip_address(host)
    except ValueError:
        raise CommandError(501, "EPRT needs a numeric address") from None
    if not isinstance(address, wanted) or not 0 < port < 65536:
        raise CommandError(501, "EPRT address or port is not valid")
    return str(address), port


def pasv_reply(host: str, port: int) -> bytes:
    """RFC 959 227 reply for an IPv4 passive port."""
    numbers = [*host.split("."), str(port // 256), str(port % 256)]
    return reply(227, f"entering passive mode ({','.join(numbers)})")


def epsv_reply(port: int) -> bytes:
    """RFC 2428 §3 229 reply."""
    return reply(229, f"entering extended passive mode (|||{port}|)")


def parse_rest(argument: str) -> int:
    """RFC 3659 §5 REST offset."""
    text = argument.strip()
    if not _number(text) or len(text) > 19:
        raise CommandError(501, "REST needs a byte offset")
    return int(text)


# -- paths -----------------------------------------------------------------------


Path = tuple[str, ...]


def resolve(cwd: Path, argument: str) -> Path:
    """The segments an argument names, from the working directory.

    ``/`` starts at the session's own storage; ``.`` and empty segments are
    skipped; ``..`` goes up but never above ``/`` (``/~name/..`` is ``/``).
    A first segment ``~name`` (or ``~name@domain``) is another account's
    storage, at any depth of the argument's start.
    """
    absolute = argument.startswith("/") or argument.startswith("~")
    segments: list[str] = [] if absolute else list(cwd)
    for part in argument.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if segments:
                segments.pop()
            continue
        segments.append(part)
    return tuple(segments)


def show(path: Path) -> str:
    """A path as the client sees it (PWD, replies)."""
    return "/" + "/".join(path)


def list_argument(argument: str) -> str:
    """LIST/NLST arguments without ``ls`` options (``-la``, ``-a``), which
    clients send and servers ignore."""
    words = argument.split(" ")
    while words and words[0].startswith("-") and len(words[0]) > 1:
        words.pop(0)
    return " ".join(words).strip()
