"""The TFTP server: a thin UDP adapter around :mod:`.transfer`.

Requests arrive on the listening port; each transfer then runs on a port of
its own (its transfer ID, RFC 1350 §4), bound to the listener's address and
connected to the client's (as tftpd-hpa does), so the kernel drops
datagrams from any other address or port and sending needs no address
checks.  Downloads run in threads of their own (:mod:`.downloads`), where
a lock-step block costs two system calls instead of a turn of the reactor;
uploads, and downloads beyond the thread limit, run on the reactor
(:class:`TransferProtocol`).  Both drive the same sans-IO transfers
(:mod:`.transfer`).  Uploads go to a temporary file renamed into place when
the last block arrives, so a broken upload leaves the old file.  Each client
address may run at most ``max_per_address`` transfers at once; a slot is
freed when its transfer ends, however it ends (see :class:`TransferProtocol`),
so a client that never answers (or a spoofed address) holds slots only until
the last time-out.
"""

from __future__ import annotations

import io
import os
import secrets
from collections import Counter
from collections.abc import Callable
from typing import Any, BinaryIO

from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from communigate.portal.tftpfiles import Reason, Refused, Target, TFTPFiles
from communigate.protocols.tftp import packets
from communigate.protocols.tftp.downloads import (
    RECEIVE_SIZE,
    ThreadedDownload,
    end_file,
    transfer_socket,
)
from communigate.protocols.tftp.packets import Error, PacketError, Request, encode, parse
from communigate.protocols.tftp.transfer import (
    Datagram,
    Negotiated,
    ReadTransfer,
    Transfer,
    WriteTransfer,
)

#: After the last ACK of an upload, stay a while to repeat it if it was lost.
DALLY = 2.0

#: Read-ahead of a download's file: one system call for many blocks.
READ_BUFFER = 64 * 1024

#: Downloads that may run in threads of their own at once (more run on the
#: reactor, slower but just as correct).
DOWNLOAD_THREADS = 64

#: The RFC 1350 §5 error code for each reason a request can be refused.
ERROR_CODES = {
    Reason.NOT_FOUND: packets.FILE_NOT_FOUND,
    Reason.ACCESS_DENIED: packets.ACCESS_VIOLATION,
    Reason.NO_SUCH_USER: packets.NO_SUCH_USER,
}


class TransferProtocol(DatagramProtocol):
    """One transfer on its own port.

    Every transfer ends exactly once, whichever comes first: the last
    block, an error (sent or received), the last time-out, the client's port
    reported unreachable, or the port closed under it (the reactor closes a
    UDP port whose socket reports an error).  Ending closes the file, keeps
    or drops an upload, and frees the client address's slot (``done``).
    Nothing the reactor calls here raises: an unexpected error ends the
    transfer instead.
    """

    log = Logger()
    noisy = False

    def __init__(
        self,
        transfer: Transfer,
        peer: tuple[str, int],
        reactor: Any,
        done: Callable[[], None],
        handle: BinaryIO | None = None,
        commit: Callable[[bool], None] | None = None,
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
        self._file_ended = False
        self._released = False
        self._seconds = reactor.seconds
        # ACKs of a download go straight to the transfer (see datagramReceived).
        self._ack = transfer.ack if isinstance(transfer, ReadTransfer) else None

    # -- entry points (called by the reactor) ---------------------------------

    def startProtocol(self) -> None:
        """Begin once listening has returned the port (so it can be closed)."""
        self.timer = self.reactor.callLater(0, self._guarded, self.begin)

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        """A packet from the peer (the socket is connected to it).

        An ACK of a download, nearly every datagram of one, takes the
        shortest way: its block number straight from the bytes to the
        transfer, the answer straight to the transport."""
        try:
            if self._ack is not None and len(data) == 4 and data[1] == packets.ACK and not data[0]:
                self.send(self._ack((data[2] << 8) | data[3]))
                self.after_step()
            else:
                self._received(data)
        except Exception as error:
            self._failed(error)

    def connectionRefused(self) -> None:
        """The client's port is gone (ICMP): end the transfer."""
        self._guarded(self._refused)

    def timed_out(self) -> None:
        """Resend or give up, unless there was progress since."""
        self._guarded(self._timed_out)

    def stopProtocol(self) -> None:
        """The port is closed, by :meth:`close` or by the reactor after a
        socket error: end the transfer if that has not happened yet."""
        self._cancel_timer()
        self.port = None
        if not self.transfer.finished:
            self.transfer.error = "transfer port closed"
        self._end_file()
        self._release()

    # -- steps -------------------------------------------------------------------

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        """Run one step; any error ends the transfer instead of escaping."""
        try:
            step(*args)
        except Exception as error:
            self._failed(error)

    def _failed(self, error: Exception) -> None:
        """A step raised: end the transfer (an unexpected error is logged)."""
        if isinstance(error, OSError):
            self.abort(f"network or file error: {error}")
            return
        self.log.failure("TFTP transfer with {peer} failed", peer=self.peer)
        self.abort("internal error")

    def begin(self) -> None:
        """Send the first packets."""
        self.timer = None
        if self.transport is None or self.closing:
            return
        self.transport.connect(*self.peer)
        self.send(self.transfer.start())
        self.after_step()

    def send(self, datagrams: list[Datagram]) -> None:
        """Send datagrams to the peer, while the port is open."""
        for datagram in datagrams:
            if self.transport is None or self.port is None:
                return  # closed, possibly by the previous write (ICMP)
            # Twisted's UDP ports send any buffer, not only bytes.
            self.transport.write(datagram, None)  # type: ignore[arg-type]

    def _received(self, data: bytes) -> None:
        try:
            packet = parse(data)
        except PacketError:
            self.send(self.transfer.fail(packets.ILLEGAL_OPERATION, "malformed packet"))
            self.after_step()
            return
        self.send(self.transfer.received(packet))
        self.after_step()

    def _refused(self) -> None:
        if not self.transfer.finished:
            self.transfer.error = "client port unreachable"
        self.after_step()

    def after_step(self) -> None:
        """Note the progress (the timer checks it lazily), or finish.

        Moving a timer for every block costs more than the block itself, so
        one timer runs and, when it fires, waits again if there was progress
        in the meantime."""
        transfer = self.transfer
        if transfer.done or transfer.error is not None:
            self._cancel_timer()
            self.finish()
            return
        wait = transfer.next_timeout()
        self.deadline = self._seconds() + wait
        if self.timer is None:  # every path that ends the timer forgets it
            self.timer = self.reactor.callLater(wait, self.timed_out)

    def _timed_out(self) -> None:
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

    # -- the end -------------------------------------------------------------------

    def finish(self) -> None:
        """Close the file, keep or drop an upload, free the port."""
        if self.closing:
            if self.port is not None:
                # A repeated last DATA while dallying: the transfer answered it.
                self._cancel_timer()
                self.timer = self.reactor.callLater(DALLY, self.timed_out)
            return
        self.closing = True
        self._end_file()
        if isinstance(self.transfer, WriteTransfer) and self.transfer.done and self.port:
            # After the last ACK of an upload, stay to repeat it if it was lost.
            self.timer = self.reactor.callLater(DALLY, self.timed_out)
        else:
            self.close()

    def abort(self, reason: str) -> None:
        """End at once without sending anything more (the reason is logged)."""
        if not self.transfer.finished:
            self.transfer.error = reason
        self.closing = True
        self._end_file()
        self.close()

    def _end_file(self) -> None:
        """Close the file and keep or drop an upload, once."""
        if self._file_ended:
            return
        self._file_ended = True
        end_file(self.transfer, self.peer, self.handle, self.commit, self.log)

    def close(self) -> None:
        """Stop listening and free the slot."""
        self._cancel_timer()
        port, self.port = self.port, None
        if port is not None:
            port.stopListening()
        self._release()

    def _cancel_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self.done()


class TFTPServer(DatagramProtocol):
    """The listening port: reads requests and starts transfers.

    Downloads run in threads of their own (:mod:`.downloads`) while fewer
    than ``download_threads`` do, by default when the reactor runs threads
    (a test's Clock does not); the others, and every upload, run on the
    reactor (:class:`TransferProtocol`).
    """

    log = Logger()
    noisy = False

    def __init__(
        self,
        files: TFTPFiles,
        reactor: Any,
        interface: str = "",
        max_per_address: int = 8,
        download_threads: int | None = None,
    ) -> None:
        self.files = files
        self.reactor = reactor
        self.interface = interface
        self.max_per_address = max_per_address
        self.active: Counter[str] = Counter()
        if download_threads is None:
            download_threads = DOWNLOAD_THREADS if IReactorThreads.providedBy(reactor) else 0
        self.download_threads = download_threads
        self.threads_running = 0

    def refuse(self, addr: tuple[str, int], code: int, message: str) -> None:
        """Answer a request with an error from the listening port."""
        if self.transport is None:
            return
        try:
            self.transport.write(encode(Error(code, message)), addr)
        except OSError as error:
            self.log.info("TFTP reply to {peer} not sent: {error}", peer=addr, error=error)

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
        kind = "WRQ" if write else "RRQ"
        try:
            target = self.files.resolve(packet.filename, write)
            if write:
                handle, transfer, commit = self._upload(packet, target)
            else:
                handle, transfer, commit = self._download(packet, target)
        except Refused as refusal:
            self.log.info(
                "TFTP {kind} {name!r} from {peer} refused: {reason}",
                kind=kind,
                name=packet.filename,
                peer=addr[0],
                reason=refusal.detail,
            )
            self.refuse(addr, ERROR_CODES[refusal.reason], str(refusal))
            return
        self.active[addr[0]] += 1
        done = self._finished(addr[0])
        if isinstance(transfer, ReadTransfer) and self.threads_running < self.download_threads:
            self._in_thread(transfer, addr, done, handle)
            return
        protocol = TransferProtocol(transfer, addr, self.reactor, done, handle, commit)
        try:
            protocol.port = self._listen(protocol)
        except CannotListenError as error:
            self.log.warn("TFTP cannot open a transfer port: {error}", error=error)
            protocol.abort("no transfer port")
            self.refuse(addr, packets.NOT_DEFINED, "server busy, try again later")

    def _in_thread(
        self,
        transfer: ReadTransfer,
        addr: tuple[str, int],
        done: Callable[[], None],
        handle: BinaryIO,
    ) -> None:
        """Run a download in a thread of its own (its slot and its thread
        are counted until it ends)."""

        def ended() -> None:
            self.threads_running -= 1
            done()

        try:
            sock = transfer_socket(self.interface, addr)
        except OSError as error:
            self.log.warn("TFTP cannot open a transfer port: {error}", error=error)
            transfer.error = "no transfer port"
            end_file(transfer, addr, handle, None, self.log)
            done()
            self.refuse(addr, packets.NOT_DEFINED, "server busy, try again later")
            return
        download = ThreadedDownload(transfer, addr, sock, self.reactor, ended, handle)
        self.threads_running += 1
        try:
            download.start()
        except RuntimeError as error:  # no thread could be started
            transfer.error = f"no thread: {error}"
            download.ended(None)
            self.refuse(addr, packets.NOT_DEFINED, "server busy, try again later")

    def _listen(self, protocol: TransferProtocol) -> Any:
        """A port of its own for a transfer on the reactor, reading
        datagrams as large as the negotiated block (an upload's DATA can
        be 65468 bytes, RFC 2348) or ACKs and ERRORs (a download)."""
        size = RECEIVE_SIZE
        if isinstance(protocol.transfer, WriteTransfer):
            size = max(size, 4 + protocol.transfer.options.block_size)
        return self.reactor.listenUDP(0, protocol, interface=self.interface, maxPacketSize=size)

    def _finished(self, host: str) -> Callable[[], None]:
        """What a transfer calls, once, when it ends: free its slot."""

        def done() -> None:
            self.active[host] -= 1
            if self.active[host] <= 0:
                del self.active[host]

        return done

    def _download(
        self, request: Request, target: Target
    ) -> tuple[BinaryIO, Transfer, Callable[[bool], None] | None]:
        """The file, opened, and the transfer that sends it."""
        try:
            handle = io.BufferedReader(io.FileIO(target.local, "r"), READ_BUFFER)
            size = os.fstat(handle.fileno()).st_size
        except OSError as error:
            raise Refused(Reason.NOT_FOUND, "file not found", str(error)) from None
        options = Negotiated(request.options, size)

        def read_into(offset: int, buffer: memoryview) -> int:
            # Within the read-ahead buffer the seek is no system call.
            handle.seek(offset)
            return handle.readinto(buffer)

        return handle, ReadTransfer(read_into, options), None

    def _upload(
        self, request: Request, target: Target
    ) -> tuple[BinaryIO, Transfer, Callable[[bool], None] | None]:
        """A temporary file, the transfer that fills it, and what keeps
        it (renamed into place) or drops it at the end."""
        temporary = target.local.with_name(f".{target.local.name}.{secrets.token_hex(6)}.tftp")
        try:
            handle = open(temporary, "wb")
        except OSError as error:
            raise Refused(Reason.ACCESS_DENIED, "access denied", str(error)) from None
        options = Negotiated(request.options, None)

        def commit(complete: bool) -> None:
            if complete:
                os.replace(temporary, target.local)
            else:
                temporary.unlink(missing_ok=True)

        return handle, WriteTransfer(handle.write, options, target.limit), commit
