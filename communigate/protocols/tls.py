"""TLS for every listener: one certificate per domain, chosen by SNI.

Each domain may have ``Settings/certificate.pem`` and ``Settings/key.pem``
in its folder; the Main Domain's pair (created self-signed by ``communigate
init``) is the default for clients that send no SNI name or one with no
certificate of its own.  Files are re-read when they change, so a
certificate installed with ``communigate domain certificate`` is served to
the next handshake.  Only TLS 1.2 and newer are offered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

from communigate.store.certificates import CERTIFICATE, KEY, CertificateError
from communigate.store.directory import IDirectory


@implementer(IOpenSSLContextFactory)
class DomainContexts:
    """SSL contexts per domain; a context factory for Twisted's TLS."""

    def __init__(self, directory: Any) -> None:
        self.directory: IDirectory = directory
        self._cache: dict[str, tuple[tuple[int, int], SSL.Context]] = {}

    def _folder(self, domain: str) -> Path:
        return Path(self.directory.domain_folder(domain)) / "Settings"

    def context_for(self, domain: str) -> SSL.Context | None:
        """The context of a domain with a certificate, else None."""
        folder = self._folder(domain)
        try:
            stat_cert = (folder / CERTIFICATE).stat()
            stat_key = (folder / KEY).stat()
        except FileNotFoundError:
            return None
        identity = (stat_cert.st_mtime_ns ^ stat_cert.st_ino, stat_key.st_mtime_ns)
        cached = self._cache.get(domain)
        if cached is not None and cached[0] == identity:
            return cached[1]
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
        context.use_certificate_chain_file(str(folder / CERTIFICATE))
        context.use_privatekey_file(str(folder / KEY))
        context.set_tlsext_servername_callback(self._pick)
        self._cache[domain] = (identity, context)
        return context

    def _pick(self, connection: SSL.Connection) -> None:
        name = connection.get_servername()
        if not name:
            return
        record = self.directory.domain(name.decode("ascii", "replace").lower())
        if record is None:
            return
        context = self.context_for(record.name)
        if context is not None:
            connection.set_context(context)

    def getContext(self) -> SSL.Context:
        """The default context (Main Domain), switching by SNI."""
        context = self.context_for(self.directory.main_domain())
        if context is None:
            raise CertificateError("the Main Domain has no certificate")
        return context


def server_name(transport: Any) -> str | None:
    """The SNI name the client sent, if the transport is TLS."""
    handle = getattr(transport, "getHandle", None)
    connection = handle() if handle else None
    getter = getattr(connection, "get_servername", None)
    name = getter() if getter else None
    return name.decode("ascii", "replace").lower() if name else None


class _Clearable(Protocol):
    def clear(self) -> Any: ...


def switch_to_tls(transport: Any, contexts: Any, *pending: _Clearable) -> None:
    """Start TLS on a connection after the "go ahead" reply was written.

    Everything received in plaintext and not yet executed (``pending``:
    the line buffer, the command queue) is dropped first: a command
    pipelined behind STARTTLS/STLS/AUTH TLS must never run as if it had
    come over TLS (the classic STARTTLS injection).
    """
    for buffer in pending:
        buffer.clear()
    transport.startTLS(contexts)


@implementer(IOpenSSLContextFactory)
class PreferredDomain:
    """The certificate of one domain (chosen before the handshake, as FTP
    HOST does), still switching by SNI when the client sends a name."""

    def __init__(self, contexts: DomainContexts, domain: str) -> None:
        self.contexts = contexts
        self.domain = domain

    def getContext(self) -> SSL.Context:
        """The domain's context, else the Main Domain's."""
        return self.contexts.context_for(self.domain) or self.contexts.getContext()
