"""The one checker: names, Router, services, password sources, failures."""

from __future__ import annotations

from typing import Any

import pytest
from passlib.hash import bcrypt, des_crypt, ldap_salted_sha1, sha512_crypt
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from twisted.logger import LogEvent, globalLogPublisher
from zope.interface.verify import verifyObject

from communigate.cred.checkers.internal import InternalPassword
from communigate.cred.credentials import ConnectionInfo, LoginPassword, VerifiedIdentity
from communigate.cred.errors import (
    WRONG_PASSWORD_TEXT,
    IdentityRefused,
    ImpersonationRefused,
    LoginFailure,
    ServiceDisabled,
    UnknownAccount,
    WrongPassword,
)
from communigate.cred.interfaces import IPasswordSource
from communigate.portal.accounts import AccountResolver
from communigate.portal.avatars import IPOP3Maildrop
from communigate.portal.checker import AccountChecker
from communigate.portal.realm import AccountRealm
from communigate.store.directory import ObjectKind
from communigate.store.files import FileDirectory
from tests.conftest import ManualClock, SyncReactor, SyncThreadPool, bcrypt_password

ON_127_0_0_1 = ConnectionInfo("pop3", "127.0.0.1", "127.0.0.1")
ON_127_0_0_2 = ConnectionInfo("pop3", "127.0.0.2", "127.0.0.1")


def make_checker(directory: FileDirectory) -> AccountChecker:
    source = InternalPassword(SyncReactor(), SyncThreadPool())  # type: ignore[arg-type]
    return AccountChecker(AccountResolver(directory), [source], SyncReactor(), SyncThreadPool())  # type: ignore[arg-type]


def result_of(deferred: Deferred[Any]) -> Any:
    """The result of a Deferred that has fired, or its failure's exception."""
    box: list[Any] = []
    deferred.addBoth(box.append)
    assert box, "the Deferred has not fired"
    outcome = box[0]
    return getattr(outcome, "value", outcome)


def login(directory: FileDirectory, name: str, password: str, conn: ConnectionInfo) -> Any:
    checker = make_checker(directory)
    return result_of(checker.requestAvatarId(LoginPassword(name.encode(), password.encode(), conn)))


def test_interfaces(directory: FileDirectory) -> None:
    """Checker, password source and realm provide their interfaces."""
    checker = make_checker(directory)
    assert verifyObject(ICredentialsChecker, checker)
    assert verifyObject(IPasswordSource, checker.sources[0])
    assert verifyObject(IRealm, AccountRealm(directory))


@pytest.mark.parametrize(
    ("name", "password", "conn", "account"),
    [
        ("info", "pw-company.com", ON_127_0_0_1, b"info@company.com"),
        ("info", "pw-client1.com", ON_127_0_0_2, b"info@client1.com"),
        ("info%client2.com", "pw-client2.com", ON_127_0_0_2, b"info@client2.com"),
        ("info@client2.com", "pw-client2.com", ON_127_0_0_1, b"info@client2.com"),
        ("info@company.com", "pw-company.com", ON_127_0_0_2, b"info@company.com"),
        ("john", "js", ON_127_0_0_1, b"j.smith@client1.com"),
    ],
)
def test_seed_logins(
    directory: FileDirectory, name: str, password: str, conn: ConnectionInfo, account: bytes
) -> None:
    """The seed's multihoming users and the <John> record open their accounts."""
    assert login(directory, name, password, conn) == account


def test_alias_logs_in(directory: FileDirectory) -> None:
    """An account alias is a valid login name."""
    directory.add_object(ObjectKind.ALIAS, "company.com", "boss", "info")
    assert login(directory, "boss", "pw-company.com", ON_127_0_0_1) == b"info@company.com"


def test_group_forwarder_unknown_refused(directory: FileDirectory) -> None:
    """Groups, forwarders and unknown names are refused as unknown."""
    directory.add_object(ObjectKind.GROUP, "company.com", "team", {"Members": ["info"]})
    directory.add_object(ObjectKind.FORWARDER, "company.com", "fwd", "x@far.org")
    for name in ("team", "fwd", "nobody", "info@far.org"):
        assert isinstance(login(directory, name, "pw", ON_127_0_0_1), UnknownAccount)


def test_hide_account_unknown(directory: FileDirectory, clock: ManualClock) -> None:
    """With HideAccountUnknown the unknown reply equals the wrong-password reply."""
    unknown = login(directory, "nobody", "x", ON_127_0_0_1)
    wrong = login(directory, "info", "x", ON_127_0_0_1)
    assert isinstance(wrong, WrongPassword) and wrong.reply == WRONG_PASSWORD_TEXT
    assert unknown.reply != wrong.reply
    directory.update_server_settings({"HideAccountUnknown": "YES"})
    clock.advance(1)
    unknown = login(directory, "nobody", "x", ON_127_0_0_1)
    assert isinstance(unknown, UnknownAccount) and unknown.reply == wrong.reply


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "{PLAIN}",
        bcrypt.hash(""),
        "{CRYPT}" + des_crypt.hash(""),
        sha512_crypt.hash(""),
        ldap_salted_sha1.hash(""),
    ],
)
def test_empty_password_never_matches(directory: FileDirectory, stored: str | None) -> None:
    """An empty password never opens an account, whether the stored password
    is absent, empty, or a clear or hashed form of the empty string."""
    settings = {} if stored is None else {"Password": stored}
    directory.create_account("company.com", "blank", settings)
    assert isinstance(login(directory, "blank", "", ON_127_0_0_1), WrongPassword)


def test_authzid_unknown_or_refused_alike(directory: FileDirectory) -> None:
    """PLAIN with an authorization identity: an existing account that may not
    be opened and an unknown name get the same reply, HideAccountUnknown or not."""
    for hide in ("NO", "YES"):
        directory.update_server_settings({"HideAccountUnknown": hide})
        replies = set()
        for authzid in (b"j.smith@client1.com", b"nosuch@client1.com", b"nosuch"):
            credentials = LoginPassword(b"info", b"pw-company.com", ON_127_0_0_1, authzid, "PLAIN")
            failure = result_of(make_checker(directory).requestAvatarId(credentials))
            assert isinstance(failure, ImpersonationRefused), authzid
            replies.add(failure.reply)
        assert len(replies) == 1


def test_use_app_password_off(directory: FileDirectory) -> None:
    """With UseAppPassword=NO the CommuniGate password is not consulted."""
    directory.update_account_settings("company.com", "info", {"UseAppPassword": "NO"})
    assert isinstance(login(directory, "info", "pw-company.com", ON_127_0_0_1), WrongPassword)


def test_bcrypt_password(directory: FileDirectory) -> None:
    """A UB-crpt password verifies (through the thread pool)."""
    directory.update_account_settings("company.com", "info", {"Password": bcrypt_password("b")})
    assert login(directory, "info", "b", ON_127_0_0_1) == b"info@company.com"
    assert isinstance(login(directory, "info", "c", ON_127_0_0_1), WrongPassword)


def test_hashing_uses_the_thread_pool(directory: FileDirectory) -> None:
    """One-way hashes are verified through the pool, clear ones are not."""
    calls: list[str] = []

    class CountingPool(SyncThreadPool):
        def callInThreadWithCallback(self, onResult: Any, f: Any, *a: Any, **kw: Any) -> None:
            calls.append(f.__name__)
            super().callInThreadWithCallback(onResult, f, *a, **kw)

    source = InternalPassword(SyncReactor(), CountingPool())  # type: ignore[arg-type]
    checker = AccountChecker(AccountResolver(directory), [source])
    credentials = LoginPassword(b"info", b"pw-company.com", ON_127_0_0_1)
    assert result_of(checker.requestAvatarId(credentials)) == b"info@company.com"
    assert calls == []
    directory.update_account_settings("company.com", "info", {"Password": bcrypt_password("b")})
    result_of(checker.requestAvatarId(LoginPassword(b"info", b"b", ON_127_0_0_1)))
    assert calls == ["verify"]


def test_access_modes(directory: FileDirectory, clock: ManualClock) -> None:
    """A service missing from AccessModes (or the domain's cap) is refused."""
    directory.update_account_settings("company.com", "info", {"AccessModes": ["IMAP"]})
    assert isinstance(login(directory, "info", "pw-company.com", ON_127_0_0_1), ServiceDisabled)
    directory.update_account_settings("company.com", "info", {"AccessModes": ["POP", "IMAP"]})
    assert login(directory, "info", "pw-company.com", ON_127_0_0_1) == b"info@company.com"
    directory.update_domain_settings("company.com", {"DomainAccessModes": "None"})
    clock.advance(1)
    assert isinstance(login(directory, "info", "pw-company.com", ON_127_0_0_1), ServiceDisabled)


def test_password_never_logged(directory: FileDirectory) -> None:
    """Log events of a login carry the names but never the password."""
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        login(directory, "info", "pw-company.com", ON_127_0_0_1)
        login(directory, "info", "SeCrEt-wrong", ON_127_0_0_1)
    finally:
        globalLogPublisher.removeObserver(events.append)
    logins = [event for event in events if "login" in event.get("log_format", "")]
    assert [event["result"] for event in logins] == ["ok", "wrong-password"]
    assert all(event["account"] == "info@company.com" for event in logins)
    text = repr(events)
    assert "SeCrEt-wrong" not in text and "pw-company.com" not in text


def test_portal_gives_maildrop(directory: FileDirectory) -> None:
    """Through the portal, a login yields the account's POP3 maildrop."""
    portal = Portal(AccountRealm(directory), [make_checker(directory)])
    credentials = LoginPassword(b"info", b"pw-client1.com", ON_127_0_0_2)
    interface, avatar, _logout = result_of(portal.login(credentials, None, IPOP3Maildrop))
    assert interface is IPOP3Maildrop and verifyObject(IPOP3Maildrop, avatar)
    assert avatar.account == "info@client1.com"
    failure = result_of(
        portal.login(LoginPassword(b"info", b"x", ON_127_0_0_2), None, IPOP3Maildrop)
    )
    assert isinstance(failure, LoginFailure)


def test_credentials_repr_hides_password() -> None:
    """A credential's repr never shows the secret."""
    assert "hunter2" not in repr(LoginPassword(b"u", b"hunter2", ON_127_0_0_1))


def identity(name: bytes, domain: str, authzid: bytes | None = None) -> VerifiedIdentity:
    """What GSSAPI or EXTERNAL hand the portal once their proof checked."""
    return VerifiedIdentity(name, domain, "UseKerberosPassword", ON_127_0_0_1, "GSSAPI", authzid)


def test_verified_identity_stays_in_its_domain(directory: FileDirectory) -> None:
    """A proven identity opens its account only with the method's setting
    on, and never an account of another domain than the one that proved it;
    refusals are not counted as password failures."""
    checker = make_checker(directory)
    refused = result_of(checker.requestAvatarId(identity(b"info@client1.com", "client1.com")))
    assert isinstance(refused, IdentityRefused)
    directory.update_account_settings("client1.com", "info", {"UseKerberosPassword": "YES"})
    directory.update_account_settings("company.com", "info", {"UseKerberosPassword": "YES"})
    opened = result_of(checker.requestAvatarId(identity(b"info@client1.com", "client1.com")))
    assert opened == b"info@client1.com"
    other = result_of(checker.requestAvatarId(identity(b"info@company.com", "client1.com")))
    assert isinstance(other, IdentityRefused)
    assert other.reply == WrongPassword().reply
    # A name that routes into another domain (an alias) is refused too.
    directory.add_object(ObjectKind.ALIAS, "client1.com", "boss", "info@company.com")
    routed = result_of(checker.requestAvatarId(identity(b"boss@client1.com", "client1.com")))
    assert isinstance(routed, IdentityRefused)


def test_verified_identity_impersonation(directory: FileDirectory) -> None:
    """An authzid naming another account needs CanImpersonate."""
    directory.update_account_settings("client1.com", "info", {"UseKerberosPassword": "YES"})
    checker = make_checker(directory)
    credentials = identity(b"info@client1.com", "client1.com", b"j.smith@client1.com")
    assert isinstance(result_of(checker.requestAvatarId(credentials)), ImpersonationRefused)
    same = identity(b"info@client1.com", "client1.com", b"info@client1.com")
    assert result_of(checker.requestAvatarId(same)) == b"info@client1.com"
