"""Tokens that prove a form was served by this server to this browser.

Each form carries a fresh token ``<issued>.<nonce>.<mac>``: the HMAC-SHA256,
under a server secret, of what the token is bound to, the time it was
issued and a nonce.  Before login a form is bound to a random value the
browser holds in a cookie (so another site's page cannot post a login of
its own: the double-submit pattern of the OWASP CSRF cheat sheet); after
login, to the session's ID.  A token is accepted for ``max_age`` seconds.
Pure code: the secret, the clock and the nonces are passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

#: Seconds a served form may be posted back.
MAX_AGE = 2 * 60 * 60


class FormTokens:
    """Issues and checks CSRF tokens."""

    def __init__(
        self,
        secret: bytes,
        clock: Callable[[], float],
        max_age: float = MAX_AGE,
        nonce: Callable[[], str] = lambda: secrets.token_urlsafe(9),
    ) -> None:
        self._secret = secret
        self._clock = clock
        self.max_age = max_age
        self._nonce = nonce

    def _mac(self, binding: str, issued: str, nonce: str) -> str:
        message = f"{binding}\0{issued}\0{nonce}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def issue(self, binding: str) -> str:
        """A new token for a form bound to ``binding``."""
        issued = str(int(self._clock()))
        nonce = self._nonce()
        return f"{issued}.{nonce}.{self._mac(binding, issued, nonce)}"

    def valid(self, token: str, binding: str) -> bool:
        """Whether ``token`` was issued for ``binding`` and is not too old."""
        if not binding:
            return False
        issued, _, rest = token.partition(".")
        nonce, _, mac = rest.partition(".")
        if not issued.isdigit() or not nonce or not mac:
            return False
        if not hmac.compare_digest(mac, self._mac(binding, issued, nonce)):
            return False
        age = self._clock() - int(issued)
        return -60 <= age <= self.max_age
