"""How account passwords are stored and verified (spec §2).

``PasswordEncryption`` says how a password is stored when it is next set:

* ``clear``: as it is.  A clear password that itself starts with ``{`` or
  ``$`` is stored as ``{PLAIN}password`` so it cannot be taken for a hash.
* ``U-crpt``: traditional Unix crypt, stored as ``{CRYPT}xxxxxxxxxxxxx``;
  like every Unix crypt it uses only the first 8 characters.
* ``UB-crpt``: bcrypt, stored as ``$2b$...``.

A stored value is read as follows, so hashes imported from other servers work
as they are (the "special prefixes" of CommuniGate's U-crpt):

=====================================  ===================================
stored value starts with               verified as
=====================================  ===================================
``{PLAIN}`` / ``{CLEAR}``              clear text
``{CRYPT}``                            Unix crypt family: DES, ``$1$``,
                                       ``$5$``, ``$6$``, ``$2a$``/``$2b$``
``{SHA}``, ``{SSHA}``, ``{MD5}``,      LDAP (RFC 2307) digests
``{SMD5}``, ``{SSHA256}``,
``{SSHA512}``
``$1$``, ``$5$``, ``$6$``, ``$2a$``,   MD5-crypt, SHA-crypt, bcrypt
``$2b$``, ``$2y$``, ``$argon2...``     (argon2 when argon2-cffi is there)
anything else                          clear text
=====================================  ===================================

New passwords are checked once, by :func:`check_new`, wherever they are set
(command line, PWD): an empty one, one that is not UTF-8, and one longer than
bcrypt's 72 bytes under ``UB-crpt`` are refused with a one-line reason
(``clear`` takes any length; ``U-crpt`` uses only the first 8 characters, as
every Unix crypt does).  An empty password never matches, whatever is stored.

The one-way forms cannot serve CRAM-MD5, DIGEST-MD5 or APOP, which need the
clear secret.  Verifying a one-way hash is slow on purpose; callers run
:func:`verify` in a thread pool (see :func:`is_one_way`).
"""

from __future__ import annotations

import hmac

from passlib.context import CryptContext

ENCRYPTIONS = ("clear", "U-crpt", "UB-crpt")

_CRYPT_SCHEMES = ["bcrypt", "sha512_crypt", "sha256_crypt", "md5_crypt", "des_crypt"]
_LDAP_SCHEMES = [
    "ldap_salted_sha1",
    "ldap_sha1",
    "ldap_salted_md5",
    "ldap_md5",
    "ldap_salted_sha256",
    "ldap_salted_sha512",
]


def _argon2_schemes() -> list[str]:
    try:
        import argon2  # noqa: F401
    except ImportError:
        return []
    return ["argon2"]


_crypt_context = CryptContext(schemes=_CRYPT_SCHEMES)
_hash_context = CryptContext(schemes=_CRYPT_SCHEMES[:-1] + _LDAP_SCHEMES + _argon2_schemes())
_CLEAR_PREFIXES = ("{PLAIN}", "{CLEAR}")
_LDAP_PREFIXES = ("{SHA}", "{SSHA}", "{MD5}", "{SMD5}", "{SSHA256}", "{SSHA512}")


#: bcrypt uses at most this many bytes of a password (and bcrypt 5 refuses more).
BCRYPT_MAX_BYTES = 72
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$", "{CRYPT}$2")


class UnknownEncryption(ValueError):
    """A ``PasswordEncryption`` value that is not one of :data:`ENCRYPTIONS`."""


class UnacceptablePassword(ValueError):
    """A new password that cannot be stored; the text says why, in one line."""


def check_new(password: str | bytes, encryption: str) -> str:
    """The new password as text, if it can be stored under ``encryption``;
    else raise :class:`UnacceptablePassword` (or :class:`UnknownEncryption`)."""
    encryption = canonical_encryption(encryption)
    if isinstance(password, bytes):
        try:
            password = password.decode("utf-8")
        except UnicodeDecodeError:
            raise UnacceptablePassword("the new password is not valid UTF-8") from None
    if not password:
        raise UnacceptablePassword("empty passwords are not allowed")
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnacceptablePassword("the new password is not valid UTF-8") from None
    if encryption == "UB-crpt" and size > BCRYPT_MAX_BYTES:
        raise UnacceptablePassword(
            f"the new password is {size} bytes; UB-crpt (bcrypt) takes at most "
            f"{BCRYPT_MAX_BYTES} (use a shorter one, or PasswordEncryption clear)"
        )
    return password


def canonical_encryption(name: str) -> str:
    """The spelling of an encryption name as CommuniGate writes it."""
    for known in ENCRYPTIONS:
        if known.lower() == name.strip().lower():
            return known
    raise UnknownEncryption(f"unknown PasswordEncryption {name!r}; use one of {ENCRYPTIONS}")


def encode(password: str, encryption: str) -> str:
    """The stored form of ``password`` under ``encryption`` (may block);
    raises :class:`UnacceptablePassword` as :func:`check_new` does."""
    encryption = canonical_encryption(encryption)
    password = check_new(password, encryption)
    if encryption == "U-crpt":
        return "{CRYPT}" + _crypt_context.handler("des_crypt").hash(password)
    if encryption == "UB-crpt":
        return str(_crypt_context.handler("bcrypt").hash(password))
    if password.startswith(("{", "$")):
        return "{PLAIN}" + password
    return password


def clear_secret(stored: str) -> str | None:
    """The clear password if it is stored in clear, else None."""
    if stored.upper().startswith(_CLEAR_PREFIXES):
        return stored[stored.index("}") + 1 :]
    if is_one_way(stored):
        return None
    return stored


def is_one_way(stored: str) -> bool:
    """Whether ``stored`` is a hash (verifying it is slow: use a thread)."""
    upper = stored.upper()
    if upper.startswith(_CLEAR_PREFIXES):
        return False
    if upper.startswith(("{CRYPT}", *_LDAP_PREFIXES)):
        return True
    return stored.startswith("$") and _hash_context.identify(stored) is not None


def is_bcrypt(stored: str) -> bool:
    """Whether ``stored`` is a bcrypt hash (the slowest check there is)."""
    return stored.startswith(_BCRYPT_PREFIXES)


def verify(stored: str, password: bytes) -> bool:
    """Whether ``password`` matches ``stored``; an empty stored value never
    does, nor an empty password (even against a hash of the empty string).

    Blocking for one-way forms.  Clear values compare in constant time.
    """
    if not stored or not password:
        return False
    secret = clear_secret(stored)
    if secret is not None:
        return bool(secret) and hmac.compare_digest(secret.encode("utf-8"), password)
    try:
        if stored.upper().startswith("{CRYPT}"):
            return bool(_crypt_context.verify(password, stored[7:]))
        return bool(_hash_context.verify(password, stored))
    except (ValueError, TypeError):
        return False


_DUMMY_HASHES: dict[str, str] = {}


def dummy_verify(encryption: str = "UB-crpt") -> bool:
    """Spend the time of a failed check of a password stored under
    ``encryption`` (blocking; no timing oracle for unknown accounts)."""
    canonical = canonical_encryption(encryption)
    if canonical == "clear":
        return False
    stored = _DUMMY_HASHES.get(canonical)
    if stored is None:
        stored = _DUMMY_HASHES[canonical] = encode("not the password", canonical)
    verify(stored, b"x")
    return False


def weaker_than(stored: str, encryption: str) -> bool:
    """Whether a stored password is weaker than ``encryption`` would store
    it (clear < Unix crypt and digests < bcrypt)."""
    target = canonical_encryption(encryption)
    if target == "clear" or not stored:
        return False
    if target == "UB-crpt":
        return not is_bcrypt(stored)
    return not is_one_way(stored)
