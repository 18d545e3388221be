"""HTTP figures: communigate's File Storage over HTTP side by side with
nginx (started by this script with its own configuration when installed;
otherwise communigate alone), serving the very same directory.

What is measured (plain HTTP/1.1 on 127.0.0.1, anonymous GETs of the
account's File Storage as ``/~web/...`` on both servers):

1. GET of one ``--mb`` MB file (one random MiB, repeated), curl writing
   to /dev/null: MB/s.
2. GET of ``--small`` small files (``--size`` bytes each, in one folder),
   ``--clients`` keep-alive connections at once (asyncio, raw HTTP/1.1),
   each file once: files per second.
3. Logins per second through the WebUser form (communigate only; nginx has
   none): ``--logins`` logins over ``--clients`` connections, each a
   ``GET /`` (form cookie and CSRF token) then ``POST /login`` answered by
   ``303`` and a session cookie.  The account's password is stored clear
   (communigate's default ``PasswordEncryption``), so this measures the
   HTTP and session path, not bcrypt.

nginx runs one worker process (communigate is one process) with
``sendfile on``.  Every work is run ``--repeats`` times, interleaved
(communigate run 1, nginx run 1, communigate run 2, ...); the table gives
the median of the runs that succeeded and every run is listed below it.
Ratio is communigate / nginx.  Every transfer and wait is bounded.

Run:
    python3 benchmarks/http.py [--mb 1024] [--small 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.servers import (
    LOOPBACK,
    Base,
    Failed,
    Run,
    Starter,
    Target,
    Work,
    bounded_rate,
    communigate,
    free_port,
    link_or_copy,
    measure,
    raise_file_limit,
    report,
    server_log_tail,
    step,
    wait_for,
)

USER = "web"
NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {root}/nginx-tmp;
    proxy_temp_path {root}/nginx-tmp;
    fastcgi_temp_path {root}/nginx-tmp;
    uwsgi_temp_path {root}/nginx-tmp;
    scgi_temp_path {root}/nginx-tmp;
    default_type application/octet-stream;
    server {{
        listen {host}:{port};
        location /~{user}/ {{ alias {storage}/; }}
    }}
}}
"""


def get_big(target: Target, size: int) -> Run:
    """One GET of the big file with curl: MB/s."""
    url = f"http://{target.host}:{target.port}/~{USER}/big.bin"
    limit = 30 + size / (20 * 1024 * 1024)
    started = time.monotonic()
    done = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url],
        capture_output=True,
        timeout=limit,
        check=False,
    )
    seconds = time.monotonic() - started
    code, _, got = done.stdout.decode().partition(" ")
    if code != "200" or int(got or 0) != size:
        raise Failed(f"status {code}, {got} bytes")
    return Run(size / (1024 * 1024) / seconds)


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length (or chunked) body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = (headers[key] + "; " if key in headers else "") + value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += (await reader.readexactly(size + 2))[:-2]
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def get_small(target: Target, count: int, size: int, clients: int) -> Run:
    """Every small file once, over ``clients`` keep-alive connections: files/s."""

    async def run() -> tuple[int, float]:
        connections = [
            await asyncio.open_connection(target.host, target.port) for _ in range(clients)
        ]
        names = iter(range(count))

        async def one(index: int, _units: int) -> int:
            reader, writer = connections[index]
            number = next(names)
            writer.write(
                f"GET /~{USER}/small/f{number} HTTP/1.1\r\nHost: bench.test\r\n\r\n".encode()
            )
            status, _, body = await _response(reader)
            if status != 200 or len(body) != size:
                raise Failed(f"small file {number}: status {status}, {len(body)} bytes")
            return 1

        try:
            return await bounded_rate(one, clients, count, 300)
        finally:
            for _, writer in connections:
                writer.close()

    done, rate = asyncio.run(run())
    if done != count:
        raise Failed(f"{done} of {count} files")
    return Run(rate)


def logins(target: Target, count: int, clients: int) -> Run:
    """Logins through the form, ``clients`` at once: logins/s."""
    token = re.compile(rb'name="csrf" value="([^"]+)"')

    async def one(_index: int, _units: int) -> int:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n")
            status, headers, page = await _response(reader)
            found = token.search(page)
            cookie = re.search(r"CGPLoginForm=([A-Za-z0-9]+)", headers.get("set-cookie", ""))
            if status != 200 or found is None or cookie is None:
                raise Failed(f"login page: status {status}")
            form = b"csrf=" + found.group(1) + f"&username={USER}&password=secret".encode()
            writer.write(
                b"POST /login HTTP/1.1\r\nHost: bench.test\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                + f"Cookie: CGPLoginForm={cookie.group(1)}\r\n".encode()
                + f"Content-Length: {len(form)}\r\n\r\n".encode()
                + form
            )
            status, headers, _ = await _response(reader)
            if status != 303 or "CGPSessionID=" not in headers.get("set-cookie", ""):
                raise Failed(f"login: status {status}")
            return 1
        finally:
            writer.close()

    done, rate = asyncio.run(bounded_rate(one, clients, count, 120))
    if done != count:
        raise Failed(f"{done} of {count} logins")
    return Run(rate)


def fill(storage: Path, payload: Path, small: int, size: int) -> None:
    """The big file and the folder of small files."""
    storage.mkdir(parents=True, exist_ok=True)
    link_or_copy(payload, storage / "big.bin")
    folder = storage / "small"
    folder.mkdir(exist_ok=True)
    data = os.urandom(size)
    for number in range(small):
        (folder / f"f{number}").write_bytes(data)


def communigate_setup(root: Path, payload: Path, small: int, size: int) -> tuple[Starter, Path]:
    """A base with the account and its files; starts a server on it."""
    base = Base(root)
    base.account(USER)
    base.run("server", "settings", "Listeners={http={MaxPerAddress=#1000;};}")
    storage = base.path / "Accounts" / f"{USER}.macnt" / "account.web"
    fill(storage, payload, small, size)

    @contextmanager
    def start() -> Iterator[Target]:
        with communigate(root, base, "http") as (port, pid):
            yield Target("communigate", LOOPBACK, port, pid)

    return start, storage


def nginx_setup(root: Path, storage: Path) -> Starter | None:
    """nginx serving the same storage folder, None if not installed."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        return None
    (root / "nginx-tmp").mkdir(exist_ok=True)

    @contextmanager
    def start() -> Iterator[Target]:
        port = free_port()
        conf = root / "nginx.conf"
        text = NGINX_CONF.format(root=root, host=LOOPBACK, port=port, user=USER, storage=storage)
        if os.geteuid() == 0:
            text = "user root;\n" + text
        conf.write_text(text)
        process = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=raise_file_limit,
        )
        try:
            wait_for(port, process)
            yield Target("nginx", LOOPBACK, port, process.pid)
        finally:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="big file size, MB (MiB)")
    parser.add_argument("--small", type=int, default=10000, help="number of small files")
    parser.add_argument("--size", type=int, default=4096, help="small file size, bytes")
    parser.add_argument("--clients", type=int, default=8, help="connections at once")
    parser.add_argument("--logins", type=int, default=500, help="logins through the form")
    parser.add_argument("--repeats", type=int, default=3, help="runs per work and server")
    args = parser.parse_args()
    if min(args.mb, args.small, args.size, args.clients, args.logins, args.repeats) < 1:
        parser.error("every count must be at least 1")
    raise_file_limit()
    size = args.mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="http-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        payload = root / "payload.bin"
        step(f"writing a {args.mb} MB file and {args.small} small files")
        with open(payload, "wb") as handle:
            chunk = os.urandom(1024 * 1024)
            for _ in range(args.mb):
                handle.write(chunk)
        start, storage = communigate_setup(root, payload, args.small, args.size)
        starters: dict[str, Starter] = {}
        found = nginx_setup(root, storage)
        if found is not None:
            starters["nginx"] = found
        starters["communigate"] = start
        works = [
            Work(f"GET {args.mb} MB file", "MB/s", "higher", lambda t: get_big(t, size)),
            Work(
                f"GET {args.small} files of {args.size} B, {args.clients} connections",
                "files/s",
                "higher",
                lambda t: get_small(t, args.small, args.size, args.clients),
            ),
            Work(
                f"{args.logins} form logins, {args.clients} at once",
                "logins/s",
                "higher",
                lambda t: logins(t, args.logins, args.clients),
                only=("communigate",),
            ),
        ]
        measure(works, starters, args.repeats)
        tail = server_log_tail(root)
    names = list(starters)
    reference = "nginx" if "nginx" in names else "communigate"
    report("HTTP (plain, loopback)", works, names, reference, args.repeats)
    if "nginx" not in names:
        print("nginx: not installed; communigate alone")
    if all(run.value is None for work in works for run in work.runs.get("communigate", [])):
        print("communigate: every run failed; end of its log:")
        print(tail)


if __name__ == "__main__":
    main()
