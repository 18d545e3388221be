"""Every TCP listener of the server, as the hostile-client tests see it.

One entry per listener: how to reach it, what it greets with, how to log
in, a harmless command and its answer, what a refused line looks like and
how message data is sent after login.  A new protocol (XMPP, SMTP
submission, HTTP) joins the whole ``tests/hostile`` suite by one entry
here; a property a listener does not have (LMTP has no login, only IMAP has
literals) is left empty and its tests skip that listener.
"""

from __future__ import annotations

import base64
import socket
import ssl
import time
from dataclasses import dataclass

from tests.integration.conftest import Server

#: Seconds any one socket operation may take.
TIMEOUT = 10.0


@dataclass(frozen=True)
class Listener:
    """One listener and what a client says to it."""

    #: The twistd option, e.g. ``imaps``.
    name: str
    #: The protocol name of the ``Limits`` server setting.
    protocol: str
    #: The attribute of :class:`~tests.integration.conftest.Server` with its port.
    port: str
    #: TLS from the first byte.
    tls: bool
    #: How the greeting starts.
    greeting: bytes
    #: (command, how the reply starts) that log info@company.com in; empty
    #: for a listener without login.
    login: tuple[tuple[bytes, bytes], ...]
    #: A command answered at once before and after login, and its answer.
    probe: tuple[bytes, bytes]
    #: How the answer to a line that is too long starts.
    too_long: bytes
    #: (command, answer) that start a message of N octets after login, the
    #: last answer being the go-ahead (``%d`` is the size); empty if the
    #: listener takes no message data.
    message: tuple[tuple[bytes, bytes], ...] = ()
    #: The message travels as dot-terminated lines (LMTP), not a literal.
    dot_lines: bool = False
    #: Literals before login (IMAP).
    literals: bool = False

    def login_as(self, user: bytes, password: bytes) -> tuple[tuple[bytes, bytes], ...]:
        """The login lines for another account and password: the names in
        the lines replaced, and in SASL's base64 where a line carries it."""

        def rewrite(line: bytes) -> bytes:
            verb, _, rest = line.rpartition(b" ")
            if verb.startswith(b"AUTH PLAIN"):
                decoded = base64.b64decode(rest)
                decoded = decoded.replace(b"info", user).replace(b"pw-company.com", password)
                return verb + b" " + base64.b64encode(decoded)
            return line.replace(b"info", user).replace(b"pw-company.com", password)

        return tuple((rewrite(line), prefix) for line, prefix in self.login)

    @property
    def logs_in(self) -> bool:
        """Whether the protocol has a login (and so a login deadline)."""
        return bool(self.login)

    def __str__(self) -> str:
        return self.name


_POP3_LOGIN = ((b"USER info", b"+OK"), (b"PASS pw-company.com", b"+OK"))
_IMAP_LOGIN = ((b"a LOGIN info pw-company.com", b"a OK"),)
_FTP_LOGIN = ((b"USER info", b"331"), (b"PASS pw-company.com", b"230"))
_IMAP_APPEND = ((b"m APPEND INBOX {%d}", b"+"),)
_SMTP_LOGIN = (
    (b"EHLO hostile.test", b"250 "),
    (b"AUTH PLAIN " + base64.b64encode(b"\0info\0pw-company.com"), b"235"),
)
_SMTP_MESSAGE = (
    (b"MAIL FROM:<info@company.com>", b"250"),
    (b"RCPT TO:<info@company.com>", b"250"),
    (b"DATA", b"354"),
)

LISTENERS: tuple[Listener, ...] = (
    Listener("pop3", "pop3", "port", False, b"+OK", _POP3_LOGIN, (b"CAPA", b"+OK"), b"-ERR"),
    Listener("pop3s", "pop3", "pop3s_port", True, b"+OK", _POP3_LOGIN, (b"CAPA", b"+OK"), b"-ERR"),
    Listener(
        "imap4",
        "imap4",
        "imap_port",
        False,
        b"* OK",
        _IMAP_LOGIN,
        (b"p NOOP", b"p OK"),
        b"* BAD",
        _IMAP_APPEND,
        literals=True,
    ),
    Listener(
        "imaps",
        "imap4",
        "imaps_port",
        True,
        b"* OK",
        _IMAP_LOGIN,
        (b"p NOOP", b"p OK"),
        b"* BAD",
        _IMAP_APPEND,
        literals=True,
    ),
    Listener(
        "lmtp",
        "lmtp",
        "lmtp_port",
        False,
        b"220",
        (),
        (b"NOOP", b"250"),
        b"500",
        (
            (b"LHLO hostile.test", b"250 "),
            (b"MAIL FROM:<a@hostile.test>", b"250"),
            (b"RCPT TO:<info@company.com>", b"250"),
            (b"DATA", b"354"),
        ),
        dot_lines=True,
    ),
    Listener("ftp", "ftp", "ftp_port", False, b"220", _FTP_LOGIN, (b"NOOP", b"200"), b"500"),
    Listener("ftps", "ftp", "ftps_port", True, b"220", _FTP_LOGIN, (b"NOOP", b"200"), b"500"),
    Listener(
        "pwd",
        "pwd",
        "pwd_port",
        False,
        b"200",
        ((b"USER info", b"300"), (b"PASS pw-company.com", b"200")),
        (b"QUIT", b"200"),
        b"500",
    ),
    Listener(
        "submission",
        "smtp",
        "submission_port",
        False,
        b"220",
        _SMTP_LOGIN,
        (b"NOOP", b"250"),
        b"500",
        _SMTP_MESSAGE,
        dot_lines=True,
    ),
    Listener(
        "smtps",
        "smtp",
        "smtps_port",
        True,
        b"220",
        _SMTP_LOGIN,
        (b"NOOP", b"250"),
        b"500",
        _SMTP_MESSAGE,
        dot_lines=True,
    ),
)


def having(*properties: str) -> list[Listener]:
    """The listeners with every one of ``properties`` (attribute names that
    are true: ``logs_in``, ``literals``, ``message``)."""
    return [item for item in LISTENERS if all(getattr(item, name) for name in properties)]


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock``'s connection within ``seconds``
    (whatever it still sends is read and dropped)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            return True
    return False


class Client:
    """A client connection that writes exactly what it is given and reads
    replies line by line."""

    def __init__(
        self,
        server: Server,
        listener: Listener,
        source: str | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.listener = listener
        raw = socket.create_connection(
            ("127.0.0.1", getattr(server, listener.port)),
            timeout=timeout,
            source_address=(source, 0) if source else None,
        )
        if listener.tls:
            context = ssl.create_default_context(cafile=str(server.ca))
            context.check_hostname = False
            raw = context.wrap_socket(raw)
        self.sock = raw
        self.buffer = b""

    def send(self, data: bytes) -> None:
        """Write bytes as they are."""
        self.sock.sendall(data)

    def line(self) -> bytes:
        """The next reply line (without CR LF); ConnectionError at the end."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"{self.listener} closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.rstrip(b"\r")

    def reply(self, prefix: bytes) -> bytes:
        """Lines up to the first that starts with ``prefix`` (others, such as
        untagged or continued lines, are skipped); that line."""
        while True:
            line = self.line()
            if line.startswith(prefix):
                return line

    def command(self, line: bytes, prefix: bytes) -> bytes:
        """Send one command line; the reply line starting with ``prefix``."""
        self.send(line + b"\r\n")
        return self.reply(prefix)

    def greet(self) -> bytes:
        """The greeting."""
        return self.reply(self.listener.greeting)

    def log_in(self) -> None:
        """Log info@company.com in (nothing for a listener without login)."""
        for line, prefix in self.listener.login:
            self.command(line, prefix)

    def closed_within(self, seconds: float) -> bool:
        """Whether the server closes the connection within ``seconds``."""
        return closed_within(self.sock, seconds)

    def close(self) -> None:
        """Close the socket."""
        try:
            self.sock.close()
        except OSError:
            pass
