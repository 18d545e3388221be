"""Address lists in settings: whether a client address is named by one.

The listeners' ``Grant`` and ``Deny`` lists and the server's ``ClientIPs``
(spec §7) are lists of addresses and networks (``192.0.2.7``,
``192.0.2.0/24``, ``2001:db8::/32``), each optionally preceded by ``!`` to
exclude it.  Pure code.
"""

from __future__ import annotations

from ipaddress import ip_address, ip_network


def address_in(host: str, entries: list[str]) -> bool:
    """Whether ``host`` matches the list (addresses, networks, ``!`` to
    exclude; the first match decides)."""
    try:
        address = ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    address = mapped or address
    for entry in entries:
        negated = entry.startswith("!")
        try:
            network = ip_network(entry.lstrip("!").strip(), strict=False)
        except ValueError:
            continue
        if address.version == network.version and address in network:
            return not negated
    return False
