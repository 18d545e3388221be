"""Feature modules of the XMPP server, one per feature (Prosody's model):
each registers handlers for what it owns on the :class:`~..hub.Hub`."""

from __future__ import annotations

from communigate.protocols.xmpp.hub import Hub


def load_all(hub: Hub) -> None:
    """Register every feature module on ``hub``."""
    from communigate.protocols.xmpp.modules import (
        blocking,
        carbons,
        disco,
        mam,
        offline,
        ping,
        presence,
        roster,
        smacks,
        vcard,
        version,
    )

    for module in (
        roster,
        presence,
        offline,
        blocking,
        carbons,
        mam,
        smacks,
        disco,
        ping,
        version,
        vcard,
    ):
        module.register(hub)
