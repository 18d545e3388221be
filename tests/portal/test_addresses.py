"""Address lists of the settings (Grant, Deny, ClientIPs)."""

from __future__ import annotations

from communigate.portal.addresses import address_in


def test_address_lists() -> None:
    """Networks match, ! excludes, the first match decides."""
    assert address_in("192.0.2.7", ["192.0.2.0/24"])
    assert not address_in("192.0.2.7", ["!192.0.2.7", "192.0.2.0/24"])
    assert address_in("::ffff:192.0.2.7", ["192.0.2.7"])
    assert not address_in("not-an-ip", ["0.0.0.0/0"])
