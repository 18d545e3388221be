"""Hostile input for every sans-IO reader: ``--count`` inputs each (10⁵ by
default), random bytes and mutations of valid commands, fed to

* the line splitter every line protocol shares,
* the FTP command parser (every state), the POP3 parser (every state),
* the IMAP command reader (fed in random-sized pieces),
* the TFTP packet parser, the settings-file parser, IMAP mailbox names.

A reader may only answer with its own documented error; anything else is
counted as a crash and its first examples are printed.  The CI test suite
runs a few hundred examples per reader (hypothesis); this script runs many
more.  No sockets.  Run:  python benchmarks/parsers.py [--count 100000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from communigate.protocols.ftp import parser as ftp
from communigate.protocols.imap4 import mutf7
from communigate.protocols.imap4.reader import CommandReader
from communigate.protocols.lines import LineSplitter
from communigate.protocols.pop3 import parser as pop3
from communigate.protocols.tftp import packets
from communigate.store import settingsformat
from communigate.store.mailstore import MailboxError

SEEDS: dict[str, list[bytes]] = {
    "ftp": [
        b"USER info",
        b"PASS x",
        b"PORT 127,0,0,1,4,1",
        b"EPRT |2|::1|5000|",
        b"REST 10",
        b"RETR ~john@client1.com/a b.txt",
        b"\xff\xf4\xff\xf2ABOR",
        b"OPTS UTF8 ON",
    ],
    "pop3": [b"USER info", b"APOP info 0123456789abcdef", b"TOP 1 10", b"AUTH PLAIN dGVzdA=="],
    "imap": [
        b"a LOGIN info {3}\r\npw!\r\n",
        b'b SELECT "~john/INBOX"\r\n',
        b"c FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n",
        b"d APPEND INBOX (\\Seen) {5+}\r\nhello\r\n",
        b"e SEARCH OR (FROM x) (TO y)\r\n",
    ],
    "tftp": [
        b"\x00\x01file\x00octet\x00blksize\x001468\x00",
        b"\x00\x04\x00\x01",
        b"\x00\x03\x00\x01data",
        b"\x00\x05\x00\x01oops\x00",
    ],
    "settings": [
        b'{ Password = "x\\"y"; AccessModes = (POP, IMAP); Limit = #10; }',
        b"{ a = [AAEC]; b = #T01-01-2024_00:00:00; c = { d = e; }; }",
    ],
    "mailbox": [b"INBOX", b"Entw&APw-rfe", b"~peter/&U,BTFw-", b"A&-B/c"],
}


def mutate(rng: random.Random, seed: bytes) -> bytes:
    """A seed with a few bytes changed, inserted or cut."""
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        at = rng.randint(0, len(data))
        if choice < 0.4 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif choice < 0.7:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            del data[at : at + rng.randint(1, 8)]
    return bytes(data)


def inputs(rng: random.Random, kind: str) -> bytes:
    """Random bytes half of the time, a mutated seed otherwise."""
    if rng.random() < 0.5:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 96)))
    return mutate(rng, rng.choice(SEEDS[kind]))


def run_ftp(data: bytes) -> None:
    for state in ftp.State:
        try:
            ftp.parse(data, state)
        except ftp.CommandError:
            pass


def run_pop3(data: bytes) -> None:
    for state in pop3.State:
        try:
            pop3.parse(data, state)
        except pop3.CommandError:
            pass


def run_lines(data: bytes) -> None:
    splitter = LineSplitter(64)
    for start in range(0, len(data), 7):
        splitter.feed(data[start : start + 7])


def run_imap(data: bytes) -> None:
    reader = CommandReader(max_literal=4096, max_line=512)
    step = 1 + len(data) % 13
    for start in range(0, len(data), step):
        reader.feed(data[start : start + step])


def run_tftp(data: bytes) -> None:
    try:
        packets.parse(data)
    except packets.PacketError:
        pass


def run_settings(data: bytes) -> None:
    try:
        settingsformat.loads(data.decode("utf-8", "replace"))
    except settingsformat.SettingsSyntaxError:
        pass


def run_mailbox(data: bytes) -> None:
    try:
        mutf7.mailbox_name(data)
    except MailboxError:
        pass


READERS: dict[str, tuple[str, Callable[[bytes], None]]] = {
    "line splitter": ("imap", run_lines),
    "FTP parser": ("ftp", run_ftp),
    "POP3 parser": ("pop3", run_pop3),
    "IMAP reader": ("imap", run_imap),
    "TFTP packets": ("tftp", run_tftp),
    "settings format": ("settings", run_settings),
    "IMAP mailbox names": ("mailbox", run_mailbox),
}


def main() -> int:
    """Run every reader; exit 1 if any crashed."""
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--count", type=int, default=100_000, help="inputs per reader")
    options.add_argument("--seed", type=int, default=1, help="random seed (repeatable runs)")
    options.add_argument("--seconds", type=float, default=120.0, help="time bound per reader")
    arguments = options.parse_args()
    crashed = False
    print(f"{'reader':<20} {'inputs':>8} {'crashes':>8} {'seconds':>8}")
    for name, (kind, run) in READERS.items():
        rng = random.Random(arguments.seed)
        started = time.monotonic()
        done = crashes = 0
        examples: list[tuple[bytes, str]] = []
        while done < arguments.count and time.monotonic() - started < arguments.seconds:
            data = inputs(rng, kind)
            try:
                run(data)
            except Exception as error:
                crashes += 1
                if len(examples) < 3:
                    examples.append((data, repr(error)))
            done += 1
        elapsed = time.monotonic() - started
        print(f"{name:<20} {done:>8} {crashes:>8} {elapsed:>8.1f}")
        for data, error in examples:
            print(f"    {data!r}: {error}")
        crashed = crashed or crashes > 0
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
