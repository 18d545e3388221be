"""The HTTP module end to end: curl (Host headers, the login form and its
cookies, File Storage with Basic), SESSIONID over IMAP (imaplib), POP3
(poplib) and PWD (a raw socket), a WebDAV client (rclone, cadaver) and a
real browser (headless chromium driven by selenium)."""

from __future__ import annotations

import base64
import hashlib
import imaplib
import os
import poplib
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    admin,
    free_port,
    launch_server,
    stop_server,
    wait_for_port,
)

pytestmark = pytest.mark.integration

SESSION_ID = re.compile(r"^[0-9]+-[A-Za-z0-9]{20}$")
TOKEN = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Web:
    """A running server with HTTP, HTTPS, IMAP, POP3 and PWD listeners."""

    base: Path
    log: Path
    http: int
    https: int
    imap: int
    pop3: int
    pwd: int
    process: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def storage(self, domain: str, name: str) -> Path:
        if domain == "company.com":
            return self.base / "Accounts" / f"{name}.macnt" / "account.web"
        return self.base / "Domains" / domain / f"{name}.macnt" / "account.web"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """company.com (SESSIONID enabled) with john and other; client1.com
    (127.0.0.2, alias www.client1.org; SESSIONID not enabled) with jane."""
    root = tmp_path_factory.mktemp("http")
    base = root / "base"
    admin(base, "init", "--main-domain", "company.com", "--postmaster-password", "pm")
    admin(base, "server", "settings", "FailedLoginDelay=0.2s")
    admin(base, "domain", "settings", "company.com", "LoginMethods=(PLAIN,LOGIN,SESSIONID)")
    admin(
        base, "domain", "create", "client1.com", "--ip", "127.0.0.2", "--alias", "www.client1.org"
    )
    admin(base, "account", "create", "john@company.com", "--password", "pw1")
    admin(base, "account", "create", "other@company.com", "--password", "pw3")
    admin(base, "account", "create", "jane@client1.com", "--password", "pw2")
    found = Web(
        base, root / "server.log", free_port(), free_port(), free_port(), free_port(), free_port()
    )
    found.process = launch_server(
        base,
        found.log,
        *(f"--http=tcp:{found.http}:interface={a}" for a in ("127.0.0.1", "127.0.0.2")),
        f"--https=tcp:{found.https}:interface=127.0.0.1",
        *(f"--imap4=tcp:{found.imap}:interface={a}" for a in ("127.0.0.1", "127.0.0.2")),
        f"--pop3=tcp:{found.pop3}:interface=127.0.0.1",
        f"--pwd=tcp:{found.pwd}:interface=127.0.0.1",
    )
    try:
        for port in (found.http, found.https, found.imap, found.pop3, found.pwd):
            wait_for_port("127.0.0.1", port, found.process, found.log)
        yield found
    finally:
        stop_server(found.process)
    text = found.log.read_text(errors="replace")
    assert "Traceback" not in text
    assert "Unhandled Error" not in text


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run curl (silent, headers on stdout with -i where asked)."""
    return subprocess.run(["curl", "-s", *args], capture_output=True, check=False, timeout=60)


def status(*args: str) -> int:
    """The status code curl got."""
    return int(curl("-o", "/dev/null", "-w", "%{http_code}", *args).stdout)


def web_login(web: Web, jar: Path, name: str, password: str, host: str = "127.0.0.1") -> str:
    """Log in through the form as a browser would; the session ID."""
    page = curl("-c", str(jar), "-b", str(jar), "-H", f"Host: {host}", f"{web.url}/").stdout
    token = TOKEN.search(page.decode())
    assert token is not None
    answer = curl(
        "-i",
        "-c",
        str(jar),
        "-b",
        str(jar),
        "-H",
        f"Host: {host}",
        "--data-urlencode",
        f"csrf={token.group(1)}",
        "--data-urlencode",
        f"username={name}",
        "--data-urlencode",
        f"password={password}",
        f"{web.url}/login",
    ).stdout.decode()
    assert answer.startswith("HTTP/1.1 303"), answer
    cookie = re.search(r"Set-Cookie: CGPSessionID=([^;]+);([^\r\n]*)", answer)
    assert cookie is not None, answer
    assert "HttpOnly" in cookie.group(2) and "SameSite=lax" in cookie.group(2)
    return cookie.group(1)


def test_host_header_names_the_domain(web: Web) -> None:
    """The login page belongs to the Host header's domain (aliases through
    the Router); an unknown host gets the connection's domain."""
    for host, domain in (
        ("client1.com", "client1.com"),
        ("www.client1.org:8080", "client1.com"),
        ("company.com", "company.com"),
        ("unknown.example", "company.com"),
    ):
        page = curl("-H", f"Host: {host}", f"{web.url}/").stdout.decode()
        assert f"<title>Log in to {domain}</title>" in page, host
    page = curl(f"http://127.0.0.2:{web.http}/").stdout.decode()
    assert "<title>Log in to client1.com</title>" in page


def test_bare_name_takes_the_host_domain(web: Web, tmp_path: Path) -> None:
    """``jane`` logs in to jane@client1.com through Host: client1.com; the
    account page shows the account and a session ID of CGP's shape."""
    jar = tmp_path / "jar"
    session = web_login(web, jar, "jane", "pw2", host="www.client1.org")
    assert SESSION_ID.match(session), session
    page = curl("-b", str(jar), "-H", "Host: www.client1.org", f"{web.url}/").stdout.decode()
    assert "<h1>jane@client1.com</h1>" in page
    assert session in page


def test_every_failure_is_the_same_page(web: Web, tmp_path: Path) -> None:
    """A wrong password, an unknown name, a name of another domain and a
    bad token all get 403 and the same page."""
    bodies = set()
    for name, password, spoil in (
        ("john", "wrong", False),
        ("nobody", "pw1", False),
        ("jane", "pw2", False),
        ("john", "pw1", True),
    ):
        jar = tmp_path / f"jar-{name}-{spoil}"
        page = curl("-c", str(jar), "-b", str(jar), f"{web.url}/").stdout.decode()
        token = TOKEN.search(page)
        assert token is not None
        value = token.group(1) + ("x" if spoil else "")
        answer = curl(
            "-w",
            "\n%{http_code}",
            "-b",
            str(jar),
            "--data-urlencode",
            f"csrf={value}",
            "-d",
            f"username={name}",
            "-d",
            f"password={password}",
            f"{web.url}/login",
        ).stdout.decode()
        body, _, code = answer.rpartition("\n")
        assert code == "403", (name, answer)
        assert "Incorrect password or account name." in body
        bodies.add(TOKEN.sub("", body))
    assert len(bodies) == 1


def test_https_cookie_is_secure(web: Web, tmp_path: Path) -> None:
    """Over HTTPS (SNI client1.com) the session cookie is Secure."""
    jar = tmp_path / "jar"
    resolve = f"client1.com:{web.https}:127.0.0.1"
    url = f"https://client1.com:{web.https}/"
    page = curl("-k", "--resolve", resolve, "-c", str(jar), "-b", str(jar), url).stdout.decode()
    token = TOKEN.search(page)
    assert token is not None and "Log in to client1.com" in page
    answer = curl(
        "-k",
        "-i",
        "--resolve",
        resolve,
        "-c",
        str(jar),
        "-b",
        str(jar),
        "--data-urlencode",
        f"csrf={token.group(1)}",
        "-d",
        "username=jane",
        "-d",
        "password=pw2",
        url + "login",
    ).stdout.decode()
    cookie = re.search(r"Set-Cookie: CGPSessionID=[^\r\n]*", answer)
    assert cookie is not None, answer
    assert "Secure" in cookie.group(0)


def imap_sessionid(port: int, host: str, login: str, session: str) -> bool:
    """Whether IMAP AUTHENTICATE SESSIONID succeeds."""
    client = imaplib.IMAP4(host, port)
    try:
        client.authenticate("SESSIONID", lambda _: f"{login} {session}".encode())
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            client.logout()
        except Exception:
            pass
    return True


def pop3_sessionid(port: int, login: str, session: str) -> bool:
    """Whether POP3 AUTH SESSIONID (initial response) succeeds."""
    client = poplib.POP3("127.0.0.1", port)
    try:
        encoded = base64.b64encode(f"{login} {session}".encode()).decode()
        client._shortcmd(f"AUTH SESSIONID {encoded}")  # type: ignore[attr-defined]
    except poplib.error_proto:
        return False
    finally:
        client.quit()
    return True


def pwd_sessionid(port: int, login: str, session: str) -> bytes:
    """PWD's answer to ``AUTH SESSIONID name session-id``."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        lines = sock.makefile("rb")
        assert lines.readline().startswith(b"200 ")
        sock.sendall(f"AUTH SESSIONID {login} {session}\r\n".encode())
        return lines.readline()


def test_sessionid_replaces_the_password(web: Web, tmp_path: Path) -> None:
    """The ID of a live session logs its own account in over IMAP, POP3 and
    PWD; not another account, not an invented ID, not after logout."""
    jar = tmp_path / "jar"
    session = web_login(web, jar, "john", "pw1")
    client = imaplib.IMAP4("127.0.0.1", web.imap)
    assert "AUTH=SESSIONID" in client.capabilities
    client.logout()
    assert imap_sessionid(web.imap, "127.0.0.1", "john", session)
    assert imap_sessionid(web.imap, "127.0.0.1", "john@company.com", session)
    assert pop3_sessionid(web.pop3, "john", session)
    assert pwd_sessionid(web.pwd, "john", session).startswith(b"200 login OK")
    assert not imap_sessionid(web.imap, "127.0.0.1", "other", session)
    forged = session.split("-")[0] + "-" + "A" * 20
    assert not imap_sessionid(web.imap, "127.0.0.1", "john", forged)
    assert pwd_sessionid(web.pwd, "john", forged).startswith(b"500 ")
    # Log out with the account page's token: the ID is dead everywhere.
    page = curl("-b", str(jar), f"{web.url}/").stdout.decode()
    token = TOKEN.search(page)
    assert token is not None
    answer = curl(
        "-i",
        "-b",
        str(jar),
        "-c",
        str(jar),
        "--data-urlencode",
        f"csrf={token.group(1)}",
        f"{web.url}/logout",
    ).stdout.decode()
    assert answer.startswith("HTTP/1.1 303")
    assert not imap_sessionid(web.imap, "127.0.0.1", "john", session)
    assert not pop3_sessionid(web.pop3, "john", session)
    assert pwd_sessionid(web.pwd, "john", session).startswith(b"500 ")
    assert "Log in to company.com" in curl("-b", str(jar), f"{web.url}/").stdout.decode()


def test_sessionid_needs_the_domain_to_enable_it(web: Web, tmp_path: Path) -> None:
    """client1.com does not list SESSIONID in LoginMethods: its IMAP
    listener neither advertises nor accepts it."""
    session = web_login(web, tmp_path / "jar", "jane", "pw2", host="client1.com")
    client = imaplib.IMAP4("127.0.0.2", web.imap)
    assert "AUTH=SESSIONID" not in client.capabilities
    client.logout()
    assert not imap_sessionid(web.imap, "127.0.0.2", "jane", session)


def test_put_get_range_and_webdav_methods(web: Web, tmp_path: Path) -> None:
    """PUT then GET gives the same bytes (sha256); Range and HEAD work;
    MKCOL, COPY, MOVE, PROPFIND and DELETE change File Storage."""
    data = os.urandom(5 * 1024 * 1024 + 17)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    base = f"{web.url}/~john"
    assert status("-u", "john:pw1", "-T", str(source), f"{base}/big.bin") == 201
    assert status("-u", "john:pw1", "-T", str(source), f"{base}/big.bin") == 204
    got = curl("-u", "john:pw1", f"{base}/big.bin").stdout
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert curl("-r", "100-199", f"{base}/big.bin").stdout == data[100:200]
    head = curl("-I", f"{base}/big.bin").stdout.decode()
    assert f"Content-Length: {len(data)}" in head
    assert status("-u", "john:pw1", "-X", "MKCOL", f"{base}/dir") == 201
    assert status("-u", "john:pw1", "-X", "MKCOL", f"{base}/dir") == 405
    destination = f"Destination: {base}/dir/copy.bin"
    assert status("-u", "john:pw1", "-X", "COPY", "-H", destination, f"{base}/big.bin") == 201
    destination = f"Destination: {base}/dir/moved.bin"
    assert status("-u", "john:pw1", "-X", "MOVE", "-H", destination, f"{base}/dir/copy.bin") == 201
    listing = curl("-u", "john:pw1", "-X", "PROPFIND", "-H", "Depth: 1", f"{base}/dir/").stdout
    assert b"<D:href>/~john/dir/moved.bin</D:href>" in listing
    assert b"copy.bin" not in listing
    stored = web.storage("company.com", "john") / "dir" / "moved.bin"
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert status("-u", "john:pw1", "-X", "DELETE", f"{base}/dir") == 204
    assert not stored.parent.exists()
    # No half file is ever visible: nothing is left in the upload folder.
    assert not list((web.storage("company.com", "john").parent / "uploads.tmp").iterdir())


def test_small_files_over_one_connection(web: Web, tmp_path: Path) -> None:
    """curl fetching many small files over one kept-alive connection (the
    short way for plain GETs) gets every file whole, in order; a file
    replaced or removed meanwhile is seen at once; a link out of the
    storage is not followed."""
    storage = web.storage("company.com", "john") / "site"
    storage.mkdir(parents=True, exist_ok=True)
    files = {f"f{number}.txt": os.urandom(number * 97 + 1) for number in range(40)}
    for name, data in files.items():
        (storage / name).write_bytes(data)
    out = tmp_path / "got"
    out.mkdir()
    args = []
    for name in files:
        args += [f"{web.url}/~john/site/{name}", "-o", str(out / name)]
    done = curl("-w", "%{num_connects} ", *args)
    # One connection for all forty (the later transfers reuse it).
    assert done.stdout.decode().split() == ["1"] + ["0"] * (len(files) - 1)
    for name, data in files.items():
        assert hashlib.sha256((out / name).read_bytes()).digest() == hashlib.sha256(data).digest()
    (storage / "f1.txt").write_bytes(b"replaced")
    (storage / "f2.txt").unlink()
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not in the storage")
    (storage / "link.txt").symlink_to(outside)
    answers = curl(
        "-w",
        " %{http_code}\n",
        f"{web.url}/~john/site/f1.txt",
        f"{web.url}/~john/site/f2.txt",
        f"{web.url}/~john/site/link.txt",
    ).stdout
    assert answers.startswith(b"replaced 200\n")
    assert b"not in the storage" not in answers
    assert answers.endswith(b" 401\n")


def test_large_upload_needs_a_proven_login(web: Web, tmp_path: Path) -> None:
    """A large PUT with a wrong password, a forged session cookie or no
    credentials is answered before its body is taken (curl sends only what
    the sockets' buffers hold); nothing is stored."""
    size = 64 * 1024 * 1024
    source = tmp_path / "big.bin"
    with source.open("wb") as out:
        out.truncate(size)
    base = f"{web.url}/~john"
    uploads = web.storage("company.com", "john").parent / "uploads.tmp"
    for extra in (["-u", "john:wrong"], ["-b", "CGPSessionID=1001-forgedforgedforgedfo"], []):
        answer = curl(
            *extra,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_upload}",
            "-T",
            str(source),
            f"{base}/refused.bin",
        ).stdout.split()
        code, sent = int(answer[0]), int(float(answer[1]))
        assert code in (401, 413), (extra, code)
        assert sent < size // 2, (extra, sent)
    assert not (web.storage("company.com", "john") / "refused.bin").exists()
    assert not uploads.exists() or not list(uploads.iterdir())


def test_rights_and_private_directories(web: Web, tmp_path: Path) -> None:
    """Anonymous visitors read public files only; another account reads and
    writes only where granted; a private directory is the owner's alone."""
    base = f"{web.url}/~john"
    note = tmp_path / "note.txt"
    note.write_bytes(b"hello\n")
    for folder in ("pub", "priv", "shared"):
        assert status("-u", "john:pw1", "-X", "MKCOL", f"{base}/{folder}") == 201
        assert status("-u", "john:pw1", "-T", str(note), f"{base}/{folder}/note.txt") == 201
    admin(web.base, "files", "private", "john@company.com", "/priv")
    admin(web.base, "files", "set", "john@company.com", "/shared", "other@company.com", "rw")
    assert curl(f"{base}/pub/note.txt").stdout == b"hello\n"
    assert status(f"{base}/priv/note.txt") == 401
    assert status(f"{base}/priv/missing.txt") == 401
    assert status("-T", str(note), f"{base}/pub/new.txt") == 401
    assert status("-u", "other:pw3", f"{base}/priv/note.txt") == 404
    assert status("-u", "other:pw3", "-T", str(note), f"{base}/pub/new.txt") == 404
    assert curl("-u", "other:pw3", f"{base}/pub/note.txt").stdout == b"hello\n"
    assert status("-u", "other:pw3", "-T", str(note), f"{base}/shared/new.txt") == 201
    assert status("-u", "john:pw1", f"{base}/priv/note.txt") == 200
    assert status("-u", "john:wrong", f"{base}/priv/note.txt") == 401
    # The full name reaches the same storage from another domain's host.
    assert status("-H", "Host: client1.com", f"{web.url}/~john@company.com/pub/note.txt") == 200
    assert status("-H", "Host: client1.com", f"{web.url}/~john/pub/note.txt") == 401


@pytest.mark.parametrize(
    "path",
    [
        "/~john/../../../etc/passwd",
        "/~john/pub/..%2f..%2fpriv/note.txt",
        "/~john/%2e%2e/%2e%2e/etc/passwd",
        "/~john/%2E%2E/x",
        "/~john/pub%2f..%2fpriv%2fnote.txt",
        "/~john/pub%5c..%5cpriv%5cnote.txt",
        "/~john/pub\\..\\priv\\note.txt",
        "/~john/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "/~john/%c0%af",
        "/~john/%e0%80%ae%e0%80%ae/x",
        "/~john/a%00b",
        "/~..%2f..%2fetc/passwd",
    ],
)
def test_traversal_is_refused(web: Web, path: str) -> None:
    """Every encoding of a way out of the storage is refused with 400."""
    assert status("--path-as-is", "-u", "john:pw1", f"{web.url}{path}") == 400


def test_rclone_lists_and_copies(web: Web, tmp_path: Path) -> None:
    """rclone's WebDAV remote uploads a tree, lists it and copies it back."""
    if shutil.which("rclone") is None:
        pytest.skip("rclone is not installed")
    obscured = (
        subprocess.run(["rclone", "obscure", "pw1"], capture_output=True, check=True, timeout=30)
        .stdout.decode()
        .strip()
    )
    env = {
        **os.environ,
        "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
        "RCLONE_CONFIG_CG_TYPE": "webdav",
        "RCLONE_CONFIG_CG_URL": f"{web.url}/~john",
        "RCLONE_CONFIG_CG_VENDOR": "other",
        "RCLONE_CONFIG_CG_USER": "john",
        "RCLONE_CONFIG_CG_PASS": obscured,
    }
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"a" * 1000)
    (tree / "sub" / "b.bin").write_bytes(os.urandom(300_000))

    def rclone(*args: str) -> str:
        done = subprocess.run(["rclone", *args], capture_output=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    rclone("copy", str(tree), "cg:rclone")
    listed = rclone("lsf", "-R", "cg:rclone")
    assert set(listed.split()) == {"a.txt", "sub/", "sub/b.bin"}
    back = tmp_path / "back"
    rclone("copy", "cg:rclone", str(back))
    for name in ("a.txt", "sub/b.bin"):
        assert (back / name).read_bytes() == (tree / name).read_bytes()
    rclone("check", str(tree), "cg:rclone")


def test_cadaver_lists_and_gets(web: Web, tmp_path: Path) -> None:
    """cadaver (credentials from ~/.netrc) lists a collection and gets a file."""
    if shutil.which("cadaver") is None:
        pytest.skip("cadaver is not installed")
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login john password pw1\n")
    (tmp_path / ".netrc").chmod(0o600)
    note = tmp_path / "up.txt"
    note.write_bytes(b"from cadaver\n")
    script = f"mkcol cad\ncd cad\nput {note} up.txt\nls\nget up.txt {tmp_path / 'down.txt'}\nquit\n"
    done = subprocess.run(
        ["cadaver", f"{web.url}/~john/"],
        input=script.encode(),
        capture_output=True,
        env={**os.environ, "HOME": str(tmp_path)},
        timeout=60,
    )
    output = done.stdout.decode(errors="replace")
    assert "up.txt" in output, output
    assert (tmp_path / "down.txt").read_bytes() == b"from cadaver\n"


def test_browser_logs_in(web: Web, tmp_path: Path) -> None:
    """Headless chromium opens the login page, fills the form and lands on
    the account page; the screenshot stays in the test's folder."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        pytest.skip("chromium or chromedriver is not installed")
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=900,700"):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    browser = webdriver.Chrome(options=options, service=service)
    try:
        browser.get(f"{web.url}/")
        assert browser.title == "Log in to company.com"
        browser.save_screenshot(str(tmp_path / "login.png"))
        browser.find_element(By.ID, "username").send_keys("john")
        browser.find_element(By.ID, "password").send_keys("pw1")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        # The old page's heading may still be there (and then go stale)
        # while the browser follows the form's answer.
        WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda found: found.find_element(By.TAG_NAME, "h1").text == "john@company.com"
        )
        session = browser.find_element(By.ID, "session-id").text
        assert SESSION_ID.match(session)
        cookie = browser.get_cookie("CGPSessionID")
        assert cookie is not None and cookie["httpOnly"] and cookie["value"] == session
        browser.save_screenshot(str(tmp_path / "account.png"))
        assert imap_sessionid(web.imap, "127.0.0.1", "john", session)
    finally:
        browser.quit()
    assert (tmp_path / "account.png").stat().st_size > 1000
