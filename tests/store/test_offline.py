"""Offline messages: one durable file each, oldest first, bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from communigate.store.offline import OfflineStore


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An account's folder."""
    account = tmp_path / "juliet.macnt"
    account.mkdir()
    return account


def test_empty_store(folder: Path) -> None:
    """An account with no offline folder has nothing stored and creates nothing."""
    store = OfflineStore(folder)
    assert store.count() == 0
    assert store.size() == 0
    assert store.take() == []
    assert store.peek() == []
    assert not (folder / "offline").exists()


def test_add_then_take_oldest_first(folder: Path) -> None:
    """take() returns the stanzas in the order they were added and removes them."""
    store = OfflineStore(folder)
    stanzas = [f"<message id='{n}'/>".encode() for n in range(12)]
    for stanza in stanzas:
        assert store.add(stanza)
    assert store.count() == 12
    assert store.peek() == stanzas
    assert store.take() == stanzas
    assert store.count() == 0
    assert store.take() == []


def test_one_private_file_per_message(folder: Path) -> None:
    """Each stanza is its own file in offline/, private, with no temporaries left."""
    store = OfflineStore(folder)
    store.add(b"<message>one</message>")
    store.add(b"<message>two</message>")
    files = sorted((folder / "offline").iterdir())
    assert [path.read_bytes() for path in files] == [
        b"<message>one</message>",
        b"<message>two</message>",
    ]
    assert all(os.stat(path).st_mode & 0o077 == 0 for path in files)
    assert os.stat(folder / "offline").st_mode & 0o077 == 0


def test_numbering_continues_after_take(folder: Path) -> None:
    """Stanzas added after a partial history still come out in order."""
    store = OfflineStore(folder)
    store.add(b"1")
    store.take()
    store.add(b"2")
    store.add(b"3")
    assert OfflineStore(folder).take() == [b"2", b"3"]


def test_bound_on_messages(folder: Path) -> None:
    """Past the message bound add() refuses and stores nothing."""
    store = OfflineStore(folder, max_messages=3)
    assert all(store.add(b"x") for _ in range(3))
    assert not store.add(b"x")
    assert store.count() == 3


def test_bound_on_bytes(folder: Path) -> None:
    """Past the byte bound add() refuses; a smaller stanza may still fit."""
    store = OfflineStore(folder, max_bytes=10)
    assert store.add(b"123456")
    assert not store.add(b"12345")
    assert store.add(b"1234")
    assert store.size() == 10
    assert not store.add(b"1")


def test_default_bounds() -> None:
    """The defaults are 1000 messages and 10 MB."""
    store = OfflineStore(Path("/nonexistent"))
    assert (store.max_messages, store.max_bytes) == (1000, 10 * 1024 * 1024)


def test_foreign_files_ignored(folder: Path) -> None:
    """Temporaries and other names in offline/ are neither counted nor taken."""
    store = OfflineStore(folder)
    store.add(b"real")
    (folder / "offline" / ".0000000002.xml.123.tmp").write_bytes(b"half")
    (folder / "offline" / "notes.txt").write_bytes(b"x")
    assert store.count() == 1
    assert store.take() == [b"real"]
    assert (folder / "offline" / "notes.txt").exists()


def test_order_is_numeric(folder: Path) -> None:
    """Order follows the sequence number, not the text of the name."""
    (folder / "offline").mkdir()
    (folder / "offline" / "10.xml").write_bytes(b"ten")
    (folder / "offline" / "9.xml").write_bytes(b"nine")
    store = OfflineStore(folder)
    store.add(b"eleven")
    assert store.take() == [b"nine", b"ten", b"eleven"]


def test_deleted_account_is_not_recreated(tmp_path: Path) -> None:
    """Adding for an account whose folder is gone fails without making it."""
    with pytest.raises(FileNotFoundError):
        OfflineStore(tmp_path / "gone.macnt").add(b"x")
    assert not (tmp_path / "gone.macnt").exists()


def test_stored_then_forgotten(folder: Path) -> None:
    """``any`` says cheaply whether something may be stored; ``stored``
    reads every stanza (oldest first) without removing it; ``forget``
    removes the delivered ones only."""
    store = OfflineStore(folder)
    assert not store.any()
    (folder / "offline").mkdir()
    (folder / "offline" / "notes.txt").write_bytes(b"not a stanza")
    assert not store.any()
    for text in (b"<m>1</m>", b"<m>2</m>", b"<m>3</m>"):
        store.add(text)
    assert store.any()
    found: list[tuple[Path, bytes]] = []
    store.stored().addCallback(found.extend)
    assert [data for _, data in found] == [b"<m>1</m>", b"<m>2</m>", b"<m>3</m>"]
    assert store.count() == 3
    store.forget([path for path, _ in found[:2]])
    assert store.take() == [b"<m>3</m>"]
    assert not store.any()
