"""The Router (spec §1.4–1.6): table-driven, against a real directory."""

from __future__ import annotations

import pytest

from communigate.portal.names import FullName
from communigate.portal.router import (
    LocalAccount,
    NotAccount,
    Rejected,
    RouteKind,
    Router,
    RouterTableError,
    Unknown,
    parse_record,
)
from communigate.store.directory import ObjectKind
from communigate.store.files import FileDirectory

TABLE = """\
<John> = j.smith@client1.com
; a comment
<*@old.com> = *@client1.com
old2.com = client2.com
Access:<mailonly> = error: no logins
Mail:<mailonly> = info
<trash> = null
<gone> = error
<far> = someone@elsewhere.net
<loop1> = loop2
<loop2> = loop1
"""


@pytest.fixture
def router(directory: FileDirectory) -> Router:
    directory.set_router_table(TABLE)
    directory.add_object(ObjectKind.ALIAS, "client1.com", "boss", "info")
    directory.add_object(ObjectKind.GROUP, "client1.com", "team", {"Members": ["info"]})
    directory.add_object(ObjectKind.FORWARDER, "client1.com", "fwd", "x@elsewhere.net")
    return Router(directory)


@pytest.mark.parametrize(
    ("address", "kind", "expected"),
    [
        ("info@company.com", RouteKind.ACCESS, LocalAccount("company.com", "info")),
        ("info@client1.com", RouteKind.ACCESS, LocalAccount("client1.com", "info")),
        ("john@company.com", RouteKind.ACCESS, LocalAccount("client1.com", "j.smith")),
        ("john@client1.com", RouteKind.ACCESS, Unknown(FullName("john", "client1.com"))),
        ("boss@client1.com", RouteKind.ACCESS, LocalAccount("client1.com", "info")),
        ("info@alias2.com", RouteKind.ACCESS, LocalAccount("client2.com", "info")),
        ("info@old.com", RouteKind.ACCESS, LocalAccount("client1.com", "info")),
        ("info@old2.com", RouteKind.ACCESS, LocalAccount("client2.com", "info")),
        ("mailonly@company.com", RouteKind.ACCESS, Rejected("no logins")),
        ("mailonly@company.com", RouteKind.MAIL, LocalAccount("company.com", "info")),
        ("gone@company.com", RouteKind.ACCESS, Rejected("rejected by the Router")),
        ("loop1@company.com", RouteKind.ACCESS, Rejected("routing loop")),
        ("nobody@client1.com", RouteKind.ACCESS, Unknown(FullName("nobody", "client1.com"))),
    ],
)
def test_routes(router: Router, address: str, kind: RouteKind, expected: object) -> None:
    """Each address routes where spec §1 says."""
    assert router.route(FullName.parse(address, "company.com"), kind) == expected


@pytest.mark.parametrize(
    ("address", "what"),
    [
        ("team@client1.com", "group"),
        ("fwd@client1.com", "forwarder"),
        ("far@company.com", "remote"),
        ("x@nowhere.org", "remote"),
        ("trash@company.com", "discarded"),
    ],
)
def test_not_accounts(router: Router, address: str, what: str) -> None:
    """Groups, forwarders, remote and discarded addresses are not accounts."""
    route = router.route(FullName.parse(address, "company.com"))
    assert isinstance(route, NotAccount) and route.what == what


@pytest.mark.parametrize("line", ["no equals sign", "<a> = ", "<a@b> @x = y", "a@b = c"])
def test_bad_records(line: str) -> None:
    """Malformed records are refused when parsed strictly."""
    with pytest.raises(RouterTableError):
        parse_record(line)


def test_bad_line_does_not_break_table(directory: FileDirectory) -> None:
    """A hand-edited table with one bad line still routes the rest."""
    directory.set_router_table("garbage line\n<John> = j.smith@client1.com\n")
    route = Router(directory).route(FullName("john", "company.com"))
    assert route == LocalAccount("client1.com", "j.smith")


def test_login_page_domain(router: Router) -> None:
    """A Kerberos service's host name finds its domain as LoginPage@name is
    routed: real names, domain aliases and Router records; others none."""
    assert router.login_page_domain("client1.com") == "client1.com"
    assert router.login_page_domain("ALIAS2.com") == "client2.com"
    assert router.login_page_domain("old.com") == "client1.com"
    assert router.login_page_domain("old2.com") == "client2.com"
    assert router.login_page_domain("elsewhere.net") is None
    assert router.login_page_domain("not a name!") is None
