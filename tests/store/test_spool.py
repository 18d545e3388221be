"""Messages spooled to disk as they arrive, and delivered from the spool."""

from __future__ import annotations

import errno
import os
import re
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from communigate.store import spool as spool_module
from communigate.store.mailbox import Mailbox
from communigate.store.spool import CRLFWriter, MessageSpool, remove_stale, to_crlf


def whole(data: bytes) -> bytes:
    """The rule as the store applied it to a whole message."""
    data = re.sub(rb"\r?\n", b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([b"a", b".", b"\r", b"\n"]), max_size=40).map(b"".join),
    st.lists(st.integers(0, 40), max_size=6),
)
def test_chunks_give_the_whole_message_result(data: bytes, cuts: list[int]) -> None:
    """However the message is cut into chunks, the result, size and dot flag
    are those of converting it whole."""
    writer = CRLFWriter()
    edges = sorted({0, len(data), *(cut for cut in cuts if cut <= len(data))})
    out = b"".join(writer.feed(data[a:b]) for a, b in pairwise(edges))
    out += writer.finish()
    expected = whole(data)
    assert out == expected == to_crlf(data)
    assert writer.size == len(expected)
    assert writer.dot_free == (not expected.startswith(b".") and b"\n." not in expected)


def test_spool_finish_and_discard(tmp_path: Path) -> None:
    """A finished spool is on disk with its size; discarding removes the file."""
    spool = MessageSpool(tmp_path / "Spool")
    spool.write(b"Subject: a\n\n.dot")
    spool.write(b"ted\r")
    message = spool.finish()
    assert message.path.read_bytes() == b"Subject: a\r\n\r\n.dotted\r\r\n"
    assert message.size == len(message.path.read_bytes()) and not message.dot_free
    message.discard()
    assert list((tmp_path / "Spool").iterdir()) == []
    dropped = MessageSpool(tmp_path / "Spool")
    dropped.write(b"x")
    dropped.discard()
    assert list((tmp_path / "Spool").iterdir()) == []
    with pytest.raises(FileNotFoundError):
        dropped.finish()


def test_write_error_is_raised_at_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing write (full disk) drops the file and is reported by finish, not write."""
    spool = MessageSpool(tmp_path)

    class Full:
        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            pass

    monkeypatch.setattr(spool, "_file", Full())
    spool.write(b"data")
    spool.write(b"more")
    with pytest.raises(OSError, match="No space"):
        spool.finish()
    assert not spool.path.exists()


def test_delivery_links_one_spool_into_many_mailboxes(tmp_path: Path) -> None:
    """One spooled message is linked into each mailbox; discarding the spool keeps them."""
    spool = MessageSpool(tmp_path / "Spool")
    spool.write(b"Subject: big\n\nbody\n")
    message = spool.finish()
    for account in ("a", "b"):
        (tmp_path / f"{account}.macnt").mkdir()
    first = Mailbox(tmp_path / "a.macnt" / "INBOX.mdir")
    second = Mailbox(tmp_path / "b.macnt" / "INBOX.mdir")
    assert first.deliver(message) == 1
    assert second.append(message, ["\\Seen"], 1_000_000) == 1
    message.discard()
    (info,) = first.messages()
    assert first.read(info) == b"Subject: big\r\n\r\nbody\r\n"
    assert info.size == message.size and info.dot_free
    (other,) = second.messages()
    assert other.flags == {"\\Seen"} and second.read(other) == first.read(info)


def test_delivery_copies_where_linking_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Across file systems (EXDEV) the message is copied instead of linked."""
    spool = MessageSpool(tmp_path / "Spool")
    spool.write(b"x\n")
    message = spool.finish()

    def cannot(source: object, target: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(spool_module.os, "link", cannot)
    (tmp_path / "c.macnt").mkdir()
    box = Mailbox(tmp_path / "c.macnt" / "INBOX.mdir")
    box.deliver(message)
    message.discard()
    (info,) = box.messages()
    assert box.read(info) == b"x\r\n" and os.stat(info.path).st_nlink == 1


def test_remove_stale_keeps_live_processes(tmp_path: Path) -> None:
    """Spool files of dead processes of this host go; live and foreign ones stay."""
    live = MessageSpool(tmp_path)
    host = live.path.name.split(".")[0]
    dead = tmp_path / f"{host}.{2**22 + 5}.abc"
    dead.write_bytes(b"half")
    foreign = tmp_path / "otherhost.1.abc"
    foreign.write_bytes(b"theirs")
    assert remove_stale(tmp_path) == 1
    assert live.path.exists() and foreign.exists() and not dead.exists()
    live.discard()
    assert remove_stale(tmp_path / "missing") == 0
