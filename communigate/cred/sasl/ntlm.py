"""NTLM and MSN (the same exchange under another name), server side,
NTLMv2 only (MS-NLMP; the SASL framing of MS-SMTPNTLM / MS-OXIMAP4 /
MS-OXPOP3: an empty challenge, NEGOTIATE, CHALLENGE, AUTHENTICATE).

The client's NEGOTIATE (type 1) is answered with a CHALLENGE (type 2)
naming the connection's domain, with a TargetInfo list holding its NetBIOS
and DNS names and a timestamp (which makes MS-NLMP §3.1.5.1.2 clients add a
MIC).  The AUTHENTICATE (type 3) is parsed here; the proof is checked by
the portal: NTOWFv2 = HMAC_MD5(NT hash, UTF-16LE(UPPER(user) + domain)),
NTProofStr = HMAC_MD5(NTOWFv2, server challenge + blob), compared with the
first 16 bytes of the NT response (§3.3.2).  The NT hash is MD4 of the
UTF-16LE password (:func:`nt_hash`): the checker computes it from a clear
password, or reads it from the account setting ``NTHash`` (32 hex digits)
where the password is stored one-way.

Refused: NTLMv1 and LM responses (an NT response of 24 bytes, or none),
anonymous logins, and messages that do not parse (oversize fields, offsets
out of range): always ``Failure``, never an exception.  No session security
is offered (SIGN, SEAL and KEY_EXCH are never set: SASL NTLM has no
security layer), so the exported session key is the session base key and
a client's MIC can be checked without RC4.

The login name given to the portal: the user name as sent; if the client's
domain field holds a DNS name (it contains a dot, e.g. ``company.com`` from
curl's ``company.com\\info``) and the user name has no ``@``, then
``user@domain``; a NetBIOS domain (``COMPANY``) or none leaves the bare
name, which the connection's domain completes.

Text in messages negotiated without UNICODE (curl's OEM mode) is taken as
the raw bytes for the login name, and byte by byte (ASCII upper-cased, as
curl computes it) for NTOWFv2.

pyspnego is not used here: its acceptor reads NT hashes from a credential
file (``NTLM_USER_FILE``) instead of asking per account, and its message
classes and MD4 live in private modules.  The tests use its client.
"""

from __future__ import annotations

import enum
import hmac
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zope.interface import implementer

from communigate.cred.credentials import ConnectionInfo, IStoredSecretCredentials
from communigate.cred.md4 import md4
from communigate.cred.sasl.mechanism import Challenge, Failure, ISASLMechanism, Step, Success

SIGNATURE = b"NTLMSSP\0"
#: The account setting holding hex(MD4(UTF-16LE(password))).
NT_HASH_SETTING = "NTHash"
MALFORMED = "malformed NTLM message"
#: Longest message accepted; real ones are a few hundred bytes.
MAX_MESSAGE = 8192
#: Longest user or domain name accepted, in bytes.
MAX_NAME = 512
#: Seconds between 1601-01-01 (FILETIME) and 1970-01-01.
_EPOCH_DELTA = 11644473600
_HEX_HASH = re.compile(r"[0-9A-Fa-f]{32}")
#: The Version structure sent when the client asks (§2.2.2.10): 10.0,
#: build 0, NTLMSSP_REVISION_W2K3.
_VERSION = bytes((10, 0, 0, 0, 0, 0, 0, 0x0F))
#: The NTLMv2 blob's fixed part before its AV pairs (§2.2.2.7).
_BLOB_HEADER = 28


class Flag(enum.IntFlag):
    """NEGOTIATE flags (MS-NLMP §2.2.2.5) this module reads or sets."""

    UNICODE = 0x00000001
    OEM = 0x00000002
    REQUEST_TARGET = 0x00000004
    NTLM = 0x00000200
    ANONYMOUS = 0x00000800
    ALWAYS_SIGN = 0x00008000
    TARGET_TYPE_DOMAIN = 0x00010000
    EXTENDED_SESSIONSECURITY = 0x00080000
    TARGET_INFO = 0x00800000
    VERSION = 0x02000000
    KEY_128 = 0x20000000
    KEY_56 = 0x80000000


#: Flags granted only when the client's NEGOTIATE asks for them.
MIRRORED = (
    Flag.EXTENDED_SESSIONSECURITY
    | Flag.ALWAYS_SIGN
    | Flag.KEY_128
    | Flag.KEY_56
    | Flag.VERSION
    | Flag.REQUEST_TARGET
)


class AvId(enum.IntEnum):
    """AV_PAIR identifiers (MS-NLMP §2.2.2.1)."""

    EOL = 0
    NB_COMPUTER_NAME = 1
    NB_DOMAIN_NAME = 2
    DNS_COMPUTER_NAME = 3
    DNS_DOMAIN_NAME = 4
    FLAGS = 6
    TIMESTAMP = 7


#: MsvAvFlags bit: the AUTHENTICATE message carries a MIC.
AV_FLAG_MIC = 0x2


class MalformedMessage(ValueError):
    """An NTLM message that does not follow MS-NLMP §2.2."""


def nt_hash(password: str) -> bytes:
    """NTOWFv1, the NT hash: MD4 of the UTF-16LE password (MS-NLMP §3.3.1).

    What the account setting ``NTHash`` stores, in hex."""
    return md4(password.encode("utf-16-le", "surrogatepass"))


def _upper(text: str) -> str:
    """Upper case one character for one, as Windows does (no ``ß`` → ``SS``)."""
    return "".join(upper if len(upper := char.upper()) == 1 else char for char in text)


def identity(user: str, domain: str) -> bytes:
    """What NTOWFv2 keys: UTF-16LE(UPPER(user) + domain) (§3.3.2)."""
    return (_upper(user) + domain).encode("utf-16-le", "surrogatepass")


def ntowfv2(hash_: bytes, user: str, domain: str) -> bytes:
    """The NTLMv2 response key of an NT hash, user and domain (§3.3.2)."""
    return hmac.digest(hash_, identity(user, domain), "md5")


def nt_proof(response_key: bytes, server_challenge: bytes, blob: bytes) -> bytes:
    """NTProofStr: HMAC_MD5(NTOWFv2, server challenge + blob) (§3.3.2)."""
    return hmac.digest(response_key, server_challenge + blob, "md5")


def stored_nt_hash(settings: Mapping[str, Any]) -> bytes | None:
    """The NT hash an account's ``NTHash`` setting holds, if it is valid."""
    value = settings.get(NT_HASH_SETTING)
    if not isinstance(value, str) or not _HEX_HASH.fullmatch(value):
        return None
    return bytes.fromhex(value)


def filetime(seconds: float) -> bytes:
    """A Unix time as a little-endian FILETIME (100 ns since 1601)."""
    return struct.pack("<Q", int((seconds + _EPOCH_DELTA) * 10_000_000))


def netbios_name(name: str) -> str:
    """A NetBIOS name for a DNS name: its first label, upper case, at most
    15 characters."""
    return name.split(".", 1)[0].upper()[:15]


def av_pairs(pairs: list[tuple[int, bytes]]) -> bytes:
    """An AV_PAIR list ending in MsvAvEOL (§2.2.2.1)."""
    out = b"".join(struct.pack("<HH", av_id, len(value)) + value for av_id, value in pairs)
    return out + struct.pack("<HH", AvId.EOL, 0)


def parse_av_pairs(data: bytes) -> dict[int, bytes]:
    """The AV pairs of ``data`` up to MsvAvEOL; raises MalformedMessage."""
    pairs: dict[int, bytes] = {}
    position = 0
    while True:
        if position + 4 > len(data):
            raise MalformedMessage("AV pair list without MsvAvEOL")
        av_id, length = struct.unpack_from("<HH", data, position)
        position += 4
        if av_id == AvId.EOL:
            return pairs
        if position + length > len(data):
            raise MalformedMessage("AV pair runs past the list")
        pairs.setdefault(av_id, data[position : position + length])
        position += length


def _header(data: bytes, kind: int, minimum: int) -> None:
    """Check signature, message type and size; raises MalformedMessage."""
    if not minimum <= len(data) <= MAX_MESSAGE:
        raise MalformedMessage("bad message size")
    if data[:8] != SIGNATURE or struct.unpack_from("<I", data, 8)[0] != kind:
        raise MalformedMessage(f"not an NTLM type {kind} message")


def _field(data: bytes, at: int, fixed: int) -> tuple[bytes, int]:
    """The payload a Len/MaxLen/Offset triple at ``at`` points to, and its
    offset (0 when empty); raises MalformedMessage when it lies outside
    the message or over its fixed part."""
    length, _, offset = struct.unpack_from("<HHI", data, at)
    if length == 0:
        return b"", 0
    if offset < fixed or offset + length > len(data):
        raise MalformedMessage("field out of range")
    return data[offset : offset + length], offset


def parse_negotiate(data: bytes) -> int:
    """The flags of a NEGOTIATE message (§2.2.1.1); raises MalformedMessage.

    Sixteen bytes (no name fields) are accepted, as old clients send;
    anything longer must hold the fields it announces."""
    _header(data, 1, 16)
    flags = int(struct.unpack_from("<I", data, 12)[0])
    if len(data) == 16:
        return flags
    fixed = 40 if flags & Flag.VERSION else 32
    if len(data) < fixed:
        raise MalformedMessage("truncated NEGOTIATE")
    for at in (16, 24):
        _field(data, at, fixed)
    return flags


def challenge_flags(asked: int) -> int:
    """The CHALLENGE flags for a client's NEGOTIATE flags: NTLM with
    TargetInfo always, Unicode unless the client offers only OEM, and of
    the rest only what :data:`MIRRORED` allows and the client asked."""
    flags = Flag.NTLM | Flag.TARGET_INFO | Flag.TARGET_TYPE_DOMAIN
    if asked & Flag.OEM and not asked & Flag.UNICODE:
        flags |= Flag.OEM
    else:
        flags |= Flag.UNICODE
    return int(flags | (asked & MIRRORED))


def build_challenge(
    flags: int, server_challenge: bytes, target_name: bytes, target_info: bytes
) -> bytes:
    """A CHALLENGE message (§2.2.1.2)."""
    version = _VERSION if flags & Flag.VERSION else b""
    fixed = 48 + len(version)
    name_offset = fixed
    info_offset = fixed + len(target_name)
    return (
        SIGNATURE
        + struct.pack("<I", 2)
        + struct.pack("<HHI", len(target_name), len(target_name), name_offset)
        + struct.pack("<I", flags)
        + server_challenge
        + b"\0" * 8
        + struct.pack("<HHI", len(target_info), len(target_info), info_offset)
        + version
        + target_name
        + target_info
    )


@dataclass(frozen=True)
class Authenticate:
    """What the server uses of an AUTHENTICATE message (§2.2.1.3)."""

    flags: int
    nt_response: bytes
    #: The user and domain names as UTF-8 (Unicode) or as sent (OEM).
    user: bytes
    domain: bytes
    #: UTF-16LE(UPPER(user) + domain) as the client keyed NTOWFv2.
    identity: bytes
    #: Where the MIC lies, or None if the client put none.
    mic_offset: int | None
    raw: bytes


def _text(raw: bytes, unicode: bool) -> bytes:
    """A name field as UTF-8 (Unicode) or as sent (OEM); no controls."""
    if len(raw) > MAX_NAME:
        raise MalformedMessage("name too long")
    text = raw.decode("utf-16-le") if unicode else raw.decode("latin-1")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise MalformedMessage("control character in a name")
    return text.encode("utf-8") if unicode else raw


def parse_authenticate(data: bytes) -> Authenticate:
    """Parse an AUTHENTICATE message; raises MalformedMessage."""
    _header(data, 3, 64)
    flags = int(struct.unpack_from("<I", data, 60)[0])
    fields = [_field(data, at, 64) for at in (12, 20, 28, 36, 44, 52)]
    nt_response = fields[1][0]
    raw_domain, raw_user = fields[2][0], fields[3][0]
    unicode = bool(flags & Flag.UNICODE)
    user, domain = _text(raw_user, unicode), _text(raw_domain, unicode)
    if unicode:
        key = identity(raw_user.decode("utf-16-le"), raw_domain.decode("utf-16-le"))
    else:
        # curl's byte widening: ASCII upper-cased, each byte one character.
        key = (raw_user.upper() + raw_domain).decode("latin-1").encode("utf-16-le")
    mic_offset = None
    if nt_response and len(nt_response) >= 16 + _BLOB_HEADER:
        pairs = parse_av_pairs(nt_response[16 + _BLOB_HEADER :])
        av_flags = pairs.get(AvId.FLAGS, b"\0\0\0\0")
        if len(av_flags) != 4:
            raise MalformedMessage("bad MsvAvFlags")
        if struct.unpack("<I", av_flags)[0] & AV_FLAG_MIC:
            # §2.2.1.3: the MIC follows the Version field if there is one.
            payload = min((offset for _, offset in fields if offset), default=len(data))
            if payload >= 88:
                mic_offset = 72
            elif payload >= 80:
                mic_offset = 64
            else:
                raise MalformedMessage("MIC announced but absent")
    return Authenticate(flags, nt_response, user, domain, key, mic_offset, data)


def login_name(user: bytes, domain: bytes) -> bytes:
    """The portal's login name: ``user@domain`` for a DNS domain (one with a
    dot) when the user name has no ``@``, else the user name alone."""
    if domain and b"." in domain and b"@" not in user:
        return user + b"@" + domain
    return user


class _Proof:
    """What checking an NTLMv2 response needs: the three messages and the
    server challenge."""

    def __init__(
        self, negotiate: bytes, challenge: bytes, server_challenge: bytes, message: Authenticate
    ) -> None:
        self.negotiate = negotiate
        self.challenge = challenge
        self.server_challenge = server_challenge
        self.message = message

    def matches(self, hash_: bytes) -> bool:
        """Whether the NT response (and the MIC, if any) were made with the
        NT hash ``hash_`` (§3.3.2, §3.2.5.1.2)."""
        message = self.message
        key = hmac.digest(hash_, message.identity, "md5")
        proof = nt_proof(key, self.server_challenge, message.nt_response[16:])
        if not hmac.compare_digest(proof, message.nt_response[:16]):
            return False
        if message.mic_offset is None:
            return True
        # No KEY_EXCH is negotiated: ExportedSessionKey = SessionBaseKey.
        session_key = hmac.digest(key, proof, "md5")
        at = message.mic_offset
        zeroed = message.raw[:at] + b"\0" * 16 + message.raw[at + 16 :]
        mic = hmac.digest(session_key, self.negotiate + self.challenge + zeroed, "md5")
        return hmac.compare_digest(mic, message.raw[at : at + 16])


@implementer(IStoredSecretCredentials)
class NTLMProof:
    """An NTLMv2 response for the portal: checked with the NT hash of the
    account's clear password or its stored ``NTHash``."""

    authzid = None

    def __init__(
        self, username: bytes, connection: ConnectionInfo, mechanism: str, proof: _Proof
    ) -> None:
        self.username = username
        self.connection = connection
        self.mechanism = mechanism
        self._proof = proof

    def check(self, secret: str) -> bool:
        """Whether the response was made with the clear password ``secret``."""
        return self._proof.matches(nt_hash(secret))

    def uses_stored(self, settings: Mapping[str, Any]) -> bool:
        """Whether the account has a valid ``NTHash`` setting."""
        return stored_nt_hash(settings) is not None

    def check_stored(self, settings: Mapping[str, Any]) -> bool:
        """Whether the response was made with the stored NT hash."""
        stored = stored_nt_hash(settings)
        return stored is not None and self._proof.matches(stored)

    def __repr__(self) -> str:
        return f"<NTLMProof {self.username!r} via {self.mechanism}>"


class State(enum.Enum):
    """Where an exchange stands."""

    START = "start"
    AWAIT_NEGOTIATE = "await negotiate"
    AWAIT_AUTHENTICATE = "await authenticate"
    DONE = "done"


@implementer(ISASLMechanism)
class Ntlm:
    """One NTLM (or MSN) exchange.  ``server_challenge`` (8 random bytes)
    and ``now`` (Unix time, for MsvAvTimestamp) are given by the caller."""

    def __init__(
        self,
        name: str,
        connection: ConnectionInfo,
        domain: str,
        hostname: str,
        server_challenge: bytes,
        now: float,
    ) -> None:
        if len(server_challenge) != 8:
            raise ValueError("the server challenge is 8 bytes")
        self.name = name
        self.connection = connection
        self.domain = domain
        self.hostname = hostname
        self.server_challenge = server_challenge
        self.now = now
        self.state = State.START
        self._negotiate = b""
        self._challenge = b""

    def start(self, initial: bytes | None) -> Step:
        """An empty challenge, or the CHALLENGE if the client's initial
        response is its NEGOTIATE."""
        if self.state is not State.START:
            return self._fail("exchange already started")
        if not initial:
            self.state = State.AWAIT_NEGOTIATE
            return Challenge(b"")
        return self._on_negotiate(initial)

    def respond(self, data: bytes) -> Step:
        """The client's NEGOTIATE or AUTHENTICATE, as the state expects."""
        if self.state is State.AWAIT_NEGOTIATE:
            return self._on_negotiate(data)
        if self.state is State.AWAIT_AUTHENTICATE:
            return self._on_authenticate(data)
        return self._fail("unexpected NTLM message")

    def _fail(self, reason: str) -> Failure:
        self.state = State.DONE
        return Failure(reason)

    def _on_negotiate(self, data: bytes) -> Step:
        try:
            asked = parse_negotiate(data)
        except (ValueError, struct.error):
            return self._fail(MALFORMED)
        flags = challenge_flags(asked)
        domain = self.domain or self.hostname
        target_info = av_pairs(
            [
                (AvId.NB_DOMAIN_NAME, netbios_name(domain).encode("utf-16-le")),
                (AvId.NB_COMPUTER_NAME, netbios_name(self.hostname).encode("utf-16-le")),
                (AvId.DNS_DOMAIN_NAME, domain.encode("utf-16-le")),
                (AvId.DNS_COMPUTER_NAME, self.hostname.encode("utf-16-le")),
                (AvId.TIMESTAMP, filetime(self.now)),
            ]
        )
        encoding = "utf-16-le" if flags & Flag.UNICODE else "utf-8"
        self._negotiate = data
        self._challenge = build_challenge(
            flags, self.server_challenge, domain.encode(encoding), target_info
        )
        self.state = State.AWAIT_AUTHENTICATE
        return Challenge(self._challenge)

    def _on_authenticate(self, data: bytes) -> Step:
        try:
            message = parse_authenticate(data)
        except (ValueError, struct.error):
            return self._fail(MALFORMED)
        if message.flags & Flag.ANONYMOUS or not message.user or not message.nt_response:
            return self._fail("anonymous NTLM logins are refused")
        if len(message.nt_response) == 24:
            return self._fail("NTLMv1 responses are refused")
        blob = message.nt_response[16:]
        if len(blob) < _BLOB_HEADER + 4 or blob[:2] != b"\x01\x01":
            return self._fail(MALFORMED)
        self.state = State.DONE
        proof = _Proof(self._negotiate, self._challenge, self.server_challenge, message)
        login = login_name(message.user, message.domain)
        return Success(NTLMProof(login, self.connection, self.name, proof))
