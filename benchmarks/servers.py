"""What the benchmarks share: starting communigate from a fresh base
directory (filled through its own command line) on a given address and
port, waiting for a server, the memory of a server's own process tree, and
running works interleaved over several servers and reporting the median of
the runs with every run listed."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TWISTD = (sys.executable, "-c", "from twisted.scripts.twistd import run; run()")

#: The address every benchmark uses unless told otherwise.
LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A free TCP port on ``host`` (used only when no port was given)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def free_udp_port(host: str = LOOPBACK) -> int:
    """A free UDP port on ``host`` (used only when no port was given)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_for(
    port: int, process: subprocess.Popen[bytes], seconds: float = 20, host: str = LOOPBACK
) -> None:
    """Wait until a server accepts TCP connections (or fail)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited early")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def wait_for_tftp(
    port: int, process: subprocess.Popen[bytes], seconds: float = 20, host: str = LOOPBACK
) -> None:
    """Wait until a TFTP server answers a read request for a file that does
    not exist (any answer will do), or fail."""
    request = b"\x00\x01no-such-file.probe\x00octet\x00"
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("server exited early")
            try:
                probe.sendto(request, (host, port))
                probe.recvfrom(70000)
                return
            except OSError:
                time.sleep(0.05)
    raise RuntimeError("server did not start")


def link_or_copy(source: Path, target: Path) -> None:
    """The payload at a second place without a second copy on the disk."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def raise_file_limit() -> None:
    """Let a server hold many idle connections."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Base:
    """A base directory filled with the ``communigate`` command."""

    def __init__(self, root: Path) -> None:
        self.path = root / "base"
        self.cli = [sys.executable, "-m", "communigate.cli.main", "--base", str(self.path)]
        self.run("init", "--main-domain", "bench.test", "--postmaster-password", "x")

    def run(self, *args: str, stdin: bytes | None = None) -> None:
        """One command; it must succeed."""
        subprocess.run([*self.cli, *args], input=stdin, check=True, capture_output=True)

    def account(self, name: str, *settings: str) -> None:
        """An account in bench.test with the password ``secret``."""
        self.run("account", "create", f"{name}@bench.test", "--password", "secret", *settings)


@contextmanager
def communigate(
    root: Path,
    base: Base,
    protocol: str,
    host: str = LOOPBACK,
    port: int = 0,
    source: Path | None = None,
    extra: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
    start_seconds: float = 20,
) -> Iterator[tuple[int, int]]:
    """The server with one listener for ``protocol`` on ``host``:``port``
    (a free port when 0); (port, pid).  TFTP listens on UDP, the others on
    TCP.  ``source``: run the code of another source tree (such as an
    export of an earlier commit) instead of this one; ``extra``: more
    options of ``twistd communigate``; ``environment``: variables added to
    its environment; ``start_seconds``: how long it may take to listen."""
    udp = protocol == "tftp"
    if not port:
        port = free_udp_port(host) if udp else free_port(host)
    env = None
    if source is not None or environment:
        env = {**os.environ, **(environment or {})}
        if source is not None:
            env["PYTHONPATH"] = str(source)
    process = subprocess.Popen(
        [
            *TWISTD,
            "-n",
            "--pidfile=",
            f"--logfile={root / ('server.log' if source is None else 'server-source.log')}",
            "communigate",
            f"--base={base.path}",
            f"--{protocol}={'udp' if udp else 'tcp'}:{port}:interface={host}",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=raise_file_limit,
        cwd=source,
        env=env,
    )
    try:
        if udp:
            wait_for_tftp(port, process, host=host)
        else:
            wait_for(port, process, start_seconds, host=host)
        yield port, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def add_address_options(parser: argparse.ArgumentParser, *others: str) -> None:
    """``--host`` and ``--port`` (communigate's), and ``--NAME-port`` for
    each other server; a port of 0 (the default) means a free one."""
    parser.add_argument("--host", default=LOOPBACK, help="address every server listens on")
    parser.add_argument("--port", type=int, default=0, help="communigate's port (0: a free one)")
    for other in others:
        parser.add_argument(
            f"--{other}-port", type=int, default=0, help=f"{other}'s port (0: a free one)"
        )


async def bounded_rate(
    one: Callable[[int, int], Awaitable[int]],
    clients: int,
    total: int,
    seconds: float,
    batch: int = 1,
) -> tuple[int, float]:
    """``clients`` loops at once, each calling ``one(client index, units)``
    for up to ``batch`` units at a time (a session of several messages,
    say) until ``total`` units were started or ``seconds`` passed; ``one``
    returns how many units it did.  (units done, units per second)."""
    started = done = 0
    deadline = time.monotonic() + seconds

    async def client(index: int) -> None:
        nonlocal started, done
        while started < total and time.monotonic() < deadline:
            units = min(batch, total - started)
            started += units
            # Not ``done += await ...``: that reads ``done`` before the
            # await, losing what the other clients add meanwhile.
            count = await one(index, units)
            done += count

    start = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(client(index) for index in range(clients))), seconds + 60
    )
    return done, done / (time.monotonic() - start)


# -- Dovecot ------------------------------------------------------------------

#: A private Dovecot for one protocol: Debian's defaults for the login and
#: auth services, a passwd-file of clear passwords, Maildir as ``nobody``.
DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = {protocol}
listen = {host}
ssl = no
disable_plaintext_auth = no
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/home/%u
}}
service {protocol}-login {{
  inet_listener {protocol} {{
    port = {port}
  }}
}}
"""


def dovecot_binary() -> str | None:
    """Dovecot's master, if installed and usable (it needs root)."""
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not os.path.exists(binary) or os.geteuid() != 0:
        return None
    return binary


def dovecot_conf(root: Path, protocol: str, host: str, port: int, extra: str = "") -> str:
    """The configuration of a private Dovecot in ``root`` serving
    ``protocol`` (``imap`` or ``pop3``) on ``host``:``port``."""
    return DOVECOT_CONF.format(root=root, protocol=protocol, host=host, port=port) + extra


@contextmanager
def running_dovecot(
    binary: str, folder: Path, conf: str, port: int, host: str = LOOPBACK
) -> Iterator[subprocess.Popen[bytes]]:
    """Dovecot on ``conf`` (written to ``folder``) until the block ends,
    then stopped with its whole process tree."""
    path = folder / "dovecot.conf"
    path.write_text(conf)
    process = subprocess.Popen(
        [binary, "-F", "-c", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=raise_file_limit,
    )
    try:
        wait_for(port, process, host=host)
        yield process
    finally:
        terminate_tree(process)


# -- the memory of a server's own processes -----------------------------------


def children() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a server's own processes only)."""
    tree = children()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


@dataclass
class Memory:
    """Memory of a process tree, KiB (from ``/proc/PID/smaps_rollup``)."""

    pss: int = 0
    pss_anon: int = 0
    private: int = 0
    processes: int = 0


def tree_memory(pid: int) -> Memory:
    """The memory of ``pid``'s process tree."""
    memory = Memory()
    for member in process_tree(pid):
        try:
            text = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        memory.processes += 1
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            if name == "Pss":
                memory.pss += int(rest.split()[0])
            elif name == "Pss_Anon":
                memory.pss_anon += int(rest.split()[0])
            elif name in ("Private_Clean", "Private_Dirty"):
                memory.private += int(rest.split()[0])
    return memory


# -- interleaved runs and the report ------------------------------------------


@dataclass
class Target:
    """One running server, as the measurements see it."""

    name: str
    host: str
    port: int
    pid: int  # the server's first process; its descendants are counted too


@dataclass
class Run:
    """One run of one work on one server."""

    value: float | None  # None: failed
    note: str = ""


@dataclass
class Work:
    """Something measured on every server (or on ``only`` these)."""

    label: str
    unit: str
    better: str  # "higher" or "lower"
    run: Callable[[Target], Run]
    fresh: bool = False  # a server started for each run
    only: tuple[str, ...] = ()  # the servers that can do it (empty: all)
    runs: dict[str, list[Run]] = field(default_factory=dict)

    def applies(self, name: str) -> bool:
        """Whether server ``name`` does this work."""
        return not self.only or name in self.only


class Failed(Exception):
    """A run that did not do what it should have."""


Starter = Callable[[], AbstractContextManager[Target]]


def step(what: str) -> None:
    """Progress, on standard error."""
    print(f"... {what}", file=sys.stderr, flush=True)


def attempt(work: Work, target: Target) -> Run:
    """One run; a failure is recorded, not raised."""
    try:
        return work.run(target)
    except (Failed, OSError, subprocess.SubprocessError, ValueError, RuntimeError) as error:
        return Run(None, str(error) or type(error).__name__)


def measure(works: list[Work], starters: dict[str, Starter], repeats: int) -> None:
    """Every work, its runs interleaved over the servers (server A run 1,
    server B run 1, server A run 2, ...): the works that need a fresh
    server start one per run, the others share one server each."""
    with ExitStack() as stack:
        targets: dict[str, Target | None] = {}
        for name, start in starters.items():
            step(f"starting {name}")
            try:
                targets[name] = stack.enter_context(start())
            except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                targets[name] = None
                step(f"{name} did not start: {error}")
        for work in (work for work in works if not work.fresh):
            for number in range(1, repeats + 1):
                for name, found in targets.items():
                    if not work.applies(name):
                        continue
                    step(f"{work.label}: {name} run {number}")
                    result = attempt(work, found) if found else Run(None, "did not start")
                    work.runs.setdefault(name, []).append(result)
    for work in (work for work in works if work.fresh):
        for number in range(1, repeats + 1):
            for name, start in starters.items():
                if not work.applies(name):
                    continue
                step(f"{work.label}: {name} run {number} (fresh server)")
                try:
                    with start() as target:
                        result = attempt(work, target)
                except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                    result = Run(None, f"did not start ({error})")
                work.runs.setdefault(name, []).append(result)


def median(runs: list[Run]) -> float | None:
    """The median of the runs that succeeded."""
    values = [run.value for run in runs if run.value is not None]
    return statistics.median(values) if values else None


def cell(value: float | None) -> str:
    """A figure with three significant digits or so."""
    if value is None:
        return "failed"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def report(title: str, works: list[Work], names: list[str], reference: str, repeats: int) -> None:
    """The table of medians, a column for each server (``reference``
    first, communigate last; ratio = communigate / ``reference``), then
    every run of every work in the order they ran."""
    print()
    print(f"{title}; median of {repeats} interleaved runs")
    print(f"ratio = communigate / {reference}")
    columns = [reference] + [name for name in names if name not in (reference, "communigate")]
    columns.append("communigate")
    width = max(len(f"{work.label}, {work.unit}") for work in works) + 2
    widths = [max(12, len(name) + 2) for name in columns]
    head = "".join(f"{name:>{size}}" for name, size in zip(columns, widths, strict=True))
    print(f"{'work':<{width}}{head}{'ratio':>8}  better")
    for work in works:
        medians = {name: median(work.runs.get(name, [])) for name in columns}
        ours, theirs = medians["communigate"], medians[reference]
        ratio = f"{ours / theirs:.2f}" if ours is not None and theirs else "-"
        cells = "".join(
            f"{cell(medians[name]) if name in names and work.applies(name) else '-':>{size}}"
            for name, size in zip(columns, widths, strict=True)
        )
        label = f"{work.label}, {work.unit}"
        print(f"{label:<{width}}{cells}{ratio:>8}  {work.better}")
    print()
    print("All runs, in the order they ran within each work:")
    for work in works:
        print(f"{work.label}, {work.unit}")
        for name in names:
            if not work.applies(name):
                continue
            texts = []
            for run in work.runs.get(name, []):
                text = cell(run.value)
                if run.note:
                    text += f" ({run.note})"
                texts.append(text)
            print(f"  {name + ':':<13}" + "; ".join(texts))


def server_log_tail(root: Path) -> str:
    """The end of communigate's log (to show when every run failed)."""
    try:
        lines = (root / "server.log").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-15:])


def terminate_tree(process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    """SIGTERM a server, then whatever is left of its process tree."""
    left = process_tree(process.pid)[1:]
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=seconds)
    finally:
        for pid in left:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
