"""The one credentials checker every protocol logs in through.

For each attempt: the login name is resolved to an account (names, Router,
directory), the protocol must be among the account's services, then the
password sources enabled for the account are asked in CommuniGate's order
(CommuniGate password, OS password, External helper); the first that says
yes grants access (spec §2).  The avatar ID is the account's full name.

Every outcome is logged as one event with fields (protocol, remote address,
login name, account, result); never a password.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet.defer import Deferred, fail, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from communigate.cred.credentials import ConnectionInfo
from communigate.cred.errors import LoginFailure, TemporaryFailure, WrongPassword
from communigate.cred.interfaces import IPasswordSource
from communigate.portal.accounts import Account, AccountResolver
from communigate.store.settingsformat import as_bool

_UNKNOWN_CONNECTION = ConnectionInfo("unknown")


@implementer(ICredentialsChecker)
class AccountChecker:
    """Resolve the login name, check services, try the password sources."""

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()

    def __init__(self, resolver: AccountResolver, sources: Sequence[IPasswordSource]) -> None:
        self.resolver = resolver
        self.sources = list(sources)

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        """The full account name as bytes, or a LoginFailure."""
        connection = getattr(credentials, "connection", _UNKNOWN_CONNECTION)
        login = credentials.username.decode("utf-8", "replace")
        try:
            account = self.resolver.resolve(login, connection)
            self.resolver.check_service(account, connection.protocol)
        except LoginFailure as failure:
            self._log(connection, login, None, failure)
            return fail(failure)
        result: Deferred[bytes | tuple[()]] = self._check(account, credentials.password)
        result.addBoth(self._logged, connection, login, account)
        return result

    @inlineCallbacks
    def _check(self, account: Account, password: bytes) -> Any:
        temporary: TemporaryFailure | None = None
        for source in self.sources:
            if not as_bool(account.settings.get(source.setting)):
                continue
            try:
                matched = yield source.verify(account, password)
            except TemporaryFailure as failure:
                temporary = failure
                continue
            if matched:
                return account.full_name.encode("utf-8")
        if temporary is not None:
            raise temporary
        raise WrongPassword(f"no password source accepted {account.full_name}")

    def _logged(self, result: Any, connection: ConnectionInfo, login: str, account: Account) -> Any:
        if isinstance(result, Failure):
            error = result.value
            if isinstance(error, LoginFailure):
                self._log(connection, login, account, error)
            else:
                self.log.failure(
                    "login check failed for {account}",
                    result,
                    account=account.full_name,
                )
                return fail(TemporaryFailure("internal error"))
        else:
            self._log(connection, login, account, None)
        return result

    def _log(
        self,
        connection: ConnectionInfo,
        login: str,
        account: Account | None,
        failure: LoginFailure | None,
    ) -> None:
        self.log.info(
            "{protocol} login {login!r} from {remote} as {account}: {result}",
            protocol=connection.protocol,
            remote=connection.remote_host,
            login=login,
            account=account.full_name if account else None,
            result=failure.kind if failure else "ok",
            reason=failure.reason if failure else None,
        )
