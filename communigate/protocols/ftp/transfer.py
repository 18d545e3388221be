"""Moving file data over FTP data connections.

:class:`FileReader` sends a file from an offset: with ``sendfile(2)`` when
the data connection is plain TCP (the kernel copies from the page cache to
the socket, as vsftpd does), else through a producer with 1 MiB chunks (TLS
data connections, ASCII mode).  :class:`FileWriter` receives into a
temporary file renamed into place when the upload completes (or into the
file itself for REST and APPE), counting bytes against the storage quota.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IConsumer
from twisted.protocols import ftp
from twisted.protocols.basic import FileSender
from zope.interface import implementer

SENDFILE_CHUNK = 16 * 1024 * 1024


class _BigFileSender(FileSender):
    CHUNK_SIZE = 1024 * 1024


def _plain_socket(consumer: Any) -> Any:
    """The TCP socket under a plain (not TLS) data connection, if any."""
    transport = getattr(consumer, "transport", None)
    if transport is None or getattr(transport, "TLS", False):
        return None
    if type(transport).__name__ != "Server" and type(transport).__name__ != "Client":
        return None
    return getattr(transport, "socket", None)


@implementer(ftp.IReadFile)
class FileReader:
    """A file to send, from a restart offset."""

    def __init__(self, handle: BinaryIO, offset: int = 0) -> None:
        self.handle = handle
        self.offset = offset

    def send(self, consumer: Any) -> Deferred[None]:
        """Send the file to the data connection; fires when it is all sent."""
        if _plain_socket(consumer) is not None and hasattr(os, "sendfile"):
            return _Sendfile(self.handle, self.offset, consumer.transport).start()
        self.handle.seek(self.offset)
        result: Deferred[None] = _BigFileSender().beginFileTransfer(self.handle, consumer)
        result.addBoth(self._closed)
        return result

    def _closed(self, result: Any) -> Any:
        self.handle.close()
        return result


class _Sendfile:
    """Drives ``sendfile`` from the reactor's write notifications."""

    def __init__(self, handle: BinaryIO, offset: int, transport: Any) -> None:
        self.handle = handle
        self.offset = offset
        self.size = os.fstat(handle.fileno()).st_size
        self.transport = transport
        self.done: Deferred[None] = Deferred()

    def start(self) -> Deferred[None]:
        # While the file is sent nothing else is written on this data
        # connection, so its write notifications are ours.
        self.transport.doWrite = self.write
        self.transport.startWriting()
        return self.done

    def write(self) -> None:
        try:
            while self.offset < self.size:
                sent = os.sendfile(
                    self.transport.socket.fileno(),
                    self.handle.fileno(),
                    self.offset,
                    min(SENDFILE_CHUNK, self.size - self.offset),
                )
                if sent == 0:
                    break
                self.offset += sent
        except BlockingIOError:
            return None
        except OSError as error:
            self.finish(error)
            return None
        self.finish(None)
        return None

    def finish(self, error: OSError | None) -> None:
        del self.transport.doWrite
        self.transport.stopWriting()
        self.handle.close()
        # The end of the data connection is the end of the file (RFC 959
        # stream mode), as Twisted's own sender does it.
        self.transport.loseConnection()
        if error is None:
            self.done.callback(None)
        else:
            self.done.errback(error)


@implementer(ftp.IWriteFile)
class FileWriter:
    """Receives an upload."""

    def __init__(
        self,
        temporary: Path,
        final: Path,
        start: int,
        limit: int | None,
        quota_error: type[Exception],
        in_place: bool = False,
    ) -> None:
        self.temporary = temporary
        self.final = final
        self.written = start
        self.limit = limit
        self.quota_error = quota_error
        self.in_place = in_place
        self.exceeded = False
        self.handle: BinaryIO | None = None

    def receive(self) -> Deferred[IConsumer]:
        """A consumer for the data connection."""
        if self.in_place:
            self.handle = open(self.final, "r+b")
            self.handle.seek(self.written)
            self.handle.truncate()
        else:
            self.handle = open(self.temporary, "ab")
        return succeed(_Consumer(self))

    def write(self, data: bytes) -> None:
        """Data from the client, within the quota."""
        if self.exceeded or self.handle is None:
            return
        self.written += len(data)
        if self.limit is not None and self.written > self.limit:
            self.exceeded = True
            return
        self.handle.write(data)

    def close(self) -> Deferred[None]:
        """The upload is complete: keep it, or drop it if over quota."""
        if self.handle is not None:
            self.handle.close()
        if self.exceeded:
            if not self.in_place:
                self.temporary.unlink(missing_ok=True)
            return fail(self.quota_error("storage quota exceeded"))
        if not self.in_place:
            os.replace(self.temporary, self.final)
        return succeed(None)


@implementer(IConsumer)
class _Consumer:
    def __init__(self, writer: FileWriter) -> None:
        self.writer = writer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """The data connection produces."""

    def unregisterProducer(self) -> None:
        """The data connection is done."""

    def write(self, data: bytes) -> None:
        """Upload data."""
        self.writer.write(data)
