"""Fixtures shared by the unit tests: a base directory laid out like the
seed's multihoming example, and a synchronous thread pool."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from communigate.cred import passwords
from communigate.store.files import FileDirectory
from communigate.store.initialise import initialise


class Exchange:
    """A protocol on a StringTransport: ``send`` feeds it bytes and returns
    what it wrote since the last ``take``."""

    server: Any
    transport: Any

    def take(self) -> bytes:
        """What the server wrote since the last call."""
        out = self.transport.value()
        self.transport.clear()
        return out

    def send(self, data: bytes) -> bytes:
        """Feed ``data`` to the server; what it wrote."""
        self.server.dataReceived(data)
        return self.take()


class ManualClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SyncThreadPool:
    """Runs "threaded" work at once, for deferToThreadPool in unit tests."""

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, Any], None], f: Callable[..., Any], *a: Any, **kw: Any
    ) -> None:
        try:
            result = f(*a, **kw)
        except BaseException as error:  # pragma: no cover - passed on
            onResult(False, error)
        else:
            onResult(True, result)


class SyncReactor:
    """Just enough reactor for deferToThreadPool with SyncThreadPool."""

    def callFromThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        f(*a, **kw)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def template_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """company.com (Main), client1.com on 127.0.0.2, client2.com (alias
    alias2.com); an ``info`` account in each, ``j.smith@client1.com`` and the
    ``<John>`` record.  Built once (bcrypt is slow on purpose), copied per test."""
    base = tmp_path_factory.mktemp("template") / "base"
    found = FileDirectory(base)
    initialise(found, "company.com", "pm-secret")
    found.create_domain("client1.com", {"IPAddresses": ["127.0.0.2"]})
    found.create_domain("client2.com", {"DomainAliases": ["alias2.com"]})
    for domain in ("company.com", "client1.com", "client2.com"):
        found.create_account(domain, "info", {"Password": f"pw-{domain}"})
    found.create_account("client1.com", "j.smith", {"Password": "js"})
    found.set_router_table("<John> = j.smith@client1.com\n")
    return base


@pytest.fixture
def directory(template_base: Path, tmp_path: Path, clock: ManualClock) -> FileDirectory:
    """A fresh copy of the template base directory."""
    shutil.copytree(template_base, tmp_path / "base")
    return FileDirectory(tmp_path / "base", clock=clock)


def bcrypt_password(password: str) -> str:
    """A stored UB-crpt password."""
    return passwords.encode(password, "UB-crpt")


class SyncClockReactor(Clock):
    """A Clock that also runs "thread" callbacks at once."""

    def callFromThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        f(*a, **kw)


def login_service(directory: FileDirectory, service_class: type[Any] | None = None) -> Any:
    """The login service protocol unit tests log in through: the directory's
    resolver, the internal password source, the realm, all synchronous."""
    from twisted.cred.portal import Portal

    from communigate.cred.checkers.internal import InternalPassword
    from communigate.portal.accounts import AccountResolver
    from communigate.portal.checker import AccountChecker
    from communigate.portal.realm import AccountRealm
    from communigate.protocols.access import LoginService

    resolver = AccountResolver(directory)
    source = InternalPassword(SyncReactor(), SyncThreadPool())  # type: ignore[arg-type]
    checker = AccountChecker(resolver, [source], SyncReactor(), SyncThreadPool())  # type: ignore[arg-type]
    portal = Portal(AccountRealm(directory), [checker])
    return (service_class or LoginService)(
        portal, resolver, scram_key=b"k" * 32, hostname="test.host"
    )
