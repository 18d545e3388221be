"""SASL mechanisms as pure objects, against known vectors and real clients' math."""

from __future__ import annotations

import hmac

import pytest
from scramp import ScramClient
from zope.interface.verify import verifyObject

from communigate.cred.credentials import ConnectionInfo, IClearSecretCredentials, LoginPassword
from communigate.cred.sasl import framing, registry
from communigate.cred.sasl.cram import CramMD5, apop_check
from communigate.cred.sasl.digest import DigestMD5, parse_directives
from communigate.cred.sasl.mechanism import Challenge, Failure, ISASLMechanism, Success
from communigate.cred.sasl.plain import Login, Plain
from communigate.cred.sasl.scram import Scram

CONN = ConnectionInfo("imap4", "127.0.0.1", "127.0.0.1")
INSECURE = ConnectionInfo("imap4", "127.0.0.1", "192.0.2.7")
CONTEXT = registry.ExchangeContext(CONN, "company.com", "host.test", b"k" * 32)


@pytest.mark.parametrize("name", registry.MECHANISMS)
def test_every_mechanism_provides_interface(name: str) -> None:
    """Each registered mechanism is an ISASLMechanism."""
    mechanism = registry.create(name, CONTEXT)
    assert mechanism is not None and verifyObject(ISASLMechanism, mechanism)
    assert mechanism.name == name


def test_plain_with_authzid() -> None:
    """PLAIN splits authzid, authcid and password."""
    step = Plain(CONN).start(b"boss\0john\0pw")
    assert isinstance(step, Success)
    credentials = step.credentials
    assert isinstance(credentials, LoginPassword)
    assert (credentials.authzid, credentials.username, credentials.password) == (
        b"boss",
        b"john",
        b"pw",
    )
    assert isinstance(Plain(CONN).start(b"no-nuls"), Failure)


def test_login_asks_twice() -> None:
    """LOGIN asks for the user name, then the password."""
    mechanism = Login(CONN)
    assert mechanism.start(None) == Challenge(b"Username:")
    assert mechanism.respond(b"john") == Challenge(b"Password:")
    step = mechanism.respond(b"pw")
    assert isinstance(step, Success) and step.credentials.password == b"pw"


def test_cram_md5() -> None:
    """CRAM-MD5 checks HMAC-MD5 of the challenge with the clear password."""
    mechanism = CramMD5(CONN, b"<1896.697170952@postoffice.example.net>")
    challenge = mechanism.start(None)
    assert isinstance(challenge, Challenge)
    digest = hmac.new(b"tanstaaftanstaaf", challenge.data, "md5").hexdigest()
    step = mechanism.respond(b"tim " + digest.encode())
    assert isinstance(step, Success)
    assert verifyObject(IClearSecretCredentials, step.credentials)
    assert step.credentials.check("tanstaaftanstaaf")
    assert not step.credentials.check("wrong")


def test_apop_vector() -> None:
    """RFC 1939 §7's APOP example."""
    check = apop_check(b"<1896.697170952@dbc.mtview.ca.us>", b"c4c9334bac560ecc979e58001b3e22fb")
    assert check("tanstaaf") and not check("other")


def test_digest_md5_rfc2831_vector() -> None:
    """RFC 2831 §4's example response and rspauth."""
    mechanism = DigestMD5(CONN, "elwood.innosoft.com", b"OA6MG9tEQGm2hh")
    assert isinstance(mechanism.start(None), Challenge)
    response = (
        b'charset=utf-8,username="chris",realm="elwood.innosoft.com",'
        b'nonce="OA6MG9tEQGm2hh",nc=00000001,cnonce="OA6MHXh6VqTrRk",'
        b'digest-uri="imap/elwood.innosoft.com",'
        b"response=d388dad90d4bbd760a152321f2143af7,qop=auth"
    )
    step = mechanism.respond(response)
    assert isinstance(step, Success)
    assert not step.credentials.check("wrong")
    assert step.credentials.check("secret")
    assert step.final_data() == b"rspauth=ea40f60335c427b5527b84dbabcdfffd"


@pytest.mark.parametrize(
    "response",
    [
        b"garbage",
        b'username="x"',
        b"a=1,a=2",
        b'username="c",nonce="other",cnonce="x",nc=00000001,digest-uri="imap/x",response=00',
    ],
)
def test_digest_md5_malformed(response: bytes) -> None:
    """Malformed or mismatched responses fail before the portal."""
    mechanism = DigestMD5(CONN, "r", b"nonce")
    mechanism.start(None)
    assert isinstance(mechanism.respond(response), Failure)


def test_directives_quoted() -> None:
    """Quoted values unescape."""
    assert parse_directives(b'a="x\\"y",b=z') == {"a": b'x"y', "b": b"z"}


@pytest.mark.parametrize("name", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_against_scramp_client(name: str) -> None:
    """A scramp client authenticates; the server proves itself too."""
    client = ScramClient([name], "john", "pencil")
    mechanism = Scram(name, CONN, b"k" * 32)
    first = mechanism.start(client.get_client_first().encode())
    assert isinstance(first, Challenge)
    client.set_server_first(first.data.decode())
    step = mechanism.respond(client.get_client_final().encode())
    assert isinstance(step, Success) and step.credentials.username == b"john"
    assert step.credentials.check("pencil")
    client.set_server_final(step.final_data().decode())


def test_scram_wrong_password() -> None:
    """A proof made with another password does not check."""
    client = ScramClient(["SCRAM-SHA-256"], "john", "pencil")
    mechanism = Scram("SCRAM-SHA-256", CONN, b"k" * 32)
    first = mechanism.start(client.get_client_first().encode())
    client.set_server_first(first.data.decode())  # type: ignore[union-attr]
    step = mechanism.respond(client.get_client_final().encode())
    assert isinstance(step, Success) and not step.credentials.check("crayon")


def test_scram_salt_stable_per_name() -> None:
    """The same name gets the same salt, whether it exists or not."""
    salts = set()
    for _ in range(2):
        client = ScramClient(["SCRAM-SHA-1"], "nobody", "x")
        first = Scram("SCRAM-SHA-1", CONN, b"k" * 32).start(client.get_client_first().encode())
        salts.add(dict(part.split("=", 1) for part in first.data.decode().split(","))["s"])  # type: ignore[union-attr]
    assert len(salts) == 1


def test_framing() -> None:
    """One-line base64 out; '*' aborts, '=' is empty, bad base64 is refused."""
    assert b"\n" not in framing.encode(b"x" * 1000)
    assert framing.decode(b"=") == b""
    with pytest.raises(framing.Aborted):
        framing.decode(b"*")
    with pytest.raises(ValueError):
        framing.decode(b"!!!")


def test_advertised_follows_domain_and_link() -> None:
    """Clear text is not advertised on insecure non-local links by default."""
    assert registry.advertised({}, CONN) == ["LOGIN", "PLAIN"]
    assert registry.advertised({}, INSECURE) == []
    assert "PLAIN" in registry.advertised({"ClearTextLogin": "Always"}, INSECURE)
    configured = {"LoginMethods": ["PLAIN", "CRAM-MD5"]}
    assert registry.advertised(configured, CONN) == ["CRAM-MD5", "PLAIN"]
