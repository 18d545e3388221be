"""Downloads (RRQ) served by a thread of their own, as tftpd-hpa serves each
transfer from a process of its own.

In lock-step (RFC 1350) every block waits for the client's ACK, so a
download's speed is one round trip per block, and on the reactor every
round trip pays for a turn of the event loop (poll, logging context,
dispatch), which costs several times what the block itself does.  Here the
thread blocks in ``recv`` on the transfer's connected socket, with the
time-out left to the kernel (``SO_RCVTIMEO``), answers with ``send``, and
drives the same :class:`~.transfer.ReadTransfer` the reactor path does:
one block is two system calls and a few lines of Python.  Only the thread
touches the transfer and the socket until it ends; then the reactor thread
closes the socket and the file, logs a failure and frees the client
address's slot, once.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from twisted.internet import abstract
from twisted.logger import Logger
from twisted.python.failure import Failure

from communigate.protocols.tftp import packets
from communigate.protocols.tftp.packets import PacketError, parse
from communigate.protocols.tftp.transfer import Datagram, ReadTransfer, Transfer

#: A datagram larger than this is cut: a download receives only ACKs and
#: ERRORs (a longer ERROR message is only shortened in the log).
RECEIVE_SIZE = 1024

_TIMEVAL = struct.Struct("@ll")


def end_file(
    transfer: Transfer,
    peer: tuple[str, int],
    handle: BinaryIO | None,
    commit: Callable[[bool], None] | None,
    log: Logger,
) -> None:
    """Close a transfer's file, keep or drop an upload, and log how the
    transfer failed, if it did (the end of a transfer on either path)."""
    try:
        if handle is not None:
            handle.close()
        if commit is not None:
            commit(transfer.done and transfer.error is None)
    except OSError as error:
        transfer.error = transfer.error or f"file error: {error}"
    if transfer.error:
        log.info("TFTP transfer with {peer} failed: {error}", peer=peer, error=transfer.error)


def transfer_socket(interface: str, peer: tuple[str, int]) -> socket.socket:
    """A blocking UDP socket on a port of its own on ``interface``,
    connected to the client (RFC 1350 §4: a new transfer ID), so that the
    kernel drops datagrams from anyone else; raises OSError."""
    family = socket.AF_INET6 if abstract.isIPv6Address(interface) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.settimeout(None)  # blocking: one system call per receive
        sock.bind((interface, 0))
        sock.connect(peer)
    except OSError:
        sock.close()
        raise
    return sock


class ThreadedDownload:
    """One download on its own connected socket, run by :meth:`run`
    (in a thread started by :meth:`start`)."""

    log = Logger()

    def __init__(
        self,
        transfer: ReadTransfer,
        peer: tuple[str, int],
        sock: socket.socket,
        reactor: Any,
        done: Callable[[], None],
        handle: BinaryIO | None = None,
    ) -> None:
        """``sock``: from :func:`transfer_socket`; ``done`` frees the slot."""
        self.socket = sock
        self.transfer = transfer
        self.peer = peer
        self.reactor = reactor
        self.done = done
        self.handle = handle
        self._wait: float | None = None

    def start(self) -> None:
        """Run the transfer in a daemon thread."""
        threading.Thread(target=self.run, name=f"tftp {self.peer}", daemon=True).start()

    def run(self) -> None:
        """The whole transfer; then its end is handed to the reactor thread.
        Nothing raises from here."""
        failure: Failure | None = None
        transfer = self.transfer
        try:
            self._serve()
        except ConnectionRefusedError:
            if not transfer.finished:
                transfer.error = "client port unreachable"
        except OSError as error:
            if not transfer.finished:
                transfer.error = f"network or file error: {error}"
        except Exception:
            failure = Failure()
            if not transfer.finished:
                transfer.error = "internal error"
        finally:
            self.reactor.callFromThread(self.ended, failure)

    def _serve(self) -> None:
        transfer = self.transfer
        receive, send = self.socket.recv_into, self.socket.send
        ack, ack_opcode = transfer.ack, packets.ACK
        incoming = bytearray(RECEIVE_SIZE)  # reused: an ACK allocates nothing
        for datagram in transfer.start():
            send(datagram)
        retries = -1
        while not (transfer.done or transfer.error is not None):
            if transfer.retries != retries:  # the wait doubles with each retry
                retries = transfer.retries
                self._wait_at_most(transfer.next_timeout())
            try:
                size = receive(incoming)
            except BlockingIOError:  # SO_RCVTIMEO ran out
                out = transfer.timed_out()
            else:
                if size == 4 and incoming[1] == ack_opcode and not incoming[0]:
                    out = ack((incoming[2] << 8) | incoming[3])
                else:
                    out = self._other(bytes(incoming[:size]))
            for datagram in out:
                send(datagram)

    def _other(self, data: bytes) -> list[Datagram]:
        """A datagram that is not a well-formed ACK."""
        try:
            packet = parse(data)
        except PacketError:
            return self.transfer.fail(packets.ILLEGAL_OPERATION, "malformed packet")
        return self.transfer.received(packet)

    def _wait_at_most(self, seconds: float) -> None:
        """Make ``recv`` give up after ``seconds`` (set only when it changes)."""
        if seconds != self._wait:
            self._wait = seconds
            whole = int(seconds)
            micro = int((seconds - whole) * 1_000_000)
            self.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(whole, micro)
            )

    def ended(self, failure: Failure | None) -> None:
        """In the reactor thread, once, when the transfer has ended (or
        could not start): close, log, free the slot."""
        try:
            if failure is not None:
                self.log.failure("TFTP transfer with {peer} failed", failure, peer=self.peer)
            self.socket.close()
            end_file(self.transfer, self.peer, self.handle, None, self.log)
        finally:
            self.done()
