"""The live-session table the login service feeds."""

from __future__ import annotations

from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from communigate.control.interfaces import ISessionTable
from communigate.control.sessions import LiveSessions
from communigate.cred.credentials import ConnectionInfo


def connection(protocol: str = "imap4", port: int = 40001, session: str = "s1") -> ConnectionInfo:
    """A connection from 127.0.0.9:``port``."""
    return ConnectionInfo(
        protocol=protocol,
        local_host="127.0.0.1",
        remote_host="127.0.0.9",
        secure=True,
        local_port=143,
        remote_port=port,
        session=session,
    )


def test_provides_the_interface() -> None:
    """LiveSessions provides ISessionTable."""
    assert verifyObject(ISessionTable, LiveSessions(Clock().seconds))


def test_entry_says_who_how_where_and_since() -> None:
    """An opened session is listed with every field and its duration."""
    clock = Clock()
    clock.advance(1000)
    table = LiveSessions(clock.seconds)
    table.opened(connection(), "info@company.com", "PLAIN")
    clock.advance(5)
    [entry] = table.matching()
    assert entry.as_answer(clock.seconds()) == {
        "session": "s1",
        "account": "info@company.com",
        "protocol": "imap4",
        "remote_host": "127.0.0.9",
        "remote_port": 40001,
        "local_host": "127.0.0.1",
        "local_port": 143,
        "tls": True,
        "mechanism": "PLAIN",
        "since": 1000.0,
        "duration": 5.0,
    }


def test_forget_removes_once() -> None:
    """The callable opened returns removes that session only, and may be
    called twice."""
    table = LiveSessions(Clock().seconds)
    forget = table.opened(connection(session="a"), "info@company.com", "USER")
    table.opened(connection(session="b"), "info@company.com", "USER")
    forget()
    forget()
    assert [entry.session for entry in table] == ["b"]


def test_matching_account_or_domain() -> None:
    """A selector with @ picks an account, without @ a domain, any case."""
    table = LiveSessions(Clock().seconds)
    table.opened(connection(session="a"), "info@company.com", "USER")
    table.opened(connection(session="b"), "sales@company.com", "USER")
    table.opened(connection(session="c"), "info@client1.com", "USER")
    assert [e.session for e in table.matching("INFO@company.com")] == ["a"]
    assert [e.session for e in table.matching("Company.com")] == ["a", "b"]
    assert [e.session for e in table.matching("nobody@company.com")] == []
    assert len(table.matching(None)) == 3


def test_per_protocol() -> None:
    """Sessions are counted per protocol."""
    table = LiveSessions(Clock().seconds)
    table.opened(connection("imap4", session="a"), "info@company.com", "USER")
    table.opened(connection("imap4", session="b"), "info@company.com", "USER")
    table.opened(connection("pop3", session="c"), "info@company.com", "USER")
    assert table.per_protocol() == {"imap4": 2, "pop3": 1}
