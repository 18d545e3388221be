"""``communigate queue list|flush|delete``: the submission queue (``Queue/``).

``list`` shows every message waiting for the smart host (id, age, sender,
recipients, attempts, next attempt, last error).  ``flush [ID]`` makes one
entry, or all, due now: the running server reads the queue folder every few
seconds (:mod:`communigate.protocols.smtp.relay`) and tries them then; no
restart and no control request is needed.  ``delete ID`` removes an entry
for good (no bounce); an attempt in flight then records nothing.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from communigate.cli.arguments import CommandFailed
from communigate.protocols.smtp.queue import MailQueue, queue_folder
from communigate.store.files import FileDirectory


def add_parser(sub: Any) -> None:
    """Add the ``queue`` subcommand."""
    parser = sub.add_parser("queue", help="messages waiting for the smart host")
    parser.add_argument("action", choices=["list", "flush", "delete"])
    parser.add_argument("id", nargs="?", metavar="ID", help="a queue entry (flush: default all)")


def _when(seconds: float, now: float) -> str:
    """``in 4m`` / ``now`` / ``12m ago``."""
    delta = int(seconds - now)
    if -1 <= delta <= 0:
        return "now"
    amount = abs(delta)
    text = (
        f"{amount}s"
        if amount < 120
        else f"{amount // 60}m"
        if amount < 7200
        else f"{amount // 3600}h"
    )
    return f"in {text}" if delta > 0 else f"{text} ago"


def cmd_queue(args: argparse.Namespace, directory: FileDirectory) -> None:
    """Run ``queue list|flush|delete``."""
    queue = MailQueue(queue_folder(directory.base))
    now = time.time()
    if args.action == "list":
        entries = queue.entries()
        for entry in entries:
            due = "now" if entry.next_attempt <= now else _when(entry.next_attempt, now)
            print(
                f"{entry.id} queued {_when(entry.created, now)} from <{entry.sender}> "
                f"to {', '.join(f'<{one}>' for one in entry.recipients)}; "
                f"attempts {entry.attempts}, next {due}"
                + (f"; last error: {entry.last_error}" if entry.last_error else "")
            )
        if not entries:
            print("the queue is empty")
        return
    if args.action == "flush":
        if args.id is None:
            entries = queue.entries()
        else:
            found = queue.load(args.id)
            if found is None:
                raise CommandFailed(f"no queue entry {args.id}")
            entries = [found]
        flushed = 0
        for entry in entries:
            entry.next_attempt = 0.0
            flushed += queue.save(entry)
        print(f"{flushed} entr{'y' if flushed == 1 else 'ies'} due now")
        return
    if args.id is None:
        raise CommandFailed("queue delete needs an ID")
    if not queue.remove(args.id):
        raise CommandFailed(f"no queue entry {args.id}")
    print(f"deleted {args.id}")
