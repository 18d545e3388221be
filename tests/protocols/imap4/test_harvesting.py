"""``~name`` mailboxes tell nothing about which accounts exist: every
command answers a missing owner exactly as an existing owner whose mailbox
the session may not see (RFC 4314 §6)."""

from __future__ import annotations

import pytest

from communigate.store.files import FileDirectory
from communigate.store.mailbox import Mailbox
from communigate.store.mailstore import MailStore
from tests.protocols.imap4.test_server import Session

COMMANDS = [
    b"t SELECT {box}",
    b"t EXAMINE {box}",
    b"t STATUS {box} (MESSAGES UIDNEXT)",
    b"t GETACL {box}",
    b"t MYRIGHTS {box}",
    b"t LISTRIGHTS {box} anyone",
    b"t SETACL {box} anyone lr",
    b"t DELETEACL {box} anyone",
    b"t DELETE {box}",
    b"t SUBSCRIBE {box}",
    b"t CREATE {box}",
    b"t CREATE {box}/Sub",
    b"t RENAME Mine {box}",
    b"t RENAME {box} Other",
    b"""t LIST "" {box}*""",
    b"t APPEND {box} {{5+}}\r\nHi!\r\n",
    b"t COPY 1 {box}",
    b"t MOVE 1 {box}",
]


@pytest.fixture
def session(directory: FileDirectory) -> Session:
    """info@company.com logged in, with one message in INBOX and a mailbox
    Mine; postmaster@company.com has a mailbox Private it shares with nobody."""
    Mailbox.of_account(directory.account_path("company.com", "info")).deliver(
        b"Subject: x\r\n\r\nx\r\n"
    )
    MailStore(directory.account_path("company.com", "info")).create("Mine")
    MailStore(directory.account_path("company.com", "postmaster")).create("Private")
    opened = Session(directory)
    assert b"a OK" in opened.send(b"a LOGIN info pw-company.com\r\n")
    return opened


def answer(session: Session, template: bytes, owner: str, box: str) -> bytes:
    """The answer to one command, the owner's name replaced by OWNER."""
    session.send(b"s SELECT INBOX\r\n")
    name = f"~{owner}/{box}".encode()
    out = session.send(
        template.replace(b"{box}", name).replace(b"{{", b"{").replace(b"}}", b"}") + b"\r\n"
    )
    return out.replace(owner.encode(), b"OWNER")


@pytest.mark.parametrize("template", COMMANDS)
@pytest.mark.parametrize("box", ["INBOX", "Private", "Missing"])
def test_missing_owner_answered_as_hidden_mailbox(
    session: Session, template: bytes, box: str
) -> None:
    """A command on ~nosuch/BOX gets the very answer it gets on
    ~postmaster/BOX when postmaster shares nothing."""
    existing = answer(session, template, "postmaster", box)
    missing = answer(session, template, "nosuch", box)
    assert missing == existing
    assert b"t OK" not in missing or b"SUBSCRIBE" in template or b"LIST" in template


@pytest.mark.parametrize("template", COMMANDS)
def test_other_domain_and_invalid_owner_alike(session: Session, template: bytes) -> None:
    """~info@client1.com/INBOX (exists, shares nothing) and
    ~nobody@client1.com/INBOX are answered alike."""
    existing = answer(session, template, "info@client1.com", "INBOX")
    missing = answer(session, template, "nobody@client1.com", "INBOX")
    assert missing == existing


def test_hidden_answer_is_nonexistent(session: Session) -> None:
    """The one answer is NO [NONEXISTENT] with the mailbox's name."""
    out = session.send(b"t SELECT ~nosuch/INBOX\r\n")
    assert out.endswith(b"t NO [NONEXISTENT] no mailbox ~nosuch/INBOX\r\n")


def test_shared_mailbox_still_works(session: Session, directory: FileDirectory) -> None:
    """A mailbox shared with the session (lr) is still selected and listed."""
    store = MailStore(directory.account_path("company.com", "postmaster"))
    store.set_acl("Private", {"info": "lr"})
    assert b"t OK" in session.send(b"t SELECT ~postmaster/Private\r\n")
    assert b"~postmaster/Private" in session.send(b'l LIST "" ~postmaster/*\r\n')
