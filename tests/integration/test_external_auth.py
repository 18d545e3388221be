"""The External Authentication helper, a shell script speaking only
CommuniGate's documented protocol, with POP3 and IMAP logins."""

from __future__ import annotations

import imaplib
import poplib
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Server, admin

pytestmark = pytest.mark.integration

HELPER = Path(__file__).parent / "helpers" / "extauth.sh"


def use_helper(server: Server, mode: str, marker: Path, restart: str = "1s") -> None:
    program = f"{HELPER} {mode} {marker} {sys.executable}"
    admin(
        server.base,
        "server",
        "settings",
        f'ExternalAUTH={{Enabled=YES; ProgramName="{program}"; Timeout=2s; '
        f"RestartPause={restart};}}",
    )
    time.sleep(1.1)


def pop_login(server: Server, user: str, password: str) -> str:
    client = poplib.POP3("127.0.0.1", server.port, timeout=15)
    try:
        client.user(user)
        client.pass_(password)
        client.quit()
        return "ok"
    except poplib.error_proto as error:
        return str(error)


@pytest.fixture(scope="module")
def external_account(server: Server) -> str:
    admin(
        server.base,
        "account",
        "create",
        "extuser@company.com",
        "UseExtPassword=YES",
        "UseAppPassword=NO",
    )
    return "extuser"


def test_helper_authenticates(server: Server, external_account: str, tmp_path: Path) -> None:
    """The helper's OK and ERROR decide POP3 and IMAP logins."""
    use_helper(server, "good", tmp_path / "m")
    assert pop_login(server, external_account, "ext-secret") == "ok"
    assert "[AUTH]" in pop_login(server, external_account, "wrong")
    client = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=15)
    assert client.login(external_account, "ext-secret")[0] == "OK"
    client.logout()
    assert "extauth helper started in mode good" in server.log_text()


def test_answers_out_of_order(server: Server, external_account: str, tmp_path: Path) -> None:
    """Replies in reverse order still reach the right logins."""
    use_helper(server, "reverse", tmp_path / "m")
    results: dict[str, str] = {}

    def login(password: str) -> None:
        results[password] = pop_login(server, external_account, password)

    threads = [threading.Thread(target=login, args=(pw,)) for pw in ("ext-secret", "wrong")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results["ext-secret"] == "ok"
    assert "[AUTH]" in results["wrong"]


def test_hanging_helper(server: Server, external_account: str, tmp_path: Path) -> None:
    """A helper that hangs gives a temporary error within the time-out; after
    the automatic restart logins work again."""
    use_helper(server, "hang-once", tmp_path / "m")
    started = time.monotonic()
    reply = pop_login(server, external_account, "ext-secret")
    assert "[SYS/TEMP]" in reply and time.monotonic() - started < 4
    time.sleep(1.5)
    assert pop_login(server, external_account, "ext-secret") == "ok"


def test_crashing_helper(server: Server, external_account: str, tmp_path: Path) -> None:
    """A helper that crashes is restarted and the pending request re-sent."""
    use_helper(server, "crash-once", tmp_path / "m")
    assert pop_login(server, external_account, "ext-secret") == "ok"
    assert (tmp_path / "m").exists()


def test_new_for_unknown_accounts(server: Server, tmp_path: Path) -> None:
    """With ConsultExternalForUnknown, an unknown name is offered to the
    helper (NEW); it creates the account and the login goes on."""
    use_helper(server, "creator", tmp_path / "m")
    admin(server.base, "domain", "settings", "client2.com", "ConsultExternalForUnknown=YES")
    time.sleep(1.1)
    assert pop_login(server, "newcomer@client2.com", "ext-secret") == "ok"
    assert (server.base / "Domains" / "client2.com" / "newcomer.macnt").is_dir()
    admin(server.base, "domain", "settings", "client2.com", "ConsultExternalForUnknown=")
