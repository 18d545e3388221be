"""TFTP names → File Storage files: one refusal for names of accounts,
full names in TFTPDefaultStorage."""

from __future__ import annotations

from pathlib import Path

import pytest

from communigate.portal.tftpfiles import Reason, Refused, TFTPFiles
from communigate.store.acl import Identity
from communigate.store.files import FileDirectory
from communigate.store.filestorage import FileStorage


def storage_of(directory: FileDirectory, domain: str, name: str) -> Path:
    """The File Storage folder of an account, created."""
    root = directory.account_path(domain, name) / "account.web"
    root.mkdir(parents=True, exist_ok=True)
    return root


def make_private(directory: FileDirectory, folder: str) -> None:
    """Mark a folder of info@company.com's storage private."""
    storage = FileStorage(
        directory.account_path("company.com", "info"), Identity("company.com", "info")
    )
    storage.set_access(folder, {"Private": "YES"})


def refusal(files: TFTPFiles, name: str, write: bool = False) -> tuple[Reason, str]:
    with pytest.raises(Refused) as raised:
        files.resolve(name, write)
    return raised.value.reason, str(raised.value)


@pytest.mark.parametrize("write", [False, True])
def test_named_accounts_refused_alike(directory: FileDirectory, write: bool) -> None:
    """~nosuch/x, ~info/x (missing), a private file, a foreign domain and an
    overlong name all get the same reason and text, read or write alike."""
    storage_of(directory, "company.com", "info")
    (storage_of(directory, "company.com", "info") / "private").mkdir()
    (storage_of(directory, "company.com", "info") / "private" / "x").write_text("x")
    directory.update_server_settings({"HideAccountUnknown": "NO"})
    files = TFTPFiles(directory)
    make_private(directory, "/private")
    answers = {
        refusal(files, name, write)
        for name in (
            "~nosuch/x",
            "~info/x",
            "~info/private/x",
            "/nosuch/dir/x",
            "/info/dir/x",
            "~info@client1.com/x",
            "~nosuch@client1.com/x",
            "~info@no-such-domain.org/x",
            "~" + "a" * 2000 + "/x",
            "~info/" + "b" * 300,
        )
    }
    assert len(answers) == 1
    expected = (
        (Reason.ACCESS_DENIED, "access denied") if write else (Reason.NOT_FOUND, "file not found")
    )
    assert answers == {expected}


def test_refusal_keeps_the_cause_for_the_log(directory: FileDirectory) -> None:
    """The client text hides the cause; ``detail`` keeps it for the log."""
    with pytest.raises(Refused) as raised:
        TFTPFiles(directory).resolve("~nosuch/x", False)
    assert str(raised.value) == "file not found"
    assert "nosuch@company.com" in raised.value.detail


def test_default_storage_full_name(directory: FileDirectory) -> None:
    """TFTPDefaultStorage=info@client1.com means that account, not
    info@client1.com@company.com; a bare name is in the Main Domain."""
    (storage_of(directory, "client1.com", "info") / "cfg.txt").write_text("one")
    (storage_of(directory, "company.com", "info") / "cfg.txt").write_text("main")
    files = TFTPFiles(directory)
    directory.update_server_settings({"TFTPDefaultStorage": "info@client1.com"})
    assert files.resolve("cfg.txt", False).local.read_text() == "one"
    assert files.resolve("/cfg.txt", False).local.read_text() == "one"
    directory.update_server_settings({"TFTPDefaultStorage": "info"})
    assert files.resolve("cfg.txt", False).local.read_text() == "main"


def test_default_storage_keeps_its_reasons(directory: FileDirectory) -> None:
    """Names in the Default Storage (no account named by the client) keep
    distinct reasons: missing file, private directory, escaping path."""
    root = storage_of(directory, "company.com", "info")
    (root / "private").mkdir()
    (root / "private" / "x").write_text("x")
    make_private(directory, "/private")
    directory.update_server_settings({"TFTPDefaultStorage": "info"})
    files = TFTPFiles(directory)
    assert refusal(files, "missing.txt")[0] is Reason.NOT_FOUND
    assert refusal(files, "private/x")[0] is Reason.ACCESS_DENIED
    assert refusal(files, "../../etc/passwd")[0] is Reason.ACCESS_DENIED
