"""``communigate check`` and the XMPP files kept in account folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from communigate.cli.main import main
from communigate.store import vcard
from communigate.store.blocklist import BlockList
from communigate.store.offline import OfflineStore
from communigate.store.roster import Roster, RosterItem
from tests.cli.test_main import run


@pytest.fixture
def account(tmp_path: Path) -> Path:
    """The folder of info@client1.com in an initialised base."""
    path = tmp_path / "base"
    args = ["--base", str(path), "init", "--main-domain", "company.com"]
    assert main([*args, "--postmaster-password", "pm"]) == 0
    assert run(path, "domain", "create", "client1.com") == 0
    assert run(path, "account", "create", "info@client1.com", "--password", "secret-pw") == 0
    return path / "Domains" / "client1.com" / "info.macnt"


def test_xmpp_files_pass_check(account: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A roster, block list, vCard and offline messages are no problem for check."""
    Roster.load(account).set(RosterItem("romeo@example.net", "Romeo", groups=("Friends",)))
    BlockList(account).block(["iago@example.net"])
    vcard.set(account, b"<vCard xmlns='vcard-temp'/>")
    OfflineStore(account).add(b"<message/>")
    capsys.readouterr()
    assert run(account.parents[2], "check") == 0
    assert "no problems" in capsys.readouterr().out


def test_broken_roster_reported(account: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A roster file that cannot be parsed is one problem line naming it."""
    (account / "roster.settings").write_text("{ Items = (")
    capsys.readouterr()
    assert run(account.parents[2], "check") == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Domains/client1.com/info.macnt/roster.settings: cannot be read")
