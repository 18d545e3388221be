"""IDLE and NOOP by notification, keywords announced before use, FETCH of
messages another session expunged, half-closed connections and logins
abandoned by the client — through StringTransport and Clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import provider

from communigate.portal.checker import AccountChecker
from communigate.protocols.imap4.expunged import ExpungedFiles
from communigate.protocols.imap4.selected import SelectedMailbox
from communigate.protocols.imap4.server import IMAP4Factory, IMAP4Server
from communigate.store.changes import ChangeBus, EventSink, MailboxNotifier, mailbox_key
from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox, MessageInfo
from tests.conftest import Exchange, login_service
from tests.store.test_changes import FakeWatch


class Holder:
    """Something that can hold a mailbox open (weakly referenced)."""


class Session(Exchange):
    """An IMAP server on a StringTransport, with its own Clock."""

    def __init__(
        self,
        directory: FileDirectory,
        changes: MailboxNotifier | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.service = login_service(directory)
        self.clock = clock if clock is not None else Clock()
        factory = IMAP4Factory(self.service, self.clock, changes=changes)
        server = factory.buildProtocol(IPv4Address("TCP", "127.0.0.9", 4000))
        assert isinstance(server, IMAP4Server)
        self.server = server
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 143),
            peerAddress=IPv4Address("TCP", "127.0.0.9", 4000),
        )
        self.server.makeConnection(self.transport)
        self.take()

    def selected(self) -> SelectedMailbox:
        assert self.server.selected is not None
        return self.server.selected


@pytest.fixture
def inbox(directory: FileDirectory) -> Mailbox:
    box = Mailbox.of_account(directory.account_path("company.com", "info"))
    box.deliver(b"Subject: one\r\n\r\nfirst body\r\n")
    return box


def open_inbox(session: Session) -> None:
    assert b"a OK" in session.send(b"a LOGIN info pw-company.com\r\n")
    assert b"s OK" in session.send(b"s SELECT INBOX\r\n")


def lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\r\n") if line]


# -- IDLE -------------------------------------------------------------------


def test_idle_lists_nothing_until_a_change(
    directory: FileDirectory, inbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idling session looks at nothing while its mailbox is quiet (no
    refresh in a minute) and reports a delivery made in this process on the
    next reactor turn."""
    session = Session(directory)
    open_inbox(session)
    assert session.send(b"i IDLE\r\n") == b"+ idling\r\n"
    looked: list[bool] = []
    original = SelectedMailbox.refresh

    def counting(self: SelectedMailbox, *args: Any, **kwargs: Any) -> list[bytes]:
        looked.append(True)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SelectedMailbox, "refresh", counting)
    for _ in range(60):
        session.clock.advance(1)
    assert looked == [] and session.take() == b""
    inbox.deliver(b"Subject: two\r\n\r\nsecond\r\n")
    assert session.take() == b""
    session.clock.advance(0)
    assert lines(session.take()) == [b"* 2 EXISTS", b"* 2 RECENT"]
    assert session.send(b"DONE\r\n") == b"i OK IDLE terminated\r\n"


def test_idle_hears_another_process_through_the_kernel(
    directory: FileDirectory, inbox: Mailbox
) -> None:
    """A change the kernel watch reports (another process's) is sent at
    once; the watch ends with DONE."""
    made: list[FakeWatch] = []

    def kernel(sink: EventSink) -> FakeWatch:
        made.append(FakeWatch(sink))
        return made[-1]

    clock = Clock()
    # A bus of its own: this notifier hears nothing from this process.
    notifier = MailboxNotifier(clock, kernel=kernel, bus=ChangeBus())
    session = Session(directory, notifier, clock)
    open_inbox(session)
    session.send(b"i IDLE\r\n")
    [watch] = made
    key = mailbox_key(inbox.path)
    assert watch.watched == {key}
    inbox.deliver(b"Subject: two\r\n\r\nsecond\r\n")
    clock.advance(0)
    assert session.take() == b""
    watch.sink.changed(key)
    clock.advance(0)
    assert b"* 2 EXISTS" in session.take()
    session.send(b"DONE\r\n")
    # Watched while selected (the shared listing follows it), not after.
    assert watch.watched == {key}
    session.send(b"c CLOSE\r\n")
    assert watch.watched == set()


def test_idle_sees_a_change_within_the_same_clock_tick(
    directory: FileDirectory, inbox: Mailbox
) -> None:
    """A notification makes the session list the mailbox even if the
    folders' stamps did not move (a change within one file-system tick)."""
    made: list[FakeWatch] = []

    def kernel(sink: EventSink) -> FakeWatch:
        made.append(FakeWatch(sink))
        return made[-1]

    clock = Clock()
    notifier = MailboxNotifier(clock, kernel=kernel, bus=ChangeBus())
    session = Session(directory, notifier, clock)
    open_inbox(session)
    session.send(b"i IDLE\r\n")
    cur = inbox.path / "cur"
    before = os.stat(cur)
    [info] = inbox.messages()
    inbox.set_flags(info, {"\\Flagged"})
    os.utime(cur, ns=(before.st_atime_ns, before.st_mtime_ns))
    made[0].sink.changed(mailbox_key(inbox.path))
    clock.advance(0)
    assert b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))" in session.take()


def test_idle_falls_back_to_a_slow_poll(directory: FileDirectory, inbox: Mailbox) -> None:
    """Without inotify, another process's delivery is seen within 30 s."""
    clock = Clock()
    notifier = MailboxNotifier(clock, bus=ChangeBus())
    session = Session(directory, notifier, clock)
    open_inbox(session)
    session.send(b"i IDLE\r\n")
    inbox.deliver(b"Subject: two\r\n\r\nsecond\r\n")
    clock.advance(29)
    assert session.take() == b""
    clock.advance(1)
    clock.advance(0)
    assert b"* 2 EXISTS" in session.take()


def test_noop_still_sees_changes_at_once(directory: FileDirectory, inbox: Mailbox) -> None:
    """NOOP reports a change made elsewhere without waiting for any
    notification."""
    clock = Clock()
    notifier = MailboxNotifier(clock, bus=ChangeBus())
    session = Session(directory, notifier, clock)
    open_inbox(session)
    inbox.deliver(b"Subject: two\r\n\r\nsecond\r\n")
    assert b"* 2 EXISTS" in session.send(b"n NOOP\r\n")


# -- keywords -----------------------------------------------------------------


def test_new_keyword_is_announced_before_use(directory: FileDirectory, inbox: Mailbox) -> None:
    """A keyword another session created comes in * FLAGS and
    PERMANENTFLAGS before the FETCH that shows it, and only once."""
    first, second = Session(directory), Session(directory)
    open_inbox(first)
    open_inbox(second)
    second.send(b"t STORE 1 +FLAGS ($Fresh)\r\n")
    out = lines(first.send(b"n NOOP\r\n"))
    flags = next(i for i, line in enumerate(out) if line.startswith(b"* FLAGS"))
    permanent = next(i for i, line in enumerate(out) if b"[PERMANENTFLAGS" in line)
    fetch = next(i for i, line in enumerate(out) if b"FETCH" in line)
    assert b"$Fresh" in out[flags] and b"$Fresh" in out[permanent]
    assert flags < fetch and permanent < fetch and b"$Fresh" in out[fetch]
    again = first.send(b"f FETCH 1 FLAGS\r\n")
    assert b"* FLAGS" not in again and b"$Fresh" in again


def test_own_new_keyword_is_announced_in_store(directory: FileDirectory, inbox: Mailbox) -> None:
    """STORE of a keyword new to the mailbox sends * FLAGS before its FETCH."""
    session = Session(directory)
    open_inbox(session)
    out = lines(session.send(b"t STORE 1 +FLAGS ($Mine)\r\n"))
    assert out[0].startswith(b"* FLAGS (") and b"$Mine" in out[0]
    assert b"[PERMANENTFLAGS" in out[1] and b"$Mine" in out[1]
    assert out[2].startswith(b"* 1 FETCH") and b"$Mine" in out[2]


def test_fetch_announces_a_keyword_it_finds(directory: FileDirectory, inbox: Mailbox) -> None:
    """FETCH FLAGS of a message whose keyword the session was never told
    of (its listing already had it) announces the keyword first."""
    session = Session(directory)
    open_inbox(session)
    [info] = inbox.messages()
    changed = inbox.set_flags(info, {"$Late"})
    assert changed is not None
    # As if the session had listed the message after the keyword came.
    session.selected().replace(1, changed)
    out = lines(session.send(b"f FETCH 1 FLAGS\r\n"))
    assert out[0].startswith(b"* FLAGS") and b"$Late" in out[0]
    assert out[-2].startswith(b"* 1 FETCH") and out[-1].startswith(b"f OK")


# -- messages expunged or renamed by another session ------------------------


def test_fetch_of_a_message_expunged_by_another_session(
    directory: FileDirectory, inbox: Mailbox
) -> None:
    """Until the session is told, a message another session of this process
    expunged is served whole (its file kept open); NOOP then reports the
    expunge."""
    inbox.deliver(b"Subject: two\r\n\r\nsecond body\r\n")
    first, second = Session(directory), Session(directory)
    open_inbox(first)
    open_inbox(second)
    second.send(b"d STORE 1 +FLAGS.SILENT (\\Deleted)\r\ne EXPUNGE\r\n")
    assert [info.uid for info in inbox.messages()] == [2]
    out = first.send(b"f FETCH 1 (UID FLAGS RFC822.SIZE INTERNALDATE)\r\n")
    assert b"* 1 FETCH (UID 1 FLAGS (" in out and b"INTERNALDATE" in out
    assert b"f OK" in out and b"EXPUNGE" not in out
    out = first.send(b"g FETCH 1:2 BODY.PEEK[TEXT]\r\n")
    assert b"first body" in out and b"second body" in out and b"g OK" in out
    assert b"* 1 EXPUNGE" in first.send(b"n NOOP\r\n")


def test_fetch_of_a_message_gone_elsewhere(directory: FileDirectory, inbox: Mailbox) -> None:
    """A message another process removed is still served from what is
    known of it (UID, FLAGS, RFC822.SIZE); items needing its file answer
    NO [EXPUNGEISSUED] for it alone, the others are served."""
    inbox.deliver(b"Subject: two\r\n\r\nsecond body\r\n")
    session = Session(directory)
    open_inbox(session)
    first = inbox.messages()[0]
    os.unlink(first.path)
    out = session.send(b"f FETCH 1 (UID FLAGS RFC822.SIZE)\r\n")
    assert b"* 1 FETCH (UID 1 FLAGS (" in out and b"RFC822.SIZE" in out and b"f OK" in out
    out = session.send(b"g FETCH 1:2 BODY.PEEK[TEXT]\r\n")
    assert b"* 1 FETCH" not in out and b"* 2 FETCH" in out and b"second body" in out
    assert out.endswith(b"g NO [EXPUNGEISSUED] some of the requested messages no longer exist\r\n")
    assert b"* 1 EXPUNGE" in session.send(b"n NOOP\r\n")


def test_fetch_finds_a_message_renamed_elsewhere(directory: FileDirectory, inbox: Mailbox) -> None:
    """A message whose file another process renamed (a flag change) within
    the same stamp is found again by its UID and served."""
    session = Session(directory)
    open_inbox(session)
    cur = inbox.path / "cur"
    before = os.stat(cur)
    [info] = inbox.messages()
    os.rename(info.path, info.path.split(":", 1)[0] + ":2,F")
    os.utime(cur, ns=(before.st_atime_ns, before.st_mtime_ns))
    out = session.send(b"f FETCH 1 BODY[TEXT]\r\n")
    assert b"first body" in out and b"f OK" in out
    # \\Seen is added to the flags the other process gave, not over them.
    [now] = inbox.messages()
    assert now.uid == 1 and now.flags == {"\\Flagged", "\\Seen"}


# -- end of sessions -------------------------------------------------------------


def test_pipelined_login_logout_before_half_close_are_answered(
    directory: FileDirectory,
) -> None:
    """LOGIN and LOGOUT sent before the client shut its side are answered,
    then the connection closes."""
    session = Session(directory)
    gate: Deferred[None] = Deferred()
    real = session.service.login

    def later(credentials: Any, interface: Any) -> Deferred[Any]:
        return gate.addCallback(lambda _: real(credentials, interface))

    session.service.login = later  # type: ignore[method-assign]
    session.server.dataReceived(b"a LOGIN info pw-company.com\r\nb LOGOUT\r\n")
    session.server.readConnectionLost()
    assert session.take() == b"" and not session.transport.disconnecting
    gate.callback(None)
    out = lines(session.take())
    assert out[0].startswith(b"a OK") and out[1:] == [
        b"* BYE logging out",
        b"b OK LOGOUT completed",
    ]
    assert session.transport.disconnecting


def test_half_close_with_nothing_pending_closes(directory: FileDirectory) -> None:
    """A half-closed session with nothing to answer is closed."""
    session = Session(directory)
    session.server.readConnectionLost()
    assert session.transport.disconnecting


def test_disconnect_during_login_check_logs_one_info_line(
    directory: FileDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client gone while its password is checked: one info event, no
    failure (no CancelledError traceback)."""
    events: list[dict[str, Any]] = []

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        events.append(event)

    # The password check never ends, as a slow bcrypt in the thread pool.
    monkeypatch.setattr(AccountChecker, "_check", lambda self, *args: Deferred())
    session = Session(directory)
    session.server.dataReceived(b"a LOGIN info pw-company.com\r\n")
    assert session.server.pending is not None
    globalLogPublisher.addObserver(observe)
    try:
        session.server.connectionLost(Failure(ConnectionLost()))
    finally:
        globalLogPublisher.removeObserver(observe)
    assert not [event for event in events if "log_failure" in event]
    abandoned = [event for event in events if "abandoned" in event.get("log_format", "")]
    assert len(abandoned) == 1 and abandoned[0]["log_level"].name == "info"
    assert session.take() == b""


def test_expunged_files_are_kept_only_for_others_and_not_for_long(
    tmp_path: Path,
) -> None:
    """A removed message stays readable only if another session holds the
    mailbox, for a limited time and number of files."""
    now = [0.0]
    kept = ExpungedFiles(keep=10, limit=2, clock=lambda: now[0], enabled=True)
    files = []
    for uid in (1, 2, 3):
        path = tmp_path / f"{uid},S=1"
        path.write_bytes(b"%d" % uid)
        files.append(MessageInfo(uid, 1, str(path)))
    remover, reader = Holder(), Holder()
    kept.hold(tmp_path, remover)
    kept.retain(tmp_path, remover, files[:1])
    assert len(kept) == 0
    kept.hold(tmp_path, reader)
    kept.retain(tmp_path, remover, files)
    for info in files:
        os.unlink(info.path)
    assert len(kept) == 2 and kept.path(tmp_path, 1) is None
    found = kept.path(tmp_path, 3)
    assert found is not None and Path(found).read_bytes() == b"3"
    now[0] = 11
    assert kept.path(tmp_path, 3) is None and len(kept) == 0
    kept.release(tmp_path, reader)
    del remover
    assert kept._holders == {}
    kept.close()


@pytest.fixture
def inotify_session(
    directory: FileDirectory, inbox: Mailbox
) -> Iterator[tuple[Session, MailboxNotifier]]:
    """A session with INBOX selected, its notifier reading real inotify."""
    if not os.path.exists("/proc/sys/fs/inotify"):
        pytest.skip("needs Linux inotify")
    from twisted.internet.testing import MemoryReactor

    from communigate.store.changes import inotify_watch

    clock = Clock()
    notifier = MailboxNotifier(clock, kernel=inotify_watch(MemoryReactor()), bus=ChangeBus())
    session = Session(directory, notifier, clock)
    open_inbox(session)
    yield session, notifier
    notifier.close()


@pytest.mark.parametrize("before", [b"", b"n NOOP\r\n"])
def test_own_append_is_reported_with_real_inotify(
    inotify_session: tuple[Session, MailboxNotifier], before: bytes
) -> None:
    """With the kernel watch, an APPEND to the selected mailbox gets its
    ``* N EXISTS`` before its OK, also when a command sent with it in the
    same bytes read the kernel's queue first (the message went in after
    the bytes arrived)."""
    session, _ = inotify_session
    assert session.selected().index.watched
    out = session.send(before + b"a APPEND INBOX {12+}\r\nSubject: x\r\n\r\n")
    assert b"* 2 EXISTS\r\n" in out and out.index(b"* 2 EXISTS") < out.index(b"a OK")


def test_a_session_that_changed_the_mailbox_reads_the_queue(
    inotify_session: tuple[Session, MailboxNotifier],
) -> None:
    """After a session renamed or removed messages itself (STORE, EXPUNGE),
    its next look reads the kernel's queue even for a mark the queue was
    read after: the shared listing may not hold its own change yet."""
    session, notifier = inotify_session
    selected = session.selected()
    early = notifier.mark()
    assert b"n OK" in session.send(b"n NOOP\r\n")
    read = notifier.mark()
    assert read > early
    selected.refresh(since=early)
    assert notifier.mark() == read
    assert b"s OK" in session.send(b"s STORE 1 +FLAGS.SILENT (\\Flagged)\r\n")
    changed = notifier.mark()
    assert selected.refresh(since=early) == []
    assert notifier.mark() == changed + 1
    assert selected.messages[0].flags >= {"\\Flagged"}
    assert selected.index.infos[1].flags >= {"\\Flagged"}
