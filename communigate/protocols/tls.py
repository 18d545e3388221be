"""TLS for every listener: one certificate per domain, chosen by SNI.

Each domain may have ``Settings/certificate.pem`` and ``Settings/key.pem``
in its folder; the Main Domain's pair (created self-signed by ``communigate
init``) is the default for clients that send no SNI name or one with no
certificate of its own.  Files are re-read when they change (looked at
again after half a second, not for every connection), so a certificate
installed with ``communigate domain certificate`` is served within half a
second.  Only TLS 1.2 and newer are offered.

A domain with a trusted CA (:mod:`communigate.store.trustedca`) asks for
an optional client certificate and verifies it with that CA (and its
CRL): the domain the SNI name names (served with the Main Domain's
certificate if it has none of its own), the domain chosen before the
handshake (FTP HOST), and without SNI the domain owning the local address
the client reached (multihoming; the server certificate is then the Main
Domain's, as for any client without SNI).  The handshake
never fails because of the client certificate: the verdict is only
recorded, with the domain whose CA gave it, and a certificate that passed
becomes the connection's ``client_certificate`` (SASL EXTERNAL).
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes, serialization
from OpenSSL import SSL, crypto
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IOpenSSLContextFactory, ISSLTransport
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import directlyProvides, implementer

from communigate.cred.clientcert import VerifiedCertificate, verified
from communigate.recent import Recent
from communigate.store import trustedca
from communigate.store.certificates import CERTIFICATE, KEY, CertificateError
from communigate.store.directory import IDirectory
from communigate.store.trustedca import TRUSTED_CA, TRUSTED_CRL

# What Twisted's own ``startTLS`` is made of (:func:`start_tls`); without
# it, connections are given Twisted's ``startTLS``.
_newtls: Any
try:
    from twisted.internet import _newtls
except ImportError:  # pragma: no cover - another Twisted
    _newtls = None


class _SharedTLSFactory:
    """A context factory whose STARTTLS connections share one TLS factory
    (:func:`start_tls`)."""

    _tls_factory: TLSMemoryBIOFactory | None = None

    def tls_factory(self) -> TLSMemoryBIOFactory:
        """The one TLS factory of this object's STARTTLS connections: the
        server side, no wrapped factory (as Twisted's ``startTLS``)."""
        if self._tls_factory is None:
            contexts: Any = self
            wrapped: Any = None
            self._tls_factory = TLSMemoryBIOFactory(contexts, False, wrapped)
        return self._tls_factory


#: Domains with a :class:`PreferredDomain` kept at most (all are forgotten
#: beyond that).
_PREFERRED_LIMIT = 1024


@dataclass
class _Verdict:
    """What the verify callback saw of one connection's client certificate."""

    domain: str
    failed: bool = False


@dataclass(frozen=True)
class _Entry:
    """A domain's context, the files it was built from and its verifier."""

    identity: tuple[tuple[int, int], ...]
    context: SSL.Context
    verify: Callable[[SSL.Connection, Any, int, int, int], bool] | None


def _identity(paths: list[Path]) -> tuple[tuple[int, int], ...]:
    """What tells whether files changed (FileNotFoundError if one is gone)."""
    stats = [path.stat() for path in paths]
    return tuple((stat.st_mtime_ns ^ stat.st_ino, stat.st_size) for stat in stats)


@implementer(IOpenSSLContextFactory)
class DomainContexts(_SharedTLSFactory):
    """SSL contexts per domain; a context factory for Twisted's TLS."""

    log = Logger()

    def __init__(self, directory: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.directory: IDirectory = directory
        self._cache: dict[tuple[str, bool], _Entry] = {}
        #: The files of a domain are looked at again after a moment (a
        #: renewed certificate is served from then on), not for every
        #: connection.
        self._recent = Recent(clock)
        # The verify callbacks' verdicts, per TLS connection.
        self._verdicts: weakref.WeakKeyDictionary[SSL.Connection, _Verdict] = (
            weakref.WeakKeyDictionary()
        )
        self._preferred: dict[str, PreferredDomain] = {}

    def preferred(self, domain: str) -> PreferredDomain:
        """The contexts with ``domain``'s certificate first (one object per
        domain, so its connections share one TLS factory)."""
        found = self._preferred.get(domain)
        if found is None:
            if len(self._preferred) >= _PREFERRED_LIMIT:
                self._preferred.clear()
            found = self._preferred[domain] = PreferredDomain(self, domain)
        return found

    def _folder(self, domain: str) -> Path:
        return Path(self.directory.domain_folder(domain)) / "Settings"

    def _files(self, domain: str, own: bool) -> tuple[Path, Path, list[Path]] | None:
        """The certificate and key a domain is served with (its ``own``,
        else the Main Domain's when it has a trusted CA), and its CA files."""
        folder = self._folder(domain)
        trust = [path for path in (folder / TRUSTED_CA, folder / TRUSTED_CRL) if path.exists()]
        if own and (folder / CERTIFICATE).exists() and (folder / KEY).exists():
            return folder / CERTIFICATE, folder / KEY, trust
        main = self.directory.main_domain()
        if not trust or domain == main:
            return None
        served = self._folder(main)
        return served / CERTIFICATE, served / KEY, trust

    def context_for(self, domain: str) -> SSL.Context | None:
        """The context of a domain with a certificate or a trusted CA,
        else None."""
        entry = self._entry(domain)
        return entry.context if entry is not None else None

    def _entry(self, domain: str, own: bool = True) -> _Entry | None:
        """The context of ``domain`` served with its own certificate if it
        has one and ``own`` is true, else with the Main Domain's."""
        found: _Entry | None = self._recent.get((domain, own), lambda: self._look(domain, own))
        return found

    def _look(self, domain: str, own: bool) -> _Entry | None:
        """:meth:`_entry` as the files say now."""
        files = self._files(domain, own)
        if files is None:
            return None
        certificate, key, trust = files
        try:
            identity = _identity([certificate, key, *trust])
        except FileNotFoundError:
            return None
        cached = self._cache.get((domain, own))
        if cached is not None and cached.identity == identity:
            return cached
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
        # An idle connection gives its 34 KiB of record buffers back.
        context.set_mode(SSL.MODE_RELEASE_BUFFERS)
        context.use_certificate_chain_file(str(certificate))
        context.use_privatekey_file(str(key))
        context.set_tlsext_servername_callback(self._pick)
        verify = self._trust(context, domain) if trust else None
        entry = _Entry(identity, context, verify)
        self._cache[domain, own] = entry
        return entry

    def _trust(
        self, context: SSL.Context, domain: str
    ) -> Callable[[SSL.Connection, Any, int, int, int], bool] | None:
        """Ask for an optional client certificate verified with the
        domain's trusted CA; None (no asking) if its files are unusable."""
        try:
            trusted = trustedca.read(self._folder(domain))
        except (trustedca.TrustedCAError, OSError) as error:
            self.log.warn("{domain}: trusted CA not used: {error}", domain=domain, error=error)
            return None
        if trusted is None:
            return None
        store = context.get_cert_store()
        assert store is not None
        for authority in trusted.authorities:
            store.add_cert(crypto.X509.from_cryptography(authority))
            context.add_client_ca(authority)
        if trusted.revocations is not None:
            store.add_crl(trusted.revocations)
            store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
        # Every handshake verifies anew: a resumed session would bring its
        # certificate without a verdict.
        context.set_session_id(hashlib.sha256(domain.encode()).hexdigest()[:32].encode())
        context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        context.set_options(SSL.OP_NO_TICKET | getattr(SSL, "OP_NO_RENEGOTIATION", 0))

        def verify(
            connection: SSL.Connection, certificate: Any, error: int, depth: int, ok: int
        ) -> bool:
            verdict = self._verdicts.get(connection)
            if verdict is None or verdict.domain != domain:
                verdict = self._verdicts[connection] = _Verdict(domain)
            verdict.failed = verdict.failed or not ok
            # Never fail the handshake: a bad certificate only makes no identity.
            return True

        context.set_verify(SSL.VERIFY_PEER, verify)
        return verify

    def _pick(self, connection: SSL.Connection) -> None:
        """The servername callback: the context of the SNI name's domain.
        Without a name, the client certificates of the local address's
        domain (multihoming) are asked for with the Main Domain's server
        certificate, as before, unless a domain was chosen before the
        handshake (:class:`PreferredDomain`)."""
        name = connection.get_servername()
        own = bool(name)
        if name:
            record = self.directory.domain(name.decode("ascii", "replace").lower())
            domain = record.name if record is not None else None
        elif connection.get_context() is self.context_for(self.directory.main_domain()):
            domain = self._address_domain(connection)
        else:
            return
        entry = self._entry(domain, own) if domain is not None else None
        if entry is None or entry.context is connection.get_context():
            return
        connection.set_context(entry.context)
        # The verify mode and callback stay those of the first context.
        if entry.verify is not None:
            connection.set_verify(SSL.VERIFY_PEER, entry.verify)
        else:
            connection.set_verify(SSL.VERIFY_NONE)

    def _address_domain(self, connection: SSL.Connection) -> str | None:
        """The domain owning the local address of a connection (its
        application data is Twisted's TLS protocol)."""
        transport = getattr(connection.get_app_data(), "transport", None)
        host = getattr(transport.getHost(), "host", None) if transport is not None else None
        if not isinstance(host, str):
            return None
        return self.directory.domain_for_address(host)

    def client_certificate(self, transport: Any) -> VerifiedCertificate | None:
        """The client certificate of a TLS transport if a domain's trusted
        CA verified it, with that domain; else None."""
        connection = _tls_connection(transport)
        if connection is None:
            return None
        verdict = self._verdicts.get(connection)
        if verdict is None or verdict.failed:
            return None
        certificate = connection.get_peer_certificate(as_cryptography=True)
        return verified(certificate, verdict.domain) if certificate is not None else None

    def getContext(self) -> SSL.Context:
        """The default context (Main Domain), switching by SNI."""
        context = self.context_for(self.directory.main_domain())
        if context is None:
            raise CertificateError("the Main Domain has no certificate")
        return context


def _tls_connection(transport: Any) -> SSL.Connection | None:
    """The pyOpenSSL connection of a TLS transport, None for a clear one."""
    handle = getattr(transport, "getHandle", None)
    connection = handle() if handle else None
    return connection if isinstance(connection, SSL.Connection) else None


def server_name(transport: Any) -> str | None:
    """The SNI name the client sent, if the transport is TLS."""
    handle = getattr(transport, "getHandle", None)
    connection = handle() if handle else None
    getter = getattr(connection, "get_servername", None)
    name = getter() if getter else None
    return name.decode("ascii", "replace").lower() if name else None


def channel_binding(transport: Any, kind: str) -> bytes | None:
    """The channel-binding data of a TLS transport: ``tls-exporter``
    (RFC 9266: 32 bytes of keying material, TLS 1.3 and TLS 1.2 with the
    extended master secret) or ``tls-server-end-point`` (RFC 5929: the
    hash of the server's certificate, SHA-256 for MD5 and SHA-1
    signatures); None for a clear link or another kind."""
    connection = _tls_connection(transport)
    if connection is None:
        return None
    try:
        if kind == "tls-exporter":
            # RFC 9266 §3: not on TLS 1.2 without the extended master
            # secret (RFC 7627), where the keying material is not unique
            # to the connection (the triple handshake).
            if connection.get_protocol_version_name() != "TLSv1.3" and not _extended_master_secret(
                connection
            ):
                return None
            return bytes(connection.export_keying_material(b"EXPORTER-Channel-Binding", 32))
        if kind == "tls-server-end-point":
            certificate = connection.get_certificate()
            if certificate is None:
                return None
            leaf = certificate.to_cryptography()
            algorithm = leaf.signature_hash_algorithm
            if algorithm is None or algorithm.name in ("md5", "sha1"):
                algorithm = hashes.SHA256()
            digest = hashes.Hash(algorithm)
            digest.update(leaf.public_bytes(serialization.Encoding.DER))
            return digest.finalize()
    except (SSL.Error, ValueError):
        return None
    return None


def _extended_master_secret(connection: SSL.Connection) -> bool:
    """Whether a TLS 1.2 connection negotiated the extended master secret
    (pyOpenSSL has no public call for it; unknown counts as no)."""
    try:
        from OpenSSL._util import lib

        return bool(lib.SSL_get_extms_support(connection._ssl) == 1)
    except (ImportError, AttributeError):
        return False


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
    start_tls(transport, contexts)


def for_domain(contexts: Any, domain: str) -> Any:
    """TLS contexts serving ``domain``'s certificate first (as FTP HOST or
    an XMPP stream's ``to`` chose it): :meth:`DomainContexts.preferred`;
    any other context factory is returned as it is."""
    return contexts.preferred(domain) if isinstance(contexts, DomainContexts) else contexts


def start_tls(transport: Any, contexts: Any, normal: bool = True) -> None:
    """``transport.startTLS(contexts, normal)``, the server side of a TCP
    connection sharing one TLS factory with every connection of the same
    ``contexts`` (:class:`DomainContexts` or :class:`PreferredDomain`).

    Twisted's own ``startTLS`` makes a factory for each connection, with
    two closures and their cells: about 1 KiB that every idle session
    would keep.  This does the same steps with the shared factory; any
    other transport or context factory goes to ``startTLS``."""
    while isinstance(transport, ProtocolWrapper) and not hasattr(type(transport), "startTLS"):
        # A wrapper that only relays (the per-address guard): the TLS
        # layer goes below it, where its own startTLS would have put it.
        transport = transport.transport
    shared = getattr(contexts, "tls_factory", None)
    if (
        _newtls is None
        or shared is None
        or not isinstance(transport, _newtls.ConnectionMixin)
        or transport.TLS
        # The client side (never asked of a server).
        or (transport._tlsClientDefault if normal else not transport._tlsClientDefault)
    ):
        # ITLSTransport's startTLS takes the context factory alone.
        transport.startTLS(contexts) if normal else transport.startTLS(contexts, normal)
        return
    below: Any = transport
    producer, streaming = below.producer, below.streamingProducer
    if producer is not None:
        below.unregisterProducer()
    factory = shared()
    tls = factory.protocol(factory, below.protocol, False)
    below.protocol = tls
    below.getHandle = tls.getHandle
    below.getPeerCertificate = tls.getPeerCertificate
    directlyProvides(below, ISSLTransport)
    below.TLS = True
    tls.makeConnection(_newtls._BypassTLS(FileDescriptor, below))
    if producer is not None:
        below.registerProducer(producer, streaming)


@implementer(IOpenSSLContextFactory)
class PreferredDomain(_SharedTLSFactory):
    """The certificate of one domain (chosen before the handshake, as FTP
    HOST does), still switching by SNI when the client sends a name.
    :meth:`DomainContexts.preferred` gives one per domain."""

    def __init__(self, contexts: DomainContexts, domain: str) -> None:
        self.contexts = contexts
        self.domain = domain

    def getContext(self) -> SSL.Context:
        """The domain's context, else the Main Domain's."""
        return self.contexts.context_for(self.domain) or self.contexts.getContext()
