"""CachedFile: the parsed content of a file, re-read when it changes."""

from __future__ import annotations

from pathlib import Path

from communigate.store.filecache import CachedFile


def test_a_reader_during_a_read_never_gets_the_value_from_before(tmp_path: Path) -> None:
    """A reader that comes while another is reading the file (a pool
    thread and the reactor at start-up) gets the file's content, never the
    empty value from before as if it had been checked."""
    path = tmp_path / "Main.settings"
    path.write_bytes(b"MainDomainName = company.com;")
    seen: list[str] = []

    def parse(data: bytes) -> str:
        if not seen:
            seen.append("")
            # Another reader comes in the middle of this read.
            seen.append(cached.get())
        return data.decode()

    cached: CachedFile[str] = CachedFile(path, parse, "", clock=lambda: 100.0)
    assert cached.get() == "MainDomainName = company.com;"
    assert seen[1] == "MainDomainName = company.com;"


def test_changes_are_seen_after_the_recheck_time(tmp_path: Path) -> None:
    """A change is seen once ``recheck`` seconds passed, not before; a
    removed file gives the missing value."""
    path = tmp_path / "file"
    path.write_bytes(b"one")
    now = [0.0]
    cached: CachedFile[str] = CachedFile(path, bytes.decode, "none", lambda: now[0], 0.5)
    assert cached.get() == "one"
    path.write_bytes(b"two!")
    assert cached.get() == "one"
    now[0] = 0.6
    assert cached.get() == "two!"
    path.unlink()
    now[0] = 1.2
    assert cached.get() == "none" and not cached.exists()
