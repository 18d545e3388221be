"""Delivery status notifications (RFC 3464), without I/O.

When the smart host refuses a queued message for good, or the message
waited longer than ``SubmitQueueExpiry``, the sender gets a
``multipart/report; report-type=delivery-status`` message in its own
mailbox: a text part in words, the machine-readable ``message/delivery-status``
part (one block per failed recipient) and the original message's header
(``text/rfc822-headers``), as RFC 3462/6522 describe.  Date, identifiers
and the boundary come from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

#: How much of the original header is returned, at most.
MAX_RETURNED_HEADER = 64 * 1024


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient the message could not reach."""

    address: str
    #: RFC 3463 status, e.g. ``5.1.1`` (``4.4.7``: expired in the queue).
    status: str
    #: What the remote server said (``550 5.1.1 no such user``) or why.
    diagnostic: str


def status_of(said: str) -> str:
    """The enhanced status of a permanent refusal (``550 5.1.1 text``): the
    one it gives, else ``5.0.0`` (RFC 3463 §3.1)."""
    words = said.split(" ", 2)
    first = words[1] if len(words) > 1 else ""
    parts = first.split(".")
    if len(parts) == 3 and all(part.isdigit() for part in parts) and first[:1] in ("4", "5"):
        return first
    return "5.0.0"


def original_header(message: bytes) -> bytes:
    """The header block of a message (up to the blank line), bounded."""
    end = message.find(b"\r\n\r\n")
    block = message if end < 0 else message[: end + 2]
    return block[:MAX_RETURNED_HEADER]


def _clean(text: str) -> str:
    """One line of text: no CR, LF or other control characters."""
    return "".join(char if char >= " " else " " for char in text)


def delivery_status(
    reporting_host: str,
    sender: str,
    failed: list[FailedRecipient],
    header: bytes,
    date: str,
    message_id: str,
    boundary: str,
    arrival: str,
) -> bytes:
    """The whole DSN message, CRLF line ends, ready to deliver."""
    words = "\r\n".join(f"  <{_clean(one.address)}>: {_clean(one.diagnostic)}" for one in failed)
    head = (
        "Return-Path: <>\r\n"
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_host}>\r\n"
        f"To: <{_clean(sender)}>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: {message_id}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n'
        "\r\n"
        "This is a delivery status notification (RFC 3464).\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Your message could not be delivered to these recipients:\r\n"
        "\r\n"
        f"{words}\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        f"Reporting-MTA: dns; {reporting_host}\r\n"
        f"Arrival-Date: {arrival}\r\n"
    )
    for one in failed:
        head += (
            "\r\n"
            f"Final-Recipient: rfc822; {_clean(one.address)}\r\n"
            "Action: failed\r\n"
            f"Status: {one.status}\r\n"
            f"Diagnostic-Code: smtp; {_clean(one.diagnostic)}\r\n"
        )
    tail = f"\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    end = f"\r\n--{boundary}--\r\n"
    return head.encode("utf-8", "replace") + tail.encode() + original_header(header) + end.encode()
