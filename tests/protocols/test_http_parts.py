"""The HTTP module's pure parts: web sessions, CSRF tokens, path segments,
PROPFIND bodies and the SESSIONID mechanism."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.web import static
from zope.interface.verify import verifyObject

from communigate.cred.credentials import ConnectionInfo
from communigate.cred.sasl import registry
from communigate.cred.sasl.mechanism import Challenge, Failure, ISASLMechanism, Success
from communigate.cred.sasl.sessionid import ISessionOwners, SessionID
from communigate.protocols.http import davxml, download, paths
from communigate.protocols.http.csrf import FormTokens
from communigate.protocols.http.sessions import (
    MAX_PER_ACCOUNT,
    SessionCopies,
    WebSessions,
    owner_if,
    session_limits,
)
from communigate.store.settingsformat import Value
from tests.conftest import ManualClock

CONNECTION = ConnectionInfo("imap4", "127.0.0.1", "127.0.0.1")


def resolve(login: str, connection: ConnectionInfo) -> str:
    """A resolver knowing company.com only."""
    return login if "@" in login else f"{login}@company.com"


def make_sessions(clock: ManualClock) -> tuple[WebSessions, list[str]]:
    ended: list[str] = []
    sessions = WebSessions(clock, resolve, idle=60, lifetime=300, first=4814)
    return sessions, ended


def test_session_id_has_cgp_shape(clock: ManualClock) -> None:
    """IDs are ``<number>-<20 letters or digits>`` and never repeat."""
    sessions, _ = make_sessions(clock)
    first = sessions.open("john@company.com", object(), lambda: None)
    second = sessions.open("john@company.com", object(), lambda: None)
    assert first.id.startswith("4815-") and second.id.startswith("4816-")
    _, _, rest = first.id.partition("-")
    assert len(rest) == 20 and rest.isalnum() and rest != second.id.partition("-")[2]
    assert verifyObject(ISessionOwners, sessions)


def test_idle_and_absolute_timeouts(clock: ManualClock) -> None:
    """A session unused for ``idle`` seconds ends; a used one ends at
    ``lifetime``; each end logs the avatar out once."""
    sessions, _ = make_sessions(clock)
    ended: list[str] = []
    idle = sessions.open("a@company.com", object(), lambda: ended.append("idle"))
    busy = sessions.open("b@company.com", object(), lambda: ended.append("busy"))
    for _ in range(5):
        clock.advance(50)
        assert sessions.get(busy.id) is busy
    assert sessions.get(idle.id) is None
    assert ended == ["idle"]
    clock.advance(55)
    assert sessions.get(busy.id) is None
    assert ended == ["idle", "busy"]
    assert not sessions.close(busy.id)
    assert ended == ["idle", "busy"]


def test_an_account_holds_a_bounded_number_of_sessions(clock: ManualClock) -> None:
    """Past MAX_PER_ACCOUNT live sessions a login closes the account's
    oldest (logged out once); other accounts keep theirs."""
    sessions, _ = make_sessions(clock)
    ended: list[int] = []
    other = sessions.open("b@company.com", object(), lambda: ended.append(-1))
    names = ("a@company.com", "A@company.com")  # one account, however spelt
    opened = [
        sessions.open(names[n % 2], object(), lambda n=n: ended.append(n))
        for n in range(MAX_PER_ACCOUNT + 3)
    ]
    assert ended == [0, 1, 2]
    assert [sessions.get(s.id) is None for s in opened[:4]] == [True, True, True, False]
    assert sessions.get(other.id) is other
    assert len(sessions) == MAX_PER_ACCOUNT + 1
    sessions.close(opened[3].id)
    sessions.open("a@company.com", object(), lambda: ended.append(99))
    assert ended == [0, 1, 2, 3]


def test_logins_do_not_walk_every_session(clock: ManualClock) -> None:
    """Opening a session costs the same however many are live; expired
    ones still end (the oldest few at each login, the rest when used or
    by the sweep)."""
    sessions, _ = make_sessions(clock)
    for number in range(3000):
        sessions.open(f"u{number}@company.com", object(), lambda: None)
    calls = 0
    expired = sessions._expired

    def counting(session: Any, now: float) -> bool:
        nonlocal calls
        calls += 1
        return expired(session, now)

    sessions._expired = counting  # type: ignore[method-assign]
    sessions.open("late@company.com", object(), lambda: None)
    assert calls <= 4
    clock.advance(61)
    sessions.open("later@company.com", object(), lambda: None)
    assert len(sessions) == 3002 - 4
    assert sessions.sweep() == 3002 - 4 - 1
    assert len(sessions) == 1


def test_owner_only_for_the_same_account(clock: ManualClock) -> None:
    """SESSIONID's question: the account when the name resolves to it."""
    sessions, _ = make_sessions(clock)
    session = sessions.open("john@company.com", object(), lambda: None)
    assert sessions.owner("john", session.id, CONNECTION) == "john@company.com"
    assert sessions.owner("JOHN@company.com", session.id, CONNECTION) == "john@company.com"
    assert sessions.owner("other", session.id, CONNECTION) is None
    assert sessions.owner("john", session.id + "x", CONNECTION) is None
    # Asking does not keep the session alive.
    clock.advance(61)
    assert sessions.owner("john", session.id, CONNECTION) is None


def test_logged_out_session_is_no_owner(clock: ManualClock) -> None:
    """After close the ID opens nothing."""
    sessions, _ = make_sessions(clock)
    session = sessions.open("john@company.com", object(), lambda: None)
    assert sessions.close(session.id)
    assert sessions.owner("john", session.id, CONNECTION) is None


def test_deleted_account_ends_its_session(clock: ManualClock) -> None:
    """The avatar's watch (account deleted) closes the web session."""
    from communigate.portal.sessions import LiveSession

    avatar = LiveSession()
    sessions, _ = make_sessions(clock)
    session = sessions.open("john@company.com", avatar, lambda: None)
    avatar.end("the account was deleted")
    assert sessions.get(session.id) is None


def test_form_tokens(clock: ManualClock) -> None:
    """A token is valid for its binding only, and only for max_age."""
    tokens = FormTokens(b"s" * 32, clock, max_age=100)
    token = tokens.issue("cookie-1")
    assert tokens.valid(token, "cookie-1")
    assert not tokens.valid(token, "cookie-2")
    assert not tokens.valid(token, "")
    assert not tokens.valid(token[:-1] + ("0" if token[-1] != "0" else "1"), "cookie-1")
    assert not FormTokens(b"t" * 32, clock).valid(token, "cookie-1")
    assert tokens.issue("cookie-1") != token
    clock.advance(101)
    assert not tokens.valid(token, "cookie-1")
    assert not tokens.valid("garbage", "cookie-1")


@pytest.mark.parametrize(
    "raw",
    [b"..", b".", b"a/b", b"..\\x", b"a\\b", b"\xc0\xae\xc0\xae", b"\xc0\xaf", b"a\x00b", b"\xff"],
)
def test_bad_segments_are_refused(raw: bytes) -> None:
    """Decoded separators, dot segments, NUL and overlong UTF-8 are refused."""
    with pytest.raises(paths.BadPath):
        paths.segment(raw)


def test_good_segments_and_destination() -> None:
    """UTF-8 names pass; a Destination URL becomes segments."""
    assert paths.segment("résumé.txt".encode()) == "résumé.txt"
    assert paths.destination(b"http://h:80/~john/a%20b/c.txt") == ("~john", "a b", "c.txt")
    assert paths.href(("~john", "a b"), True) == "/~john/a%20b/"
    with pytest.raises(paths.BadPath):
        paths.destination(b"http://h/~john/..%2f..%2fetc")


def test_propfind_bodies() -> None:
    """Empty or plain XML bodies are answered; a DOCTYPE (entities) is not."""
    assert davxml.body_acceptable(b"")
    assert davxml.body_acceptable(
        b'<?xml version="1.0"?><propfind xmlns="DAV:"><allprop/></propfind>'
    )
    assert not davxml.body_acceptable(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')


class Owners:
    """An ISessionOwners knowing one session."""

    def owner(self, login: str, session_id: str, connection: ConnectionInfo) -> str | None:
        if session_id == "1-abc" and resolve(login, connection) == "john@company.com":
            return "john@company.com"
        return None


def test_sessionid_mechanism() -> None:
    """A matching name and ID prove the session's account in its domain;
    anything else gives a proof with no domain (refused by the checker)."""
    mechanism = SessionID(CONNECTION, Owners(), offered=True)
    assert verifyObject(ISASLMechanism, mechanism)
    assert mechanism.start(None) == Challenge(b"")
    step = mechanism.respond(b"john 1-abc")
    assert isinstance(step, Success)
    assert step.credentials.username == b"john@company.com"
    assert step.credentials.domain == "company.com"
    assert step.credentials.setting == ""
    step = SessionID(CONNECTION, Owners(), offered=True).start(b"other 1-abc")
    assert isinstance(step, Success) and step.credentials.domain == ""
    assert isinstance(SessionID(CONNECTION, Owners(), True).start(b"john"), Failure)
    assert isinstance(SessionID(CONNECTION, Owners(), False).start(b"john 1-abc"), Failure)
    assert isinstance(SessionID(CONNECTION, None, True).start(b"john 1-abc"), Failure)


def test_sessionid_advertised_only_when_listed() -> None:
    """SESSIONID is listed (and so accepted) only where LoginMethods names
    it, and like clear text not on an insecure remote link."""
    local = ConnectionInfo("imap4", "10.0.0.1", "127.0.0.1")
    remote = ConnectionInfo("imap4", "10.0.0.1", "192.0.2.7")
    assert "SESSIONID" not in registry.advertised({}, local)
    listed: dict[str, Value] = {"LoginMethods": ["PLAIN", "SESSIONID"]}
    assert "SESSIONID" in registry.advertised(listed, local)
    assert "SESSIONID" not in registry.advertised(listed, remote)
    context = registry.ExchangeContext(local, "company.com", "h", b"k" * 32, web_sessions=Owners())
    mechanism = registry.create("SESSIONID", context)
    assert mechanism is not None
    assert isinstance(mechanism.start(b"john 1-abc"), Failure)


@pytest.mark.parametrize(
    "name", ["a.txt", "A.TXT", "b.tar.gz", "page.html", ".bashrc", "noext", "x.unknownext", "c.gz"]
)
def test_type_of_is_static_files(name: str) -> None:
    """The remembered content type is the one static.File gives the name."""
    expected = static.getTypeAndEncoding(
        name, static.File.contentTypes, static.File.contentEncodings, "text/html"
    )
    assert download.type_of(name) == expected
    assert download.type_of(name) == expected


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, (1800.0, 43200.0)),
        ({"WebUserIdleTimeout": "5m", "WebUserSessionLimit": "1h"}, (300.0, 3600.0)),
        ({"WebUserIdleTimeout": "soon"}, (1800.0, 43200.0)),
        ({"WebUserIdleTimeout": 1, "WebUserSessionLimit": "10s"}, (60.0, 60.0)),
    ],
)
def test_session_limits_from_domain_settings(
    settings: dict[str, Any], expected: tuple[float, float]
) -> None:
    """Domain settings give a session's idle and total time; a bad value
    keeps the default, and neither goes under a minute."""
    assert session_limits(settings) == expected


def test_session_keeps_its_own_limits() -> None:
    """A session opened with its own times expires by them, not the registry's."""
    clock = ManualClock()
    sessions = WebSessions(clock, lambda login, _c: login, idle=1000, lifetime=5000)
    short = sessions.open("a@company.com", object(), lambda: None, limits=(60, 120))
    long = sessions.open("b@company.com", object(), lambda: None)
    clock.advance(61)
    assert not sessions.live(short.id) and sessions.live(long.id)


def test_watch_is_told_of_each_open_and_close(clock: ManualClock) -> None:
    """``watch`` hears of every session opened and closed (logout, expiry),
    once each, so the worker processes' copies follow."""
    sessions, _ = make_sessions(clock)
    told: list[tuple[str, object]] = []

    def watch(session_id: str, session: object) -> None:
        told.append((session_id, session))

    sessions.watch = watch
    first = sessions.open("a@company.com", object(), lambda: None)
    second = sessions.open("b@company.com", object(), lambda: None)
    assert list(sessions) == [first, second]
    sessions.close(first.id)
    sessions.close(first.id)
    clock.advance(61)
    sessions.sweep()
    assert told == [(first.id, first), (second.id, second), (first.id, None), (second.id, None)]


def test_session_copies_answer_sessionid_until_closed_or_over(clock: ManualClock) -> None:
    """A worker's copy of a web session gives its account to SESSIONID
    for a login that resolves to it, until the server closes it or its
    lifetime ends; another name, or an unknown ID, gets nothing."""
    copies = SessionCopies(clock, resolve)
    assert verifyObject(ISessionOwners, copies)
    copies.opened("1-a", "john@company.com", clock() + 100)
    copies.opened("2-b", "mary@company.com", clock() + 300)
    assert copies.owner("john", "1-a", CONNECTION) == "john@company.com"
    assert copies.owner("JOHN@company.com", "1-a", CONNECTION) == "john@company.com"
    assert copies.owner("mary", "1-a", CONNECTION) is None
    assert copies.owner("john", "9-z", CONNECTION) is None
    copies.closed("2-b")
    assert copies.owner("mary", "2-b", CONNECTION) is None
    clock.advance(101)
    assert copies.owner("john", "1-a", CONNECTION) is None
    assert len(copies) == 0


def test_owner_if_refuses_names_that_lead_nowhere() -> None:
    """A login name the resolver refuses, or one of non-ASCII letters
    resolving elsewhere, is not the session's."""

    def refuse(login: str, connection: ConnectionInfo) -> str:
        raise ValueError("unknown")

    assert owner_if("john@company.com", "john", CONNECTION, refuse) is None
    assert owner_if("john@company.com", "jöhn", CONNECTION, resolve) is None
    assert owner_if("jöhn@company.com", "jöhn", CONNECTION, resolve) == "jöhn@company.com"
