"""Mailbox names on disk: bounded parts, nothing half-created."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from communigate.store.mailbox import Mailbox
from communigate.store.mailstore import MailboxError, MailStore, canonical_name


def test_part_over_255_bytes_refused(tmp_path: Path) -> None:
    """A part whose folder name would pass 255 bytes is refused up front and
    nothing (not even the parent) is created."""
    store = MailStore(tmp_path)
    with pytest.raises(MailboxError, match="255"):
        store.create("Parent/" + "a" * 251)
    assert not (tmp_path / "Parent.mdir").exists()
    store.create("Parent/" + "a" * 250)
    assert (tmp_path / "Parent.mdir" / ("a" * 250 + ".mdir")).is_dir()


def test_multibyte_parts_count_bytes() -> None:
    """The limit counts UTF-8 bytes, not characters."""
    with pytest.raises(MailboxError):
        canonical_name("é" * 126)
    assert canonical_name("é" * 125) == "é" * 125


def test_undecodable_names_refused() -> None:
    """Names holding lone surrogates (undecodable bytes) are refused."""
    with pytest.raises(MailboxError):
        canonical_name("bad\udcff")


def test_failed_creation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the file system refuses a part, the parents made for it are removed."""
    store = MailStore(tmp_path)
    store.create("Old")
    real = Mailbox.create

    def refuse_deepest(mailbox: Mailbox) -> None:
        if mailbox.path.name == "x.mdir":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(mailbox)

    monkeypatch.setattr(Mailbox, "create", refuse_deepest)
    with pytest.raises(MailboxError, match="No space"):
        store.create("Old/New/Deeper/x")
    assert (tmp_path / "Old.mdir").is_dir()
    assert not (tmp_path / "Old.mdir" / "New.mdir").exists()
