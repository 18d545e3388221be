"""The LDAP directory's copy in memory: lookups, merges, ageing, refresher
(no LDAP server: what a search would bring is given to ``merge``)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python import threadable
from zope.interface.verify import verifyObject

from communigate.cred.checkers.internal import InternalPassword
from communigate.cred.credentials import ConnectionInfo, LoginPassword
from communigate.cred.errors import TemporaryFailure, WrongPassword
from communigate.portal.accounts import AccountResolver
from communigate.portal.checker import AccountChecker
from communigate.store.directory import DirectoryError, IDirectory, IDirectoryAdmin, ObjectKind
from communigate.store.ldap.connection import DirectoryUnreachable, Location
from communigate.store.ldap.directory import DirectoryUnavailable, LdapDirectory
from communigate.store.ldap.entries import BlockingRefused
from communigate.store.ldap.mapping import (
    EntryKind,
    Layout,
    account_entry,
    rights_to_attribute,
    settings_to_attributes,
)
from communigate.store.ldap.refresh import DirectoryRefresher
from communigate.store.ldap.snapshot import FULL_RELOAD, OVERLAP, Entry, Fetched, earlier, fetch
from communigate.store.settingsformat import Value
from tests.conftest import ManualClock, SyncReactor, SyncThreadPool

LAYOUT = Layout("dc=example,dc=com")
IMAP = ConnectionInfo("imap", "127.0.0.1", "127.0.0.1")


def server(main: str = "a.com", serial: str = "1", **settings: Value) -> Entry:
    attributes = settings_to_attributes(EntryKind.SERVER, {"MainDomainName": main, **settings})
    attributes["cgpdeletionserial"] = [serial]
    return Entry(EntryKind.SERVER, "", "", attributes)


def domain(name: str, rights: dict[str, Value] | None = None, **settings: Value) -> Entry:
    attributes = settings_to_attributes(EntryKind.DOMAIN, settings)
    attributes["cgpaccessright"] = rights_to_attribute(rights or {})
    return Entry(EntryKind.DOMAIN, name, name, attributes)


def account(where: str, name: str, aliases: tuple[str, ...] = (), **settings: Value) -> Entry:
    attributes = account_entry(where, name, settings)
    attributes["cgpalias"] = list(aliases)
    return Entry(EntryKind.ACCOUNT, where, name, attributes)


def whole(*entries: Entry) -> Fetched:
    return Fetched(list(entries), True, "20261130120000Z")


def changes(*entries: Entry) -> Fetched:
    return Fetched(list(entries), False, "20261130120001Z")


@pytest.fixture
def ldap(tmp_path: Path, clock: ManualClock) -> LdapDirectory:
    """An LDAP directory (never connected) holding a.com and b.com."""
    found = LdapDirectory(tmp_path, Location("127.0.0.1", 1, LAYOUT.base), clock=clock)
    found.merge(
        whole(
            server(AccountDefaults={"PWDAllowed": "NO"}),
            domain("a.com", {"postmaster": ["Master"]}),
            domain("b.com", IPAddresses=["127.0.0.2"], DomainAliases=["alt.com"]),
            account("a.com", "postmaster", Password="pm"),
            account("b.com", "jane", ("jq", "janet"), Password="secret", RealName="Jane"),
            Entry(
                EntryKind.GROUP,
                "b.com",
                "staff",
                settings_to_attributes(EntryKind.GROUP, {"Members": ["jane@b.com"]}),
            ),
            Entry(EntryKind.FORWARDER, "b.com", "out", {"cgpforwardto": ["x@elsewhere.org"]}),
        )
    )
    return found


def test_interfaces(ldap: LdapDirectory) -> None:
    """The LDAP directory provides the directory's read and admin interfaces."""
    verifyObject(IDirectory, ldap)
    verifyObject(IDirectoryAdmin, ldap)


def test_lookups(ldap: LdapDirectory, tmp_path: Path) -> None:
    """Domains, objects, settings and rights come from the copy in memory;
    folders from the base directory."""
    assert ldap.main_domain() == "a.com"
    assert ldap.domain_names() == ["a.com", "b.com"]
    alias_domain = ldap.domain("alt.com")
    assert alias_domain is not None and alias_domain.name == "b.com"
    assert ldap.domain_for_address("::ffff:127.0.0.2") == "b.com"
    assert ldap.domain_for_address("10.0.0.1") == "a.com"
    jane = ldap.find_object("b.com", "jane")
    assert jane is not None and jane.kind is ObjectKind.ACCOUNT
    alias = ldap.find_object("b.com", "jq")
    assert alias is not None and alias.kind is ObjectKind.ALIAS and alias.targets == ("jane",)
    group = ldap.find_object("b.com", "staff")
    assert group is not None and group.targets == ("jane@b.com",)
    forwarder = ldap.find_object("b.com", "out")
    assert forwarder is not None and forwarder.targets == ("x@elsewhere.org",)
    assert ldap.find_object("b.com", "nobody") is None
    settings = ldap.account_settings("b.com", "jane")
    assert settings["Password"] == "secret" and settings["PWDAllowed"] == "NO"
    assert ldap.access_rights("a.com") == {"postmaster": ["Master"]}
    assert ldap.objects("b.com", ObjectKind.ALIAS) == {"jq": "jane", "janet": "jane"}
    assert ldap.account_path("b.com", "jane") == tmp_path / "Domains" / "b.com" / "jane.macnt"
    assert ldap.account_path("a.com", "x") == tmp_path / "Accounts" / "x.macnt"


def test_changes_merge(ldap: LdapDirectory) -> None:
    """A changed account replaces the old one; its dropped aliases go."""
    ldap.merge(changes(account("b.com", "jane", ("janet",), Password="new")))
    assert ldap.raw_account_settings("b.com", "jane")["Password"] == "new"
    assert ldap.find_object("b.com", "jq") is None
    assert ldap.find_object("b.com", "janet") is not None


def test_complete_reload_forgets_deleted(ldap: LdapDirectory) -> None:
    """A complete reload drops what is no longer in LDAP."""
    ldap.merge(whole(server(serial="2"), domain("a.com"), account("a.com", "postmaster")))
    assert ldap.domain_names() == ["a.com"]
    assert ldap.find_object("b.com", "jane") is None


def test_bad_entry_keeps_the_rest(ldap: LdapDirectory) -> None:
    """An entry that cannot be read is skipped; the others still merge."""
    bad = account("b.com", "jane")
    bad.attributes["cgpsetting"] = ["garbage"]
    ldap.merge(changes(bad, account("b.com", "new", Password="n")))
    assert ldap.raw_account_settings("b.com", "jane")["Password"] == "secret"
    assert ldap.find_object("b.com", "new") is not None


def test_old_copy_fails_temporarily(ldap: LdapDirectory, clock: ManualClock) -> None:
    """Past max_age account settings fail temporarily; names still resolve;
    a fresh merge brings service back."""
    ldap.refreshed = True  # as in a server
    clock.advance(ldap.max_age + 1)
    with pytest.raises(DirectoryUnavailable) as caught:
        ldap.account_settings("b.com", "jane")
    assert isinstance(caught.value, TemporaryFailure) and caught.value.temporary
    assert ldap.find_object("b.com", "jane") is not None
    ldap.merge(changes())
    assert ldap.account_settings("b.com", "jane")["Password"] == "secret"


def _login(ldap: LdapDirectory, name: str, password: str) -> Any:
    source = InternalPassword(SyncReactor(), SyncThreadPool())  # type: ignore[arg-type]
    checker = AccountChecker(AccountResolver(ldap), [source], SyncReactor(), SyncThreadPool())  # type: ignore[arg-type]
    box: list[Any] = []
    checker.requestAvatarId(LoginPassword(name.encode(), password.encode(), IMAP)).addBoth(
        box.append
    )
    return getattr(box[0], "value", box[0])


def test_login_on_an_old_copy_is_a_temporary_failure(
    ldap: LdapDirectory, clock: ManualClock
) -> None:
    """A login while LDAP is away too long is a temporary failure, not a
    wrong password, even with a wrong password; an alias logs in."""
    assert _login(ldap, "jq@b.com", "secret") == b"jane@b.com"
    assert isinstance(_login(ldap, "jane@b.com", "nope"), WrongPassword)
    ldap.refreshed = True  # as in a server
    clock.advance(ldap.max_age + 1)
    for password in ("secret", "nope"):
        failure = _login(ldap, "jane@b.com", password)
        assert isinstance(failure, TemporaryFailure), failure
        assert not isinstance(failure, WrongPassword)


class _Failing:
    """Stands for an LdapDirectory whose LDAP server is down, then up."""

    def __init__(self, directory: LdapDirectory) -> None:
        self.directory = directory
        self.down = True

    def fetch(self) -> Fetched:
        if self.down:
            raise DirectoryUnreachable("LDAP server 127.0.0.1:1: connection refused")
        return changes(account("b.com", "jane", Password="back"))


def test_refresher_logs_outage_once_and_recovers(ldap: LdapDirectory, clock: ManualClock) -> None:
    """The refresher polls every second in the pool, logs an outage once and
    its end once, and merges again when LDAP is back."""
    fake = _Failing(ldap)
    ldap.fetch = fake.fetch  # type: ignore[method-assign]
    reactor = _ClockReactor()
    refresher = DirectoryRefresher(ldap, reactor, SyncThreadPool())  # type: ignore[arg-type]
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
    try:
        refresher.startService()
        for _ in range(3):
            reactor.advance(1)
        fake.down = False
        reactor.advance(1)
        refresher.stopService()
    finally:
        globalLogPublisher.removeObserver(events.append)  # type: ignore[arg-type]
    texts = [event.get("log_format", "") for event in events]
    assert sum("unreachable" in text for text in texts) == 1
    assert sum("reachable again" in text for text in texts) == 1
    assert ldap.raw_account_settings("b.com", "jane")["Password"] == "back"


class _ClockReactor(Clock):
    """A Clock that runs "thread" callbacks at once."""

    def callFromThread(self, f: Any, *a: Any, **kw: Any) -> None:
        f(*a, **kw)


def test_change_made_here_polls_at_once(ldap: LdapDirectory) -> None:
    """After a change made by this process the refresher looks at once."""
    fake = _Failing(ldap)
    fake.down = False
    ldap.fetch = fake.fetch  # type: ignore[method-assign]
    reactor = _ClockReactor()
    refresher = DirectoryRefresher(ldap, reactor, SyncThreadPool())  # type: ignore[arg-type]
    refresher.startService()
    try:
        assert ldap.on_change is not None
        ldap.on_change()
        assert ldap.raw_account_settings("b.com", "jane")["Password"] == "back"
    finally:
        refresher.stopService()
    # Once stopped, a change made in a pool thread merges nothing there.
    before = ldap.snapshot.newest
    fake.down = True
    assert ldap.on_change is not None
    ldap.on_change()
    assert ldap.snapshot.newest == before


def test_complete_reload_is_built_aside(ldap: LdapDirectory) -> None:
    """A complete reload is built as a new snapshot; the old one answers
    lookups until the new one is swapped in."""
    old = ldap.snapshot
    fetched = whole(server(serial="2"), domain("a.com"), account("a.com", "postmaster"))
    fetched.prepared = old.rebuilt(fetched)
    assert ldap.find_object("b.com", "jane") is not None
    ldap.merge(fetched)
    assert ldap.snapshot is not old
    assert ldap.domain_names() == ["a.com"]
    assert ldap.find_object("b.com", "jane") is None


def test_whole_directory_read_again_now_and_then(
    ldap: LdapDirectory, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between full reloads only changes are asked for; after FULL_RELOAD
    seconds everything is read again (deletions by other tools)."""
    asked: list[str] = []

    def fake_fetch(
        pool: object, layout: object, since: str, serial: str | None, **_: object
    ) -> Fetched:
        asked.append(since)
        return Fetched([], not since, "20261130120000Z")

    monkeypatch.setattr("communigate.store.ldap.directory.fetch", fake_fetch)
    ldap.merge(ldap.fetch())
    clock.advance(FULL_RELOAD / 2)
    ldap.merge(ldap.fetch())
    clock.advance(FULL_RELOAD / 2)
    ldap.merge(ldap.fetch())
    ldap.merge(ldap.fetch())
    assert [bool(since) for since in asked] == [True, True, False, True]
    # The complete (and here empty) answer replaced the copy.
    assert not ldap.is_initialised()


class _Connection:
    """What a search on a fake LDAP connection is asked, and answers."""

    def __init__(self, answers: list[list[dict[str, Any]]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, list[str]]] = []
        #: The result of the last search (ldap3 keeps the last page's).
        self.result: dict[str, Any] = {"result": 0}
        self.codes: list[int] = []
        self.extend = self
        self.standard = self

    def paged_search(
        self, base: str, query: str, scope: str, attributes: list[str], **_: Any
    ) -> list[dict[str, Any]]:
        self.asked.append((query, attributes))
        self.result = {"result": self.codes.pop(0) if self.codes else 0}
        return self.answers.pop(0)


class _Pool:
    """A connection pool handing out one fake connection."""

    def __init__(self, connection: _Connection) -> None:
        self.connection = connection

    def call(self, operation: Any) -> Any:
        return operation(self.connection)


def _result(dn: str, **attributes: list[str]) -> dict[str, Any]:
    raw = {name: [value.encode() for value in values] for name, values in attributes.items()}
    return {"type": "searchResEntry", "dn": dn, "raw_attributes": raw}


def test_each_look_searches_again_the_last_seconds() -> None:
    """A look asks again for entries stamped OVERLAP seconds before the
    newest seen, so a commit that landed late (same second, older stamp)
    is not missed; without a changed serial no names are listed."""
    jane = LAYOUT.object(EntryKind.ACCOUNT, "b.com", "jane")
    late = _result(jane, uid=["jane"], modifyTimestamp=["20261130120003Z"])
    connection = _Connection([[late]])
    fetched = fetch(_Pool(connection), LAYOUT, "20261130120005Z", "1")  # type: ignore[arg-type]
    assert len(connection.asked) == 1
    assert f"(modifyTimestamp>={earlier('20261130120005Z', OVERLAP)})" in connection.asked[0][0]
    assert earlier("20261130120005Z", OVERLAP) == "20261130120000Z"
    assert earlier("20270101000002Z", 5) == "20261231235957Z"
    assert [entry.name for entry in fetched.entries] == ["jane"]
    assert fetched.newest == "20261130120005Z" and fetched.present is None


def test_changed_serial_lists_every_name() -> None:
    """A raised cgpDeletionSerial makes the look list every entry's DN
    (no attributes) instead of reading the whole directory."""
    server_entry = _result(
        LAYOUT.server, cgpDeletionSerial=["2"], modifyTimestamp=["20261130120006Z"]
    )
    names = [
        _result(LAYOUT.server),
        _result(LAYOUT.domain("b.com")),
        _result(LAYOUT.object(EntryKind.ACCOUNT, "b.com", "jane")),
    ]
    connection = _Connection([[server_entry], names])
    fetched = fetch(_Pool(connection), LAYOUT, "20261130120005Z", "1")  # type: ignore[arg-type]
    assert not fetched.complete
    assert connection.asked[1][1] == ["1.1"]
    assert fetched.present == {
        (EntryKind.SERVER, "", ""),
        (EntryKind.DOMAIN, "b.com", "b.com"),
        (EntryKind.ACCOUNT, "b.com", "jane"),
    }


def test_listing_forgets_what_is_gone(ldap: LdapDirectory) -> None:
    """Merging a listing drops the objects and domains it does not name,
    with their aliases; what it names stays."""
    present = {
        (EntryKind.SERVER, "", ""),
        (EntryKind.DOMAIN, "a.com", "a.com"),
        (EntryKind.DOMAIN, "b.com", "b.com"),
        (EntryKind.ACCOUNT, "b.com", "jane"),
        (EntryKind.FORWARDER, "b.com", "out"),
    }
    ldap.merge(Fetched([], False, "20261130120001Z", present=present))
    assert ldap.find_object("a.com", "postmaster") is None
    assert ldap.find_object("b.com", "staff") is None
    assert ldap.find_object("b.com", "jq") is not None
    assert ldap.find_object("b.com", "out") is not None
    present.discard((EntryKind.DOMAIN, "b.com", "b.com"))
    present.discard((EntryKind.ACCOUNT, "b.com", "jane"))
    ldap.merge(Fetched([], False, "20261130120002Z", present=present))
    assert ldap.domain_names() == ["a.com"]
    assert ldap.find_object("alt.com", "jane") is None
    assert ldap.objects("b.com", ObjectKind.ALIAS) == {}


def test_refresher_logs_a_bug_with_its_traceback(ldap: LdapDirectory) -> None:
    """A look failing for a reason other than LDAP is logged as a failure
    (once), not as the LDAP server being unreachable."""
    ldap.fetch = lambda: 1 / 0  # type: ignore[assignment,method-assign,return-value]
    reactor = _ClockReactor()
    refresher = DirectoryRefresher(ldap, reactor, SyncThreadPool())  # type: ignore[arg-type]
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
    try:
        refresher.startService()
        for _ in range(3):
            reactor.advance(1)
        refresher.stopService()
    finally:
        globalLogPublisher.removeObserver(events.append)  # type: ignore[arg-type]
    failures = [event for event in events if "log_failure" in event]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(ZeroDivisionError)
    assert not any("unreachable" in event.get("log_format", "") for event in events)


def test_change_found_again_is_merged_once(ldap: LdapDirectory) -> None:
    """An entry a later look finds again (the overlap) with the same
    entryCSN is left out before the merge; a newer change is not."""
    jane = account("b.com", "jane", Password="one")
    jane.attributes["entrycsn"] = ["20261130120001.000001Z#000000#000#000000"]
    jane.attributes["modifytimestamp"] = ["20261130120001Z"]
    ldap.merge(changes(jane))
    assert ldap.snapshot.unseen([jane]) == []
    newer = account("b.com", "jane", Password="two")
    newer.attributes["entrycsn"] = ["20261130120001.000002Z#000000#000#000000"]
    newer.attributes["modifytimestamp"] = ["20261130120001Z"]
    assert ldap.snapshot.unseen([jane, newer]) == [newer]
    # Without an entryCSN (another LDAP server) every entry is merged.
    assert ldap.snapshot.unseen([account("b.com", "jane")]) != []
    # Past the overlap the change is forgotten (nothing can find it again).
    ldap.merge(Fetched([], False, "20261130120100Z"))
    assert ldap.snapshot.unseen([jane]) == [jane]


def test_refresher_logs_a_merge_that_fails(ldap: LdapDirectory) -> None:
    """A merge that raises is logged with its traceback, not swallowed."""
    fake = _Failing(ldap)
    fake.down = False
    ldap.fetch = fake.fetch  # type: ignore[method-assign]
    ldap.merge = lambda fetched: 1 / 0  # type: ignore[assignment,method-assign]
    reactor = _ClockReactor()
    refresher = DirectoryRefresher(ldap, reactor, SyncThreadPool())  # type: ignore[arg-type]
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
    try:
        refresher.startService()
        reactor.advance(1)
        refresher.stopService()
    finally:
        globalLogPublisher.removeObserver(events.append)  # type: ignore[arg-type]
    assert [event["log_failure"].type for event in events if "log_failure" in event] == [
        ZeroDivisionError
    ]


def test_slow_complete_look_starts_the_next_one_earlier() -> None:
    """A whole reload that took 7 s (paged, not a snapshot of the
    directory) gives a newest stamp 7 s back, so the next look finds an
    entry changed after its page was read."""
    ticks = iter([100.0, 107.0])
    jane = LAYOUT.object(EntryKind.ACCOUNT, "b.com", "jane")
    connection = _Connection([[_result(jane, modifyTimestamp=["20261130120010Z"])]])
    fetched = fetch(
        _Pool(connection),  # type: ignore[arg-type]
        LAYOUT,
        "",
        None,
        clock=lambda: next(ticks),
    )
    assert fetched.complete
    assert fetched.newest == "20261130120003Z"


def test_ldap_call_on_the_reactor_thread_is_refused(ldap: LdapDirectory) -> None:
    """Once the refresher runs, a blocking LDAP call from the reactor
    thread is refused before any connection is made."""
    reactor = _ClockReactor()
    refresher = DirectoryRefresher(ldap, reactor, SyncThreadPool())  # type: ignore[arg-type]
    refresher.startService()
    io_thread = threadable.ioThread
    try:
        guard = ldap.entries.may_block
        threadable.registerAsIOThread()
        assert guard() is False
        with pytest.raises(BlockingRefused):
            ldap.update_account_settings("b.com", "jane", {"RealName": "J"})
        result: list[bool] = []
        worker = threading.Thread(target=lambda: result.append(guard()))
        worker.start()
        worker.join()
        assert result == [True]
    finally:
        threadable.ioThread = io_thread
        refresher.stopService()


@pytest.mark.parametrize(("code", "error"), [(4, DirectoryError), (3, DirectoryUnreachable)])
def test_cut_off_answer_is_never_taken_for_the_whole(code: int, error: type) -> None:
    """A search or listing cut off by a size or time limit (which ldap3
    does not raise) fails the look instead of making accounts vanish."""
    jane = _result(LAYOUT.object(EntryKind.ACCOUNT, "b.com", "jane"))
    whole_cut = _Connection([[jane]])
    whole_cut.codes = [code]
    with pytest.raises(error):
        fetch(_Pool(whole_cut), LAYOUT, "", None)  # type: ignore[arg-type]
    server_entry = _result(LAYOUT.server, cgpDeletionSerial=["2"])
    listing_cut = _Connection([[server_entry], [jane]])
    listing_cut.codes = [0, code]
    with pytest.raises(error):
        fetch(_Pool(listing_cut), LAYOUT, "20261130120005Z", "1")  # type: ignore[arg-type]


def test_settled_look_asks_only_for_newer_stamps() -> None:
    """Once nothing newer has appeared for longer than the overlap, a look
    asks only for stamps after the newest seen: a burst of changes (an
    import) is not searched and decoded again every second."""
    connection = _Connection([[]])
    fetched = fetch(
        _Pool(connection),  # type: ignore[arg-type]
        LAYOUT,
        "20261130120005Z",
        "1",
        settled=True,
    )
    assert "(modifyTimestamp>=20261130120006Z)" in connection.asked[0][0]
    assert fetched.newest == "20261130120005Z" and fetched.entries == []


def test_long_looks_are_spaced_and_keep_the_copy_fresh() -> None:
    """A listing of names reports how long it took (the next one waits ten
    times that); pages arriving during a long look count as the LDAP
    server answering, so logins do not fail while a large directory is read."""
    ticks = iter([0.0, 0.5, 1.0, 13.0])
    listed = _Connection([[], []])
    fetched = fetch(
        _Pool(listed),  # type: ignore[arg-type]
        LAYOUT,
        "20261130120005Z",
        "1",
        sweep=True,
        clock=lambda: next(ticks),
    )
    assert fetched.listed_in == 12.0
    clock = [1000.0]
    directory = LdapDirectory(
        Path("/nonexistent"), Location("127.0.0.1", 1, LAYOUT.base), clock=lambda: clock[0]
    )
    directory._reached()
    clock[0] += 29
    assert directory.age() == 29
    directory._reached()
    assert directory.age() == 0


def test_command_line_copy_never_goes_stale(ldap: LdapDirectory, clock: ManualClock) -> None:
    """Without a refresher (the command line) a long command keeps reading
    what it loaded; a failed look forgets that pages had arrived."""
    clock.advance(ldap.max_age + 100)
    assert ldap.account_settings("b.com", "jane")["Password"] == "secret"
    ldap.refreshed = True
    ldap._reached()
    assert ldap.account_settings("b.com", "jane")["Password"] == "secret"
    ldap.connections = _FailingPool()  # type: ignore[assignment]
    with pytest.raises(DirectoryUnreachable):
        ldap.fetch()
    with pytest.raises(DirectoryUnavailable):
        ldap.account_settings("b.com", "jane")


class _FailingPool:
    """A pool whose server cannot be reached."""

    def call(self, operation: Any) -> Any:
        raise DirectoryUnreachable("LDAP server 127.0.0.1:1: refused")
