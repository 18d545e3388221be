"""SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), their -PLUS forms
with channel binding (``tls-exporter``, RFC 9266; ``tls-server-end-point``,
RFC 5929), authorization identities, and stored SCRAM secrets.

Written here rather than taken from scramp: scramp refuses a GS2
authorization identity (``n,a=user@example.com,...``, which Cyrus clients
always send) and wants the channel-binding type before the client has
chosen one.

The server-first message needs a salt and an iteration count before the
account's secret is checked.  An account with a stored secret (the
``SCRAM-SHA-1`` / ``SCRAM-SHA-256`` account settings, written whenever its
password is set: :func:`secret_setting`) gets its own; any other name gets
a salt derived from the name with a server key, so unknown names get a
stable, plausible salt and reveal nothing.  The proof is checked only when
the portal asks, in its thread pool: against the stored keys, or against
keys derived from the clear password.

Downgrade detection (RFC 5802 §6): a client that says it could bind
(``y``) while the server offered a -PLUS mechanism is refused, and so is a
client that binds (``p=``) with a mechanism that is not -PLUS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from passlib.utils import saslprep
from zope.interface import implementer

from communigate.cred.credentials import ConnectionInfo, IStoredSecretCredentials
from communigate.cred.sasl.mechanism import Challenge, Failure, ISASLMechanism, Step, Success

ITERATIONS = 4096
#: The hash of each base mechanism.
HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
#: Channel-binding types a -PLUS exchange may use, in the order offered.
BINDINGS = ("tls-exporter", "tls-server-end-point")
_MAX_MESSAGE = 4096
_SALT_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def base_mechanism(name: str) -> str:
    """``SCRAM-SHA-256`` for ``SCRAM-SHA-256-PLUS`` (the stored secret and
    hash are the same)."""
    return name.removesuffix("-PLUS")


# -- secrets ----------------------------------------------------------------


@dataclass(frozen=True)
class StoredSecret:
    """RFC 5802 §3: what a server keeps instead of the password."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def __repr__(self) -> str:
        return f"<StoredSecret i={self.iterations}>"


def derive(password: str, mechanism: str, salt: bytes, iterations: int) -> StoredSecret:
    """StoredKey and ServerKey of ``password`` (slow on purpose: run it in
    a thread pool)."""
    algorithm = HASHES[base_mechanism(mechanism)]
    salted = hashlib.pbkdf2_hmac(algorithm, saslprep(password).encode("utf-8"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", algorithm)
    return StoredSecret(
        iterations,
        salt,
        hashlib.new(algorithm, client_key).digest(),
        hmac.digest(salted, b"Server Key", algorithm),
    )


def _binding_tag(salt: bytes, stored_password: str) -> str:
    """Ties a stored secret to the ``Password`` value it was made with, so
    a password changed some other way leaves no secret that still opens."""
    return _b64(hmac.digest(salt, stored_password.encode("utf-8"), "sha256")[:9])


def secret_setting(
    password: str, stored_password: str, mechanism: str, iterations: int = ITERATIONS
) -> str:
    """The account setting value for ``mechanism``'s stored secret:
    ``iterations,salt,StoredKey,ServerKey,tag`` (base64; as Dovecot's
    ``{SCRAM-SHA-256}`` scheme, plus a tag binding it to the stored
    ``Password``).  Slow: PBKDF2."""
    secret = derive(password, mechanism, secrets.token_bytes(_SALT_BYTES), iterations)
    return ",".join(
        (
            str(secret.iterations),
            _b64(secret.salt),
            _b64(secret.stored_key),
            _b64(secret.server_key),
            _binding_tag(secret.salt, stored_password),
        )
    )


def stored_secret(settings: Mapping[str, Any], mechanism: str) -> StoredSecret | None:
    """The account's stored secret for ``mechanism``, if it has a valid
    one made with its current ``Password``."""
    value = settings.get(base_mechanism(mechanism))
    password = settings.get("Password")
    if not isinstance(value, str) or not isinstance(password, str):
        return None
    parts = value.split(",")
    if len(parts) != 5:
        return None
    try:
        iterations = int(parts[0])
        salt, stored, server = (_unb64(part) for part in parts[1:4])
    except (ValueError, binascii.Error):
        return None
    size = hashlib.new(HASHES[base_mechanism(mechanism)]).digest_size
    if iterations < 1 or len(stored) != size or len(server) != size:
        return None
    if not hmac.compare_digest(parts[4], _binding_tag(salt, password)):
        return None
    return StoredSecret(iterations, salt, stored, server)


# -- messages ---------------------------------------------------------------


class _Malformed(ValueError):
    """A message that breaks RFC 5802 §7's syntax (the text is for the log)."""


def _attributes(message: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=" or not part[0].isalpha() or not part[0].isascii():
            raise _Malformed(f"malformed {what}")
        pairs.append((part[0], part[2:]))
    return pairs


def _saslname(text: str) -> str:
    """RFC 5802 §5.1: ``=2C`` is a comma, ``=3D`` an equals sign, any other
    ``=`` is an error."""
    if "=" in text.replace("=2C", "").replace("=3D", ""):
        raise _Malformed("badly escaped name")
    return text.replace("=2C", ",").replace("=3D", "=")


@dataclass(frozen=True)
class ClientFirst:
    """The parts of a client-first message."""

    flag: str  # "n", "y" or "p"
    binding: str | None
    authzid: str | None
    username: str
    nonce: str
    header: str  # the gs2-header, as sent
    bare: str


def parse_client_first(message: str) -> ClientFirst:
    """``gs2-header client-first-message-bare``; raises ValueError."""
    flag_field, _, rest = message.partition(",")
    authz_field, _, bare = rest.partition(",")
    if not bare:
        raise _Malformed("client-first lacks a GS2 header")
    if flag_field in ("n", "y"):
        flag, binding = flag_field, None
    elif flag_field.startswith("p="):
        flag, binding = "p", flag_field[2:]
    else:
        raise _Malformed("unknown GS2 binding flag")
    authzid = None
    if authz_field:
        if not authz_field.startswith("a="):
            raise _Malformed("malformed GS2 authzid")
        authzid = _saslname(authz_field[2:]) or None
    attributes = _attributes(bare, "client-first")
    if attributes and attributes[0][0] == "m":
        raise _Malformed("mandatory extension not supported")
    if len(attributes) < 2 or attributes[0][0] != "n" or attributes[1][0] != "r":
        raise _Malformed("client-first needs n= and r=")
    username, nonce = _saslname(attributes[0][1]), attributes[1][1]
    if not username or not nonce or not nonce.isprintable():
        raise _Malformed("empty name or nonce")
    header = f"{flag_field},{authz_field},"
    return ClientFirst(flag, binding, authzid, username, nonce, header, bare)


# -- the exchange -----------------------------------------------------------


def _no_binding(kind: str) -> bytes | None:
    return None


def _no_secret(login: bytes, mechanism: str) -> StoredSecret | None:
    return None


@implementer(ISASLMechanism)
class Scram:
    """One SCRAM exchange, with or without channel binding.

    ``channel_binding(kind)`` gives the link's binding data (None on a
    clear link); ``lookup(login, mechanism)`` the stored secret of the
    account a login name leads to; ``plus_offered`` says whether the
    server advertised a -PLUS mechanism on this link (for downgrade
    detection).
    """

    def __init__(
        self,
        name: str,
        connection: ConnectionInfo,
        salt_key: bytes,
        channel_binding: Callable[[str], bytes | None] = _no_binding,
        lookup: Callable[[bytes, str], StoredSecret | None] = _no_secret,
        plus_offered: bool = False,
    ) -> None:
        self.name = name
        self.connection = connection
        self._salt_key = salt_key
        self._binding = channel_binding
        self._lookup = lookup
        self._plus_offered = plus_offered
        self._first: ClientFirst | None = None
        self._server_first = ""
        self._nonce = ""
        self._binding_data = b""
        self._salt = b""
        self._iterations = ITERATIONS
        self._stored: StoredSecret | None = None

    def start(self, initial: bytes | None) -> Step:
        """An empty challenge unless the client-first message came along."""
        if initial is None:
            return Challenge(b"")
        return self.respond(initial)

    def respond(self, data: bytes) -> Step:
        """client-first → server-first; client-final → credentials."""
        if len(data) > _MAX_MESSAGE:
            return Failure(f"{self.name} message too long")
        try:
            text = data.decode("utf-8")
            if self._first is None:
                return self._client_first(text)
            return self._client_final(text)
        except (_Malformed, UnicodeDecodeError) as error:
            reason = str(error) if isinstance(error, _Malformed) else "not UTF-8"
            return Failure(f"malformed {self.name} message: {reason}")

    def _client_first(self, text: str) -> Step:
        first = parse_client_first(text)
        plus = self.name.endswith("-PLUS")
        if plus:
            if first.flag != "p" or first.binding not in BINDINGS:
                raise _Malformed("a -PLUS mechanism needs a supported channel binding")
            data = self._binding(first.binding)
            if data is None:
                raise _Malformed(f"no {first.binding} channel binding on this link")
            self._binding_data = data
        elif first.flag == "p":
            raise _Malformed("channel binding asked with a mechanism that is not -PLUS")
        elif first.flag == "y" and self._plus_offered:
            raise _Malformed("client could bind but did not: possible downgrade")
        self._first = first
        login = first.username.encode("utf-8")
        self._stored = self._lookup(login, base_mechanism(self.name))
        if self._stored is not None:
            self._salt, self._iterations = self._stored.salt, self._stored.iterations
        else:
            self._salt = hmac.digest(self._salt_key, login.lower(), "sha256")[:_SALT_BYTES]
        self._nonce = first.nonce + secrets.token_urlsafe(18)
        self._server_first = f"r={self._nonce},s={_b64(self._salt)},i={self._iterations}"
        return Challenge(self._server_first.encode("ascii"))

    def _client_final(self, text: str) -> Step:
        first = self._first
        assert first is not None
        without_proof, _, proof_field = text.rpartition(",")
        attributes = _attributes(without_proof, "client-final") if without_proof else []
        if (
            len(attributes) < 2
            or attributes[0][0] != "c"
            or attributes[1][0] != "r"
            or not proof_field.startswith("p=")
        ):
            raise _Malformed("client-final needs c=, r= and p=")
        try:
            binding = _unb64(attributes[0][1])
            proof = _unb64(proof_field[2:])
        except (ValueError, binascii.Error):
            raise _Malformed("bad base64") from None
        expected = first.header.encode("utf-8") + self._binding_data
        if not hmac.compare_digest(binding, expected):
            raise _Malformed("channel binding does not match")
        if attributes[1][1] != self._nonce:
            raise _Malformed("nonce does not match")
        message = ",".join((first.bare, self._server_first, without_proof)).encode("utf-8")
        proof_check = ScramProof(
            first.username.encode("utf-8"),
            self.connection,
            self.name,
            first.authzid.encode("utf-8") if first.authzid else None,
            _Proof(self.name, message, proof, self._salt, self._iterations),
        )
        return Success(proof_check, final_data=proof_check.final_data)


class _Proof:
    """What checking a client proof needs; keeps the server signature."""

    def __init__(
        self, mechanism: str, message: bytes, proof: bytes, salt: bytes, iterations: int
    ) -> None:
        self.algorithm = HASHES[base_mechanism(mechanism)]
        self.mechanism = mechanism
        self.message = message
        self.proof = proof
        self.salt = salt
        self.iterations = iterations
        self.signature: bytes | None = None

    def matches(self, secret: StoredSecret) -> bool:
        """RFC 5802 §3: H(ClientSignature XOR proof) must be StoredKey."""
        if secret.salt != self.salt or secret.iterations != self.iterations:
            return False
        signature = hmac.digest(secret.stored_key, self.message, self.algorithm)
        if len(signature) != len(self.proof):
            return False
        client_key = bytes(a ^ b for a, b in zip(signature, self.proof, strict=True))
        key = hashlib.new(self.algorithm, client_key).digest()
        if not hmac.compare_digest(key, secret.stored_key):
            return False
        self.signature = hmac.digest(secret.server_key, self.message, self.algorithm)
        return True


@implementer(IStoredSecretCredentials)
class ScramProof:
    """A SCRAM proof for the portal: checked against the account's stored
    secret or the keys of its clear password."""

    def __init__(
        self,
        username: bytes,
        connection: ConnectionInfo,
        mechanism: str,
        authzid: bytes | None,
        proof: _Proof,
    ) -> None:
        self.username = username
        self.connection = connection
        self.mechanism = mechanism
        self.authzid = authzid
        self._proof = proof

    def check(self, secret: str) -> bool:
        """Derive the keys of a clear password with the exchange's salt."""
        proof = self._proof
        return proof.matches(derive(secret, self.mechanism, proof.salt, proof.iterations))

    def uses_stored(self, settings: Mapping[str, Any]) -> bool:
        """Whether the account has a stored secret for this mechanism."""
        return stored_secret(settings, self.mechanism) is not None

    def check_stored(self, settings: Mapping[str, Any]) -> bool:
        """Check against the stored secret (fast: no key derivation)."""
        secret = stored_secret(settings, self.mechanism)
        return secret is not None and self._proof.matches(secret)

    def final_data(self) -> bytes:
        """The server-final message: ``v=`` and the server signature."""
        signature = self._proof.signature or b""
        return b"v=" + base64.b64encode(signature)

    def __repr__(self) -> str:
        return f"<ScramProof {self.username!r} via {self.mechanism}>"
