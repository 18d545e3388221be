"""The GSSAPI mechanism and DomainKeys against tickets of a real MIT KDC.

A KDC (tests/integration/kdc.py) runs on a loopback port for this module;
the client side is python-gssapi in this process, so the exchange runs
step by step without a server.  Skipped where MIT's KDC is not installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from communigate.cred.credentials import ConnectionInfo, VerifiedIdentity
from communigate.cred.kerberos import keytab
from communigate.cred.kerberos.keys import DomainKeys, IKerberosKeys, keytab_path, store_keys
from communigate.cred.sasl import registry
from communigate.cred.sasl.gssapi import GSSAPI, client_account
from communigate.cred.sasl.mechanism import Challenge, Failure, ISASLMechanism, Step, Success
from tests.integration import kdc as kdcmodule

pytestmark = pytest.mark.integration

CONN = ConnectionInfo("imap4", "127.0.0.1", "127.0.0.1")


@dataclass
class Record:
    """A domain record as the directory gives it."""

    name: str


class Directory:
    """Domains with folders under a temporary directory; aliases."""

    def __init__(self, root: Path, aliases: dict[str, str]) -> None:
        self.root = root
        self.aliases = aliases

    def domain_folder(self, name: str) -> Path:
        return self.root / name

    def domain(self, name: str) -> Record | None:
        name = self.aliases.get(name, name)
        return Record(name) if name in ("company.com", "client1.com", "client2.com") else None


@dataclass
class Realm:
    """The KDC, its keytabs and the users' credentials caches."""

    kdc: kdcmodule.KDC
    root: Path
    ccache: dict[str, Path]


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    """A KDC with users alice and bad%name and services of the three domains."""
    root = tmp_path_factory.mktemp("kdc")
    kdc = kdcmodule.KDC(root / "kdc")
    saved = {name: os.environ.get(name) for name in kdc.env}
    kdc.start()
    os.environ.update(kdc.env)
    try:
        ccache = {}
        for user in ("alice", "bad%name", "host/admin"):
            kdc.add_user(user, "pw")
            ccache[user] = kdc.kinit(user, "pw", root / f"{user.replace('/', '_')}.cc")
        for service in ("imap/client1.com", "imap/company.com", "company.com", "imap/client2.com"):
            kdc.add_service(service)
            kdc.keytab(service, root / f"{service.replace('/', '_')}.keytab")
        yield Realm(kdc, root, ccache)
    finally:
        kdc.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def install(keys: DomainKeys, domain: str, *files: Path) -> None:
    """Merge keytab files into a domain's stored keytab."""
    path = keys.path(domain)
    entries: list[keytab.KeytabEntry] = []
    if path.exists():
        entries = keytab.parse(path.read_bytes())
    for file in files:
        entries = keytab.merge(entries, keytab.parse(file.read_bytes()))
    store_keys(path, entries)


@pytest.fixture
def keys(realm: Realm, tmp_path: Path) -> DomainKeys:
    """client1.com holds imap/client1.com's keys; company.com none yet."""
    directory = Directory(tmp_path, {"alias1.com": "client1.com"})
    domain_keys = DomainKeys(directory)
    install(domain_keys, "client1.com", realm.root / "imap_client1.com.keytab")
    return domain_keys


def run(mechanism: GSSAPI, client: kdcmodule.GSSAPIClient, initial: bool = True) -> Step:
    """Drive an exchange to its end."""
    step = mechanism.start(client.first() if initial else None)
    if not initial:
        assert step == Challenge(b"")
        step = mechanism.respond(client.first())
    for _ in range(5):
        if not isinstance(step, Challenge):
            return step
        step = mechanism.respond(client.answer(step.data))
    raise AssertionError("the exchange did not end")


def test_interfaces(keys: DomainKeys) -> None:
    """DomainKeys and the mechanism provide their interfaces."""
    assert verifyObject(IKerberosKeys, keys)
    assert verifyObject(ISASLMechanism, GSSAPI(CONN, keys))


def test_registry_creates_gssapi(keys: DomainKeys) -> None:
    """The registry builds GSSAPI with the context's Kerberos keys."""
    context = registry.ExchangeContext(CONN, "client1.com", "h", b"k" * 32, kerberos=keys)
    mechanism = registry.create("gssapi", context)
    assert isinstance(mechanism, GSSAPI) and mechanism.keys is keys


@pytest.mark.parametrize("initial", [True, False])
def test_login_with_domain_key(realm: Realm, keys: DomainKeys, initial: bool) -> None:
    """A ticket for imap/client1.com proves alice@client1.com, with or without SASL-IR."""
    client = kdcmodule.GSSAPIClient("imap@client1.com", realm.ccache["alice"])
    step = run(GSSAPI(CONN, keys), client, initial)
    assert step == Success(
        VerifiedIdentity(b"alice@client1.com", "client1.com", "UseKerberosPassword", CONN, "GSSAPI")
    )


def test_authzid_is_passed_on(realm: Realm, keys: DomainKeys) -> None:
    """The authzid of the security-layer answer goes to the checker."""
    client = kdcmodule.GSSAPIClient("imap@client1.com", realm.ccache["alice"], b"boss@client1.com")
    step = run(GSSAPI(CONN, keys), client)
    assert isinstance(step, Success) and step.credentials.authzid == b"boss@client1.com"


def test_alias_service_name(realm: Realm, keys: DomainKeys) -> None:
    """A service named by a domain alias leads to the real domain's keys."""
    realm.kdc.add_service("imap/alias1.com")
    realm.kdc.keytab("imap/alias1.com", realm.root / "alias.keytab")
    install(keys, "client1.com", realm.root / "alias.keytab")
    client = kdcmodule.GSSAPIClient("imap@alias1.com", realm.ccache["alice"])
    step = run(GSSAPI(CONN, keys), client)
    assert isinstance(step, Success) and step.credentials.username == b"alice@client1.com"


def test_one_component_service(realm: Realm, keys: DomainKeys) -> None:
    """A ticket for the principal company.com@REALM is for company.com."""
    install(keys, "company.com", realm.root / "company.com.keytab")
    client = kdcmodule.GSSAPIClient(
        f"company.com@{realm.kdc.realm}", realm.ccache["alice"], hostbased=False
    )
    step = run(GSSAPI(CONN, keys), client)
    assert isinstance(step, Success)
    assert (step.credentials.username, step.credentials.domain) == (
        b"alice@company.com",
        "company.com",
    )


def test_domain_without_keys_refused(realm: Realm, keys: DomainKeys) -> None:
    """A ticket for imap/company.com fails while company.com has no keys."""
    client = kdcmodule.GSSAPIClient("imap@company.com", realm.ccache["alice"])
    step = run(GSSAPI(CONN, keys), client)
    assert isinstance(step, Failure) and "company.com has no Kerberos keys" in step.reason


def test_other_domains_key_never_accepts(realm: Realm, keys: DomainKeys) -> None:
    """company.com's key imported into client1.com opens nothing of
    company.com: the ticket names company.com, whose own keys lack it."""
    install(keys, "client1.com", realm.root / "imap_company.com.keytab")
    install(keys, "company.com", realm.root / "company.com.keytab")
    client = kdcmodule.GSSAPIClient("imap@company.com", realm.ccache["alice"])
    step = run(GSSAPI(CONN, keys), client)
    assert isinstance(step, Failure) and "not found in keytab" in step.reason


def test_rewritten_service_name_opens_no_other_domain(realm: Realm, keys: DomainKeys) -> None:
    """The cleartext service name of a ticket is not protected by its key:
    a ticket for imap/company.com relabelled imap/client1.com, where
    client1.com holds company.com's key, is refused (the key that accepted
    it names company.com)."""
    install(keys, "client1.com", realm.root / "imap_company.com.keytab")
    client = kdcmodule.GSSAPIClient("imap@company.com", realm.ccache["alice"])
    token = client.first()
    assert token.count(b"imap\x1b\x0bcompany.com") == 1
    forged = token.replace(b"imap\x1b\x0bcompany.com", b"imap\x1b\x0bclient1.com")
    step = GSSAPI(CONN, keys).start(forged)
    assert isinstance(step, Failure) and "not accepted with a key of client1.com" in step.reason


def test_client_realm_is_the_keys_realm(realm: Realm, keys: DomainKeys) -> None:
    """The client must be of the realm of the key that accepted the ticket,
    not of the realm its cleartext names (which anyone can rewrite: a user
    of a trusted realm could otherwise pass for a user of the key's)."""
    client = kdcmodule.GSSAPIClient("imap@client1.com", realm.ccache["alice"])
    token = client.first()
    name = realm.kdc.realm.encode()
    assert token.count(name) == 1
    forged = token.replace(name, b"X" + name[1:])
    mechanism = GSSAPI(CONN, keys)
    step = mechanism.start(forged)
    while isinstance(step, Challenge):
        step = mechanism.respond(client.answer(step.data))
    assert isinstance(step, Success) and step.credentials.username == b"alice@client1.com"


def test_unknown_domain_refused(realm: Realm, keys: DomainKeys) -> None:
    """A service of a domain the server does not have fails."""
    realm.kdc.add_service("imap/elsewhere.org")
    client = kdcmodule.GSSAPIClient("imap@elsewhere.org", realm.ccache["alice"])
    step = run(GSSAPI(CONN, keys), client)
    assert isinstance(step, Failure) and "no domain" in step.reason


@pytest.mark.parametrize("user", ["bad%name", "host/admin"])
def test_non_simple_principal_refused(realm: Realm, keys: DomainKeys, user: str) -> None:
    """A client principal with % or an instance is refused."""
    client = kdcmodule.GSSAPIClient("imap@client1.com", realm.ccache[user])
    step = run(GSSAPI(CONN, keys), client)
    assert isinstance(step, Failure) and "is not a user" in step.reason


def test_security_layer_must_be_none(realm: Realm, keys: DomainKeys) -> None:
    """A client choosing integrity protection (layer 2) is refused."""
    client = kdcmodule.GSSAPIClient("imap@client1.com", realm.ccache["alice"], layer=2)
    step = run(GSSAPI(CONN, keys), client)
    assert isinstance(step, Failure) and "security layer 2" in step.reason


def test_rekey_keeps_old_tickets(realm: Realm, keys: DomainKeys, tmp_path: Path) -> None:
    """After importing a newer kvno, tickets of the old and the new key work."""
    old_cache = tmp_path / "old.cc"
    old_cache.write_bytes(realm.ccache["alice"].read_bytes())
    old = kdcmodule.GSSAPIClient("imap@client2.com", old_cache)
    install(keys, "client2.com", realm.root / "imap_client2.com.keytab")
    old_token = old.first()
    realm.kdc.keytab("imap/client2.com", tmp_path / "new.keytab")
    install(keys, "client2.com", tmp_path / "new.keytab")
    assert {entry.kvno for entry in keytab.parse(keys.path("client2.com").read_bytes())} == {2, 3}
    new_cache = tmp_path / "new.cc"
    realm.kdc.kinit("alice", "pw", new_cache)
    new = kdcmodule.GSSAPIClient("imap@client2.com", new_cache)
    for client, first in ((old, old_token), (new, None)):
        mechanism = GSSAPI(CONN, keys)
        step = mechanism.start(first or client.first())
        while isinstance(step, Challenge):
            step = mechanism.respond(client.answer(step.data))
        assert isinstance(step, Success), step


def test_serves_follows_the_file(realm: Realm, tmp_path: Path) -> None:
    """serves() sees a keytab appear and disappear, half a second later
    (the file is not looked at for every login)."""
    clock = Clock()
    keys = DomainKeys(Directory(tmp_path, {}), clock=clock.seconds)
    install(keys, "client1.com", realm.root / "imap_client1.com.keytab")
    assert keys.serves("client1.com") and not keys.serves("client2.com")
    install(keys, "client2.com", realm.root / "imap_client2.com.keytab")
    assert not keys.serves("client2.com")
    clock.advance(0.5)
    assert keys.serves("client2.com")
    keys.path("client2.com").unlink()
    clock.advance(0.5)
    assert not keys.serves("client2.com")
    assert keytab_path(Path("/x")) == Path("/x/Settings/kerberos.keytab")


@pytest.mark.parametrize(
    "token",
    [b"garbage", b"\x60\x03\x06\x01\x00", bytes.fromhex("6082")],
)
def test_bad_tokens_fail(keys: DomainKeys, token: bytes) -> None:
    """Tokens that are not AP-REQs fail without an exception."""
    step = GSSAPI(CONN, keys).start(token)
    assert isinstance(step, Failure)


def test_forged_ticket_fails_cleanly(realm: Realm, keys: DomainKeys) -> None:
    """An AP-REQ whose encrypted part was changed fails with a GSS error."""
    client = kdcmodule.GSSAPIClient("imap@client1.com", realm.ccache["alice"])
    token = bytearray(client.first())
    token[-20] ^= 0xFF
    step = GSSAPI(CONN, keys).start(bytes(token))
    assert isinstance(step, Failure) and step.reason.startswith("GSSAPI:")


def test_without_keys_object() -> None:
    """With no Kerberos configured at all the mechanism just fails."""
    assert isinstance(GSSAPI(CONN, None).start(b"x"), Failure)


def test_client_account_rules() -> None:
    """Only plain names of the key's realm become accounts."""
    assert client_account("alice@R.ORG", "R.ORG") == "alice"
    assert client_account("alice@OTHER.ORG", "R.ORG") is None
    assert client_account("a%b@R.ORG", "R.ORG") is None
    assert client_account("a/b@R.ORG", "R.ORG") is None
    assert client_account("a\\@b@R.ORG", "R.ORG") is None
    assert client_account("@R.ORG", "R.ORG") is None


@pytest.mark.parametrize("answer", [b"", b"junk", b"\x05\x04" + b"\x00" * 40])
def test_bad_layer_answer_fails(realm: Realm, keys: DomainKeys, answer: bytes) -> None:
    """A security-layer answer that does not unwrap fails without an exception."""
    client = kdcmodule.GSSAPIClient("imap@client1.com", realm.ccache["alice"])
    mechanism = GSSAPI(CONN, keys)
    step = mechanism.start(client.first())
    assert isinstance(step, Challenge)
    step = mechanism.respond(client.answer(step.data))
    assert isinstance(step, Challenge)
    assert isinstance(mechanism.respond(answer), Failure)
    assert isinstance(mechanism.respond(b"more"), Failure)


def test_data_after_mutual_token_fails(realm: Realm, keys: DomainKeys) -> None:
    """The answer to the mutual-authentication token must be empty."""
    client = kdcmodule.GSSAPIClient("imap@client1.com", realm.ccache["alice"])
    mechanism = GSSAPI(CONN, keys)
    assert isinstance(mechanism.start(client.first()), Challenge)
    step = mechanism.respond(b"not empty")
    assert isinstance(step, Failure) and "empty" in step.reason
