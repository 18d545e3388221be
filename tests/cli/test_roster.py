"""``communigate roster show``: an account's XMPP roster as the store keeps it."""

from __future__ import annotations

import pytest

from communigate.cli.main import main
from communigate.store.files import FileDirectory
from communigate.store.roster import FILE_NAME, Roster, RosterItem


def test_roster_show(directory: FileDirectory, capsys: pytest.CaptureFixture[str]) -> None:
    """Each item is shown with its subscription, ask, name and groups."""
    roster = Roster(directory.account_path("company.com", "info") / FILE_NAME)
    roster.set(RosterItem("j.smith@client1.com", "John", "both", groups=("Work",)))
    roster.set(RosterItem("x@client2.com", ask=True))
    assert main(["--base", str(directory.base), "roster", "show", "info@company.com"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "roster of info@company.com: version 2, 2 items",
        "  j.smith@client1.com subscription=both name='John' groups=Work",
        "  x@client2.com subscription=none ask=subscribe",
    ]


def test_roster_of_unknown_account(directory: FileDirectory) -> None:
    """An account that does not exist is an error."""
    assert main(["--base", str(directory.base), "roster", "show", "nobody@company.com"]) == 1
