"""The account's vCard (XEP-0054): stored as sent, atomically, bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from communigate.store import vcard


def test_missing_vcard(tmp_path: Path) -> None:
    """An account without a vCard gets None."""
    assert vcard.get(tmp_path) is None


def test_set_then_get(tmp_path: Path) -> None:
    """The stored bytes come back unchanged, and a second set replaces them."""
    first = b"<vCard xmlns='vcard-temp'><FN>Juliet</FN></vCard>"
    vcard.set(tmp_path, first)
    assert vcard.get(tmp_path) == first
    vcard.set(tmp_path, b"<vCard xmlns='vcard-temp'/>")
    assert vcard.get(tmp_path) == b"<vCard xmlns='vcard-temp'/>"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["vcard.xml"]
    assert os.stat(tmp_path / "vcard.xml").st_mode & 0o077 == 0


def test_size_bound(tmp_path: Path) -> None:
    """A vCard over 64 KiB raises ValueError and leaves the old one."""
    vcard.set(tmp_path, b"<vCard/>")
    vcard.set(tmp_path, b"x" * vcard.MAX_SIZE)
    with pytest.raises(ValueError, match="larger than"):
        vcard.set(tmp_path, b"x" * (vcard.MAX_SIZE + 1))
    assert vcard.get(tmp_path) == b"x" * vcard.MAX_SIZE


def test_delete(tmp_path: Path) -> None:
    """delete() removes the vCard and is harmless without one."""
    vcard.set(tmp_path, b"<vCard/>")
    vcard.delete(tmp_path)
    vcard.delete(tmp_path)
    assert vcard.get(tmp_path) is None


def test_deleted_account_is_not_recreated(tmp_path: Path) -> None:
    """Setting the vCard of an account whose folder is gone fails."""
    with pytest.raises(FileNotFoundError):
        vcard.set(tmp_path / "gone.macnt", b"<vCard/>")
    assert not (tmp_path / "gone.macnt").exists()
