"""XMPP client-to-server figures, communigate side by side with Prosody
(Debian's ``prosody``, a private instance started by this script with its
own configuration, certificate and data directory on a free loopback port;
skipped when it is not installed).

Both servers get the same users with the same password, require STARTTLS
before SASL and serve a self-signed certificate.  A small asyncio client
(raw XML, no XMPP library in the way) measures, with ``--clients`` clients
at once:

* logins/s: connect, stream header, STARTTLS, SASL PLAIN, stream restart,
  resource binding, ``</stream:stream>``;
* messages/s A→B: pairs of bound sessions, A sending ``--messages`` chat
  messages to B's full JID as fast as the link takes them, timed until B
  has received the last one, on a fresh server (the rate after many
  logins is ``--churn``'s);
* with the first two, the CPU time the server's process tree spent per
  login or message (the client runs on the same machine);
* with ``--churn N`` (the issue asks 40,000), messages/s A→B on a fresh
  server after N more logins (``--clients`` at once, at most
  ``--churn-seconds``), with the rate before them and the growth of the
  server's memory: whatever a server keeps per login shows there;
* memory per idle bound session: the growth of the server's process tree
  (PSS, ``/proc/PID/smaps_rollup``) with ``--idle`` sessions logged in,
  bound and sending initial presence, divided by their number, and the
  CPU the server spends while they idle.

Prosody runs with only the modules a login and a chat need
(``--prosody-modules few``, its fastest), or with the extensions
communigate's server always runs as well (``same``: MAM archiving every
chat, carbons, stream management, blocking; the archive in SQLite, which
needs Debian's ``lua-dbi-sqlite3``), which is the like-for-like comparison
of the message path.

Every work is run ``--repeats`` times, interleaved (prosody run 1,
communigate run 1, ...); the table gives the median of the runs that
succeeded and every run is listed below it.

Run:  python3 benchmarks/xmpp.py [--clients 10] [--logins 500]
      [--messages 20000] [--idle 1000] [--churn 40000] [--repeats 3] [--host 127.0.0.1]
      [--port N] [--prosody-port N] [--prosody-modules few|same]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
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
    process_tree,
    raise_file_limit,
    report,
    server_log_tail,
    step,
    terminate_tree,
    tree_memory,
    wait_for,
)

DOMAIN = "bench.test"
USERS = [f"user{number}" for number in range(20)]
PASSWORD = "secret"
#: Seconds one protocol step may take.
STEP = 30
#: Seconds the server's CPU is watched with the idle sessions in.
IDLE_WINDOW = 5
#: Seconds waited at most for the server to finish what the clients' ends
#: gave it (:func:`quiet`).
QUIET_LIMIT = 300

PROSODY_CONF = """\
daemonize = false
run_as_root = true
pidfile = "{root}/prosody.pid"
data_path = "{root}/data"
certificates = "{root}/certs"
log = {{ error = "{root}/prosody.log" }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "presence";{extra} }}
archive_expires_after = "never"
default_archive_policy = true
{storage}modules_disabled = {{ "s2s"; "http"; "posix"; }}
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "{host}" }}
s2s_ports = {{ }}
component_ports = {{ }}
authentication = "internal_plain"
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
limits = {{ c2s = {{ rate = "100mb/s"; }}; }}
ssl = {{ certificate = "{root}/cert.pem"; key = "{root}/key.pem"; }}
VirtualHost "{domain}"
"""


def communigate_setup(root: Path, host: str, port: int, idle: int) -> Starter:
    """A base with the users; starts a server with one ``--xmpp`` listener
    that takes ``idle`` connections from one address (the default is 50)."""
    base = Base(root)
    for user in USERS:
        base.account(user)
    base.run("server", "settings", "FailedLoginDelay=0.2s")
    base.run("server", "settings", f"Listeners={{xmpp={{MaxPerAddress=#{idle + 50};}};}}")

    @contextmanager
    def start() -> Iterator[Target]:
        with communigate(root, base, "xmpp", host, port) as (bound, pid):
            yield Target("communigate", host, bound, pid)

    return start


#: Prosody's MAM archive in SQLite (Debian's ``lua-dbi-sqlite3``).
SQL_ARCHIVE = """\
storage = {{ archive = "sql"; }}
sql = {{ driver = "SQLite3"; database = "{root}/prosody.sqlite"; }}
"""

#: What ``--prosody-modules same`` adds: the extensions communigate's
#: server always runs (it archives every chat for MAM, copies it for
#: carbons, offers stream management and blocking).
SAME_MODULES = ("mam", "carbons", "smacks", "blocklist")


def prosody_setup(root: Path, host: str, port: int, extra: tuple[str, ...] = ()) -> Starter | None:
    """A private Prosody with the same users and ``extra`` modules beside
    the few it needs; None unless installed."""
    binary = shutil.which("prosody")
    control = shutil.which("prosodyctl")
    if binary is None or control is None:
        return None
    root = root / "prosody"
    (root / "data").mkdir(parents=True)
    (root / "certs").mkdir()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", f"/CN={DOMAIN}",
            "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    bound = port or free_port(host)
    conf = root / "prosody.cfg.lua"
    modules = "".join(f' "{name}";' for name in extra)
    # The archive in SQLite, as Prosody's documentation advises for MAM
    # (its file storage rewrites an account's archive: 12 ms a message).
    storage = SQL_ARCHIVE.format(root=root) if "mam" in extra else ""
    conf.write_text(
        PROSODY_CONF.format(
            root=root, port=bound, host=host, domain=DOMAIN, extra=modules, storage=storage
        )
    )
    for user in USERS:
        subprocess.run(
            [control, "--config", str(conf), "register", user, DOMAIN, PASSWORD],
            check=True,
            capture_output=True,
        )

    @contextmanager
    def start() -> Iterator[Target]:
        process = subprocess.Popen(
            [binary, "-F", "--config", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=raise_file_limit,
        )
        try:
            wait_for(bound, process, host=host)
            yield Target("prosody", host, bound, process.pid)
        finally:
            terminate_tree(process)

    return start


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of ``pid``'s process tree so far (the
    client shares the machine: this says what the server itself spent)."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def quiet(pid: int, limit: float = QUIET_LIMIT) -> None:
    """Wait until the server has taken in what was sent or closed (it uses
    under a tenth of a core for a second), at most ``limit`` seconds: the
    ends of 10,000 sessions of 20 accounts are millions of presence
    broadcasts, which must not run into the server's stop."""
    deadline = time.monotonic() + limit
    spent = cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        now = cpu_seconds(pid)
        if now - spent < 0.1:
            return
        spent = now
    step(f"the server is still busy {limit:.0f} s after the clients' ends; stopping it")


# -- a minimal client -----------------------------------------------------------


def _header() -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    ).encode()


class Connection:
    """One client stream: reads up to a marker, writes bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    async def until(self, marker: bytes, what: str) -> bytes:
        """Everything up to and including ``marker``."""
        while marker not in self.buffer:
            chunk = await asyncio.wait_for(self.reader.read(65536), STEP)
            if not chunk:
                raise Failed(f"{what}: connection closed ({self.buffer[-200:]!r})")
            self.buffer += chunk
            if b"<failure" in self.buffer or b"<stream:error" in self.buffer:
                raise Failed(f"{what}: {self.buffer[-300:]!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker


_TLS = ssl.create_default_context()
_TLS.check_hostname = False
_TLS.verify_mode = ssl.CERT_NONE


async def login(target: Target, user: str, resource: str) -> Connection:
    """Connect, STARTTLS, PLAIN, bind: a bound session."""
    reader, writer = await asyncio.open_connection(target.host, target.port)
    connection = Connection(reader, writer)
    writer.write(_header())
    await connection.until(b"</stream:features>", "features")
    writer.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await connection.until(b"/>", "proceed")
    await writer.start_tls(_TLS, server_hostname=DOMAIN)
    connection.buffer = b""
    writer.write(_header())
    await connection.until(b"</stream:features>", "features after TLS")
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode())
    writer.write(
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + token + b"</auth>"
    )
    await connection.until(b"success", "SASL")
    await connection.until(b">", "SASL")
    writer.write(_header())
    await connection.until(b"</stream:features>", "features after SASL")
    writer.write(
        b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        b"<resource>" + resource.encode() + b"</resource></bind></iq>"
    )
    await connection.until(b"</iq>", "bind")
    return connection


async def logout(connection: Connection) -> None:
    """``</stream:stream>`` and close."""
    connection.writer.write(b"</stream:stream>")
    connection.writer.close()
    try:
        await asyncio.wait_for(connection.writer.wait_closed(), STEP)
    except (OSError, ssl.SSLError, TimeoutError):
        pass


async def logins_per_second(target: Target, clients: int, total: int, seconds: float) -> Run:
    """Full logins per second, ``clients`` at once."""

    async def one(index: int, units: int) -> int:
        connection = await login(target, USERS[index % len(USERS)], f"r{index}")
        await logout(connection)
        return 1

    spent = cpu_seconds(target.pid)
    done, rate = await bounded_rate(one, clients, total, seconds)
    spent = cpu_seconds(target.pid) - spent
    return Run(rate, f"{done} logins, server CPU {1000 * spent / max(done, 1):.2f} ms each")


async def messages_per_second(target: Target, pairs: int, total: int) -> Run:
    """Chat messages per second from A to B, ``pairs`` pairs at once."""
    senders, receivers = [], []
    for index in range(pairs):
        receivers.append(await login(target, USERS[2 * index + 1], "b"))
        senders.append(await login(target, USERS[2 * index], "a"))
    each = max(1, total // pairs)

    async def send(connection: Connection, index: int) -> None:
        to = f"{USERS[2 * index + 1]}@{DOMAIN}/b"
        stanza = f"<message to='{to}' type='chat'><body>hello number one</body></message>"
        batch = (stanza * 100).encode()
        for _ in range(each // 100):
            connection.writer.write(batch)
            await connection.writer.drain()
        connection.writer.write(stanza.encode() * (each % 100))
        await connection.writer.drain()

    async def receive(connection: Connection) -> None:
        seen = 0
        while seen < each:
            chunk = await asyncio.wait_for(connection.reader.read(262144), STEP)
            if not chunk:
                raise Failed("receiver: connection closed")
            data = connection.buffer + chunk
            seen += data.count(b"</message>")
            # What follows the last complete end tag may hold the start of
            # the next one: keep just enough of it.
            connection.buffer = data[data.rfind(b"</message>") + 10 :][-9:]

    spent = cpu_seconds(target.pid)
    start = time.monotonic()
    await asyncio.gather(
        *(send(connection, index) for index, connection in enumerate(senders)),
        *(receive(connection) for connection in receivers),
    )
    elapsed = time.monotonic() - start
    spent = cpu_seconds(target.pid) - spent
    for connection in senders + receivers:
        await logout(connection)
    cost = 1e6 * spent / (each * pairs)
    return Run(each * pairs / elapsed, f"{each * pairs} messages, server CPU {cost:.0f} µs each")


async def messages_after_logins(
    target: Target, clients: int, logins: int, pairs: int, total: int, seconds: float
) -> Run:
    """Chat messages per second A to B after ``logins`` full logins (each
    logged out again): what a long-running server keeps per login (closed
    sessions, tables keyed by full JID, caches) shows as a lower rate and
    a larger process.  The logins run ``clients`` at once, bounded in
    count and in ``seconds``; the rate before them is in the note."""
    before = await messages_per_second(target, pairs, total)
    memory = tree_memory(target.pid).pss

    async def one(index: int, units: int) -> int:
        connection = await login(target, USERS[index % len(USERS)], f"c{index}")
        await logout(connection)
        return 1

    done, rate = await bounded_rate(one, clients, logins, seconds)
    await asyncio.sleep(1)
    grown = tree_memory(target.pid).pss - memory
    after = await messages_per_second(target, pairs, total)
    if before.value is None or after.value is None:
        raise Failed("a message run failed")
    return Run(
        after.value,
        f"{before.value:.0f}/s before {done} logins ({rate:.0f}/s), "
        f"{after.value / before.value:.2f}x after; server +{grown} KiB",
    )


async def memory_per_session(target: Target, sessions: int, clients: int) -> Run:
    """KiB of the server's process tree per idle bound session."""
    before = tree_memory(target.pid).pss
    connections: list[Connection] = []
    semaphore = asyncio.Semaphore(clients)

    async def one(index: int) -> None:
        async with semaphore:
            connection = await login(target, USERS[index % len(USERS)], f"idle{index}")
            connection.writer.write(b"<presence/>")
            connections.append(connection)

    await asyncio.gather(*(one(index) for index in range(sessions)))
    await asyncio.sleep(2)
    after = tree_memory(target.pid).pss
    spent = cpu_seconds(target.pid)
    await asyncio.sleep(IDLE_WINDOW)
    busy = 100 * (cpu_seconds(target.pid) - spent) / IDLE_WINDOW
    for connection in connections:
        connection.writer.close()
    await quiet(target.pid)
    note = f"{sessions} sessions, {after - before} KiB, server CPU {busy:.1f}% while idle"
    return Run((after - before) / sessions, note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--logins", type=int, default=500, help="logins per run")
    parser.add_argument("--messages", type=int, default=20000, help="messages per run")
    parser.add_argument("--pairs", type=int, default=1, help="sender/receiver pairs")
    parser.add_argument("--idle", type=int, default=1000, help="idle sessions for memory")
    parser.add_argument(
        "--churn",
        type=int,
        default=0,
        help="logins before a second message run (0: not measured; the issue asks 40000)",
    )
    parser.add_argument("--seconds", type=float, default=60, help="longest run")
    parser.add_argument(
        "--churn-seconds", type=float, default=1200, help="longest time for the --churn logins"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per work and server")
    parser.add_argument(
        "--prosody-modules",
        choices=("few", "same"),
        default="few",
        help="few: only what a login and a chat need (Prosody's fastest); "
        "same: also " + ", ".join(SAME_MODULES) + ", the work communigate always does",
    )
    add_address_options(parser, "prosody")
    args = parser.parse_args()
    if args.churn < 0:
        parser.error("--churn cannot be negative")
    if min(args.clients, args.logins, args.messages, args.pairs, args.idle, args.repeats) < 1:
        parser.error("every count must be at least 1")
    if args.pairs * 2 > len(USERS):
        parser.error(f"at most {len(USERS) // 2} pairs")
    works = [
        Work(
            f"{args.clients} clients, STARTTLS + PLAIN + bind",
            "logins/s",
            "higher",
            lambda target: asyncio.run(
                logins_per_second(target, args.clients, args.logins, args.seconds)
            ),
        ),
        Work(
            f"{args.pairs} pair(s), chat messages A to B",
            "messages/s",
            "higher",
            lambda target: asyncio.run(messages_per_second(target, args.pairs, args.messages)),
            # Not after the logins work: a server's rate after many logins
            # is the --churn work's figure.
            fresh=True,
        ),
        Work(
            f"{args.idle} idle bound sessions",
            "KiB/session",
            "lower",
            lambda target: asyncio.run(memory_per_session(target, args.idle, args.clients)),
            fresh=True,
        ),
    ]
    if args.churn:
        churn = Work(
            f"{args.pairs} pair(s), chat messages after {args.churn} logins",
            "messages/s",
            "higher",
            lambda target: asyncio.run(
                messages_after_logins(
                    target, args.clients, args.churn, args.pairs, args.messages, args.churn_seconds
                )
            ),
            fresh=True,
        )
        works.insert(2, churn)
    with tempfile.TemporaryDirectory(prefix="xmpp-bench-") as tmp:
        root = Path(tmp)
        starters: dict[str, Starter] = {}
        step("setting up prosody")
        extra = SAME_MODULES if args.prosody_modules == "same" else ()
        found = prosody_setup(root, args.host, args.prosody_port, extra)
        if found is None:
            print("prosody: not installed; skipped", file=sys.stderr)
        else:
            starters["prosody"] = found
        step("setting up communigate")
        starters["communigate"] = communigate_setup(root, args.host, args.port, args.idle)
        measure(works, starters, args.repeats)
        tail = server_log_tail(root)
        prosody_log = root / "prosody" / "prosody.log"
        errors = prosody_log.read_text(errors="replace")[-2000:] if prosody_log.exists() else ""
    names = list(starters)
    title = f"XMPP c2s on {args.host}; prosody with {args.prosody_modules} modules"
    report(title, works, names, "prosody", args.repeats)
    if all(run.value is None for work in works for run in work.runs.get("communigate", [])):
        print("communigate: every run failed; end of its log:")
        print(tail)
    if errors.strip():
        print("prosody's error log (end):")
        print(errors)


if __name__ == "__main__":
    main()
