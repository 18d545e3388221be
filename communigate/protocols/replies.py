"""What the numeric-reply line protocols (LMTP, PWD) share: the idle timer
on the factory's reactor and ``code text`` replies."""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Protocol
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure


class CodedReplyServer(Protocol, TimeoutMixin):
    """Greets, replies ``code text``, closes after ``idle_timeout``."""

    factory: Any
    idle_timeout = 300
    timeout_code = 500

    def connectionMade(self) -> None:
        """Start the idle timer on the factory's reactor, then greet."""
        self.callLater = self.factory.reactor.callLater  # type: ignore[method-assign]
        self.setTimeout(self.idle_timeout)
        self.greet()

    def greet(self) -> None:
        """The first reply."""

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Stop the timer."""
        self.setTimeout(None)

    def timeoutConnection(self) -> None:
        """Close an idle session."""
        self.reply(self.timeout_code, "idle timeout")
        if self.transport is not None:
            self.transport.loseConnection()

    def reply(self, code: int, text: str) -> None:
        """One reply line."""
        if self.transport is not None:
            self.transport.write(f"{code} {text}\r\n".encode("utf-8", "replace"))
