"""FTP data connection commands and transfers.

PORT/EPRT (to the client's own address only), PASV/EPSV (``EPSV ALL``),
REST, ABOR, and the commands that move data: LIST, NLST, MLSD, RETR,
STOR, APPE, STOU.  A transfer opens the data connection, replies 150, waits
for the TLS handshake when data is protected, moves the bytes and replies
226 — or 425/426/451/552 and, for an upload, leaves the old file as it was.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from communigate.portal.filesession import FileError, Problem, Segments
from communigate.protocols.ftp import listing, parser
from communigate.protocols.ftp.data import (
    ActiveTarget,
    DataConnectionFailed,
    DataFactory,
    DataProtocol,
    PassivePort,
    plain_host,
    send_file,
)
from communigate.protocols.ftp.parser import CommandError, reply
from communigate.protocols.ftp.session import FTPSession
from communigate.store.uploads import QuotaExceeded, Upload


class TransferFailed(Exception):
    """A transfer ended badly: the reply to send."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclasses.dataclass
class Transfer:
    """The transfer in progress, for ABOR and STAT."""

    setup: PassivePort | ActiveTarget
    protocol: DataProtocol | None = None
    aborted: bool = False


class TransferCommands(FTPSession):
    """Mixed into the FTP server."""

    # -- data connections ----------------------------------------------------------------

    def _drop_data(self) -> None:
        if self.data is not None:
            self.data.discard()
            self.data = None

    def _client(self) -> str:
        assert self.transport is not None
        return plain_host(self.transport.getPeer().host)  # type: ignore[attr-defined]

    def _local(self) -> str:
        assert self.transport is not None
        return plain_host(self.transport.getHost().host)  # type: ignore[attr-defined]

    def _data_factory(self) -> DataFactory:
        context = None
        if self.protected and self.factory.data_tls is not None:
            domain = self.service.domain(self.connection())
            context = self.factory.data_tls.context_for(domain)
        return DataFactory(self._client(), context, self.factory.reactor)

    def _active(self, host: str, port: int) -> None:
        if self.epsv_all:
            raise CommandError(503, "EPSV ALL was sent: use EPSV")
        if ip_address(host) != ip_address(self._client()):
            raise CommandError(504, "data connections go to your own address only")
        if port < 1024:
            raise CommandError(504, "data connections do not go to privileged ports")
        self._drop_data()
        self.data = ActiveTarget(
            self.factory.reactor,
            self._data_factory(),
            (host, port),
            self._local(),
        )
        self.send(reply(200, "active data connection set"))

    def ftp_PORT(self, argument: str) -> None:
        """RFC 959 PORT, to the client's own address only (no FTP bounce)."""
        self._active(*parser.parse_port(argument))

    def ftp_EPRT(self, argument: str) -> None:
        """RFC 2428 EPRT, to the client's own address only."""
        self._active(*parser.parse_eprt(argument))

    def _listen(self) -> int:
        self._drop_data()
        port = PassivePort(self.factory.reactor, self._data_factory())
        try:
            number = port.listen(self._local(), self.factory.passive_ports)
        except DataConnectionFailed as error:
            raise CommandError(425, str(error)) from None
        self.data = port
        return number

    def ftp_PASV(self, argument: str) -> None:
        """RFC 959 passive mode (IPv4 control connections)."""
        if self.epsv_all:
            raise CommandError(503, "EPSV ALL was sent: use EPSV")
        local = self._local()
        if ":" in local:
            raise CommandError(501, "PASV is for IPv4; use EPSV")
        self.send(parser.pasv_reply(local, self._listen()))

    def ftp_EPSV(self, argument: str) -> None:
        """RFC 2428 §3: extended passive mode; ``EPSV ALL`` refuses the
        other data connection commands from then on."""
        word = argument.strip().upper()
        if word == "ALL":
            self.epsv_all = True
            self.send(reply(200, "EPSV ALL ok"))
            return
        if word:
            family = "2" if ":" in self._local() else "1"
            if word != family:
                raise CommandError(522, f"network protocol not supported, use ({family})")
        self.send(parser.epsv_reply(self._listen()))

    def ftp_REST(self, argument: str) -> None:
        """RFC 3659 §5: the next RETR or STOR starts at this offset."""
        self.restart = parser.parse_rest(argument)
        self.send(reply(350, f"restarting at {self.restart}"))

    # -- transfers -------------------------------------------------------------------------

    def _need_data(self) -> None:
        if self.data is None:
            raise CommandError(425, "use PORT, EPRT, PASV or EPSV first")

    def _transfer(
        self,
        opening: str,
        run: Callable[[DataProtocol], Deferred[Any]],
        cleanup: Callable[[], None],
    ) -> Deferred[None]:
        """Open the data connection, reply 150, wait for TLS, run, reply
        226 or the failure; ``cleanup`` runs whatever the outcome."""
        setup, self.data = self.data, None
        if setup is None or not self.connected:
            cleanup()
            raise CommandError(425, "use PORT, EPRT, PASV or EPSV first")
        transfer = Transfer(setup)
        self.transfer = transfer
        if self._idle is not None and self._idle.active():
            self._idle.cancel()

        def opened(protocol: DataProtocol) -> Deferred[DataProtocol]:
            transfer.protocol = protocol
            if transfer.aborted:
                protocol.abort()
            self.send(reply(150, opening))
            return protocol.wait_ready()

        def ready(protocol: DataProtocol) -> Deferred[Any]:
            if transfer.aborted:
                raise TransferFailed(426, "transfer aborted")
            return run(protocol)

        def succeeded(text: str) -> None:
            self.send(reply(226, text))

        def failed(failure: Failure) -> None:
            if transfer.aborted:
                code, text = 426, "transfer aborted"
            elif isinstance(failure.value, TransferFailed):
                code, text = failure.value.code, failure.value.text
            elif failure.check(DataConnectionFailed):
                code = 426 if transfer.protocol is not None else 425
                text = f"{failure.getErrorMessage()}; transfer aborted"
            elif not self.connected:
                code, text = 426, "control connection closed"
            else:
                self.log.failure("FTP transfer failed", failure)
                code, text = 451, "local error in processing"
            self.log.info(
                "FTP transfer from {remote} failed: {code} {text}",
                remote=self._remote(),
                code=code,
                text=text,
            )
            self.send(reply(code, text))
            if transfer.protocol is not None:
                transfer.protocol.abort()

        def finished(result: object) -> None:
            cleanup()
            self.transfer = None
            if transfer.aborted:
                self.send(reply(226, "ABOR successful"))
            if self.connected:
                self._idle = self.factory.reactor.callLater(
                    self.limits.idle_timeout, self._timed_out, "idle time-out"
                )

        result = setup.connect().addCallback(opened).addCallback(ready)
        result.addCallbacks(succeeded, failed)
        result.addBoth(finished)
        return result

    def _abort_transfer(self) -> None:
        transfer = self.transfer
        if transfer is None or transfer.aborted:
            return
        transfer.aborted = True
        transfer.setup.discard()
        if transfer.protocol is not None:
            transfer.protocol.abort()

    def _transfer_status(self) -> None:
        transfer = self.transfer
        moved = transfer.protocol.moved if transfer and transfer.protocol else 0
        self.send(reply(213, f"transfer in progress, {moved} bytes so far"))

    def ftp_ABOR(self, argument: str) -> None:
        """No transfer is running (those are aborted as ABOR arrives)."""
        self._drop_data()
        self.send(reply(225, "no transfer to abort"))

    def _listing(self, path: Segments, render: Callable[[list[Any]], bytes]) -> Deferred[None]:
        self._need_data()
        body = render(self._session().listing(path))

        def run(protocol: DataProtocol) -> Deferred[str]:
            assert protocol.transport is not None
            protocol.transport.write(body)
            protocol.finish()
            return protocol.wait_lost().addCallback(lambda clean: "transfer complete")

        return self._transfer("here comes the listing", run, lambda: None)

    def ftp_LIST(self, argument: str) -> Deferred[None]:
        """``ls -l`` style listing."""
        path = self._path(parser.list_argument(argument))
        return self._listing(path, lambda entries: listing.list_lines(entries, time.time()))

    def ftp_NLST(self, argument: str) -> Deferred[None]:
        """Names only; the argument is optional (RFC 959)."""
        return self._listing(self._path(parser.list_argument(argument)), listing.name_lines)

    def ftp_MLSD(self, argument: str) -> Deferred[None]:
        """RFC 3659 §7: facts of a directory's entries."""
        path = self._path(argument)
        try:
            self._session().check_directory(path)
        except FileError as error:
            if error.problem is Problem.NOT_DIRECTORY:
                raise CommandError(501, "not a directory") from None
            raise
        return self._listing(path, listing.mlsd_lines)

    def ftp_RETR(self, argument: str) -> Deferred[None]:
        """Download from the REST offset."""
        self._need_data()
        offset, self.restart = self.restart, 0
        handle, size = self._session().open_download(self._path(argument))

        def run(protocol: DataProtocol) -> Deferred[str]:
            sent = send_file(self.factory.reactor, protocol, handle, min(offset, size))

            def all_sent(_: object) -> Deferred[bool]:
                protocol.finish()
                return protocol.wait_lost()

            return sent.addCallback(all_sent).addCallback(lambda clean: "transfer complete")

        def cleanup() -> None:
            if not handle.closed:
                handle.close()

        return self._transfer(f"opening data connection ({size} bytes)", run, cleanup)

    def ftp_STOR(self, argument: str) -> Deferred[None]:
        """Upload (from the REST offset)."""
        return self._upload(self._path(argument), append=False)

    def ftp_APPE(self, argument: str) -> Deferred[None]:
        """Append to a file (or create it)."""
        return self._upload(self._path(argument), append=True)

    def ftp_STOU(self, argument: str) -> Deferred[None]:
        """Upload under a new unique name in the working directory."""
        name = f"stou.{secrets.token_hex(6)}"
        return self._upload((*self.cwd, name), append=False, opening=f"FILE: {name}")

    def _upload(
        self, path: Segments, append: bool, opening: str = "ready to receive"
    ) -> Deferred[None]:
        self._need_data()
        offset, self.restart = self.restart, 0
        upload = self._session().open_upload(path, offset, append)
        prepared = self._blocking(upload.prepare)

        def receive(_: object) -> Deferred[None]:
            if not self.connected:
                upload.abort()
                raise TransferFailed(426, "control connection closed")
            return self._transfer(
                opening, lambda protocol: self._receive(protocol, upload), upload.abort
            )

        def not_prepared(failure: Failure) -> None:
            upload.abort()
            error = failure.value
            if isinstance(error, OSError):
                raise TransferFailed(
                    452 if error.errno in (28, 122) else 451, "cannot store the file"
                )
            failure.raiseException()

        return prepared.addCallbacks(receive, not_prepared)

    def _receive(self, protocol: DataProtocol, upload: Upload) -> Deferred[str]:
        problem: list[TransferFailed] = []

        def sink(data: bytes) -> None:
            if problem:
                return
            try:
                upload.write(data)
            except QuotaExceeded:
                problem.append(TransferFailed(552, "storage quota exceeded; upload discarded"))
                protocol.abort()
            except OSError:
                problem.append(TransferFailed(452, "cannot store the file; upload discarded"))
                protocol.abort()

        def ended(clean: bool) -> Deferred[str]:
            if problem:
                raise problem[0]
            if not clean or not self.connected or (self.transfer and self.transfer.aborted):
                raise TransferFailed(
                    426, "data connection broken; transfer aborted, file not stored"
                )
            return self._blocking(upload.commit).addCallback(lambda _: "transfer complete")

        protocol.attach(sink)
        return protocol.wait_lost().addCallback(ended)
