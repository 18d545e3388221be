"""``Settings/Listeners.settings``: the addresses and ports the server
listens on, kept in the base directory.

In CommuniGate's dictionary syntax, per protocol an array of listeners,
each a dictionary of ``Port`` (required), ``Address`` (an IPv4 or IPv6
address; absent: every address), ``TLS`` and ``Backlog``::

    {
      imap4 = ({Address = 127.0.0.1; Port = #143;}, {Port = #993; TLS = implicit;});
      lmtp = ({Address = 127.0.0.1; Port = #24;});
    }

``TLS`` is ``starttls`` (the default for POP3, IMAP and FTP, which always
offer STLS, STARTTLS and AUTH TLS), ``implicit`` (TLS from the first byte:
the ``pop3s``, ``imaps`` and ``ftps`` listeners) or ``none`` (the only mode
of LMTP, PWD and TFTP).  Who may connect and how often is the server
setting ``Listeners`` (Grant, Deny, MaxPerAddress), keyed by the listener
names :meth:`Listener.name` gives.  Pure code apart from :func:`read` and
:func:`write`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from communigate.store import settingsformat
from communigate.store.atomic import write_atomic
from communigate.store.settingsformat import Value

#: Where the file lives in a base directory.
RELATIVE_PATH = Path("Settings") / "Listeners.settings"
#: Listen backlog of a listener that names none (Twisted's 50 overflows
#: under a burst of connections).
DEFAULT_BACKLOG = 1024
#: TLS modes a protocol takes, its default first.
TLS_MODES: Mapping[str, tuple[str, ...]] = {
    "pop3": ("starttls", "implicit"),
    "imap4": ("starttls", "implicit"),
    "ftp": ("starttls", "implicit"),
    "lmtp": ("none",),
    "pwd": ("none",),
    "tftp": ("none",),
    "submission": ("starttls", "implicit"),
    "xmpp": ("starttls", "implicit"),
    "http": ("none", "implicit"),
}
PROTOCOLS = tuple(TLS_MODES)
#: The listener name (twistd option, ``Listeners`` server setting) of a
#: protocol with implicit TLS.
_IMPLICIT = {
    "pop3": "pop3s",
    "imap4": "imaps",
    "ftp": "ftps",
    "submission": "smtps",
    "xmpp": "xmpps",
    "http": "https",
}
_KEYS = ("Address", "Port", "TLS", "Backlog")


class ListenersError(ValueError):
    """Listeners.settings, or a listener to add, is not usable (one line)."""


@dataclass(frozen=True)
class Listener:
    """One listening socket: protocol, port, address ("" for every
    address), TLS mode and listen backlog."""

    protocol: str
    port: int
    address: str = ""
    tls: str = ""
    backlog: int = DEFAULT_BACKLOG

    def __post_init__(self) -> None:
        if not self.tls:
            object.__setattr__(self, "tls", TLS_MODES.get(self.protocol, ("none",))[0])

    def name(self) -> str:
        """The listener name: ``imaps`` for IMAP with implicit TLS, else
        the protocol."""
        if self.tls == "implicit":
            return _IMPLICIT[self.protocol]
        return self.protocol

    def description(self) -> str:
        """The Twisted endpoint description (``tcp:143:interface=...``);
        for TFTP ``udp:PORT``, with the address apart (:attr:`address`)."""
        if self.protocol == "tftp":
            return f"udp:{self.port}"
        kind = "tcp6" if ":" in self.address else "tcp"
        parts = [kind, str(self.port)]
        if self.address:
            parts.append("interface=" + self.address.replace(":", "\\:"))
        parts.append(f"backlog={self.backlog}")
        return ":".join(parts)

    def where(self) -> str:
        """``address:port`` as people write it (``*`` for every address)."""
        address = self.address or "*"
        return f"[{address}]:{self.port}" if ":" in address else f"{address}:{self.port}"

    def same_socket(self, other: Listener) -> bool:
        """Whether both would bind the same port of the same transport on
        one address (every address overlaps any: the second bind fails)."""
        udp = (self.protocol == "tftp", other.protocol == "tftp")
        if udp[0] != udp[1] or self.port != other.port:
            return False
        anywhere = {"", "0.0.0.0", "::"}
        return self.address == other.address or bool({self.address, other.address} & anywhere)

    def value(self) -> dict[str, Value]:
        """The dictionary written in the file (defaults left out)."""
        written: dict[str, Value] = {}
        if self.address:
            written["Address"] = self.address
        written["Port"] = self.port
        if self.tls != TLS_MODES[self.protocol][0]:
            written["TLS"] = self.tls
        if self.backlog != DEFAULT_BACKLOG:
            written["Backlog"] = self.backlog
        return written


def _number(value: Value, what: str, least: int, most: int) -> int:
    """An integer setting (``#143``; ``143`` taken too) within bounds."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or not least <= value <= most:
        raise ListenersError(f"{what} must be a number from {least} to {most}")
    return value


def make_listener(
    protocol: str,
    port: Value,
    address: Value = "",
    tls: Value = "",
    backlog: Value = DEFAULT_BACKLOG,
) -> Listener:
    """A checked :class:`Listener`; raises :class:`ListenersError`."""
    protocol = str(protocol).lower()
    if protocol not in TLS_MODES:
        raise ListenersError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    where = f"{protocol} listener"
    number = _number(port, f"{where}: Port", 1, 65535)
    if not isinstance(address, str):
        raise ListenersError(f"{where}: Address must be an IP address")
    address = address.strip().strip("[]")
    if address in ("", "*"):
        address = ""
    else:
        try:
            address = str(ip_address(address))
        except ValueError:
            raise ListenersError(f"{where}: {address!r} is not an IP address") from None
    modes = TLS_MODES[protocol]
    mode = str(tls).lower() if isinstance(tls, str) else ""
    if not isinstance(tls, str) or (mode and mode not in modes):
        raise ListenersError(f"{where}: TLS must be {' or '.join(modes)}")
    depth = _number(backlog, f"{where}: Backlog", 1, 65535)
    return Listener(protocol, number, address, mode or modes[0], depth)


def parse(settings: Mapping[str, Value]) -> list[Listener]:
    """The listeners of a parsed Listeners.settings; raises
    :class:`ListenersError` on the first problem."""
    found: list[Listener] = []
    for protocol, entries in settings.items():
        if protocol.lower() not in TLS_MODES:
            raise ListenersError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
        if isinstance(entries, dict):
            entries = [entries]
        if not isinstance(entries, list):
            raise ListenersError(f"{protocol}: expected an array of listener dictionaries")
        for entry in entries:
            if not isinstance(entry, dict):
                raise ListenersError(f"{protocol}: expected an array of listener dictionaries")
            unknown = sorted(set(entry) - set(_KEYS))
            if unknown:
                raise ListenersError(
                    f"{protocol} listener: unknown key {unknown[0]}; known: {', '.join(_KEYS)}"
                )
            if "Port" not in entry:
                raise ListenersError(f"{protocol} listener: Port is required")
            listener = make_listener(
                protocol,
                entry["Port"],
                entry.get("Address", ""),
                entry.get("TLS", ""),
                entry.get("Backlog", DEFAULT_BACKLOG),
            )
            check_new(found, listener)
            found.append(listener)
    return found


def check_new(existing: Iterable[Listener], listener: Listener) -> None:
    """Refuse ``listener`` when one of ``existing`` uses its socket."""
    for other in existing:
        if other.same_socket(listener):
            raise ListenersError(
                f"{listener.where()} overlaps the {other.protocol} listener on {other.where()}"
            )


def dumps(listeners: Iterable[Listener]) -> str:
    """Listeners.settings text for ``listeners`` (grouped by protocol)."""
    grouped: dict[str, Value] = {}
    for listener in listeners:
        entries = grouped.setdefault(listener.protocol, [])
        assert isinstance(entries, list)
        entries.append(listener.value())
    return settingsformat.dumps_dictionary(grouped)


def path(base: Path) -> Path:
    """The Listeners.settings file of the base directory ``base``."""
    return Path(base) / RELATIVE_PATH


def read(base: Path) -> list[Listener]:
    """The listeners in ``base``'s file (none when there is no file);
    raises :class:`ListenersError` naming the file, or OSError."""
    file = path(base)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        return parse(settingsformat.loads_dictionary(text))
    except ListenersError as error:
        raise ListenersError(f"{file}: {error}") from None
    except ValueError as error:
        raise ListenersError(f"{file}: not a settings dictionary: {error}") from None


def write(base: Path, listeners: Iterable[Listener]) -> None:
    """Replace ``base``'s file with ``listeners`` (atomically)."""
    write_atomic(path(base), dumps(listeners).encode("utf-8"))
