"""APPEND answered once the message is durable (flushed in the thread
pool), and FETCH served from the mailbox's cache without the file."""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime

from communigate.portal.durable import DurableWriter
from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox
from tests.conftest import SyncReactor
from tests.portal.test_durablefiles import HeldPool
from tests.protocols.imap4.test_server import Session, login

MULTIPART = (
    b"From: Ann <ann@example.org>\r\nTo: bob@example.net\r\nSubject: parts\r\n"
    b"Date: Tue, 1 Feb 2022 10:00:00 +0000\r\nMessage-ID: <1@x>\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\n\r\nQUJD\r\n--b--\r\n"
)


def held_session(directory: FileDirectory) -> tuple[Session, HeldPool, DurableWriter]:
    """A logged-in session whose durable writes wait in a pool the test
    runs by hand."""
    session = Session(directory)
    pool = HeldPool()
    writer = DurableWriter(SyncReactor(), pool)
    session.server.factory.writer = writer
    login(session)
    return session, pool, writer


def test_append_answers_after_the_commit(directory: FileDirectory) -> None:
    """The tagged OK waits for the flush; pipelined commands wait behind it."""
    session, pool, _ = held_session(directory)
    out = session.send(b"a APPEND INBOX (\\Seen) {12+}\r\nSubject: x\r\n\r\nb NOOP\r\n")
    assert b"a OK" not in out and b"b OK" not in out
    inbox = Mailbox.of_account(directory.account_path("company.com", "info"))
    assert inbox.messages() == []
    pool.run()
    out = session.take()
    assert re.search(rb"a OK \[APPENDUID \d+ 1\] APPEND completed\r\nb OK", out)
    (info,) = inbox.messages()
    assert info.flags == frozenset({"\\Seen"})


def test_expunge_answers_after_the_folder_is_flushed(directory: FileDirectory) -> None:
    """EXPUNGE removes the files at once but tells the client (EXPUNGE
    responses, tagged OK) only once the folder is flushed in the pool;
    pipelined commands wait behind it; MOVE (whose copy is committed in
    the pool first) and CLOSE likewise."""
    inbox = Mailbox.of_account(directory.account_path("company.com", "info"))
    for number in range(3):
        inbox.deliver(b"Subject: %d\r\n\r\nx\r\n" % number)
    session, pool, _ = held_session(directory)
    session.send(b"s SELECT INBOX\r\n")
    session.send(b"t STORE 1 +FLAGS (\\Deleted)\r\n")
    out = session.send(b"e EXPUNGE\r\nn NOOP\r\n")
    assert out == b"" and len(inbox.messages()) == 2
    [(_, work, folders)] = pool.jobs
    assert work.__name__ == "flush_folders"
    assert folders == ([str(inbox.path / "cur")],)
    pool.run()
    assert session.take() == b"* 1 EXPUNGE\r\ne OK EXPUNGE completed\r\nn OK NOOP completed\r\n"
    assert b"c OK" in session.send(b"c CREATE Other\r\n")
    assert session.send(b"m MOVE 1 Other\r\n") == b""
    # The original stays until its copy is durable.
    assert len(inbox.messages()) == 2 and len(pool.jobs) == 1
    pool.run()
    assert len(inbox.messages()) == 1 and session.take() == b""
    pool.run()
    out = session.take()
    assert b"* OK [COPYUID" in out and b"* 1 EXPUNGE\r\nm OK MOVE completed" in out
    session.send(b"t STORE 1 +FLAGS (\\Deleted)\r\n")
    assert session.send(b"x CLOSE\r\n") == b""
    pool.run()
    assert session.take() == b"x OK CLOSE completed\r\n" and inbox.messages() == []


def test_copy_answers_after_the_commit(directory: FileDirectory) -> None:
    """COPY stages the copies and commits them in the pool, all in one
    commit; COPYUID and the tagged OK come after, with the flags and
    internal date of the originals."""
    inbox = Mailbox.of_account(directory.account_path("company.com", "info"))
    for number in range(2):
        inbox.append(b"Subject: %d\r\n\r\nx\r\n" % number, ["\\Flagged"], 1_000_000_000.0)
    session, pool, writer = held_session(directory)
    session.send(b"s SELECT INBOX\r\nc CREATE Other\r\n")
    assert session.send(b"k COPY 1:2 Other\r\nn NOOP\r\n") == b""
    other = Mailbox.of_account(directory.account_path("company.com", "info"), "Other")
    assert other.messages() == []
    while pool.jobs:
        pool.run()
    out = session.take()
    assert re.search(rb"k OK \[COPYUID \d+ 1:2 1:2\] COPY completed\r\nn OK", out)
    copies = other.messages()
    assert [info.flags for info in copies] == [frozenset({"\\Flagged"})] * 2
    assert [info.internal_date for info in copies] == [1_000_000_000.0] * 2
    assert writer.commits <= 2


def test_move_finished_after_the_session_left(directory: FileDirectory) -> None:
    """A MOVE whose copy becomes durable after the client left still
    removes the originals, quietly."""
    inbox = Mailbox.of_account(directory.account_path("company.com", "info"))
    inbox.deliver(b"Subject: x\r\n\r\nx\r\n")
    session, pool, _ = held_session(directory)
    session.send(b"s SELECT INBOX\r\nc CREATE Other\r\n")
    assert session.send(b"m MOVE 1 Other\r\n") == b""
    session.server.connectionLost(None)
    while pool.jobs:
        pool.run()
    other = Mailbox.of_account(directory.account_path("company.com", "info"), "Other")
    assert inbox.messages() == [] and len(other.messages()) == 1
    assert session.take() == b""


def test_append_to_a_vanished_account_is_refused(directory: FileDirectory) -> None:
    """A commit that fails answers NO and stores nothing."""
    session, pool, _ = held_session(directory)
    assert session.send(b"a APPEND INBOX {3+}\r\nx\r\n\r\n") == b""
    inbox = Mailbox.of_account(directory.account_path("company.com", "info"))
    shutil.rmtree(inbox.path / "tmp")
    pool.run()
    assert session.take().startswith(b"a NO [NONEXISTENT]")
    assert inbox.messages() == []


def test_fetch_from_the_cache_matches_and_needs_no_file(directory: FileDirectory) -> None:
    """ENVELOPE, BODYSTRUCTURE and header sections are the same from the
    cache, and are served once the message file is gone."""
    inbox = Mailbox.of_account(directory.account_path("company.com", "info"))
    inbox.create()
    inbox.append(MULTIPART, ["\\Seen"])
    session = Session(directory)
    login(session)
    session.send(b"s SELECT INBOX\r\n")
    items = (
        b"(ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[HEADER] "
        b"BODY.PEEK[HEADER.FIELDS (Subject From)] BODY.PEEK[HEADER.FIELDS.NOT (To)] "
        b"RFC822.HEADER)"
    )
    first = session.send(b"f FETCH 1 " + items + b"\r\n")
    assert b"f OK" in first and b"ENVELOPE (" in first and b'"MIXED"' in first
    second = session.send(b"f FETCH 1 " + items + b"\r\n")
    assert second == first
    (info,) = inbox.messages()
    os.unlink(info.path)
    assert session.send(b"f FETCH 1 " + items + b"\r\n") == first


def test_sections_without_mime_parse_match(directory: FileDirectory) -> None:
    """BODY[], BODY[TEXT], BODY[1] and partial fetches give the exact bytes."""
    inbox = Mailbox.of_account(directory.account_path("company.com", "info"))
    inbox.create()
    inbox.append(MULTIPART, ["\\Seen"])
    session = Session(directory)
    login(session)
    session.send(b"s SELECT INBOX\r\n")
    out = session.send(b"f FETCH 1 (BODY.PEEK[] BODY.PEEK[TEXT]<0.7> BODY.PEEK[1])\r\n")
    header_end = MULTIPART.index(b"\r\n\r\n") + 4
    assert b"BODY[] {%d}\r\n" % len(MULTIPART) + MULTIPART in out
    assert b"BODY[TEXT]<0> {7}\r\n" + MULTIPART[header_end : header_end + 7] in out
    assert b"BODY[1] {5}\r\nhello" in out


def test_search_header_keys_use_the_cache(directory: FileDirectory) -> None:
    """SEARCH by header keys works from the cached header alone."""
    inbox = Mailbox.of_account(directory.account_path("company.com", "info"))
    inbox.create()
    inbox.append(MULTIPART, ["\\Seen"])
    session = Session(directory)
    login(session)
    session.send(b"s SELECT INBOX\r\n")
    (info,) = inbox.messages()
    os.unlink(info.path)
    out = session.send(b"t SEARCH FROM ann SUBJECT parts SENTON 1-Feb-2022\r\n")
    assert b"* SEARCH 1\r\n" in out


def test_internal_date_is_the_one_taken_at_delivery(directory: FileDirectory) -> None:
    """INTERNALDATE (and SEARCH by it) is the date given at APPEND, kept in
    the cache: touching the file afterwards does not change it, and a
    message the cache knows nothing of still has its file's date."""
    inbox = Mailbox.of_account(directory.account_path("company.com", "info"))
    inbox.create()
    inbox.append(MULTIPART, ["\\Seen"], 1_000_000_000.0)
    (info,) = inbox.messages()
    os.utime(info.path, (1_500_000_000, 1_500_000_000))
    session = Session(directory)
    login(session)
    session.send(b"s SELECT INBOX\r\n")
    out = session.send(b"f FETCH 1 INTERNALDATE\r\nq SEARCH BEFORE 1-Jan-2002\r\n")
    stamp = datetime.fromtimestamp(1_000_000_000, UTC).astimezone()
    assert stamp.strftime('INTERNALDATE "%d-%b-%Y %H:%M:%S').encode() in out
    assert b"* SEARCH 1\r\n" in out
    # A copy keeps the date FETCH shows.
    assert b"c OK" in session.send(b"c CREATE Kept\r\nc COPY 1 Kept\r\n")
    kept = Mailbox.of_account(directory.account_path("company.com", "info"), "Kept")
    assert [int(info.internal_date) for info in kept.messages()] == [1_000_000_000]
    (inbox.path / "cache.index").unlink()
    later = Session(directory)
    login(later)
    later.send(b"s SELECT INBOX\r\n")
    stamp = datetime.fromtimestamp(1_500_000_000, UTC).astimezone()
    out = later.send(b"f FETCH 1 INTERNALDATE\r\n")
    assert stamp.strftime('"%d-%b-%Y %H:%M:%S').encode() in out


def test_worked_out_values_reach_the_file_together(directory: FileDirectory) -> None:
    """Values FETCH works out are in the mailbox's cache file half a
    second later, the commands of every session meanwhile in one append;
    a listener closing appends what still waits."""
    from communigate.protocols.imap4.server import CACHE_FLUSH_DELAY
    from communigate.store.messagecache import MessageCache

    inbox = Mailbox.of_account(directory.account_path("company.com", "info"))
    inbox.create()
    inbox.append(MULTIPART, ["\\Seen"])
    inbox.append(MULTIPART, ["\\Seen"])
    session = Session(directory)
    login(session)
    session.send(b"s SELECT INBOX\r\n")
    cache_file = inbox.path / "cache.index"
    before = cache_file.stat().st_size
    assert b"f OK" in session.send(b"f FETCH 1 ENVELOPE\r\n")
    assert b"f OK" in session.send(b"f FETCH 2 BODYSTRUCTURE\r\n")
    assert cache_file.stat().st_size == before
    session.clock.advance(CACHE_FLUSH_DELAY)
    grown = cache_file.stat().st_size
    assert grown > before
    other = MessageCache(inbox.path, inbox.uidvalidity)
    assert set(other.get(1)) >= {"imap.envelope"} and set(other.get(2)) >= {"imap.bodystructure"}
    assert b"f OK" in session.send(b"f FETCH 1 BODY\r\n")
    session.server.factory.stopFactory()
    assert cache_file.stat().st_size > grown
    assert "imap.body" in MessageCache(inbox.path, inbox.uidvalidity).get(1)
