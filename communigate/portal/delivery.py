"""Local delivery: a message for an address goes where the Router says.

Used by ``communigate deliver`` (:func:`deliver`, blocking) and by LMTP
(:func:`deliver_durably`, flushing in the thread pool).  The address is
routed as mail (``Mail:`` records apply); an account gets the message in its
INBOX, a group's members get it each (once per account), an alias leads to
its account; a forwarder or remote address cannot be served without a relay
and is refused, as are unknown names.  The message is bytes, or a message
spooled to disk as it arrived (LMTP), linked into every INBOX it reaches.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, gatherResults

from communigate.portal.durable import DurableWriter
from communigate.portal.names import FullName
from communigate.portal.router import (
    LocalAccount,
    NotAccount,
    Rejected,
    RouteKind,
    Router,
)
from communigate.store.directory import IDirectory
from communigate.store.mailbox import Mailbox, StagedMessage
from communigate.store.spool import SpooledMessage

MAX_EXPANSION_DEPTH = 5


class DeliveryError(Exception):
    """The message cannot be delivered to this address; the text says why."""


def resolve_recipients(router: Router, address: FullName, depth: int = 0) -> list[LocalAccount]:
    """The local accounts a message for ``address`` should reach."""
    route = router.route(address, RouteKind.MAIL)
    if isinstance(route, LocalAccount):
        return [route]
    if isinstance(route, Rejected):
        raise DeliveryError(route.reason)
    if isinstance(route, NotAccount):
        if route.what == "discarded":
            return []
        if route.what == "group" and route.target is not None and depth < MAX_EXPANSION_DEPTH:
            found: list[LocalAccount] = []
            for member in route.target.targets:
                member_address = FullName.parse(member.lower(), route.target.domain)
                for account in resolve_recipients(router, member_address, depth + 1):
                    if account not in found:
                        found.append(account)
            return found
        raise DeliveryError(f"{address} leads to a {route.what}; no relay is configured")
    raise DeliveryError(f"unknown user account {address}")


def deliver_to(
    directory: IDirectory, accounts: list[LocalAccount], message: bytes | SpooledMessage
) -> list[str]:
    """Store a message in each account's INBOX; return their names.  A
    spooled message stays in its spool for the caller to discard."""
    delivered = []
    for account in accounts:
        Mailbox.of_account(directory.account_path(account.domain, account.name)).deliver(message)
        delivered.append(str(account))
    return delivered


def deliver_durably(
    directory: IDirectory,
    writer: DurableWriter,
    accounts: list[LocalAccount],
    message: bytes | SpooledMessage,
) -> Deferred[list[str]]:
    """:func:`deliver_to` with the disk flushes in ``writer``'s thread
    pool: fires with the accounts' names once the message is durable in
    every INBOX, or fails with the first error (copies that were stored
    stay).  The message is staged before this returns, so a spooled one
    may be discarded then."""
    staged: list[tuple[Mailbox, StagedMessage]] = []
    try:
        for account in accounts:
            mailbox = Mailbox.of_account(directory.account_path(account.domain, account.name))
            staged.append((mailbox, mailbox.stage(message)))
    except Exception:
        for mailbox, one in staged:
            mailbox.discard([one])
        return fail()
    commits = [writer.commit(mailbox, one) for mailbox, one in staged]
    done = gatherResults(commits, consumeErrors=True)
    names = [str(account) for account in accounts]
    return done.addCallbacks(lambda _: names, lambda failure: failure.value.subFailure)


def deliver(directory: IDirectory, router: Router, address: FullName, message: bytes) -> list[str]:
    """Deliver to every account ``address`` leads to; return their names."""
    return deliver_to(directory, resolve_recipients(router, address), message)
