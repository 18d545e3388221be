"""SMTP submission figures, communigate side by side with Exim (a private
instance started by this script with its own configuration when
``exim4-daemon-light`` is installed and we are root; otherwise communigate
alone).

Both servers get the same users with the same password and deliver locally
into Maildir-style folders: communigate through its own delivery code (the
250 comes once the copy is on disk); Exim accepts AUTH PLAIN, writes its
spool and delivers each message at once in a delivery process (Maildir
appendfile transport).  Dovecot's submission service cannot be the anchor:
it only relays to an SMTP server and Dovecot's LMTP refuses EHLO.  What is
measured, with ``--clients`` clients at once, each sending ``--kb`` KB
messages from its own account to another local account with AUTH PLAIN
(clear text on loopback, no TLS on either side):

* messages/s with one message per session (connect, EHLO, AUTH, MAIL, RCPT,
  DATA, QUIT);
* messages/s with ``--per-session`` messages per authenticated session.

Every work is run ``--repeats`` times, interleaved (communigate run 1,
exim run 1, communigate run 2, ...); the table gives the median of the runs
that succeeded and every run is listed below it, followed by how many
messages each server stored.  Every loop is bounded in count and time.

Run:  python3 benchmarks/smtp.py [--clients 10] [--messages 2000] [--kb 10]
      [--per-session 10] [--repeats 3] [--host 127.0.0.1] [--port N]
      [--exim-port N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
    free_port,
    measure,
    raise_file_limit,
    report,
    server_log_tail,
    step,
    terminate_tree,
    wait_for,
)

USERS = [f"user{number}" for number in range(20)]
DOMAIN = "bench.test"

#: A private Exim: AUTH PLAIN with one password, local delivery to Maildir.
#: Started with ``-C`` it runs as the Exim user, so it delivers as that user.
EXIM_CONF = """\
primary_hostname = {domain}
domainlist local_domains = {domain}
local_interfaces = {host}
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
tls_advertise_hosts =
auth_advertise_hosts = *
acl_smtp_rcpt = acl_check_rcpt
host_lookup =
smtp_accept_max = 500
smtp_accept_queue_per_connection = 0
begin acl
acl_check_rcpt:
  accept authenticated = *
         domains = +local_domains
  deny message = authentication required
begin routers
local:
  driver = accept
  domains = +local_domains
  local_parts = lsearch;{root}/users
  transport = maildir
begin transports
maildir:
  driver = appendfile
  directory = {root}/mail/$local_part_data/Maildir
  maildir_format
  create_directory
  user = {user}
  group = {user}
  mode = 0600
begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${{if eq{{$auth3}}{{secret}}}}
  server_set_id = $auth2
"""
EXIM_USER = "Debian-exim"


def message_of(kb: int) -> bytes:
    """A message of about ``kb`` KB with its own Message-ID and Date."""
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
    body = line * (kb * 1024 // len(line))
    return (
        b"Subject: bench\r\nMessage-ID: <bench@bench.test>\r\n"
        b"Date: Mon, 30 Nov 2026 12:00:00 +0000\r\n\r\n" + body
    )


def communigate_setup(root: Path, host: str, port: int) -> Starter:
    """A base with the users; starts a server with one submission listener."""
    base = Base(root)
    for user in USERS:
        base.account(user)
    # A failed login costs 2 s by default: none is expected, keep it short.
    base.run("server", "settings", "FailedLoginDelay=0.2s")

    @contextmanager
    def start() -> Iterator[Target]:
        with communigate(root, base, "submission", host, port) as (bound, pid):
            yield Target("communigate", host, bound, pid)

    return start


def exim_setup(root: Path, host: str, port: int) -> Starter | None:
    """A private Exim with the same users; None unless installed and root."""
    binary = shutil.which("exim4") or "/usr/sbin/exim4"
    if not os.path.exists(binary) or os.geteuid() != 0:
        return None
    root.chmod(0o755)  # Exim runs as its own user
    root = root / "exim"
    for sub in ("spool", "log", "mail"):
        (root / sub).mkdir(parents=True)
        shutil.chown(root / sub, EXIM_USER, EXIM_USER)
    root.chmod(0o755)
    (root / "users").write_text("".join(f"{user}: {user}\n" for user in USERS))
    conf = root / "exim.conf"
    conf.write_text(EXIM_CONF.format(domain=DOMAIN, host=host, root=root, user=EXIM_USER))

    @contextmanager
    def start() -> Iterator[Target]:
        bound = port or free_port(host)
        process = subprocess.Popen(
            [binary, "-C", str(conf), "-bdf", "-oX", str(bound)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=raise_file_limit,
        )
        try:
            wait_for(bound, process, host=host)
            yield Target("exim", host, bound, process.pid)
        finally:
            terminate_tree(process)

    return start


async def expect(reader: asyncio.StreamReader, code: bytes, what: str) -> None:
    """Read one reply (all its lines); it must have ``code``."""
    while True:
        line = await reader.readline()
        if not line:
            raise Failed(f"{what}: connection closed")
        if line[3:4] != b"-":
            break
    if not line.startswith(code):
        raise Failed(f"{what}: {line!r}")


async def one_session(host: str, port: int, index: int, message: bytes, count: int) -> int:
    """One authenticated session sending ``count`` messages; how many."""
    user = USERS[index % len(USERS)]
    other = USERS[(index + 1) % len(USERS)]
    token = base64.b64encode(f"\0{user}@{DOMAIN}\0secret".encode())
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await expect(reader, b"220", "greeting")
        writer.write(b"EHLO bench.client\r\n")
        await expect(reader, b"250", "EHLO")
        writer.write(b"AUTH PLAIN " + token + b"\r\n")
        await expect(reader, b"235", "AUTH")
        for _ in range(count):
            writer.write(
                f"MAIL FROM:<{user}@{DOMAIN}>\r\nRCPT TO:<{other}@{DOMAIN}>\r\nDATA\r\n".encode()
            )
            await expect(reader, b"250", "MAIL")
            await expect(reader, b"250", "RCPT")
            await expect(reader, b"354", "DATA")
            writer.write(message + b".\r\n")
            await expect(reader, b"250", "message")
        writer.write(b"QUIT\r\n")
        await expect(reader, b"221", "QUIT")
        return count
    finally:
        writer.close()


async def messages_per_second(
    target: Target, clients: int, total: int, per_session: int, message: bytes, seconds: float
) -> Run:
    """Messages per second, ``clients`` at once."""

    async def one(index: int, units: int) -> int:
        return await one_session(target.host, target.port, index, message, units)

    done, rate = await bounded_rate(one, clients, total, seconds, per_session)
    return Run(rate, f"{done} messages")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--messages", type=int, default=2000, help="messages per run")
    parser.add_argument("--kb", type=int, default=10, help="message size")
    parser.add_argument("--per-session", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60, help="longest run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per work and server")
    add_address_options(parser, "exim")
    args = parser.parse_args()
    if min(args.clients, args.messages, args.kb, args.per_session, args.repeats) < 1:
        parser.error("every count must be at least 1")
    message = message_of(args.kb)
    works = [
        Work(
            f"{args.clients} clients, 1 message/session, {args.kb} KB",
            "messages/s",
            "higher",
            lambda target: asyncio.run(
                messages_per_second(target, args.clients, args.messages, 1, message, args.seconds)
            ),
        ),
        Work(
            f"{args.clients} clients, {args.per_session} messages/session, {args.kb} KB",
            "messages/s",
            "higher",
            lambda target: asyncio.run(
                messages_per_second(
                    target, args.clients, args.messages, args.per_session, message, args.seconds
                )
            ),
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="smtp-bench-") as tmp:
        root = Path(tmp)
        starters: dict[str, Starter] = {}
        step("setting up communigate")
        starters["communigate"] = communigate_setup(root, args.host, args.port)
        step("setting up exim")
        found = exim_setup(root, args.host, args.exim_port)
        if found is None:
            print("exim: not installed (exim4-daemon-light) or not root; skipped", file=sys.stderr)
        else:
            starters["exim"] = found
        measure(works, starters, args.repeats)
        tail = server_log_tail(root)
        delivered = count_delivered(root)
    names = list(starters)
    report(f"SMTP submission on {args.host}", works, names, "exim", args.repeats)
    print(f"messages stored: {delivered}")
    if all(run.value is None for work in works for run in work.runs.get("communigate", [])):
        print("communigate: every run failed; end of its log:")
        print(tail)


def count_delivered(root: Path) -> str:
    """How many message files each server stored (a check that the work
    was really done)."""
    ours = sum(
        1
        for path in (root / "base").rglob("*")
        if path.is_file() and path.parent.name in ("new", "cur")
    )
    theirs = sum(1 for path in (root / "exim" / "mail").rglob("*") if path.parent.name == "new")
    return f"communigate {ours}, exim {theirs}"


if __name__ == "__main__":
    main()
