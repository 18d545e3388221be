"""SCRAM: authorization identities, channel binding, downgrades, stored secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from scramp import ScramClient
from zope.interface.verify import verifyObject

from communigate.cred import derived
from communigate.cred.credentials import ConnectionInfo, IStoredSecretCredentials
from communigate.cred.sasl import scram
from communigate.cred.sasl.mechanism import Challenge, Failure, Success
from communigate.cred.sasl.scram import Scram, parse_client_first
from communigate.store.directory import without_stale

CONN = ConnectionInfo("imap", "127.0.0.1", "127.0.0.1", secure=True)
KEY = b"k" * 32


def hand_client(
    mechanism: Scram, password: str, header: str = "n,,", binding: bytes = b"", name: str = "john"
) -> Success | Failure:
    """A client written out by hand (RFC 5802 §3), so the GS2 header is ours."""
    algorithm = scram.HASHES[scram.base_mechanism(mechanism.name)]
    bare = f"n={name},r=clientnonce"
    first = mechanism.start((header + bare).encode())
    if not isinstance(first, Challenge):
        assert isinstance(first, Failure)
        return first
    fields = dict(part.split("=", 1) for part in first.data.decode().split(","))
    salt, iterations = base64.b64decode(fields["s"]), int(fields["i"])
    salted = hashlib.pbkdf2_hmac(algorithm, password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", algorithm)
    stored = hashlib.new(algorithm, client_key).digest()
    channel = base64.b64encode(header.encode() + binding).decode()
    without_proof = f"c={channel},r={fields['r']}"
    message = f"{bare},{first.data.decode()},{without_proof}".encode()
    signature = hmac.digest(stored, message, algorithm)
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    step = mechanism.respond(f"{without_proof},p={proof.decode()}".encode())
    assert isinstance(step, Success | Failure)
    return step


@pytest.mark.parametrize("name", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_authzid_is_carried_to_the_portal(name: str) -> None:
    """``n,a=other,`` (as imtest sends) is accepted and names the account to open."""
    step = hand_client(Scram(name, CONN, KEY), "pencil", header="n,a=boss@example.com,")
    assert isinstance(step, Success)
    assert step.credentials.authzid == b"boss@example.com"
    assert step.credentials.username == b"john"
    assert step.credentials.check("pencil")
    assert step.final_data().startswith(b"v=")


def test_escaped_names() -> None:
    """``=2C`` and ``=3D`` unescape; a stray ``=`` is malformed."""
    first = parse_client_first("n,a=a=2Cb=3Dc,n=x=2Cy,r=abc")
    assert first.authzid == "a,b=c" and first.username == "x,y"
    with pytest.raises(ValueError):
        parse_client_first("n,,n=x=41,r=abc")


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"x,,n=a,r=b",
        b"n,b=x,n=a,r=b",
        b"n,,m=ext,n=a,r=b",
        b"n,,r=b,n=a",
        b"n,,n=,r=b",
        b"n,,n=a",
        b"\xff\xfe",
        b"n,," + b"n=a,r=" + b"x" * 5000,
    ],
)
def test_malformed_client_first(message: bytes) -> None:
    """Broken client-first messages fail before the portal, without raising."""
    assert isinstance(Scram("SCRAM-SHA-256", CONN, KEY).start(message), Failure)


def test_malformed_client_final() -> None:
    """A final message with another nonce, bad base64 or no proof fails."""
    for final in (b"c=biws,r=other,p=AAAA", b"c=!!,r=x,p=AAAA", b"c=biws,r=x", b"garbage"):
        mechanism = Scram("SCRAM-SHA-256", CONN, KEY)
        mechanism.start(b"n,,n=john,r=abc")
        assert isinstance(mechanism.respond(final), Failure)


@pytest.mark.parametrize("kind", ["tls-exporter", "tls-server-end-point"])
@pytest.mark.parametrize("name", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"])
def test_plus_binds_to_the_channel(kind: str, name: str) -> None:
    """A -PLUS exchange with either binding type succeeds with the link's
    data and fails when the client saw another channel (a man in the middle)."""
    data = {"tls-exporter": b"E" * 32, "tls-server-end-point": b"S" * 32}
    header = f"p={kind},,"
    step = hand_client(Scram(name, CONN, KEY, data.get), "pencil", header, data[kind])
    assert isinstance(step, Success) and step.credentials.check("pencil")
    step = hand_client(Scram(name, CONN, KEY, data.get), "pencil", header, b"M" * 32)
    assert isinstance(step, Failure)


def test_plus_against_scramp_client() -> None:
    """scramp's client (tls-server-end-point) verifies our server signature."""
    data = b"S" * 32
    name = "SCRAM-SHA-256-PLUS"
    client = ScramClient([name], "john", "pencil", channel_binding=("tls-server-end-point", data))
    mechanism = Scram(name, CONN, KEY, channel_binding=lambda kind: data)
    first = mechanism.start(client.get_client_first().encode())
    assert isinstance(first, Challenge)
    client.set_server_first(first.data.decode())
    step = mechanism.respond(client.get_client_final().encode())
    assert isinstance(step, Success) and step.credentials.check("pencil")
    client.set_server_final(step.final_data().decode())


def test_plus_needs_binding_data() -> None:
    """-PLUS without binding on the link, or with ``n``/``y``, is refused."""
    assert isinstance(
        Scram("SCRAM-SHA-256-PLUS", CONN, KEY).start(b"p=tls-exporter,,n=a,r=b"), Failure
    )
    bound = Scram("SCRAM-SHA-256-PLUS", CONN, KEY, channel_binding=lambda kind: b"x" * 32)
    assert isinstance(bound.start(b"n,,n=a,r=b"), Failure)
    bound = Scram("SCRAM-SHA-256-PLUS", CONN, KEY, channel_binding=lambda kind: b"x" * 32)
    assert isinstance(bound.start(b"p=tls-unique,,n=a,r=b"), Failure)


def test_downgrade_detected() -> None:
    """``y`` (client could bind) while -PLUS was offered is refused; without
    an offer it is fine; ``p=`` with a plain mechanism is refused."""
    offered = Scram("SCRAM-SHA-256", CONN, KEY, plus_offered=True)
    assert isinstance(offered.start(b"y,,n=a,r=b"), Failure)
    assert isinstance(hand_client(Scram("SCRAM-SHA-256", CONN, KEY), "pw", header="y,,"), Success)
    assert isinstance(Scram("SCRAM-SHA-256", CONN, KEY).start(b"p=tls-exporter,,n=a,r=b"), Failure)


def stored_settings(password: str = "pencil") -> dict[str, object]:
    """Account settings as a bcrypt account stores them after a password change."""
    changes = derived.password_settings(password, "UB-crpt")
    return {key: value for key, value in changes.items() if value is not None}


@pytest.mark.parametrize("name", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_stored_secret_serves_one_way_accounts(name: str) -> None:
    """An account whose password is bcrypt logs in with its stored keys;
    the exchange uses the stored salt and iteration count."""
    settings = stored_settings()
    assert str(settings["Password"]).startswith("$2b$")
    secret = scram.stored_secret(settings, name)
    assert secret is not None
    mechanism = Scram(
        name, CONN, KEY, lookup=lambda login, mech: scram.stored_secret(settings, mech)
    )
    step = hand_client(mechanism, "pencil")
    assert isinstance(step, Success)
    proof = step.credentials
    assert verifyObject(IStoredSecretCredentials, proof)
    assert proof.uses_stored(settings) and proof.check_stored(settings)
    assert step.final_data().startswith(b"v=") and len(step.final_data()) > 10

    wrong = Scram(name, CONN, KEY, lookup=lambda login, mech: scram.stored_secret(settings, mech))
    step = hand_client(wrong, "crayon")
    assert isinstance(step, Success) and not step.credentials.check_stored(settings)


def test_stale_secret_is_ignored() -> None:
    """Secrets made with another Password value do not count, and a
    directory update of Password alone removes them."""
    settings = stored_settings()
    changed = dict(settings, Password="something else")
    assert scram.stored_secret(changed, "SCRAM-SHA-256") is None
    assert without_stale({"Password": "x"}) == {
        "Password": "x",
        "SCRAM-SHA-1": None,
        "SCRAM-SHA-256": None,
        "NTHash": None,
    }
    assert without_stale({"RequireAPOP": "YES"}) == {"RequireAPOP": "YES"}


def test_unknown_name_gets_a_stable_salt() -> None:
    """Without a stored secret the salt comes from the name and server key."""

    def salt() -> str:
        first = Scram("SCRAM-SHA-1", CONN, KEY).start(b"n,,n=nobody,r=abc")
        assert isinstance(first, Challenge)
        return dict(part.split("=", 1) for part in first.data.decode().split(","))["s"]

    assert salt() == salt()


def test_repr_hides_the_secret() -> None:
    """Neither the stored secret nor the proof shows key material."""
    settings = stored_settings()
    secret = scram.stored_secret(settings, "SCRAM-SHA-256")
    assert secret is not None and base64.b64encode(secret.stored_key).decode() not in repr(secret)
