"""SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), through scramp.

The server-first message needs a salt and an iteration count before the
account's secret is known; the salt is derived from the login name with a
server key (so unknown names get a stable, plausible salt and reveal
nothing).  The client's proof is checked only when the portal hands the
clear password to :meth:`ClearSecretProof.check`, in its thread pool, where
the keys are derived with that salt.
"""

from __future__ import annotations

import hmac

from scramp import ScramException, ScramMechanism
from zope.interface import implementer

from communigate.cred.credentials import ClearSecretProof, ConnectionInfo
from communigate.cred.sasl.mechanism import Challenge, Failure, ISASLMechanism, Step, Success

ITERATIONS = 4096
_UNSET = b"\0" * 32


@implementer(ISASLMechanism)
class Scram:
    """One SCRAM exchange (without channel binding)."""

    def __init__(self, name: str, connection: ConnectionInfo, salt_key: bytes) -> None:
        self.name = name
        self.connection = connection
        self._salt_key = salt_key
        self._mechanism = ScramMechanism(name)
        self._server = self._mechanism.make_server(self._auth_info)
        self._username: str | None = None
        self._salt = b""

    def _auth_info(self, username: str) -> tuple[bytes, bytes, bytes, int]:
        self._username = username
        self._salt = hmac.digest(self._salt_key, username.lower().encode("utf-8"), "sha256")[:16]
        # Placeholder keys: check() puts the real ones in once the portal
        # gives the secret; a proof can never match these.
        return self._salt, _UNSET, _UNSET, ITERATIONS

    def start(self, initial: bytes | None) -> Step:
        """An empty challenge unless the client-first message came along."""
        if initial is None:
            return Challenge(b"")
        return self.respond(initial)

    def respond(self, data: bytes) -> Step:
        """client-first → server-first; client-final → credentials."""
        try:
            text = data.decode("utf-8")
            if self._username is None:
                self._server.set_client_first(text)
                return Challenge(self._server.get_server_first().encode("utf-8"))
        except (ScramException, UnicodeDecodeError) as error:
            return Failure(f"malformed {self.name} message: {error}")
        final = text
        server = self._server
        mechanism = self._mechanism
        salt = self._salt

        def check(secret: str) -> bool:
            _, stored, key, _ = mechanism.make_auth_info(
                secret, iteration_count=ITERATIONS, salt=salt
            )
            server.stored_key, server.server_key = stored, key
            try:
                server.set_client_final(final)
            except ScramException:
                return False
            return True

        def final_data() -> bytes:
            return str(server.get_server_final()).encode("utf-8")

        username = (self._username or "").encode("utf-8")
        return Success(ClearSecretProof(username, check, self.connection, self.name), final_data)
