"""What the numeric-reply line protocols (LMTP, PWD) share: the connection
limits (line length, login deadline, idle time-out; see
:mod:`communigate.protocols.limits`) on the factory's reactor, lines read one
command at a time in order, and ``code text`` replies."""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from communigate.protocols.limits import Limits, SessionTimers
from communigate.protocols.lines import LineSplitter, LineTooLong


class CodedReplyServer(Protocol):
    """Greets, replies ``code text``, runs queued lines one after another.

    The factory provides ``reactor`` and ``limits`` (a
    :class:`~communigate.protocols.limits.LimitsReader`).  A subclass
    handles lines in :meth:`line`; while it sets ``busy`` (a login being
    checked), later lines wait in the queue, so pipelined commands are
    answered in order, as in POP3."""

    factory: Any
    timeout_code = 500
    #: Whether the login deadline applies (LMTP has no login).
    login_required = True

    def __init__(self) -> None:
        self.limits: Limits | None = None
        self.timers: SessionTimers | None = None
        self.lines = LineSplitter(1024)
        self.queue: deque[bytes | LineTooLong] = deque()
        self.busy = False

    def connectionMade(self) -> None:
        """Apply the limits, start the timers, then greet."""
        self.limits = self.factory.limits()
        assert self.limits is not None
        self.lines.max_length = self.limits.max_line
        self.timers = SessionTimers(
            self.factory.reactor, self.limits, self.timed_out, self.login_required
        )
        self.timers.start()
        self.greet()

    def greet(self) -> None:
        """The first reply."""

    def logged_in(self) -> None:
        """The client logged in: the login deadline no longer applies."""
        if self.timers is not None:
            self.timers.logged_in()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Stop the timers; forget queued lines."""
        self.connected = False
        if self.timers is not None:
            self.timers.stop()
        self.queue.clear()

    def timed_out(self, why: str) -> None:
        """Close a session that did not log in in time or stayed idle."""
        self.reply(self.timeout_code, "idle timeout" if why == "idle time-out" else why)
        self.queue.clear()
        if self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """Queue complete lines and run them in order."""
        if self.timers is not None:
            self.timers.activity()
        self.queue.extend(self.lines.feed(data))
        self.run_queue()

    def run_queue(self) -> None:
        """Run queued lines until one has to wait (``busy``)."""
        while self.queue and not self.busy and self.connected:
            self.line(self.queue.popleft())

    def resume(self) -> None:
        """What made a line wait is over: run the rest of the queue."""
        self.busy = False
        self.run_queue()

    def line(self, event: bytes | LineTooLong) -> None:
        """One line from the client, or a line that was too long."""

    def reply(self, code: int, text: str) -> None:
        """One reply line."""
        if self.transport is not None:
            self.transport.write(f"{code} {text}\r\n".encode("utf-8", "replace"))
