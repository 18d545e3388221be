"""A web site's storage as visitors read it: lookups stay inside the
storage whatever links it holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from communigate.portal.webfiles import SiteStorage
from communigate.store.acl import Identity
from communigate.store.filestorage import FileStorage, StorageError


@pytest.fixture
def site(tmp_path: Path) -> SiteStorage:
    """An account folder with a storage holding ``a/b.txt``, reached
    through a linked account path (as a base on a linked disk would be)."""
    real = tmp_path / "real" / "web.macnt"
    (real / "account.web" / "a").mkdir(parents=True)
    (real / "account.web" / "a" / "b.txt").write_bytes(b"b")
    (tmp_path / "outside.txt").write_bytes(b"secret")
    os.symlink(real.parent, tmp_path / "linked")
    return SiteStorage(tmp_path / "linked" / "web.macnt", Identity("d", "web"))


def test_plain_path_is_the_real_one(site: SiteStorage) -> None:
    """A path without links resolves under the real root."""
    found = site.local("/a/b.txt")
    assert found == Path(os.path.realpath(site.root)) / "a" / "b.txt"
    assert found.read_bytes() == b"b"
    assert site.local("/") == Path(os.path.realpath(site.root))
    assert site.local("/missing/x") == Path(os.path.realpath(site.root)) / "missing" / "x"


def test_link_out_of_the_storage_is_refused(site: SiteStorage, tmp_path: Path) -> None:
    """A link anywhere in the path that leads outside is refused."""
    os.symlink(tmp_path / "outside.txt", site.root / "a" / "out.txt")
    os.symlink(tmp_path, site.root / "up")
    for path in ("/a/out.txt", "/up/outside.txt"):
        with pytest.raises(StorageError):
            site.local(path)


def test_link_inside_the_storage_is_followed(site: SiteStorage) -> None:
    """A link to a file of the same storage is served."""
    os.symlink(site.root / "a" / "b.txt", site.root / "same.txt")
    assert site.local("/same.txt").read_bytes() == b"b"


def test_swapped_root_is_looked_up_afresh(site: SiteStorage, tmp_path: Path) -> None:
    """A root replaced by a link is not trusted from memory: the lookup is
    the full one of FileStorage (which follows the root to where it leads now)."""
    real_root = Path(os.path.realpath(site.root))
    real_root.rename(tmp_path / "moved")
    os.symlink(tmp_path, real_root)
    fresh = FileStorage(site.account_path, site.owner)
    assert site.local("/outside.txt") == fresh.local("/outside.txt")
