"""The one credentials checker every protocol logs in through.

For each attempt: the login name is resolved to an account (names, Router,
directory), the protocol must be among the account's services, clear-text
passwords must be allowed on the link (the domain's ``ClearTextLogin``, the
account's Secure Method Required, ``RequireAPOP``), then the password sources
enabled for the account are asked in CommuniGate's order (CommuniGate
password, OS password, External helper); the first that says yes grants
access (spec §2).  Challenge-response proofs (CRAM-MD5, DIGEST-MD5, APOP,
SCRAM) need a clear secret: sources that keep passwords one-way cannot serve
them, and the log says so.

With an authorization identity (``PLAIN`` with an authzid), the
authenticating account opens another one only if it holds ``CanImpersonate``
for the target's domain (spec §6).  The avatar ID is the opened account's
full name.  An authorization identity that is no account is refused with
the same text as one the account may not open, so it tells nothing about
which accounts exist.  Every outcome is reported once, as a
:class:`~communigate.observe.events.LoginEvent` to the checker's observer
(by default the log): session, addresses and ports, TLS, SNI name, login
name, account, domain, mechanism, result, latency; never a secret.  An
account locked by this attempt is reported as a lockout.

Failures cost the same, so that neither the work nor the reply time tells
an unknown name from a wrong password: a failed check costs one bcrypt
verification whatever the account stores (an unknown name, a locked
account or a wrong password checked against anything but a bcrypt hash run
a dummy one), and every failure is answered no earlier than
``FailedLoginDelay`` after the attempt began (:mod:`.policy`).  An empty
password never matches.

Credentials that are sent again with every request (HTTP Basic: they say
``reuse_verified``) may skip the verification of a CommuniGate password
that verified a moment ago (:mod:`.verifiedlogins`); everything else about
the attempt is checked and reported as always.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from communigate.cred import derived, passwords
from communigate.cred.credentials import (
    ConnectionInfo,
    IClearSecretCredentials,
    IVerifiedIdentity,
)
from communigate.cred.errors import (
    WRONG_PASSWORD_TEXT,
    AccountLocked,
    ClientAddressRefused,
    IdentityRefused,
    ImpersonationRefused,
    LoginFailure,
    SecureMethodRequired,
    TemporaryFailure,
    UnknownAccount,
    WrongPassword,
)
from communigate.cred.interfaces import IPasswordSource
from communigate.cred.sasl.registry import clear_text_allowed, is_loopback
from communigate.observe.events import (
    ABANDONED,
    INTERNAL_ERROR,
    OK,
    EventLog,
    IActivityObserver,
    LockoutEvent,
    LoginEvent,
)
from communigate.portal.accounts import Account, AccountResolver
from communigate.portal.addresses import address_in
from communigate.portal.policy import LoginThrottle, failure_delay
from communigate.portal.rights import Rights
from communigate.portal.verifiedlogins import VerifiedLogins
from communigate.store.settingsformat import as_bool, as_string_list

_UNKNOWN_CONNECTION = ConnectionInfo("unknown")
#: What the Router's answer means, in words for the log (its repr is not).
_ROUTE_WORDS = {
    "Unknown": "no such account",
    "NotAccount": "not an account",
    "Rejected": "rejected by the Router",
}


def plain_reason(failure: LoginFailure) -> str:
    """The failure's reason for the log, with a Router answer in words
    (``x@y: no such account``) instead of a Python repr."""
    address, routes, route = failure.reason.partition(" routes to ")
    if not routes:
        return failure.reason
    return f"{address}: {_ROUTE_WORDS.get(route.split('(', 1)[0], 'not a local account')}"


@implementer(ICredentialsChecker)
class AccountChecker:
    """Resolve the login name, apply policy, try the password sources."""

    credentialInterfaces = (IUsernamePassword, IClearSecretCredentials, IVerifiedIdentity)
    log = Logger()

    def __init__(
        self,
        resolver: AccountResolver,
        sources: Sequence[IPasswordSource],
        reactor: Any = None,
        threadpool: ThreadPool | None = None,
        observer: IActivityObserver | None = None,
        writes: ThreadPool | None = None,
    ) -> None:
        """``threadpool`` runs the password work (hashes, key stretching);
        ``writes`` the directory write of a re-hashed password (by default
        ``threadpool`` too): a write need not wait behind hashes."""
        self.resolver = resolver
        #: Told of every verdict and lockout (by default: the log).
        self.observer: IActivityObserver = observer if observer is not None else EventLog()
        self.sources = list(sources)
        self.rights = Rights(resolver.directory)
        self._reactor = reactor
        self._threadpool = threadpool
        self._writes = writes if writes is not None else threadpool
        clock = getattr(reactor, "seconds", None)
        self.throttle = LoginThrottle(clock) if clock else LoginThrottle()
        #: Passwords verified a moment ago, reused for credentials that ask
        #: (``reuse_verified``: HTTP Basic, sent with every request).
        self.verified = VerifiedLogins(clock or time.monotonic)

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        """The full account name as bytes, or a LoginFailure."""
        return self._attempt(credentials)

    def _now(self) -> float | None:
        """The reactor's clock; None without one (no delays then)."""
        seconds = getattr(self._reactor, "seconds", None)
        return float(seconds()) if seconds is not None else None

    @inlineCallbacks
    def _attempt(self, credentials: Any) -> Any:
        started = self._now()
        connection = getattr(credentials, "connection", _UNKNOWN_CONNECTION)
        mechanism = getattr(credentials, "mechanism", "USER")
        login = credentials.username.decode("utf-8", "replace")
        account: Account | None = None
        # Whether this attempt has already cost one bcrypt verification.
        costly: list[bool] = [False]
        try:
            self._check_client_address(connection)
            try:
                account = self.resolver.resolve(login, connection)
            except UnknownAccount as unknown:
                account = yield self._consult_external(unknown, login, connection)
                if account is None:
                    raise
            self.resolver.check_service(account, connection.protocol)
            if IUsernamePassword.providedBy(credentials):
                self._check_clear_text(account, connection)
            if self.throttle.locked(account.full_name, account.settings):
                raise AccountLocked("FailedLoginFlow exhausted", WRONG_PASSWORD_TEXT)
            if IVerifiedIdentity.providedBy(credentials):
                verified = self._check_identity(account, credentials)
            else:
                verified = yield self._check(account, credentials, costly)
            avatar = self._impersonate(verified, credentials)
        except LoginFailure as failure:
            wrong = account.full_name if isinstance(failure, WrongPassword) and account else None
            self.throttle.failed(wrong, connection.remote_host)
            self._report(
                connection, login, account, mechanism, failure.kind, plain_reason(failure), started
            )
            if account is not None and wrong and self.throttle.locked(wrong, account.settings):
                # Not locked before this attempt (else AccountLocked): it is now.
                self.observer.lockout(
                    LockoutEvent(
                        connection.session,
                        connection.protocol,
                        wrong,
                        account.domain,
                        connection.remote_host,
                    )
                )
            if isinstance(failure, (UnknownAccount, AccountLocked, WrongPassword)):
                if not costly[0]:
                    yield self._dummy_check()
            yield self._answer_later(started, connection)
            raise
        except CancelledError:
            # The client went away while its check ran: not a server fault.
            self._report(
                connection, login, account, mechanism, ABANDONED, "the client disconnected", started
            )
            raise
        except Exception as error:
            # Reported inside the except clause: the log event carries the traceback.
            self._report(connection, login, account, mechanism, INTERNAL_ERROR, str(error), started)
            yield self._answer_later(started, connection)
            raise TemporaryFailure("internal error") from None
        assert account is not None
        self.throttle.succeeded(account.full_name)
        opened = avatar.decode("utf-8")
        authorized = opened if opened != account.full_name else None
        self._report(connection, login, account, mechanism, OK, None, started, authorized)
        return avatar

    def _answer_later(self, started: float | None, connection: ConnectionInfo) -> Deferred[Any]:
        """Fires when a failure may be answered: ``FailedLoginDelay`` after
        the attempt began, plus the per-address slowing.  A timer, so the
        session waits and nothing else does."""
        now = self._now()
        if now is None or started is None or not hasattr(self._reactor, "callLater"):
            return succeed(None)
        server = self.resolver.directory.server_settings()
        floor = max(0.0, started + failure_delay(server) - now)
        delay = floor + self.throttle.delay(connection.remote_host, server)
        if delay <= 0:
            return succeed(None)
        return deferLater(self._reactor, delay)

    @inlineCallbacks
    def _consult_external(
        self, unknown: UnknownAccount, login: str, connection: ConnectionInfo
    ) -> Any:
        """Domain setting ``ConsultExternalForUnknown=YES``: the External
        helper may create an unknown account (``NEW``); then it is used."""
        if unknown.address is None:
            return None
        record = self.resolver.directory.domain(unknown.address.rpartition("@")[2])
        if record is None or not as_bool(record.settings.get("ConsultExternalForUnknown")):
            return None
        for source in self.sources:
            consult = getattr(source, "consult_unknown", None)
            if consult is None:
                continue
            try:
                created = yield consult(unknown.address)
            except TemporaryFailure:
                return None
            if created:
                self.log.info("EXTAUTH created {address}", address=unknown.address)
                return self.resolver.resolve(login, connection)
        return None

    def _dummy_check(self) -> Deferred[Any]:
        """One failed bcrypt verification, the cost of a wrong password on
        a bcrypt account: spent where no such verification ran (an unknown
        name, a locked account, a password stored any other way), whatever
        the domain's PasswordEncryption, so the work tells nothing."""
        return self._run(passwords.dummy_verify, "UB-crpt")

    def _check_client_address(self, connection: ConnectionInfo) -> None:
        """Server settings ``ClientIPs`` and ``NonClientLogins=Prohibit``
        (spec §7): then only client addresses and the server itself may log in."""
        settings = self.resolver.directory.server_settings()
        if str(settings.get("NonClientLogins", "Allow")).lower() != "prohibit":
            return
        remote = connection.remote_host
        if remote is None or is_loopback(remote) or remote == connection.local_host:
            return
        if not address_in(remote, as_string_list(settings.get("ClientIPs"))):
            raise ClientAddressRefused(f"{remote} is not a client address")

    def _check_clear_text(self, account: Account, connection: ConnectionInfo) -> None:
        if connection.secure:
            return
        if as_bool(account.settings.get("RequireAPOP")):
            raise SecureMethodRequired("clear text refused: Secure Method Required")
        record = self.resolver.directory.domain(account.domain)
        if not clear_text_allowed(record.settings if record else {}, connection):
            raise SecureMethodRequired("clear text refused on an insecure link")

    @staticmethod
    def _check_identity(account: Account, identity: Any) -> Account:
        """A proven identity opens its account only inside the domain that
        proved it, and only where the account allows the method (an empty
        ``setting``: no account setting needed; an empty ``domain``: no
        proof, as a wrong password)."""
        if not identity.domain:
            raise WrongPassword(f"{identity.mechanism} proof does not match {account.full_name}")
        if account.domain != identity.domain:
            raise IdentityRefused(
                f"{identity.mechanism} proven by {identity.domain} names "
                f"{account.full_name} of another domain"
            )
        if identity.setting and not as_bool(account.settings.get(identity.setting)):
            raise IdentityRefused(f"{account.full_name} does not allow {identity.setting}")
        return account

    def _run(self, function: Any, *args: Any, pool: ThreadPool | None = None) -> Deferred[Any]:
        pool = pool if pool is not None else self._threadpool
        if pool is None:
            return maybeDeferred(function, *args)
        return deferToThreadPool(self._reactor, pool, function, *args)

    @inlineCallbacks
    def _check(self, account: Account, credentials: Any, costly: list[bool]) -> Any:
        """Ask the password sources; ``costly[0]`` becomes true once a
        bcrypt hash was verified."""
        temporary: TemporaryFailure | None = None
        one_way = False
        clear = not IClearSecretCredentials.providedBy(credentials)
        if clear and not credentials.password:
            raise WrongPassword(f"empty password for {account.full_name}")
        for source in self.sources:
            if not as_bool(account.settings.get(source.setting)):
                continue
            try:
                if not clear:
                    if source.name == "internal" and self._has_stored(credentials, account):
                        # Derived keys stored beside the password: no
                        # key stretching, so checked here and now.
                        matched = credentials.check_stored(account.settings)
                    else:
                        secret = source.clear_secret(account)
                        if secret is None:
                            one_way = True
                            continue
                        matched = yield self._run(credentials.check, secret)
                else:
                    stored = account.settings.get("Password")
                    # Only the CommuniGate password: its stored value says
                    # when a remembered verification went stale.
                    reuse = (
                        getattr(credentials, "reuse_verified", False)
                        and source.name == "internal"
                        and isinstance(stored, str)
                    )
                    if reuse and self.verified.fresh(
                        account.full_name, source.name, str(stored), credentials.password
                    ):
                        return account
                    if source.name == "internal" and isinstance(stored, str):
                        costly[0] = costly[0] or passwords.is_bcrypt(stored)
                    matched = yield source.verify(account, credentials.password)
                    if matched and reuse:
                        self.verified.remember(
                            account.full_name, source.name, str(stored), credentials.password
                        )
                    if matched and source.name == "internal":
                        yield self._maybe_rehash(account, credentials.password)
            except TemporaryFailure as failure:
                temporary = failure
                continue
            if matched:
                return account
        if temporary is not None:
            raise temporary
        if one_way:
            raise WrongPassword(
                f"{credentials.mechanism} needs a clear password; "
                f"{account.full_name} has none that can serve it"
            )
        raise WrongPassword(f"no password source accepted {account.full_name}")

    @staticmethod
    def _has_stored(credentials: Any, account: Account) -> bool:
        """Whether the proof can be checked against a secret derived from
        the CommuniGate password and stored beside it (SCRAM keys, NT
        hash): ``uses_stored`` names the account settings it needs."""
        needed = getattr(credentials, "uses_stored", None)
        return needed is not None and needed(account.settings)

    def _maybe_rehash(self, account: Account, password: bytes) -> Deferred[Any]:
        """With server setting ``RehashPasswords=YES`` (off by default), a
        password stored weaker than the account's ``PasswordEncryption`` is
        stored again under it after a successful login."""
        directory = self.resolver.directory
        stored = account.settings.get("Password")
        encryption = str(account.settings.get("PasswordEncryption", "clear"))
        update = getattr(directory, "update_account_settings", None)
        if (
            update is None
            or not as_bool(directory.server_settings().get("RehashPasswords"))
            or not isinstance(stored, str)
            or not passwords.weaker_than(stored, encryption)
        ):
            return succeed(None)
        try:
            # Never a replacement character for bytes that are not UTF-8:
            # the stored password would no longer be the one typed.
            clear = passwords.check_new(password, encryption)
        except ValueError as error:
            self.log.info(
                "password of {account} not re-hashed: {reason}",
                account=account.full_name,
                reason=str(error),
            )
            return succeed(None)

        def store(changes: dict[str, Any]) -> Deferred[Any]:
            # In the pool: a directory write may block (fsync, LDAP).
            return self._run(update, account.domain, account.name, changes, pool=self._writes)

        def rehashed(_: object) -> None:
            self.log.info(
                "password of {account} re-hashed as {scheme}",
                account=account.full_name,
                scheme=encryption,
            )

        def failed(failure: Any) -> None:
            self.log.info(
                "password of {account} not re-hashed: {reason}",
                account=account.full_name,
                reason=failure.getErrorMessage(),
            )

        record = directory.domain(account.domain)
        nt_hash = derived.wants_nt_hash(record.settings if record else {})
        return (
            self._run(derived.password_settings, clear, encryption, nt_hash)
            .addCallback(store)
            .addCallback(rehashed)
            .addErrback(failed)
        )

    def _impersonate(self, account: Account, credentials: Any) -> bytes:
        authzid = getattr(credentials, "authzid", None)
        if not authzid:
            return account.full_name.encode("utf-8")
        try:
            target = self.resolver.resolve(
                authzid.decode("utf-8", "replace"), credentials.connection
            )
        except UnknownAccount as unknown:
            # The same refusal as for an account that may not be opened.
            raise ImpersonationRefused(f"authorization identity: {unknown.reason}") from None
        if target.full_name == account.full_name:
            return account.full_name.encode("utf-8")
        if not self.rights.has(account.domain, account.name, "CanImpersonate", target.domain):
            raise ImpersonationRefused(
                f"{account.full_name} may not impersonate in {target.domain}"
            )
        # The login event names it (``authorized``): no line of its own.
        return target.full_name.encode("utf-8")

    def _domain(
        self, login: str, account: Account | None, connection: ConnectionInfo
    ) -> str | None:
        """The configured domain an attempt concerns: the account's, else
        the one the name (or, for a bare name, the connection) names; None
        for a domain only the client knows, so labels stay bounded."""
        if account is not None:
            return account.domain
        directory = self.resolver.directory
        typed = login.rpartition("@")[2] if "@" in login else None
        try:
            if typed is None:
                return self.resolver.connection_domain(connection)
            record = directory.domain(typed.lower())
        except Exception:  # a log field is not worth a failed login
            return None
        return record.name if record is not None else None

    def _report(
        self,
        connection: ConnectionInfo,
        login: str,
        account: Account | None,
        mechanism: str,
        result: str,
        detail: str | None,
        started: float | None,
        authorized: str | None = None,
    ) -> None:
        """Tell the observer the verdict, as one event."""
        now = self._now()
        self.observer.login(
            LoginEvent.of(
                connection,
                login=login,
                account=account.full_name if account else None,
                domain=self._domain(login, account, connection),
                mechanism=mechanism,
                result=result,
                detail=detail,
                authorized=authorized,
                latency=now - started if now is not None and started is not None else None,
            )
        )
