"""One failure path for names of other accounts: whether the account
exists or not, IMAP ``~name`` mailboxes, PLAIN's authorization identity and
TFTP ``~name`` files get the same answer, as do an unknown name and a wrong
password with ``HideAccountUnknown=YES`` on every listener with a login."""

from __future__ import annotations

import base64
import socket
import time

import pytest

from communigate.protocols.tftp.packets import RRQ, Error, Request, encode, parse
from communigate.store.mailstore import MailStore
from tests.hostile.conftest import SETTLE, server_setting
from tests.hostile.listeners import TIMEOUT, Client, Listener, having
from tests.integration.conftest import Server, admin, file_storage

pytestmark = pytest.mark.integration

IMAP = [item for item in having("logs_in") if item.name in ("imap4", "imaps")]
#: Commands that take another account's mailbox (``{box}``).
IMAP_COMMANDS = [
    b"t SELECT {box}",
    b"t EXAMINE {box}",
    b"t STATUS {box} (MESSAGES)",
    b"t GETACL {box}",
    b"t MYRIGHTS {box}",
    b"t DELETE {box}",
    b"t SUBSCRIBE {box}",
    b"t CREATE {box}/Sub",
    b"t APPEND {box} {{3+}}\r\nHi!",
]


@pytest.fixture(scope="module")
def carol(server: Server) -> Server:
    """carol@company.com exists, with a mailbox Private she shares with nobody."""
    admin(server.base, "account", "create", "carol@company.com", "--password", "carol-pw")
    MailStore(file_storage(server, "company.com", "carol").parent).create("Private")
    time.sleep(SETTLE)
    return server


def imap_answer(running: Server, listener: Listener, command: bytes) -> bytes:
    """The tagged answer to one command of a fresh session of info."""
    client = Client(running, listener)
    try:
        client.greet()
        client.log_in()
        return client.command(command, b"t ")
    finally:
        client.close()


@pytest.mark.parametrize("listener", IMAP, ids=str)
@pytest.mark.parametrize("command", IMAP_COMMANDS, ids=lambda c: c.split()[1].decode())
@pytest.mark.parametrize("box", ["INBOX", "Private"])
def test_imap_other_mailboxes(carol: Server, listener: Listener, command: bytes, box: str) -> None:
    """A command on ~nosuch/BOX is answered exactly as on ~carol/BOX."""
    answers = set()
    for owner in (b"carol", b"nosuch"):
        line = command.replace(b"{box}", b"~" + owner + b"/" + box.encode())
        line = line.replace(b"{{", b"{").replace(b"}}", b"}")
        answers.add(imap_answer(carol, listener, line).replace(owner, b"OWNER"))
    assert len(answers) == 1, answers
    assert next(iter(answers)).startswith(b"t NO")


def sasl_plain_answer(running: Server, listener: Listener, authzid: bytes) -> bytes:
    """The answer to PLAIN as info (right password) asking for ``authzid``."""
    response = base64.b64encode(authzid + b"\0info\0pw-company.com")
    client = Client(running, listener)
    try:
        client.greet()
        if listener.name.startswith("imap"):
            return client.command(b"t AUTHENTICATE PLAIN " + response, b"t ")
        return client.command(b"AUTH PLAIN " + response, b"")
    finally:
        client.close()


@pytest.mark.parametrize(
    "listener",
    [item for item in having("logs_in") if item.name in ("imap4", "imaps", "pop3", "pop3s")],
    ids=str,
)
def test_plain_authorization_identity(carol: Server, listener: Listener) -> None:
    """PLAIN with an authorization identity: carol (exists, may not be
    opened) and nosuch get the same refusal."""
    answers = {sasl_plain_answer(carol, listener, name) for name in (b"carol", b"nosuch")}
    assert len(answers) == 1, answers
    answer = next(iter(answers))
    assert answer.startswith((b"t NO", b"-ERR")) and b"not authorized" in answer, answer


def refusal(running: Server, listener: Listener, user: bytes, password: bytes) -> bytes:
    """The reply to a failed login."""
    client = Client(running, listener)
    try:
        client.greet()
        steps = listener.login_as(user, password)
        for line, prefix in steps[:-1]:
            client.command(line, prefix)
        client.send(steps[-1][0] + b"\r\n")
        return client.line()
    finally:
        client.close()


@pytest.mark.parametrize("listener", having("logs_in"), ids=str)
def test_hidden_unknown_account(server: Server, listener: Listener) -> None:
    """With HideAccountUnknown=YES an unknown name and a wrong password get
    the same reply."""
    with server_setting(server, "HideAccountUnknown", "YES"):
        unknown = refusal(server, listener, b"nosuch", b"x")
        wrong = refusal(server, listener, b"info", b"x")
    assert unknown == wrong


def tftp_error(running: Server, name: str) -> Error:
    """The ERROR packet answering a read request for ``name``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(encode(Request(RRQ, name, "octet", {})), ("127.0.0.1", running.tftp_port))
        packet = parse(sock.recvfrom(70000)[0])
    assert isinstance(packet, Error), packet
    return packet


def test_tftp_other_accounts(carol: Server) -> None:
    """TFTP ~nosuch/x and ~carol/x (no such file) get the same error code
    and text, without any login."""
    assert tftp_error(carol, "~nosuch/x") == tftp_error(carol, "~carol/x")
    assert tftp_error(carol, "~nosuch@client1.com/x") == tftp_error(carol, "~info@client1.com/x")
