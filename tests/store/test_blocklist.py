"""XEP-0191 block lists: stored items and the JID matching rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from communigate.protocols.xmpp.jid import block_candidates
from communigate.store import blocklist, settingsformat
from communigate.store.blocklist import BlockList, BlockListFull


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_empty(tmp_path: Path) -> None:
    """A new account blocks nobody and has no file."""
    blocks = BlockList(tmp_path)
    assert blocks.items() == []
    assert not blocks.blocks(block_candidates("romeo@example.net"))
    assert not (tmp_path / "blocklist.settings").exists()


def test_block_and_unblock(tmp_path: Path) -> None:
    """block() adds new JIDs in order; unblock() removes the named ones."""
    blocks = BlockList(tmp_path)
    assert blocks.block(["a@example.com", "b@example.com", "a@example.com"]) == [
        "a@example.com",
        "b@example.com",
    ]
    assert blocks.block(["b@example.com", "c@example.com"]) == ["c@example.com"]
    assert blocks.items() == ["a@example.com", "b@example.com", "c@example.com"]
    assert blocks.unblock(["b@example.com", "z@example.com"]) == ["b@example.com"]
    assert BlockList(tmp_path).items() == ["a@example.com", "c@example.com"]


def test_unblock_all(tmp_path: Path) -> None:
    """unblock(None) empties the list and returns what was on it."""
    blocks = BlockList(tmp_path)
    blocks.block(["a@example.com", "example.org"])
    assert blocks.unblock() == ["a@example.com", "example.org"]
    assert blocks.items() == []
    assert blocks.unblock(None) == []


def test_file_syntax(tmp_path: Path) -> None:
    """The file is a settings dictionary with an Items array."""
    BlockList(tmp_path).block(["a@example.com/Home Office"])
    settings = settingsformat.loads_dictionary((tmp_path / "blocklist.settings").read_text())
    assert settings == {"Items": ["a@example.com/Home Office"]}


@pytest.mark.parametrize(
    ("item", "blocked", "free"),
    [
        (
            "romeo@example.net/orchard",
            ["romeo@example.net/orchard"],
            ["romeo@example.net", "romeo@example.net/garden", "example.net"],
        ),
        (
            "romeo@example.net",
            ["romeo@example.net", "romeo@example.net/orchard"],
            ["mercutio@example.net", "example.net", "example.net/orchard"],
        ),
        (
            "example.net/orchard",
            ["example.net/orchard"],
            ["example.net", "romeo@example.net/orchard", "example.net/garden"],
        ),
        (
            "example.net",
            ["example.net", "example.net/x", "romeo@example.net", "romeo@example.net/x"],
            ["example.org", "romeo@example.org", "sub.example.net"],
        ),
    ],
)
def test_matching_rules(tmp_path: Path, item: str, blocked: list[str], free: list[str]) -> None:
    """Each item form blocks exactly the JIDs XEP-0016 §2.1 says."""
    blocks = BlockList(tmp_path)
    blocks.block([item])
    for jid in blocked:
        assert blocks.blocks(block_candidates(jid)), jid
    for jid in free:
        assert not blocks.blocks(block_candidates(jid)), jid


def test_candidates() -> None:
    """The items that could block a JID, most specific first; none for garbage."""
    assert block_candidates("a@b/c") == ("a@b/c", "a@b", "b")
    assert block_candidates("a@b") == ("a@b", "b")
    assert block_candidates("b/c") == ("b/c", "b")
    assert block_candidates("b") == ("b",)
    assert block_candidates("a@b/") == ()


def test_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocking past MAX_ITEMS refuses the whole request."""
    monkeypatch.setattr(blocklist, "MAX_ITEMS", 2)
    blocks = BlockList(tmp_path)
    blocks.block(["a@x"])
    with pytest.raises(BlockListFull):
        blocks.block(["b@x", "c@x"])
    assert blocks.items() == ["a@x"]
    assert blocks.block(["a@x", "b@x"]) == ["b@x"]


def test_change_by_another_process_is_seen(tmp_path: Path) -> None:
    """A list changed by another writer is seen after the recheck interval."""
    clock = FakeClock()
    blocks = BlockList(tmp_path, clock)
    assert not blocks.blocks(block_candidates("a@x"))
    BlockList(tmp_path).block(["a@x"])
    clock.now += 1
    assert blocks.blocks(block_candidates("a@x"))
    BlockList(tmp_path).unblock(["a@x"])
    clock.now += 1
    assert not blocks.blocks(block_candidates("a@x"))


def test_deleted_account_is_not_recreated(tmp_path: Path) -> None:
    """Blocking for an account whose folder is gone fails."""
    with pytest.raises(FileNotFoundError):
        BlockList(tmp_path / "gone.macnt").block(["a@x"])
    assert not (tmp_path / "gone.macnt").exists()
