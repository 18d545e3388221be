"""Login names to full names (spec §1.1–1.3)."""

from __future__ import annotations

import pytest

from communigate.portal.names import BadLoginName, FullName, full_name


@pytest.mark.parametrize(
    ("login", "connection_domain", "expected"),
    [
        ("info", "company.com", "info@company.com"),
        ("info", "client1.com", "info@client1.com"),
        ("info%client2.com", "client1.com", "info@client2.com"),
        ("info@client2.com", "company.com", "info@client2.com"),
        ("Info@Company.COM", "client1.com", "info@company.com"),
        ("a%b@c.com", "company.com", "a%b@c.com"),
        ("  info  ", "company.com", "info@company.com"),
    ],
)
def test_full_name(login: str, connection_domain: str, expected: str) -> None:
    """@ and % give full names; bare names take the connection's domain."""
    assert str(full_name(login, connection_domain)) == expected


@pytest.mark.parametrize("login", ["", "   ", "@dom.com", "user@", "us\x00er", "%x"])
def test_bad_names(login: str) -> None:
    """Names that cannot name an account are refused."""
    with pytest.raises(BadLoginName):
        full_name(login, "company.com")


def test_full_name_value() -> None:
    """FullName keeps lower-case parts."""
    assert FullName.parse("A@B.C", "x") == FullName("a", "b.c")
