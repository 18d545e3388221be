"""NTLM/MSN as a SASL mechanism: MS-NLMP vectors, pyspnego's client, hostile input."""

from __future__ import annotations

import hmac
import struct

import pytest
import spnego
from zope.interface.verify import verifyObject

from communigate.cred.credentials import ConnectionInfo, IStoredSecretCredentials
from communigate.cred.md4 import md4
from communigate.cred.sasl import registry
from communigate.cred.sasl.mechanism import Challenge, Failure, ISASLMechanism, Success
from communigate.cred.sasl.ntlm import (
    MALFORMED,
    AvId,
    Flag,
    Ntlm,
    NTLMProof,
    av_pairs,
    challenge_flags,
    login_name,
    nt_hash,
    nt_proof,
    ntowfv2,
    parse_av_pairs,
    parse_negotiate,
)

CONN = ConnectionInfo("imap4", "127.0.0.1", "127.0.0.1")
SERVER_CHALLENGE = bytes.fromhex("0123456789abcdef")
#: curl's NEGOTIATE flags: OEM, REQUEST_TARGET, NTLM, NTLM2, ALWAYS_SIGN.
CURL_FLAGS = 0x00088206


def mechanism(name: str = "NTLM") -> Ntlm:
    """An exchange with a fixed challenge and clock."""
    return Ntlm(name, CONN, "company.com", "mail.company.com", SERVER_CHALLENGE, 1.7e9)


def exchange(user: str, password: str, name: str = "NTLM") -> tuple[Ntlm, bytes, object]:
    """Run pyspnego's client against the server; the mechanism, the
    AUTHENTICATE message and the last step."""
    client = spnego.client(user, password, protocol="ntlm")
    server = mechanism(name)
    challenge = server.start(client.step())
    assert isinstance(challenge, Challenge)
    authenticate = client.step(challenge.data)
    assert authenticate is not None
    return server, authenticate, server.respond(authenticate)


def proof_of(step: object) -> NTLMProof:
    """The credentials of a Success."""
    assert isinstance(step, Success)
    assert isinstance(step.credentials, NTLMProof)
    return step.credentials


def test_md4_rfc1320_vectors() -> None:
    """RFC 1320 §A.5's test suite."""
    vectors = {
        b"": "31d6cfe0d16ae931b73c59d7e0c089c0",
        b"a": "bde52cb31de33e46245e05fbdbd6fb24",
        b"abc": "a448017aaf21d8525fc10ae87aa6729d",
        b"message digest": "d9130a8164549fe818874806e1c7014b",
        b"abcdefghijklmnopqrstuvwxyz": "d79e1c308aa5bbcdeea8ed63df412da9",
        b"1234567890" * 8: "e33b4ddc9c38f2199c3e7b164fcc0536",
    }
    for data, digest in vectors.items():
        assert md4(data).hex() == digest


def test_ms_nlmp_ntlmv2_vectors() -> None:
    """MS-NLMP §4.2.4: NT hash, NTOWFv2 and NTProofStr of User/Domain/Password."""
    assert nt_hash("Password").hex() == "a4f49c406510bdcab6824ee7c30fd852"
    key = ntowfv2(nt_hash("Password"), "User", "Domain")
    assert key.hex() == "0c868a403bfd7a93a3001ef22ef02e3f"
    server_name = av_pairs(
        [
            (AvId.NB_DOMAIN_NAME, "Domain".encode("utf-16-le")),
            (AvId.NB_COMPUTER_NAME, "Server".encode("utf-16-le")),
        ]
    )
    blob = b"\x01\x01" + b"\0" * 6 + b"\0" * 8 + b"\xaa" * 8 + b"\0" * 4 + server_name + b"\0" * 4
    assert nt_proof(key, SERVER_CHALLENGE, blob).hex() == "68cd0ab851e51c96aabc927bebef6a1c"


@pytest.mark.parametrize("name", ["NTLM", "MSN"])
def test_registry_builds_both_names(name: str) -> None:
    """NTLM and MSN are registered and are ISASLMechanisms."""
    context = registry.ExchangeContext(CONN, "company.com", "host.test", b"k" * 32)
    created = registry.create(name, context)
    assert created is not None and verifyObject(ISASLMechanism, created)
    assert created.name == name


def test_advertised_only_where_listed() -> None:
    """NTLM is offered only when the domain's LoginMethods lists it."""
    assert "NTLM" not in registry.advertised({}, CONN)
    listed = registry.advertised({"LoginMethods": ["PLAIN", "NTLM", "MSN"]}, CONN)
    assert "NTLM" in listed and "MSN" in listed


@pytest.mark.parametrize("name", ["NTLM", "MSN"])
def test_pyspnego_client_logs_in(name: str) -> None:
    """pyspnego's NTLMv2 client (with a MIC) is accepted with the right password only."""
    _, _, step = exchange("info", "Secret-1", name)
    proof = proof_of(step)
    assert verifyObject(IStoredSecretCredentials, proof)
    assert proof.username == b"info" and proof.mechanism == name and proof.authzid is None
    assert proof.check("Secret-1")
    assert not proof.check("Secret-2")


def test_stored_nt_hash() -> None:
    """The NTHash setting serves accounts whose password is one-way."""
    proof = proof_of(exchange("info", "Secret-1")[2])
    good = {"NTHash": nt_hash("Secret-1").hex().upper()}
    assert proof.uses_stored(good) and proof.check_stored(good)
    bad = {"NTHash": nt_hash("other").hex()}
    assert proof.uses_stored(bad) and not proof.check_stored(bad)
    for invalid in ({}, {"NTHash": "xyz"}, {"NTHash": "00" * 15}, {"NTHash": ["a"]}):
        assert not proof.uses_stored(invalid) and not proof.check_stored(invalid)


def test_repr_hides_secrets() -> None:
    """The credentials' repr names the user and mechanism only."""
    step = exchange("info", "Secret-1")[2]
    text = repr(proof_of(step))
    assert text == "<NTLMProof b'info' via NTLM>"
    assert nt_hash("Secret-1").hex() not in text


@pytest.mark.parametrize(
    ("user", "login"),
    [
        ("company.com\\info", b"info@company.com"),
        ("COMPANY\\info", b"info"),
        ("info@client2.com", b"info@client2.com"),
        ("info", b"info"),
    ],
)
def test_login_name_rule(user: str, login: bytes) -> None:
    """A DNS domain field completes the login name; a NetBIOS one does not."""
    proof = proof_of(exchange(user, "pw")[2])
    assert proof.username == login
    assert proof.check("pw")


def test_login_name_keeps_address() -> None:
    """A user name with @ is not given a second domain."""
    assert login_name(b"a@b.com", b"c.com") == b"a@b.com"
    assert login_name(b"a", b"") == b"a"


def test_mic_is_checked() -> None:
    """A changed MIC, or a NEGOTIATE changed in transit, fails the check
    even with the right password."""
    client = spnego.client("info", "pw", protocol="ntlm")
    negotiate = client.step()
    assert negotiate is not None
    challenge = mechanism().start(negotiate)
    assert isinstance(challenge, Challenge)
    authenticate = client.step(challenge.data)
    assert authenticate is not None
    tampered = bytearray(authenticate)
    tampered[72] ^= 1  # pyspnego sends a Version, so the MIC is at 72
    changed = bytearray(negotiate)
    changed[12] ^= 0x10  # NEGOTIATE_SIGN: not granted, same CHALLENGE
    for first, last, valid in (
        (negotiate, authenticate, True),
        (negotiate, bytes(tampered), False),
        (bytes(changed), authenticate, False),
    ):
        server = mechanism()
        assert server.start(first) == challenge
        assert proof_of(server.respond(last)).check("pw") is valid


def test_challenge_flags_mirror_the_client() -> None:
    """UNICODE unless only OEM is offered; optional flags only when asked."""
    assert challenge_flags(CURL_FLAGS) & Flag.OEM
    assert not challenge_flags(CURL_FLAGS) & Flag.UNICODE
    assert not challenge_flags(CURL_FLAGS) & Flag.KEY_128
    both = challenge_flags(Flag.UNICODE | Flag.OEM | Flag.KEY_128 | 0x10 | 0x20 | 0x40000000)
    assert both & Flag.UNICODE and not both & Flag.OEM and both & Flag.KEY_128
    assert not both & (0x10 | 0x20 | 0x40000000), "no SIGN, SEAL or KEY_EXCH"
    assert both & Flag.TARGET_INFO and both & Flag.NTLM


def test_challenge_message() -> None:
    """The CHALLENGE carries the server challenge, domain and target info."""
    step = mechanism().start(b"NTLMSSP\0" + struct.pack("<II", 1, Flag.UNICODE) + b"\0" * 16)
    assert isinstance(step, Challenge)
    data = step.data
    assert data[:12] == b"NTLMSSP\0\x02\0\0\0" and data[24:32] == SERVER_CHALLENGE
    length, _, offset = struct.unpack_from("<HHI", data, 12)
    assert data[offset : offset + length].decode("utf-16-le") == "company.com"
    length, _, offset = struct.unpack_from("<HHI", data, 40)
    pairs = parse_av_pairs(data[offset : offset + length])
    assert pairs[AvId.NB_DOMAIN_NAME].decode("utf-16-le") == "COMPANY"
    assert pairs[AvId.DNS_DOMAIN_NAME].decode("utf-16-le") == "company.com"
    assert len(pairs[AvId.TIMESTAMP]) == 8


def _oem_authenticate(challenge: bytes, user: bytes, domain: bytes, password: str) -> bytes:
    """An OEM AUTHENTICATE as curl builds it (MS-NLMP §3.3.2, no MIC)."""
    length, _, offset = struct.unpack_from("<HHI", challenge, 40)
    info = challenge[offset : offset + length]
    blob = b"\x01\x01" + b"\0" * 6 + b"\0" * 8 + b"\xbb" * 8 + b"\0" * 4 + info + b"\0" * 4
    key = hmac.digest(
        nt_hash(password), (user.upper() + domain).decode().encode("utf-16-le"), "md5"
    )
    nt = hmac.digest(key, SERVER_CHALLENGE + blob, "md5") + blob
    lm = b"\0" * 24
    payload_at = 64
    fields, payload = b"", b""
    for value in (lm, nt, domain, user, b"WS", b""):
        fields += struct.pack("<HHI", len(value), len(value), payload_at + len(payload))
        payload += value
    flags = struct.unpack_from("<I", challenge, 20)[0]
    return b"NTLMSSP\0" + struct.pack("<I", 3) + fields + struct.pack("<I", flags) + payload


def test_oem_client_like_curl() -> None:
    """An OEM exchange as curl runs it logs in; a wrong password does not."""
    server = mechanism()
    assert server.start(None) == Challenge(b"")
    negotiate = b"NTLMSSP\0" + struct.pack("<II", 1, CURL_FLAGS) + b"\0" * 16
    challenge = server.respond(negotiate)
    assert isinstance(challenge, Challenge)
    assert parse_negotiate(negotiate) == CURL_FLAGS
    step = server.respond(_oem_authenticate(challenge.data, b"info", b"", "pw"))
    proof = proof_of(step)
    assert proof.username == b"info" and proof.check("pw") and not proof.check("pw2")


def test_ntlmv1_refused() -> None:
    """An NT response of 24 bytes (NTLMv1) is refused."""
    server = mechanism()
    challenge = server.start(b"NTLMSSP\0" + struct.pack("<II", 1, CURL_FLAGS))
    assert isinstance(challenge, Challenge)
    fields, payload = b"", b""
    for value in (b"\1" * 24, b"\2" * 24, b"", b"info", b"", b""):
        fields += struct.pack("<HHI", len(value), len(value), 64 + len(payload))
        payload += value
    message = b"NTLMSSP\0" + struct.pack("<I", 3) + fields + struct.pack("<I", CURL_FLAGS) + payload
    step = server.respond(message)
    assert isinstance(step, Failure) and "NTLMv1" in step.reason


def test_anonymous_refused() -> None:
    """An anonymous AUTHENTICATE (no user, no NT response) is refused."""
    server = mechanism()
    server.start(b"NTLMSSP\0" + struct.pack("<II", 1, CURL_FLAGS))
    message = (
        b"NTLMSSP\0"
        + struct.pack("<I", 3)
        + struct.pack("<HHI", 1, 1, 64)
        + struct.pack("<HHI", 0, 0, 65) * 5
        + struct.pack("<I", CURL_FLAGS | Flag.ANONYMOUS)
        + b"\0"
    )
    step = server.respond(message)
    assert isinstance(step, Failure) and "anonymous" in step.reason


def test_every_truncation_fails_cleanly() -> None:
    """Each truncation of valid NEGOTIATE and AUTHENTICATE messages is a Failure."""
    client = spnego.client("info", "pw", protocol="ntlm")
    negotiate = client.step()
    assert negotiate is not None
    for size in range(len(negotiate)):
        if size != 16:  # a bare 16-byte NEGOTIATE is valid (old clients)
            assert mechanism().start(negotiate[:size] or b"x") == Failure(MALFORMED), size
    server = mechanism()
    challenge = server.start(negotiate)
    assert isinstance(challenge, Challenge)
    authenticate = client.step(challenge.data)
    assert authenticate is not None
    for size in range(len(authenticate)):
        fresh = mechanism()
        fresh.start(negotiate)
        step = fresh.respond(authenticate[:size])
        assert isinstance(step, Failure), size


def test_hostile_fields_fail_cleanly() -> None:
    """Offsets out of range, odd UTF-16, oversize messages and garbage give Failure."""
    _, authenticate, _ = exchange("info", "pw")
    hostile: list[bytes] = []
    for at in (12, 20, 28, 36, 44, 52):
        if not struct.unpack_from("<H", authenticate, at)[0]:
            continue  # an empty field's offset is not used
        for offset in (0, 10, 0xFFFFFFFF, len(authenticate)):
            changed = bytearray(authenticate)
            struct.pack_into("<I", changed, at + 4, offset)
            hostile.append(bytes(changed))
        changed = bytearray(authenticate)
        struct.pack_into("<H", changed, at, 0xFFFF)
        hostile.append(bytes(changed))
    odd = bytearray(authenticate)
    length = struct.unpack_from("<H", odd, 36)[0]
    struct.pack_into("<H", odd, 36, length - 1)
    hostile += [
        bytes(odd),
        authenticate + b"\0" * 10000,
        b"\xff" * 200,
        b"NTLMSSP\0" + b"\xff" * 80,
    ]
    for data in hostile:
        server = mechanism()
        server.start(None)
        server.respond(spnego.client("info", "pw", protocol="ntlm").step() or b"")
        step = server.respond(data)
        assert isinstance(step, Failure), data[:80]


def test_bit_flips_never_raise() -> None:
    """Flipping any byte of a valid AUTHENTICATE never raises."""
    client = spnego.client("info", "pw", protocol="ntlm")
    negotiate = client.step()
    assert negotiate is not None
    first = mechanism()
    challenge = first.start(negotiate)
    assert isinstance(challenge, Challenge)
    authenticate = client.step(challenge.data)
    assert authenticate is not None
    for position in range(len(authenticate)):
        data = bytearray(authenticate)
        data[position] ^= 0xFF
        server = mechanism()
        server.start(negotiate)
        step = server.respond(bytes(data))
        if isinstance(step, Success):
            step.credentials.check("pw")
            step.credentials.check_stored({"NTHash": nt_hash("pw").hex()})


def test_out_of_order_messages() -> None:
    """Messages out of turn are refused: no second start, nothing after the end."""
    server = mechanism()
    assert isinstance(server.start(None), Challenge)
    assert isinstance(server.start(None), Failure)
    _, authenticate, _ = exchange("info", "pw")
    server = mechanism()
    server.start(None)
    assert server.respond(authenticate) == Failure(MALFORMED)
    assert isinstance(server.respond(b"anything"), Failure)
