"""Channel-binding data of TLS links (in-memory TLS, no sockets)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL

from communigate.protocols.tls import channel_binding
from communigate.store.certificates import self_signed

#: OpenSSL's SSL_OP_NO_EXTENDED_MASTER_SECRET (pyOpenSSL does not name it).
NO_EXTENDED_MASTER_SECRET = 0x1


class _Transport:
    def __init__(self, handle: SSL.Connection) -> None:
        self.handle = handle

    def getHandle(self) -> SSL.Connection:
        return self.handle


def _link(version: int, options: int = 0) -> SSL.Connection:
    """The server end of a finished handshake with a client capped at ``version``."""
    certificate, key = self_signed("company.com")
    server_context = SSL.Context(SSL.TLS_SERVER_METHOD)
    server_context.use_certificate(x509.load_pem_x509_certificate(certificate))
    server_context.use_privatekey(load_pem_private_key(key, None))  # type: ignore[arg-type]
    client_context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client_context.set_max_proto_version(version)
    client_context.set_options(options)
    server = SSL.Connection(server_context, None)
    server.set_accept_state()
    client = SSL.Connection(client_context, None)
    client.set_connect_state()
    for _ in range(10):
        for one, other in ((client, server), (server, client)):
            try:
                one.do_handshake()
            except SSL.WantReadError:
                pass
            try:
                other.bio_write(one.bio_read(65536))
            except SSL.WantReadError:
                pass
    return server


@pytest.mark.parametrize("version", [SSL.TLS1_3_VERSION, SSL.TLS1_2_VERSION])
def test_exporter_with_unique_keys(version: int) -> None:
    """TLS 1.3, and TLS 1.2 with the extended master secret: 32 bytes."""
    data = channel_binding(_Transport(_link(version)), "tls-exporter")
    assert data is not None and len(data) == 32


def test_no_exporter_without_extended_master_secret() -> None:
    """RFC 9266 §3: TLS 1.2 without the extended master secret has no
    tls-exporter binding (its keying material is not unique to the link)."""
    server = _link(SSL.TLS1_2_VERSION, NO_EXTENDED_MASTER_SECRET)
    assert server.get_protocol_version_name() == "TLSv1.2"
    assert channel_binding(_Transport(server), "tls-exporter") is None
    assert channel_binding(_Transport(server), "tls-server-end-point") is not None
