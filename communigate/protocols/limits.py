"""Connection limits shared by every TCP listener, and the timers that apply them.

What a client may cost before and after it logs in, the same way for IMAP,
POP3, FTP, PWD and LMTP (and for every protocol still to come):

=================  ============================================  ==========
knob               what it bounds                                default
=================  ============================================  ==========
``MaxLineLength``  one command line (or LMTP data line); a        per
                   longer one is answered with an error and       protocol,
                   skipped, never buffered whole                  below
``PreLoginData``   a literal before login (IMAP ``{n}``); a       8 KiB
                   larger one is refused without ``+``
``LoginTimeout``   seconds from the connection to a completed     60 s
                   login; absolute: bytes do not extend it
``IdleTimeout``    seconds without a byte from the client         per
                   (before and after login)                       protocol
``MaxPerAddress``  connections open at once from one address      50
                   (``Listeners`` setting, :mod:`.guard`)
``backlog=``       the kernel's queue of connections not yet      1024
                   accepted, per endpoint (:mod:`.listeners`)
=================  ============================================  ==========

Per-protocol defaults: IMAP lines 64 KiB and 30 minutes idle (Dovecot's
``imap_max_line_length`` and ``CLIENT_IDLE_TIMEOUT_MSECS``; RFC 3501 §5.4
asks for at least 30 minutes), POP3 8 KiB and 10 minutes (Dovecot's POP3
idle time-out; RFC 1939 §3 asks for at least 10), FTP 4 KiB and 5 minutes
(vsftpd's ``idle_session_timeout``), LMTP 64000 octets and 5 minutes
(Dovecot's LMTP ``CLIENT_IDLE_TIMEOUT_MSECS``), PWD 1 KiB and 5 minutes.
``PreLoginData`` is Dovecot's ``MAX_IMAP_LINE`` of its login process (a
command with its literals before login).  Dovecot's login time-out is also
absolute but 3 minutes (``MASTER_LOGIN_TIMEOUT_SECS``); it can afford that
because it closes the oldest unauthenticated connections when its process
limits are reached, which this server does not, so the deadline is shorter.

The knobs are server settings, read again whenever a connection starts (a
change made with ``communigate server settings`` applies to new
connections), top level for every protocol and per protocol below::

    Limits = { LoginTimeout = 60s; PreLoginData = 8K;
               imap4 = { IdleTimeout = 1h; MaxLineLength = 128K; }; };

Protocol names are those of the connections: ``imap4`` (both IMAP
listeners), ``pop3``, ``ftp``, ``lmtp``, ``pwd``.  Times take ``30s``,
``2m``, ``1h`` or ``#60``; sizes ``#8192``, ``8K`` or ``1M``.  A value that
cannot be read is ignored (the default applies).  LMTP has no login: only
its line length and idle time-out apply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from communigate.store.settingsformat import Value, as_seconds


@dataclass(frozen=True)
class Limits:
    """The limits one connection runs under."""

    #: Longest command line in octets (without CR LF).
    max_line: int
    #: Largest literal accepted before login (IMAP), in octets.
    prelogin_data: int = 8 * 1024
    #: Seconds from the connection to a completed login; not extended by input.
    login_timeout: int = 60
    #: Seconds the client may stay silent.
    idle_timeout: int = 300


#: The defaults of each protocol (see the module documentation for sources).
DEFAULTS: Mapping[str, Limits] = {
    "imap4": Limits(max_line=64 * 1024, idle_timeout=30 * 60),
    "pop3": Limits(max_line=8 * 1024, idle_timeout=10 * 60),
    "ftp": Limits(max_line=4 * 1024, idle_timeout=5 * 60),
    "lmtp": Limits(max_line=64000, idle_timeout=5 * 60),
    "pwd": Limits(max_line=1024, idle_timeout=5 * 60),
}

#: The server setting holding the limits.
SETTING = "Limits"

_SIZE = re.compile(r"(\d+)\s*([km]?)b?\Z", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}


def _size(value: Value) -> int:
    """``#8192``, ``8192``, ``8K`` or ``1M`` as octets; ValueError otherwise."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE.match(value.strip())
        if match:
            return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    raise ValueError(f"not a size: {value!r}")


#: Setting key → (field, how to read it, the least value that makes sense).
_KNOBS: dict[str, tuple[str, Callable[[Value], int], int]] = {
    "MaxLineLength": ("max_line", _size, 512),
    "PreLoginData": ("prelogin_data", _size, 0),
    "LoginTimeout": ("login_timeout", as_seconds, 1),
    "IdleTimeout": ("idle_timeout", as_seconds, 1),
}


def read_limits(settings: Mapping[str, Value], protocol: str, defaults: Limits) -> Limits:
    """``defaults`` with what the ``Limits`` server setting says for
    ``protocol`` (its own dictionary wins over the top level)."""
    section = settings.get(SETTING)
    if not isinstance(section, dict):
        return defaults
    layers = [section]
    own = section.get(protocol)
    if isinstance(own, dict):
        layers.append(own)
    changes: dict[str, int] = {}
    for layer in layers:
        for key, (field, parse, least) in _KNOBS.items():
            if key not in layer:
                continue
            try:
                changes[field] = max(least, parse(layer[key]))
            except ValueError:
                continue
    return replace(defaults, **changes) if changes else defaults


class LimitsReader:
    """The limits of one protocol as the server settings say now.

    A factory holds one; each new connection calls it once.  Without a
    settings source the defaults apply (unit tests, embedded use)."""

    def __init__(
        self,
        protocol: str,
        defaults: Limits | None = None,
        settings: Callable[[], Mapping[str, Value]] | None = None,
    ) -> None:
        self.protocol = protocol
        self.defaults = defaults if defaults is not None else DEFAULTS[protocol]
        self.settings = settings

    def __call__(self) -> Limits:
        """The limits for a connection starting now."""
        if self.settings is None:
            return self.defaults
        return read_limits(self.settings(), self.protocol, self.defaults)


#: A time-out due within this many seconds when its call runs has passed
#: (the clock's arithmetic may leave it a hair short): it may fire up to
#: this much early.
_SLACK = 0.001


class SessionTimers:
    """The login deadline and the idle timer of one connection.

    The deadline starts with the connection and is not moved by input, so a
    client that sends a byte every few seconds is still closed (slowloris);
    it stops at login.  The idle timer restarts on every byte received.
    ``expired`` is called once, with ``"login time-out"`` or ``"idle
    time-out"``.  A protocol without login (LMTP) passes ``login=False``.

    Both run on one scheduled call, set for whichever comes first.  Bytes
    only note the time (:meth:`activity` runs for every read); when the
    call comes early for the idle time-out it is set again for the rest.
    A login leaves the call in place rather than cancelling it: a
    cancelled call stays in the reactor's queue until its time, and every
    logged-in session would keep one for the length of the deadline.
    """

    __slots__ = ("_call", "_clock", "_deadline", "_expired", "_last", "_limits", "_login")

    def __init__(
        self,
        clock: Any,
        limits: Limits,
        expired: Callable[[str], None],
        login: bool = True,
    ) -> None:
        self._clock = clock
        self._limits = limits
        self._expired = expired
        self._login = login
        #: When the login deadline passes (None: logged in, or no login).
        self._deadline: float | None = None
        #: When the last bytes arrived.
        self._last = 0.0
        self._call: Any = None

    def start(self) -> None:
        """The connection is open: start both timers."""
        now = self._last = self._clock.seconds()
        if self._login:
            self._deadline = now + self._limits.login_timeout
        self._call = self._clock.callLater(self._due()[0] - now, self._fire)

    def activity(self) -> None:
        """Bytes arrived: restart the idle timer (never the deadline)."""
        now = self._clock.seconds()
        if now < self._last and self._call is not None:
            # The wall clock stepped back: what is scheduled is in the old
            # reckoning.  Both times move back by as much of the step as
            # shows since the last bytes (the deadline may stay late by
            # the time between them, at most its own length).
            if self._deadline is not None:
                self._deadline -= self._last - now
            self._last = now
            self._call.cancel()
            self._call = self._clock.callLater(self._due()[0] - now, self._fire)
            return
        self._last = now

    def logged_in(self) -> None:
        """The client logged in: the deadline no longer applies."""
        self._deadline = None

    @property
    def awaiting_login(self) -> bool:
        """Whether the login deadline is still running."""
        return self._deadline is not None and self._call is not None

    def stop(self) -> None:
        """The connection is gone: cancel what is still running."""
        call, self._call = self._call, None
        self._deadline = None
        if call is not None and call.active():
            call.cancel()

    def _due(self) -> tuple[float, str]:
        """When the first time-out is due, and which one it is."""
        idle = self._last + self._limits.idle_timeout
        deadline = self._deadline
        if deadline is not None and deadline <= idle:
            return deadline, "login time-out"
        return idle, "idle time-out"

    def _fire(self) -> None:
        self._call = None
        when, why = self._due()
        left = when - self._clock.seconds()
        if left > _SLACK:
            self._call = self._clock.callLater(left, self._fire)
            return
        self.stop()
        self._expired(why)
