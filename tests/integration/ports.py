"""Free ports for the servers the tests start, outside the kernel's
ephemeral range.

A port the kernel hands out for ``bind(0)`` comes from the range it also
gives to outgoing connections: between the test's probe and the server's
own ``bind`` a client socket (slapd's, curl's, another test run's) could
take it, and the server would fail to start.  These ports are drawn at
random below that range (above it when there is no room below), so two
runs at once rarely pick the same, and each is checked free first.
"""

from __future__ import annotations

import random
import socket

#: Lowest port drawn (above the ports of system services).
LOWEST = 20000


def _ephemeral() -> tuple[int, int]:
    """The kernel's range for outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
            low, high = (int(part) for part in file.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return low, high


def _candidates() -> range:
    """Ports outside the ephemeral range: below it, else above it, else
    (a range covering nearly every port) the ports above ``LOWEST``."""
    low, high = _ephemeral()
    if low - LOWEST >= 1000:
        return range(LOWEST, low)
    if 65535 - high >= 1000:
        return range(high + 1, 65536)
    return range(LOWEST, 65536)


#: Ports this process handed out already: one server's several listeners
#: never get the same one.
_given: set[int] = set()


def _bindable(port: int, addresses: tuple[str, ...], udp: bool) -> bool:
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    for address in addresses:
        for kind in kinds:
            with socket.socket(socket.AF_INET, kind) as probe:
                try:
                    probe.bind((address, port))
                except OSError:
                    return False
    return True


def free_port(addresses: tuple[str, ...] = ("127.0.0.1",), udp: bool = False) -> int:
    """A port free for TCP (and UDP when ``udp``) on each of ``addresses``."""
    candidates = _candidates()
    for _ in range(200):
        port = random.choice(candidates)
        if port not in _given and _bindable(port, addresses, udp):
            _given.add(port)
            return port
    raise RuntimeError("no free port")
