"""FileSession (rights, other accounts' storages, no harvesting) and the
uploads behind it (all or nothing, temporaries outside the storage, quota,
stale temporaries)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from communigate.portal.filesession import FileError, FileSession, IFileSession, Problem
from communigate.store import uploads
from communigate.store.files import FileDirectory
from communigate.store.temporaries import HOST
from communigate.store.uploads import UPLOADS, QuotaExceeded, Upload, remove_stale

OTHER = "~j.smith@client1.com"


@pytest.fixture
def me(directory: FileDirectory) -> FileSession:
    """info@company.com's session."""
    return FileSession(directory, "company.com", "info")


@pytest.fixture
def owner(directory: FileDirectory) -> FileSession:
    """j.smith@client1.com's session, with a file and a folder in the storage."""
    session = FileSession(directory, "client1.com", "j.smith")
    (session.own.root / "shared.txt").write_bytes(b"shared")
    (session.own.root / "folder").mkdir()
    return session


def put(session: FileSession, name: str, data: bytes) -> Path:
    """A file in the session's own storage."""
    path = session.own.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def refusal(call: Callable[[], Any]) -> FileError:
    """The FileError ``call`` raises."""
    with pytest.raises(FileError) as caught:
        call()
    return caught.value


def store(upload: Upload, *chunks: bytes) -> None:
    """Prepare, write and commit an upload."""
    upload.prepare()
    for chunk in chunks:
        upload.write(chunk)
    upload.commit()


def test_provides_interface(me: FileSession) -> None:
    """FileSession provides IFileSession; its own storage exists from the start."""
    assert verifyObject(IFileSession, me)
    assert me.own.root.is_dir()
    assert me.listing(()) == []


def test_own_storage_operations(me: FileSession) -> None:
    """MKD, listing, entry, download, rename, DELE and RMD in the own storage."""
    me.make_directory(("d",))
    put(me, "d/a.txt", b"hello")
    assert [(e.name, e.directory, e.size) for e in me.listing(("d",))] == [("a.txt", False, 5)]
    assert me.entry(("d", "a.txt")).size == 5
    assert me.entry(()).directory
    handle, size = me.open_download(("d", "a.txt"))
    with handle:
        assert (handle.read(), size) == (b"hello", 5)
    me.rename(("d", "a.txt"), ("b.txt",))
    assert not (me.own.root / "d" / "a.txt").exists()
    assert (me.own.root / "b.txt").read_bytes() == b"hello"
    assert refusal(lambda: me.remove_directory(("nosuch",))).problem is Problem.NOT_FOUND
    me.remove_directory(("d",))
    me.remove_file(("b.txt",))
    assert me.listing(()) == []


def test_listing_of_a_file_is_its_entry(me: FileSession) -> None:
    """Listing a file gives that one file's entry."""
    put(me, "one.txt", b"1")
    assert [entry.name for entry in me.listing(("one.txt",))] == ["one.txt"]


def test_failures_map_to_problems(me: FileSession) -> None:
    """Existing targets, non-empty folders, files as folders get their problems."""
    put(me, "d/x", b"x")
    assert refusal(lambda: me.make_directory(("d",))).problem is Problem.EXISTS
    assert refusal(lambda: me.remove_directory(("d",))).problem is Problem.NOT_EMPTY
    assert refusal(lambda: me.check_directory(("d", "x"))).problem is Problem.NOT_DIRECTORY
    assert refusal(lambda: me.check_directory(("nosuch",))).problem is Problem.NOT_FOUND
    assert refusal(lambda: me.open_download(("d",))).problem is Problem.IS_DIRECTORY
    assert refusal(lambda: me.rename(("nosuch",), ("y",))).problem is Problem.NOT_FOUND


# -- harvesting and rights ------------------------------------------------------------------


OPERATIONS: dict[str, Callable[[FileSession, str], Any]] = {
    "check_directory": lambda s, top: s.check_directory((top,)),
    "listing": lambda s, top: s.listing((top,)),
    "entry": lambda s, top: s.entry((top,)),
    "entry-inside": lambda s, top: s.entry((top, "shared.txt")),
    "download": lambda s, top: s.open_download((top, "shared.txt")),
    "make_directory": lambda s, top: s.make_directory((top, "new")),
    "remove_file": lambda s, top: s.remove_file((top, "shared.txt")),
    "remove_directory": lambda s, top: s.remove_directory((top, "folder")),
    "upload": lambda s, top: s.open_upload((top, "up.txt")),
    "rename": lambda s, top: s.rename((top, "shared.txt"), (top, "moved.txt")),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_unknown_and_unshared_accounts_look_alike(
    me: FileSession, owner: FileSession, operation: str
) -> None:
    """Unknown and unshared ~accounts give the same NOT_FOUND FileError."""
    run = OPERATIONS[operation]
    errors = [
        refusal(functools.partial(run, me, top))
        for top in (OTHER, "~nosuch", "~nosuch@client1.com", "~info@nosuch.example", "~")
    ]
    assert {(error.problem, error.text, str(error)) for error in errors} == {
        (Problem.NOT_FOUND, Problem.NOT_FOUND.value, Problem.NOT_FOUND.value)
    }
    assert (owner.own.root / "shared.txt").read_bytes() == b"shared"
    assert (owner.own.root / "folder").is_dir()


def test_missing_file_in_shared_storage_looks_like_an_unknown_account(
    me: FileSession, owner: FileSession
) -> None:
    """With r granted, a missing file gives the same text as an unknown account."""
    owner.own.set_access("/", {"Access": {"info@company.com": "r"}})
    missing = refusal(lambda: me.entry((OTHER, "missing.txt")))
    unknown = refusal(lambda: me.entry(("~nosuch", "missing.txt")))
    assert (missing.problem, missing.text) == (unknown.problem, unknown.text)


def test_read_right_allows_reading_only(me: FileSession, owner: FileSession) -> None:
    """'r' lists and downloads; changes are DENIED (not hidden: the files can be seen)."""
    owner.own.set_access("/", {"Access": {"info@company.com": "r"}})
    me.check_directory((OTHER,))
    assert [entry.name for entry in me.listing((OTHER,))] == ["folder", "shared.txt"]
    handle, _ = me.open_download((OTHER, "shared.txt"))
    with handle:
        assert handle.read() == b"shared"
    for operation in ("make_directory", "remove_file", "remove_directory", "upload", "rename"):
        error = refusal(functools.partial(OPERATIONS[operation], me, OTHER))
        assert error.problem is Problem.DENIED, operation
    assert (owner.own.root / "shared.txt").read_bytes() == b"shared"


def test_write_right_allows_changes(me: FileSession, owner: FileSession) -> None:
    """'rw' lets another account upload, rename and delete in the storage."""
    owner.own.set_access("/", {"Access": {"info@company.com": "rw"}})
    store(me.open_upload((OTHER, "up.txt")), b"from info")
    assert (owner.own.root / "up.txt").read_bytes() == b"from info"
    me.rename((OTHER, "up.txt"), (OTHER, "folder", "up.txt"))
    me.remove_file((OTHER, "folder", "up.txt"))
    assert sorted(os.listdir(owner.own.root)) == ["folder", "shared.txt"]


def test_private_directory_is_hidden(me: FileSession, owner: FileSession) -> None:
    """A private directory is NOT_FOUND for others, even with rights on '/'."""
    owner.own.set_access("/", {"Access": {"info@company.com": "rw"}})
    owner.own.set_access("/folder", {"Private": "YES"})
    put(owner, "folder/secret.txt", b"secret")
    for call in (
        lambda: me.listing((OTHER, "folder")),
        lambda: me.open_download((OTHER, "folder", "secret.txt")),
        lambda: me.remove_file((OTHER, "folder", "secret.txt")),
    ):
        assert refusal(call).problem is Problem.NOT_FOUND


def test_renaming_a_private_directory_does_not_expose_it(
    me: FileSession, owner: FileSession
) -> None:
    """A private folder renamed by another account stays private."""
    owner.own.set_access("/", {"Access": {"info@company.com": "rw"}})
    owner.own.set_access("/folder", {"Private": "YES"})
    put(owner, "folder/secret.txt", b"secret")
    me.rename((OTHER, "folder"), (OTHER, "public"))
    assert refusal(lambda: me.listing((OTHER, "public"))).problem is Problem.NOT_FOUND
    secret = (OTHER, "public", "secret.txt")
    assert refusal(lambda: me.open_download(secret)).problem is Problem.NOT_FOUND
    handle, _ = owner.open_download(("public", "secret.txt"))
    with handle:
        assert handle.read() == b"secret"


def test_storage_roots_cannot_be_removed(me: FileSession, owner: FileSession) -> None:
    """RMD of the own root or of a shared storage's root is refused."""
    assert refusal(lambda: me.remove_directory(())).problem is Problem.DENIED
    owner.own.set_access("/", {"Access": {"info@company.com": "rw"}})
    assert refusal(lambda: me.remove_directory((OTHER,))).problem is Problem.DENIED
    assert refusal(lambda: me.rename((), ("x",))).problem is Problem.DENIED
    assert me.own.root.is_dir() and owner.own.root.is_dir()


def test_dele_of_a_directory_is_refused(me: FileSession) -> None:
    """DELE of a directory is IS_DIRECTORY and leaves it in place."""
    put(me, "d/inside.txt", b"x")
    assert refusal(lambda: me.remove_file(("d",))).problem is Problem.IS_DIRECTORY
    assert (me.own.root / "d" / "inside.txt").is_file()


def test_rename_across_storages_is_refused(me: FileSession, owner: FileSession) -> None:
    """Files do not move between storages, in either direction."""
    owner.own.set_access("/", {"Access": {"info@company.com": "rw"}})
    put(me, "mine.txt", b"mine")
    error = refusal(lambda: me.rename(("mine.txt",), (OTHER, "mine.txt")))
    assert error.problem is Problem.DENIED
    assert refusal(lambda: me.rename((OTHER, "shared.txt"), ("x.txt",))).problem is Problem.DENIED
    assert (me.own.root / "mine.txt").read_bytes() == b"mine"
    assert (owner.own.root / "shared.txt").read_bytes() == b"shared"
    assert not (owner.own.root / "mine.txt").exists()


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.check_directory(("a" * 300,)),
        lambda s: s.listing(("a" * 300,)),
        lambda s: s.remove_file(("a" * 300,)),
        lambda s: s.open_upload(("a" * 300,)),
        lambda s: s.check_directory(("~" + "a" * 300,)),
    ],
    ids=["check_directory", "listing", "remove_file", "open_upload", "other-account"],
)
def test_overlong_name_is_a_file_error(me: FileSession, call: Callable[[FileSession], Any]) -> None:
    """A 300-character name is a FileError (like MKD's INVALID), not an OSError."""
    with pytest.raises(FileError):
        call(me)


# -- uploads -----------------------------------------------------------------------------


def uploads_folder(session: FileSession) -> Path:
    return session.own.account_path / UPLOADS


def test_upload_commit_replaces_the_file(me: FileSession) -> None:
    """A committed upload replaces the old content; no temporary remains."""
    target = put(me, "f.txt", b"old content")
    store(me.open_upload(("f.txt",)), b"new ", b"content")
    assert target.read_bytes() == b"new content"
    assert os.listdir(uploads_folder(me)) == []


def test_upload_abort_keeps_the_old_file(me: FileSession) -> None:
    """An aborted upload leaves the old file untouched and no temporary behind."""
    target = put(me, "f.txt", b"old content")
    upload = me.open_upload(("f.txt",))
    upload.prepare()
    upload.write(b"half")
    assert upload.temporary.is_file()
    upload.abort()
    upload.abort()
    assert target.read_bytes() == b"old content"
    assert os.listdir(uploads_folder(me)) == []


def test_aborted_new_file_does_not_appear(me: FileSession) -> None:
    """An aborted upload of a new file leaves no file in the storage."""
    upload = me.open_upload(("new.txt",))
    upload.prepare()
    upload.write(b"x")
    upload.abort()
    assert me.listing(()) == []


def test_temporaries_live_outside_the_storage(me: FileSession) -> None:
    """Temporaries are in <account>.macnt/uploads.tmp, unseen by the storage."""
    upload = me.open_upload(("big.bin",))
    upload.prepare()
    upload.write(b"x" * 1000)
    temporary = upload.temporary
    assert temporary.parent == me.own.account_path / "uploads.tmp"
    assert me.own.account_path.name.endswith(".macnt")
    assert me.own.root not in temporary.parents
    assert temporary.name.startswith(f"{HOST}.{os.getpid()}.")
    assert me.listing(()) == [] and me.own.usage() == 0
    upload.commit()
    assert me.own.usage() == 1000 and not temporary.exists()


def test_rest_keeps_the_prefix(me: FileSession) -> None:
    """STOR after REST n keeps the first n bytes of the old file."""
    target = put(me, "f.txt", b"0123456789")
    store(me.open_upload(("f.txt",), offset=4), b"XY")
    assert target.read_bytes() == b"0123XY"


def test_rest_past_the_end_keeps_the_whole_file(me: FileSession) -> None:
    """A REST offset past the end keeps the old file whole (never pads)."""
    target = put(me, "f.txt", b"0123")
    store(me.open_upload(("f.txt",), offset=100), b"XY")
    assert target.read_bytes() == b"0123XY"


def test_appe_keeps_the_whole_file(me: FileSession) -> None:
    """APPE appends to the old content; APPE of a missing file creates it."""
    target = put(me, "f.txt", b"0123456789")
    store(me.open_upload(("f.txt",), append=True), b"XY")
    assert target.read_bytes() == b"0123456789XY"
    store(me.open_upload(("g.txt",), append=True), b"new")
    assert (me.own.root / "g.txt").read_bytes() == b"new"


def test_aborted_resume_keeps_the_old_file(me: FileSession) -> None:
    """An aborted APPE leaves the old file exactly as it was."""
    target = put(me, "f.txt", b"0123456789")
    upload = me.open_upload(("f.txt",), append=True)
    upload.prepare()
    upload.write(b"XY")
    upload.abort()
    assert target.read_bytes() == b"0123456789"


def test_upload_refusals(me: FileSession) -> None:
    """Uploads onto a folder or into a missing folder are refused."""
    put(me, "d/x", b"x")
    assert refusal(lambda: me.open_upload(("d",))).problem is Problem.IS_DIRECTORY
    assert refusal(lambda: me.open_upload(("nosuch", "f"))).problem is Problem.NOT_FOUND
    assert refusal(lambda: me.open_upload(())).problem is Problem.DENIED


def test_quota_stops_the_upload(directory: FileDirectory, me: FileSession) -> None:
    """Past MaxWebSize, write raises QuotaExceeded and writes nothing of that chunk."""
    directory.update_account_settings("company.com", "info", {"MaxWebSize": "100"})
    put(me, "other.bin", b"o" * 40)
    upload = me.open_upload(("f.bin",))
    upload.prepare()
    assert upload.limit == 60
    upload.write(b"x" * 50)
    with pytest.raises(QuotaExceeded):
        upload.write(b"x" * 11)
    assert upload.size == 50
    upload.write(b"x" * 10)
    upload.abort()
    assert not (me.own.root / "f.bin").exists()


def test_quota_does_not_count_the_replaced_file(directory: FileDirectory, me: FileSession) -> None:
    """Replacing a file may use the space the old version takes."""
    directory.update_account_settings("company.com", "info", {"MaxWebSize": "100"})
    put(me, "f.bin", b"o" * 90)
    store(me.open_upload(("f.bin",)), b"n" * 100)
    assert (me.own.root / "f.bin").stat().st_size == 100


def test_quota_of_the_storage_owner_applies(
    directory: FileDirectory, me: FileSession, owner: FileSession
) -> None:
    """An upload into another account's storage counts against that account's quota."""
    directory.update_account_settings("client1.com", "j.smith", {"MaxWebSize": "10"})
    owner.own.set_access("/", {"Access": {"info@company.com": "rw"}})
    upload = me.open_upload((OTHER, "f.bin"))
    upload.prepare()
    with pytest.raises(QuotaExceeded):
        upload.write(b"x" * 5)  # 'shared' already takes 6 bytes
    upload.abort()


# -- stale temporaries ----------------------------------------------------------------------


def dead_pid() -> int:
    """A process id no process has now."""
    limit = int(Path("/proc/sys/kernel/pid_max").read_text()) if os.path.exists("/proc") else 99999
    for pid in range(limit - 1, 1, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise AssertionError("no free process id")


def test_remove_stale(me: FileSession) -> None:
    """remove_stale deletes this host's temporaries of dead processes only."""
    folder = uploads_folder(me)
    folder.mkdir()
    dead = f"{HOST}.{dead_pid()}.0123abcd"
    live = f"{HOST}.{os.getppid()}.4567ef01"
    other_host = f"{HOST}x.{dead_pid()}.89ab"
    odd = f"{HOST}.notapid.cdef"
    for name in (dead, live, other_host, odd):
        (folder / name).write_bytes(b"partial")
    assert remove_stale(me.own.account_path) == 1
    assert sorted(os.listdir(folder)) == sorted([live, other_host, odd])


def test_remove_stale_without_folder(me: FileSession) -> None:
    """An account that never uploaded has nothing stale."""
    assert remove_stale(me.own.account_path) == 0


def test_remove_stale_everywhere(directory: FileDirectory, me: FileSession) -> None:
    """remove_stale_everywhere visits every account of every domain."""
    folder = uploads_folder(me)
    folder.mkdir()
    (folder / f"{HOST}.{dead_pid()}.x").write_bytes(b"")
    other = directory.account_path("client2.com", "info") / UPLOADS
    other.mkdir(parents=True)
    (other / f"{HOST}.{dead_pid()}.y").write_bytes(b"")
    assert uploads.remove_stale_everywhere(directory) == 2


@pytest.mark.parametrize(("pid", "removed"), [("99999999999999999999", 1), ("\u00b2", 0)])
def test_remove_stale_ignores_odd_pids(me: FileSession, pid: str, removed: int) -> None:
    """A pid no process can have is stale; a pid field that is no number is
    skipped; neither crashes the start-up sweep."""
    folder = uploads_folder(me)
    folder.mkdir()
    (folder / f"{HOST}.{pid}.x").write_bytes(b"")
    assert remove_stale(me.own.account_path) == removed
