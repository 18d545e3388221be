"""SCRAM-SHA-256 logins per second, communigate side by side with Dovecot
(a private instance started by this script when it is installed and we are
root; otherwise communigate alone).

Both servers keep only SCRAM secrets the client's password cannot be read
from: communigate's accounts have bcrypt passwords (``UB-crpt``) and the
stored ``SCRAM-SHA-256`` secret every password change writes; Dovecot's
passwd-file holds ``{SCRAM-SHA-256}iterations,salt,StoredKey,ServerKey``
(the same 4096 iterations) and offers ``auth_mechanisms = scram-sha-256``.
Each connection runs AUTHENTICATE SCRAM-SHA-256 (with SASL-IR), checks
the server's signature, then LOGOUT.  The clients keep the salted password
of each (user, salt) as RFC 5802 §5.1 allows, so the figure is the
server's work, not the client's PBKDF2.

Every run is ``--clients`` at once, ``--logins`` in all or ``--seconds`` at
most; ``--repeats`` interleaved runs per server, the median in the table
and every run listed below it.

Run as root (Dovecot needs it):  python3 benchmarks/scram.py [--repeats 3]
    [--clients 20] [--logins 3000] [--host 127.0.0.1] [--port N] [--dovecot-port N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.imap import dovecot_folder, dovecot_limits
from benchmarks.servers import (
    Base,
    Failed,
    Run,
    Starter,
    Target,
    Work,
    add_address_options,
    bounded_rate,
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

USERS = [f"suser{number}" for number in range(20)]
PASSWORD = b"secret"
ITERATIONS = 4096
_SALTED: dict[tuple[str, bytes, int], bytes] = {}


def dovecot_secret(password: bytes) -> str:
    """Dovecot's ``{SCRAM-SHA-256}`` stored form of ``password``."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, ITERATIONS)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored = hashlib.sha256(client_key).digest()
    server = hmac.digest(salted, b"Server Key", "sha256")
    parts = (salt, stored, server)
    return f"{{SCRAM-SHA-256}}{ITERATIONS}," + ",".join(
        base64.b64encode(part).decode() for part in parts
    )


def communigate_setup(root: Path, host: str, port: int) -> Starter:
    """Accounts with bcrypt passwords (and so stored SCRAM secrets)."""
    base = Base(root)
    for user in USERS:
        base.account(user, "PasswordEncryption=UB-crpt")
    base.run("domain", "settings", "bench.test", "LoginMethods=(PLAIN,SCRAM-SHA-256)")

    @contextmanager
    def start() -> Iterator[Target]:
        with communigate(root, base, "imap4", host, port) as (bound, pid):
            yield Target("communigate", host, bound, pid)

    return start


def dovecot_setup(root: Path, host: str, port: int) -> Starter | None:
    """Dovecot with the same users, SCRAM-SHA-256 secrets only."""
    binary = dovecot_binary()
    if binary is None or not Path("/usr/lib/dovecot/imap").exists():
        return None
    folder = dovecot_folder(root)
    (folder / "passwd").write_text(
        "".join(f"{user}:{dovecot_secret(PASSWORD)}\n" for user in USERS)
    )

    @contextmanager
    def start() -> Iterator[Target]:
        bound = port or free_port(host)
        extra = dovecot_limits(64) + "auth_mechanisms = plain scram-sha-256\n"
        conf = dovecot_conf(folder, "imap", host, bound, extra)
        with running_dovecot(binary, folder, conf, bound, host) as process:
            yield Target("dovecot", host, bound, process.pid)

    return start


def _salted(user: str, salt: bytes, iterations: int) -> bytes:
    key = (user, salt, iterations)
    if key not in _SALTED:
        _SALTED[key] = hashlib.pbkdf2_hmac("sha256", PASSWORD, salt, iterations)
    return _SALTED[key]


async def _line(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readline()
    if not line:
        raise Failed("connection closed")
    return line


async def scram_login(host: str, port: int, user: str) -> None:
    """One connection: AUTHENTICATE SCRAM-SHA-256, the server's signature
    checked, LOGOUT."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await _line(reader)
        nonce = base64.b64encode(os.urandom(18)).decode()
        bare = f"n={user},r={nonce}"
        first = base64.b64encode(f"n,,{bare}".encode()).decode()
        writer.write(f"a AUTHENTICATE SCRAM-SHA-256 {first}\r\n".encode())
        line = await _line(reader)
        if not line.startswith(b"+ "):
            raise Failed(line.decode(errors="replace").strip())
        server_first = base64.b64decode(line[2:].strip()).decode()
        fields = dict(part.split("=", 1) for part in server_first.split(","))
        salted = _salted(user, base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={fields['r']}"
        message = f"{bare},{server_first},{without_proof}".encode()
        signature = hmac.digest(stored, message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        final = f"{without_proof},p={base64.b64encode(proof).decode()}"
        writer.write(base64.b64encode(final.encode()) + b"\r\n")
        line = await _line(reader)
        expected = hmac.digest(hmac.digest(salted, b"Server Key", "sha256"), message, "sha256")
        verifier = b"v=" + base64.b64encode(expected)
        if line.startswith(b"+ "):
            if base64.b64decode(line[2:].strip()) != verifier:
                raise Failed("wrong server signature")
            writer.write(b"\r\n")
            line = await _line(reader)
        elif b"[SASL" not in line and not line.startswith(b"a OK"):
            raise Failed(line.decode(errors="replace").strip())
        if not line.startswith(b"a OK"):
            raise Failed(line.decode(errors="replace").strip())
        writer.write(b"b LOGOUT\r\n")
        while not (await _line(reader)).startswith(b"b "):
            pass
    finally:
        writer.close()


async def logins_per_second(target: Target, clients: int, total: int, seconds: float) -> float:
    """SCRAM logins per second, ``clients`` at once."""

    async def one(index: int, units: int) -> int:
        await scram_login(target.host, target.port, USERS[index % len(USERS)])
        return 1

    return (await bounded_rate(one, clients, total, seconds))[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--logins", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--repeats", type=int, default=3, help="runs per server")
    add_address_options(parser, "dovecot")
    args = parser.parse_args()
    if min(args.clients, args.logins, args.repeats) < 1:
        parser.error("every count must be at least 1")
    raise_file_limit()
    works = [
        Work(
            f"SCRAM-SHA-256 logins, {args.clients} clients",
            "/s",
            "higher",
            lambda target: Run(
                asyncio.run(logins_per_second(target, args.clients, args.logins, args.seconds))
            ),
        )
    ]
    with tempfile.TemporaryDirectory(prefix="scram-bench-") as tmp:
        root = Path(tmp)
        starters: dict[str, Starter] = {}
        step("setting up communigate")
        starters["communigate"] = communigate_setup(root, args.host, args.port)
        found = dovecot_setup(root, args.host, args.dovecot_port)
        if found is None:
            print("dovecot: not installed (dovecot-imapd) or not root; skipped", file=sys.stderr)
        else:
            starters["dovecot"] = found
        measure(works, starters, args.repeats)
        tail = server_log_tail(root)
    report(
        f"SCRAM-SHA-256 over IMAP on {args.host}", works, list(starters), "dovecot", args.repeats
    )
    if all(run.value is None for work in works for run in work.runs.get("communigate", [])):
        print("communigate: every run failed; end of its log:")
        print(tail)


if __name__ == "__main__":
    main()
