"""GSSAPI (Kerberos) IMAP logins per second, communigate side by side with
Dovecot (a private instance with ``auth_mechanisms = gssapi``, started by
this script when it is installed and we are root; otherwise communigate
alone).

A private MIT KDC (tests/integration/kdc.py) runs in a temporary directory
on a loopback port; users ``user0``… get tickets in credentials caches of
their own, and both servers accept tickets for ``imap/bench.test`` with the
same keytab (communigate imports it into bench.test; Dovecot reads it with
``auth_krb5_keytab``).  Both servers get ``KRB5_CONFIG`` and a replay cache
directory in the temporary directory.

Each login is one connection: ``AUTHENTICATE GSSAPI`` with the first token
as initial response, the mutual-authentication token and the RFC 4752
security-layer exchange, then ``LOGOUT``.  ``--clients`` clients run at
once, ``--logins`` in all or ``--seconds`` at most; the client side
(python-gssapi) runs in ``--processes`` processes so that it is not the
bottleneck.  Every work is run ``--repeats`` times, interleaved; the table
gives the median and every run is listed below it.

Run as root (Dovecot needs it):  python3 benchmarks/gssapi.py [--repeats 3]
    [--clients 20] [--logins 3000] [--host 127.0.0.1] [--port N]
    [--dovecot-port N]
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

# The first entry, this file's own folder when run as a script, would make
# this file the gssapi package.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.servers import (
    Base,
    Failed,
    Run,
    Starter,
    Target,
    Work,
    add_address_options,
    communigate,
    dovecot_binary,
    dovecot_conf,
    free_port,
    measure,
    raise_file_limit,
    report,
    running_dovecot,
    server_log_tail,
    step,
)
from tests.integration.kdc import KDC, GSSAPIClient, available

USERS = [f"user{number}" for number in range(20)]
DOMAIN = "bench.test"
SERVICE = f"imap@{DOMAIN}"


def communigate_setup(root: Path, keytab: Path, host: str, port: int) -> Starter:
    """A base whose bench.test holds the keytab and the users (with
    UseKerberosPassword); starts a server on it."""
    base = Base(root)
    base.run("domain", "settings", DOMAIN, "LoginMethods=(PLAIN,LOGIN,GSSAPI)")
    for user in USERS:
        base.account(user, "UseKerberosPassword=YES")
    base.run("domain", "kerberos", "import", DOMAIN, str(keytab))

    @contextmanager
    def start() -> Iterator[Target]:
        with communigate(root, base, "imap4", host, port) as (bound, pid):
            yield Target("communigate", host, bound, pid)

    return start


def dovecot_gssapi(folder: Path, keytab: Path, kdc: KDC) -> str:
    """What Dovecot needs for GSSAPI on top of the common configuration:
    the mechanism, the keytab, the service host name, the user name
    without its realm and the Kerberos environment of its auth process."""
    environment = " ".join(f"{name}={value}" for name, value in kdc.env.items())
    return (
        "auth_mechanisms = gssapi\n"
        f"auth_krb5_keytab = {keytab}\n"
        f"auth_gssapi_hostname = {DOMAIN}\n"
        "auth_username_format = %Ln\n"
        f"import_environment = TZ {environment}\n"
        f"default_client_limit = 1000\n"
    )


def dovecot_setup(root: Path, keytab: Path, kdc: KDC, host: str, port: int) -> Starter | None:
    """Starts Dovecot for a work; None unless installed and root."""
    binary = dovecot_binary()
    if binary is None or not Path("/usr/lib/dovecot/imap").exists():
        return None
    root.chmod(0o755)  # Dovecot's auth process runs as the dovecot user
    folder = root / "dovecot"
    for sub in ("run", "state", "home", "mail"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for path in (folder / "mail", folder / "home"):
        shutil.chown(path, "nobody", "nogroup")
    (folder / "passwd").write_text("")
    readable = folder / "imap.keytab"
    shutil.copyfile(keytab, readable)
    readable.chmod(0o644)
    # The auth process (user dovecot) writes its replay cache there too.
    Path(kdc.env["KRB5RCACHEDIR"]).chmod(0o1777)
    for parent in (kdc.root, kdc.root.parent):
        parent.chmod(0o755)

    @contextmanager
    def start() -> Iterator[Target]:
        bound = port or free_port(host)
        conf = dovecot_conf(folder, "imap", host, bound, dovecot_gssapi(folder, readable, kdc))
        with running_dovecot(binary, folder, conf, bound, host) as process:
            yield Target("dovecot", host, bound, process.pid)

    return start


def _lines_until(stream: object, tags: tuple[bytes, ...]) -> bytes:
    read = stream.readline  # type: ignore[attr-defined]
    while True:
        line: bytes = read()
        if not line:
            raise Failed("connection closed")
        if line.startswith(tags):
            return line


def gssapi_login(host: str, port: int, ccache: Path) -> None:
    """One connection: AUTHENTICATE GSSAPI (SASL-IR), LOGOUT."""
    client = GSSAPIClient(SERVICE, ccache)
    with socket.create_connection((host, port), timeout=30) as sock:
        stream = sock.makefile("rb")
        stream.readline()
        first = base64.b64encode(client.first())
        sock.sendall(b"a AUTHENTICATE GSSAPI " + first + b"\r\n")
        for _ in range(5):
            line = _lines_until(stream, (b"a ", b"+"))
            if not line.startswith(b"+"):
                break
            answer = client.answer(base64.b64decode(line[1:].strip()))
            sock.sendall(base64.b64encode(answer) + b"\r\n")
        if not line.startswith(b"a OK"):
            raise Failed(line.decode(errors="replace").strip())
        sock.sendall(b"b LOGOUT\r\n")
        _lines_until(stream, (b"b ",))


def _worker(
    host: str, port: int, ccaches: list[str], clients: int, total: int, stop: float
) -> tuple[int, str]:
    """``clients`` threads of logins in one process, until ``total`` are
    done or the wall clock passes ``stop``; (logins, first failure)."""
    import threading

    done = [0]
    failures: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        while time.time() < stop:
            with lock:
                if done[0] >= total or failures:
                    return
            try:
                gssapi_login(host, port, Path(ccaches[index % len(ccaches)]))
            except (Failed, OSError, ValueError) as error:
                with lock:
                    failures.append(str(error) or type(error).__name__)
                return
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(stop - time.time() + 60)
    return done[0], failures[0] if failures else ""


def logins(
    target: Target, ccaches: list[Path], clients: int, total: int, seconds: float, processes: int
) -> Run:
    """GSSAPI login+LOGOUT connections per second, ``clients`` at once."""
    processes = max(1, min(processes, clients))
    share = [clients // processes + (index < clients % processes) for index in range(processes)]
    names = [str(path) for path in ccaches]
    start = time.monotonic()
    stop = time.time() + seconds
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = [
            pool.submit(
                _worker,
                target.host,
                target.port,
                names[index::processes] or names,
                count,
                total // processes,
                stop,
            )
            for index, count in enumerate(share)
        ]
        results = [future.result(timeout=seconds + 120) for future in futures]
    elapsed = time.monotonic() - start
    done = sum(count for count, _ in results)
    failure = next((text for _, text in results if text), "")
    if failure and not done:
        raise Failed(failure)
    return Run(
        done / elapsed, f"{done} logins" + (f"; first failure: {failure}" if failure else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--logins", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--repeats", type=int, default=3, help="runs per work and server")
    add_address_options(parser, "dovecot")
    args = parser.parse_args()
    if min(args.clients, args.logins, args.repeats, args.processes) < 1:
        parser.error("every count must be at least 1")
    if not available():
        parser.error("MIT Kerberos (krb5kdc, kadmin.local, kinit) is not installed")
    raise_file_limit()
    with tempfile.TemporaryDirectory(prefix="gssapi-bench-") as tmp:
        root = Path(tmp)
        step("starting a KDC")
        kdc = KDC(root / "kdc")
        kdc.start()
        try:
            # The servers started below inherit these (krb5.conf, replay caches).
            os.environ.update(kdc.env)
            ccaches = []
            for user in USERS:
                kdc.add_user(user, "secret")
                ccaches.append(kdc.kinit(user, "secret", root / "kdc" / f"{user}.cc"))
            kdc.add_service(f"imap/{DOMAIN}")
            keytab = kdc.keytab(f"imap/{DOMAIN}", root / "imap.keytab")
            for ccache in ccaches:
                # The service ticket, fetched once into each cache.
                GSSAPIClient(SERVICE, ccache).first()
            works = [
                Work(
                    f"AUTHENTICATE GSSAPI+LOGOUT, {args.clients} clients",
                    "/s",
                    "higher",
                    lambda target: logins(
                        target, ccaches, args.clients, args.logins, args.seconds, args.processes
                    ),
                )
            ]
            starters: dict[str, Starter] = {}
            step("setting up communigate")
            starters["communigate"] = communigate_setup(root, keytab, args.host, args.port)
            found = dovecot_setup(root, keytab, kdc, args.host, args.dovecot_port)
            if found is None:
                print("dovecot: not installed or not root; skipped", file=sys.stderr)
            else:
                starters["dovecot"] = found
            measure(works, starters, args.repeats)
            tail = server_log_tail(root)
            dovecot_log = root / "dovecot" / "dovecot.log"
            dovecot_tail = "\n".join(
                line
                for line in (
                    dovecot_log.read_text(errors="replace") if dovecot_log.exists() else ""
                ).splitlines()
                if any(word in line for word in ("Error", "Fatal", "Panic"))
            )[-2000:]
        finally:
            kdc.stop()
    names = list(starters)
    report(f"GSSAPI IMAP logins on {args.host}", works, names, "dovecot", args.repeats)
    if all(run.value is None for run in works[0].runs.get("communigate", [])):
        print("communigate: every run failed; end of its log:")
        print(tail)
    if "dovecot" in names and all(run.value is None for run in works[0].runs.get("dovecot", [])):
        print("dovecot: every run failed; end of its log:")
        print(dovecot_tail)


if __name__ == "__main__":
    main()
