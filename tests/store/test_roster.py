"""The XMPP roster kept in an account's folder: items, versions, bounds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from communigate.store import roster as rostermodule
from communigate.store import settingsformat
from communigate.store.roster import Roster, RosterError, RosterFull, RosterItem


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An account's folder."""
    account = tmp_path / "juliet.macnt"
    account.mkdir()
    return account


def test_new_roster_is_empty(folder: Path) -> None:
    """An account without a roster file has an empty roster at version 0."""
    roster = Roster.load(folder)
    assert roster.items() == []
    assert roster.version == 0
    assert roster.get("romeo@example.net") is None
    assert not (folder / "roster.settings").exists()


def test_set_stores_and_versions(folder: Path) -> None:
    """set() stores an item, bumps the version and writes the file."""
    roster = Roster.load(folder)
    item = RosterItem("romeo@example.net", "Romeo", groups=("Friends",))
    assert roster.set(item) == 1
    assert roster.get("romeo@example.net") == item
    assert roster.version == 1
    assert (folder / "roster.settings").is_file()


def test_file_is_in_settings_syntax(folder: Path) -> None:
    """The file is a CommuniGate dictionary with the items' fields."""
    roster = Roster.load(folder)
    roster.set(RosterItem("romeo@example.net", "Romeo", "to", ask=False, pending_in=True))
    settings = settingsformat.loads_dictionary((folder / "roster.settings").read_text())
    assert settings["Version"] == 1
    assert settings["Items"] == [
        {
            "JID": "romeo@example.net",
            "Name": "Romeo",
            "Subscription": "to",
            "PendingIn": "YES",
            "Version": 1,
        }
    ]


def test_reload_round_trip(folder: Path) -> None:
    """Every field survives writing and reading back."""
    items = [
        RosterItem("a@example.com", 'A "quoted" name; {x}', "both", groups=("G 1", "Ω")),
        RosterItem("b@example.com", None, "none", ask=True, pending_in=True),
        RosterItem("c@example.com", subscription="from", approved=True, listed=False),
        RosterItem("d@xn--example.com/odd", "", "to"),
    ]
    roster = Roster.load(folder)
    for item in items:
        roster.set(item)
    again = Roster.load(folder)
    assert again.items() == items
    assert again.version == 4


def test_items_keep_insertion_order(folder: Path) -> None:
    """Replacing an item keeps its place in the order."""
    roster = Roster.load(folder)
    for name in ("a", "b", "c"):
        roster.set(RosterItem(f"{name}@example.com"))
    roster.set(RosterItem("a@example.com", "Alpha"))
    assert [item.jid for item in roster.items()] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]
    assert len(roster) == 3


def test_unchanged_set_keeps_version(folder: Path) -> None:
    """Setting an item to what it is already changes nothing."""
    roster = Roster.load(folder)
    roster.set(RosterItem("a@example.com", "A"))
    before = (folder / "roster.settings").stat().st_ino
    assert roster.set(RosterItem("a@example.com", "A")) == 1
    assert (folder / "roster.settings").stat().st_ino == before


def test_remove(folder: Path) -> None:
    """remove() drops the item and bumps the version; unknown JIDs change nothing."""
    roster = Roster.load(folder)
    roster.set(RosterItem("a@example.com"))
    assert roster.remove("a@example.com") == 2
    assert roster.get("a@example.com") is None
    assert roster.remove("a@example.com") == 2
    assert roster.remove("nobody@example.com") == 2


def test_changes_since(folder: Path) -> None:
    """changes_since() lists changed items and removals after a version, in order."""
    roster = Roster.load(folder)
    roster.set(RosterItem("a@example.com"))  # 1
    roster.set(RosterItem("b@example.com"))  # 2
    roster.set(RosterItem("c@example.com"))  # 3
    roster.remove("b@example.com")  # 4
    roster.set(RosterItem("a@example.com", "A"))  # 5
    assert roster.changes_since(5) == []
    assert roster.changes_since(3) == [
        RosterItem("b@example.com", subscription="remove"),
        RosterItem("a@example.com", "A"),
    ]
    assert [item.jid for item in roster.changes_since(0) or []] == [
        "c@example.com",
        "b@example.com",
        "a@example.com",
    ]


def test_changes_since_unknown_version(folder: Path) -> None:
    """A version from the future or below zero asks for the full roster."""
    roster = Roster.load(folder)
    roster.set(RosterItem("a@example.com"))
    assert roster.changes_since(2) is None
    assert roster.changes_since(-1) is None


def test_readding_clears_tombstone(folder: Path) -> None:
    """An item removed and added again is reported as present, not removed."""
    roster = Roster.load(folder)
    roster.set(RosterItem("a@example.com"))
    roster.remove("a@example.com")
    roster.set(RosterItem("a@example.com", "back"))
    assert roster.changes_since(1) == [RosterItem("a@example.com", "back")]


def test_forgotten_removals_make_old_versions_unknown(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the tombstone bound, versions before the forgotten removal get None."""
    monkeypatch.setattr(rostermodule, "MAX_REMOVED", 2)
    roster = Roster.load(folder)
    for name in "abc":
        roster.set(RosterItem(f"{name}@example.com"))  # 1..3
    roster.remove("a@example.com")  # 4
    roster.remove("b@example.com")  # 5
    assert roster.changes_since(0) is not None
    roster.remove("c@example.com")  # 6: forgets the removal at 4
    assert roster.changes_since(3) is None
    assert roster.changes_since(4) == [
        RosterItem("b@example.com", subscription="remove"),
        RosterItem("c@example.com", subscription="remove"),
    ]
    assert Roster.load(folder).changes_since(3) is None


def test_bound_on_items(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A roster refuses a new item past MAX_ITEMS but still replaces existing ones."""
    monkeypatch.setattr(rostermodule, "MAX_ITEMS", 2)
    roster = Roster.load(folder)
    roster.set(RosterItem("a@example.com"))
    roster.set(RosterItem("b@example.com"))
    with pytest.raises(RosterFull, match="2 items"):
        roster.set(RosterItem("c@example.com"))
    assert roster.set(RosterItem("a@example.com", "A")) == 3
    assert roster.get("c@example.com") is None
    assert issubclass(RosterFull, RosterError)


@pytest.mark.parametrize(
    "item",
    [
        RosterItem(""),
        RosterItem("a@example.com", subscription="remove"),
        RosterItem("a@example.com", subscription="sideways"),
        RosterItem("a@example.com", "n" * 1024),
        RosterItem("a@example.com", groups=("",)),
        RosterItem("a@example.com", groups=("g" * 1024,)),
        RosterItem("a@example.com", groups=("x", "x")),
        RosterItem("a@example.com", groups=tuple(str(n) for n in range(65))),
    ],
)
def test_invalid_items_refused(folder: Path, item: RosterItem) -> None:
    """Items that cannot be stored raise RosterError and leave no file."""
    roster = Roster.load(folder)
    with pytest.raises(RosterError):
        roster.set(item)
    assert not (folder / "roster.settings").exists()


def test_change_by_another_process_is_seen(folder: Path) -> None:
    """A file rewritten by someone else is read again (after the recheck interval)."""
    clock = FakeClock()
    roster = Roster.load(folder, clock)
    roster.set(RosterItem("a@example.com"))
    other = Roster.load(folder)
    other.set(RosterItem("b@example.com"))
    clock.now += 1
    assert [item.jid for item in roster.items()] == ["a@example.com", "b@example.com"]
    assert roster.version == 2


def test_write_starts_from_the_file_on_disk(folder: Path) -> None:
    """A change made right after another writer's never loses that writer's item."""
    clock = FakeClock()
    roster = Roster.load(folder, clock)
    roster.get("x@example.com")
    Roster.load(folder).set(RosterItem("b@example.com"))
    roster.set(RosterItem("a@example.com"))
    assert {item.jid for item in Roster.load(folder).items()} == {
        "a@example.com",
        "b@example.com",
    }


def test_update_changes_some_fields(folder: Path) -> None:
    """update() keeps the fields it is not given, and creates a missing item."""
    roster = Roster.load(folder)
    roster.update("a@example.com", name="A")
    roster.update("a@example.com", subscription="to", ask=False)
    assert roster.get("a@example.com") == RosterItem("a@example.com", "A", "to")


def test_deleted_account_is_not_recreated(tmp_path: Path) -> None:
    """Writing the roster of an account whose folder is gone fails."""
    roster = Roster.load(tmp_path / "gone.macnt")
    with pytest.raises(FileNotFoundError):
        roster.set(RosterItem("a@example.com"))
    assert not (tmp_path / "gone.macnt").exists()


def test_unreadable_file_raises(folder: Path) -> None:
    """A roster file that is not in the settings syntax raises ValueError."""
    (folder / "roster.settings").write_text("{ Items = ( ")
    with pytest.raises(ValueError, match="offset"):
        Roster.load(folder)


def test_malformed_entries_skipped(folder: Path) -> None:
    """Entries without a JID are skipped; odd fields fall back to defaults."""
    (folder / "roster.settings").write_text(
        '{Version = #3; Items = (x, {Name = y;}, {JID = "a@b"; Subscription = weird;'
        " Groups = g;}); Removed = (z, {JID = c@d; Version = #2;});}"
    )
    roster = Roster.load(folder)
    assert roster.items() == [RosterItem("a@b", groups=("g",))]
    assert roster.changes_since(1) == [
        RosterItem("c@d", subscription="remove"),
        RosterItem("a@b", groups=("g",)),
    ]


def test_written_atomically_private(folder: Path) -> None:
    """The file is private to the server's user and no temporary is left."""
    Roster.load(folder).set(RosterItem("a@example.com"))
    assert os.stat(folder / "roster.settings").st_mode & 0o077 == 0
    assert sorted(path.name for path in folder.iterdir()) == ["roster.settings"]


def test_versions_never_go_backwards(folder: Path) -> None:
    """A hand-edited file with items newer than its Version raises the version."""
    (folder / "roster.settings").write_text(
        "{Version = #1; Items = ({JID = a@b; Version = #7;});"
        " Removed = ({JID = c@d; Version = #9;});}"
    )
    roster = Roster.load(folder)
    assert roster.version == 9
    assert roster.set(RosterItem("e@f")) == 10
