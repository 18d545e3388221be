"""From a login name to a full account name (spec §1.1–1.3).

``user@domain`` and ``user%domain`` are full names (many mail clients refuse
``@`` in a user name, hence ``%``).  A bare name takes the domain of the
connection: the domain that owns the local IP address the client connected
to (multihoming), the TLS SNI name, or the XMPP stream's ``to``; the caller
decides which and passes it in.  Pure code.
"""

from __future__ import annotations

from dataclasses import dataclass


class BadLoginName(ValueError):
    """The login name cannot name an account (empty part, control bytes)."""


@dataclass(frozen=True, order=True)
class FullName:
    """An address ``local@domain``, both parts in lower case."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @classmethod
    def parse(cls, text: str, default_domain: str) -> FullName:
        """Read ``name@domain`` or a bare ``name`` (in ``default_domain``)."""
        local, sep, domain = text.rpartition("@")
        if not sep:
            local, domain = text, default_domain
        if not local or not domain:
            raise BadLoginName(f"not an address: {text!r}")
        return cls(local.lower(), domain.lower().rstrip("."))


def full_name(login: str, connection_domain: str) -> FullName:
    """The full name for a login name given the domain of the connection."""
    name = login.strip()
    if not name or any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise BadLoginName("empty login name or control characters")
    if "@" not in name and "%" in name:
        local, _, domain = name.rpartition("%")
        name = f"{local}@{domain}"
    return FullName.parse(name, connection_domain)
