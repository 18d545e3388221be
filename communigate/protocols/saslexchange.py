"""Running one SASL exchange for a line-based protocol (IMAP, POP3, SMTP).

The protocol hands over the mechanism and the client's lines; this object
turns mechanism steps into ``+ base64`` challenges (through a callback, so
each protocol frames them its own way), asks the portal when the mechanism
succeeds, sends the mechanism's final data as one more challenge when there
is some (SCRAM, DIGEST-MD5) and reports the avatar or the failure once.
A framing that carries that final data with its success (XMPP's
``<success>``, RFC 6120 §6.3.10) asks for it with ``additional_in_success``:
it is then left in :attr:`SASLExchange.additional` when ``done`` is called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure as TwistedFailure

from communigate.cred.credentials import ConnectionInfo
from communigate.cred.errors import LoginFailure
from communigate.cred.sasl import framing
from communigate.cred.sasl.mechanism import (
    Challenge,
    Failure,
    ISASLMechanism,
    MalformedResponse,
    Step,
    Success,
)
from communigate.observe.events import LoginEvent
from communigate.protocols.access import LoginService


class SASLAborted(LoginFailure):
    """The client cancelled the exchange with ``*``."""

    kind = "aborted"
    default_reply = "authentication aborted"


class SASLMalformed(LoginFailure):
    """The client's data broke the mechanism's syntax."""

    kind = "malformed"
    default_reply = "malformed authentication data"


class SASLExchange:
    """One exchange; ``done`` gets (interface, avatar, logout) or a Failure."""

    def __init__(
        self,
        mechanism: ISASLMechanism,
        service: LoginService,
        interface: Any,
        challenge: Callable[[bytes], None],
        done: Callable[[Any], None],
        additional_in_success: bool = False,
    ) -> None:
        self.mechanism = mechanism
        self.service = service
        self.interface = interface
        self._challenge = challenge
        self._done = done
        self._result: Any = None
        self._final_sent = False
        self._additional_in_success = additional_in_success
        #: The mechanism's final data (base64) for the success reply.
        self.additional: bytes | None = None
        self.pending: Deferred[Any] | None = None

    def start(self, initial: bytes | None) -> None:
        """Begin, with the client's initial response (SASL-IR) if any."""
        self._step(self.mechanism.start(initial))

    def line(self, line: bytes) -> None:
        """A client line in the ``base64`` framing."""
        try:
            data = framing.decode(line)
        except framing.Aborted:
            self._failed(SASLAborted("the client cancelled the exchange"))
            return
        except MalformedResponse as error:
            self._failed(SASLMalformed(str(error)))
            return
        if self._final_sent:
            result, self._result = self._result, None
            self._finish(result)
            return
        self._step(self.mechanism.respond(data))

    def _step(self, step: Step) -> None:
        if isinstance(step, Challenge):
            self._challenge(framing.encode(step.data))
        elif isinstance(step, Failure):
            self._failed(SASLMalformed(step.reason))
        elif isinstance(step, Success):
            self.pending = self.service.login(step.credentials, self.interface)
            self.pending.addCallbacks(self._accepted, self._refused, callbackArgs=(step,))

    def _failed(self, failure: LoginFailure) -> None:
        """An exchange that ended before the portal was asked: reported as
        one login event (the mechanism's reason, never the client's data)."""
        connection = getattr(self.mechanism, "connection", None)
        if isinstance(connection, ConnectionInfo):
            self.service.observer.login(
                LoginEvent.of(
                    connection,
                    login="",
                    account=None,
                    domain=None,
                    mechanism=self.mechanism.name,
                    result=failure.kind,
                    detail=failure.reason,
                )
            )
        self._finish(TwistedFailure(failure))

    def _accepted(self, result: Any, step: Success) -> None:
        self.pending = None
        if step.final_data is None:
            self._finish(result)
            return
        if self._additional_in_success:
            self.additional = framing.encode(step.final_data())
            self._finish(result)
            return
        self._result = result
        self._final_sent = True
        self._challenge(framing.encode(step.final_data()))

    def _refused(self, failure: TwistedFailure) -> None:
        self.pending = None
        self._finish(failure)

    def _finish(self, result: Any) -> None:
        done, self._done = self._done, lambda _result: None
        done(result)

    def cancel(self) -> None:
        """The connection went away: drop what is pending."""
        self._done = lambda _result: None
        if self.pending is not None:
            self.pending.cancel()
        if self._result is not None:
            self._result[2]()
