"""The FTP shell over File Storage: rights, paths, quota."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.protocols import ftp

from communigate.protocols.ftp.shell import QuotaExceeded, StorageShell
from communigate.store.files import FileDirectory


def result_of(deferred: Any) -> Any:
    box: list[Any] = []
    deferred.addBoth(box.append)
    assert box
    return getattr(box[0], "value", box[0])


@pytest.fixture
def shell(directory: FileDirectory) -> StorageShell:
    return StorageShell(directory, "company.com", "info")


def test_quota_stops_an_upload(directory: FileDirectory, shell: StorageShell) -> None:
    """An upload over MaxWebSize fails with 552 and leaves nothing."""
    directory.update_account_settings("company.com", "info", {"MaxWebSize": "1k"})
    writer = result_of(shell.openForWriting(["big.bin"]))
    consumer = result_of(writer.receive())
    consumer.write(b"x" * 2000)
    error = result_of(writer.close())
    assert isinstance(error, QuotaExceeded) and error.errorCode == ftp.EXCEEDED_STORAGE_ALLOC
    assert not (shell.own.root / "big.bin").exists()
    assert list(shell.own.root.iterdir()) == []


def test_upload_within_quota_and_append(shell: StorageShell) -> None:
    """Uploads land whole; APPE adds to the end."""
    for data, append in ((b"one", False), (b"two", True)):
        shell.append = append
        writer = result_of(shell.openForWriting(["f.txt"]))
        result_of(writer.receive()).write(data)
        assert result_of(writer.close()) is None
    assert (shell.own.root / "f.txt").read_bytes() == b"onetwo"


def test_other_storage_needs_rights(directory: FileDirectory, shell: StorageShell) -> None:
    """Another account's storage is closed until granted; '..' never escapes."""
    other = StorageShell(directory, "client1.com", "info")
    (other.own.root / "f.txt").write_text("x")
    assert isinstance(result_of(shell.list(["~info@client1.com"])), ftp.PermissionDeniedError)
    other.own.set_access("/", {"Access": {"info@company.com": "r"}})
    assert result_of(shell.list(["~info@client1.com"]))[0][0] == "f.txt"
    writer = shell.openForWriting(["~info@client1.com", "g.txt"])
    assert isinstance(result_of(writer), ftp.PermissionDeniedError)
    assert isinstance(result_of(shell.list(["~nobody"])), ftp.FileNotFoundError)
