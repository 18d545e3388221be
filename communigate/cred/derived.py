"""The account settings a new password sets: the password itself and the
secrets derived from it.

Whenever a password is set (``communigate account password``, account
creation, PWD ``NEWPASS``, re-hashing at login) the account also stores,
as CommuniGate-style account settings:

``SCRAM-SHA-1``, ``SCRAM-SHA-256``
    ``iterations,salt,StoredKey,ServerKey,tag`` (RFC 5802 §3, base64), so
    SCRAM serves the account whatever ``PasswordEncryption`` says, without
    a clear password and without key stretching at login
    (:mod:`communigate.cred.sasl.scram`).
``NTHash``
    the NT hash (hex) NTLM and MSN need, only when the domain's
    ``LoginMethods`` lists one of them (it is as good as the password for
    those methods, so it is not kept where nobody needs it).

A change of ``Password`` that does not come with these (a setting written
by hand) removes them (:func:`communigate.store.directory.without_stale`), and the
SCRAM secrets carry a tag tying them to the stored password besides.
"""

from __future__ import annotations

from collections.abc import Mapping

from communigate.cred import passwords
from communigate.cred.sasl import scram
from communigate.store.settingsformat import Value, as_string_list

_NTLM_METHODS = frozenset({"NTLM", "MSN"})


def wants_nt_hash(domain_settings: Mapping[str, Value]) -> bool:
    """Whether the domain advertises NTLM or MSN."""
    methods = {name.upper() for name in as_string_list(domain_settings.get("LoginMethods"))}
    return bool(methods & _NTLM_METHODS)


def password_settings(
    password: str | bytes, encryption: str, nt_hash: bool = False
) -> dict[str, Value | None]:
    """``Password`` under ``encryption`` and the secrets derived from it
    (``None`` removes one).  Slow (bcrypt, PBKDF2): call it in a thread
    pool on the server.  Raises what :func:`passwords.check_new` raises."""
    clear = passwords.check_new(password, encryption)
    stored = passwords.encode(clear, encryption)
    changes: dict[str, Value | None] = {"Password": stored}
    for mechanism in scram.HASHES:
        changes[mechanism] = scram.secret_setting(clear, stored, mechanism)
    changes["NTHash"] = _nt_hash(clear) if nt_hash else None
    return changes


def _nt_hash(clear: str) -> str:
    from communigate.cred.sasl.ntlm import nt_hash

    return nt_hash(clear).hex()
