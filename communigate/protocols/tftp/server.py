"""The TFTP server: a thin UDP adapter around :mod:`.transfer`.

Requests arrive on the listening port; each transfer then runs on a port of
its own (its transfer ID, RFC 1350 §4), bound to the listener's address and
connected to the client's (as tftpd-hpa does), so the kernel drops
datagrams from any other address or port and sending needs no address
checks.  Uploads go to a temporary file renamed into place when the
last block arrives, so a broken upload leaves the old file.  Each client
address may run at most ``max_per_address`` transfers at once.
"""

from __future__ import annotations

import os
import secrets
from collections import Counter
from typing import Any, BinaryIO

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from communigate.portal.tftpfiles import Reason, Refused, Target, TFTPFiles
from communigate.protocols.tftp import packets
from communigate.protocols.tftp.packets import Ack, Error, PacketError, Request, encode, parse
from communigate.protocols.tftp.transfer import (
    Negotiated,
    ReadTransfer,
    Transfer,
    WriteTransfer,
)

#: After the last ACK of an upload, stay a while to repeat it if it was lost.
DALLY = 2.0

#: The RFC 1350 §5 error code for each reason a request can be refused.
ERROR_CODES = {
    Reason.NOT_FOUND: packets.FILE_NOT_FOUND,
    Reason.ACCESS_DENIED: packets.ACCESS_VIOLATION,
    Reason.NO_SUCH_USER: packets.NO_SUCH_USER,
}


class TransferProtocol(DatagramProtocol):
    """One transfer on its own port."""

    log = Logger()
    noisy = False

    def __init__(
        self,
        transfer: Transfer,
        peer: tuple[str, int],
        reactor: Any,
        done: Any,
        handle: BinaryIO | None = None,
        commit: Any = None,
    ) -> None:
        self.transfer = transfer
        self.peer = peer
        self.reactor = reactor
        self.done = done
        self.handle = handle
        self.commit = commit
        self.timer: Any = None
        self.deadline = 0.0
        self.closing = False
        self.port: Any = None

    def startProtocol(self) -> None:
        """Begin once listening has returned the port (so it can be closed)."""
        self.timer = self.reactor.callLater(0, self.begin)

    def begin(self) -> None:
        """Send the first packets."""
        self.timer = None
        assert self.transport is not None
        self.transport.connect(*self.peer)
        self.send(self.transfer.start())
        self.after_step()

    def send(self, datagrams: list[bytes]) -> None:
        """Send datagrams to the peer."""
        assert self.transport is not None
        for datagram in datagrams:
            self.transport.write(datagram, None)

    def connectionRefused(self) -> None:
        """The client's port is gone (ICMP): end the transfer."""
        self.transfer.error = "client port unreachable"
        self.after_step()

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        """A packet from the peer (the socket is connected to it)."""
        if len(data) == 4 and data[1] == packets.ACK and data[0] == 0:
            # The common case, an ACK, without building a packet object.
            self.send(self.transfer.received(Ack(int.from_bytes(data[2:4], "big"))))
            self.after_step()
            return
        try:
            packet = parse(data)
        except PacketError:
            self.send(self.transfer.fail(packets.ILLEGAL_OPERATION, "malformed packet"))
            self.after_step()
            return
        self.send(self.transfer.received(packet))
        self.after_step()

    def after_step(self) -> None:
        """Note the progress (the timer checks it lazily), or finish.

        Moving a timer for every block costs more than the block itself, so
        one timer runs and, when it fires, waits again if there was progress
        in the meantime."""
        if self.transfer.finished:
            if self.timer is not None and self.timer.active():
                self.timer.cancel()
            self.finish()
            return
        self.deadline = self.reactor.seconds() + self.transfer.next_timeout()
        if self.timer is None or not self.timer.active():
            self.timer = self.reactor.callLater(self.transfer.next_timeout(), self.timed_out)

    def timed_out(self) -> None:
        """Resend or give up, unless there was progress since."""
        self.timer = None
        if self.closing:
            self.close()
            return
        remaining = self.deadline - self.reactor.seconds()
        if remaining > 0:
            self.timer = self.reactor.callLater(remaining, self.timed_out)
            return
        self.send(self.transfer.timed_out())
        self.after_step()

    def finish(self) -> None:
        """Close the file, keep or drop an upload, free the port."""
        if self.closing:
            # A repeated last DATA while dallying: the transfer answered it.
            self.timer = self.reactor.callLater(DALLY, self.timed_out)
            return
        self.closing = True
        if self.handle is not None:
            self.handle.close()
        if self.commit is not None:
            self.commit(self.transfer.done)
        if self.transfer.error:
            self.log.info(
                "TFTP transfer with {peer} failed: {error}",
                peer=self.peer,
                error=self.transfer.error,
            )
        if isinstance(self.transfer, WriteTransfer) and self.transfer.done:
            self.timer = self.reactor.callLater(DALLY, self.timed_out)
        else:
            self.close()

    def close(self) -> None:
        """Stop listening."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.port is not None:
            port, self.port = self.port, None
            port.stopListening()
            self.done()


class TFTPServer(DatagramProtocol):
    """The listening port: reads requests and starts transfers."""

    log = Logger()
    noisy = False

    def __init__(
        self, files: TFTPFiles, reactor: Any, interface: str = "", max_per_address: int = 8
    ) -> None:
        self.files = files
        self.reactor = reactor
        self.interface = interface
        self.max_per_address = max_per_address
        self.active: Counter[str] = Counter()

    def refuse(self, addr: tuple[str, int], code: int, message: str) -> None:
        """Answer a request with an error from the listening port."""
        assert self.transport is not None
        self.transport.write(encode(Error(code, message)), addr)

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        """A request: check it and run it on a port of its own."""
        try:
            packet = parse(data)
        except PacketError:
            self.refuse(addr, packets.ILLEGAL_OPERATION, "malformed request")
            return
        if not isinstance(packet, Request):
            self.refuse(addr, packets.UNKNOWN_TID, "unknown transfer ID")
            return
        if packet.mode not in ("octet", "netascii"):
            self.refuse(addr, packets.ILLEGAL_OPERATION, "only octet and netascii modes")
            return
        if self.active[addr[0]] >= self.max_per_address:
            self.refuse(addr, packets.NOT_DEFINED, "too many transfers from this address")
            return
        write = packet.opcode == packets.WRQ
        try:
            target = self.files.resolve(packet.filename, write)
        except Refused as refusal:
            self.log.info(
                "TFTP {kind} {name!r} from {peer} refused: {reason}",
                kind="WRQ" if write else "RRQ",
                name=packet.filename,
                peer=addr[0],
                reason=str(refusal),
            )
            self.refuse(addr, ERROR_CODES[refusal.reason], str(refusal))
            return
        protocol = (
            self._upload(packet, target, addr) if write else self._download(packet, target, addr)
        )
        self.active[addr[0]] += 1
        protocol.port = self.reactor.listenUDP(0, protocol, interface=self.interface)

    def _finished(self, host: str) -> Any:
        def done() -> None:
            self.active[host] -= 1
            if self.active[host] <= 0:
                del self.active[host]

        return done

    def _download(self, request: Request, target: Target, addr: tuple[str, int]) -> Any:
        handle = open(target.local, "rb")
        size = os.fstat(handle.fileno()).st_size
        options = Negotiated(request.options, size)

        def read(offset: int, length: int) -> bytes:
            handle.seek(offset)
            return handle.read(length)

        return TransferProtocol(
            ReadTransfer(read, options), addr, self.reactor, self._finished(addr[0]), handle
        )

    def _upload(self, request: Request, target: Target, addr: tuple[str, int]) -> Any:
        temporary = target.local.with_name(f".{target.local.name}.{secrets.token_hex(6)}.tftp")
        handle = open(temporary, "wb")
        options = Negotiated(request.options, None)

        def commit(complete: bool) -> None:
            if complete:
                os.replace(temporary, target.local)
            else:
                temporary.unlink(missing_ok=True)

        return TransferProtocol(
            WriteTransfer(handle.write, options, target.limit),
            addr,
            self.reactor,
            self._finished(addr[0]),
            handle,
            commit,
        )
