"""Local delivery through the Router."""

from __future__ import annotations

import pytest

from communigate.portal.delivery import DeliveryError, deliver
from communigate.portal.names import FullName
from communigate.portal.router import Router
from communigate.store.directory import ObjectKind
from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox


def inbox_count(directory: FileDirectory, domain: str, name: str) -> int:
    return len(Mailbox.of_account(directory.account_path(domain, name)).messages())


def test_deliver_to_account_alias_and_group(directory: FileDirectory) -> None:
    """Accounts, aliases and group members each get the message once."""
    directory.add_object(ObjectKind.ALIAS, "client1.com", "boss", "info")
    directory.add_object(
        ObjectKind.GROUP, "client1.com", "team", {"Members": ["info", "boss", "j.smith"]}
    )
    router = Router(directory)
    assert deliver(directory, router, FullName("boss", "client1.com"), b"x") == ["info@client1.com"]
    delivered = deliver(directory, router, FullName("team", "client1.com"), b"y")
    assert delivered == ["info@client1.com", "j.smith@client1.com"]
    assert inbox_count(directory, "client1.com", "info") == 2


@pytest.mark.parametrize("address", ["nobody@company.com", "x@elsewhere.org"])
def test_undeliverable(directory: FileDirectory, address: str) -> None:
    """Unknown and remote addresses are refused."""
    with pytest.raises(DeliveryError):
        deliver(directory, Router(directory), FullName.parse(address, "x"), b"m")
