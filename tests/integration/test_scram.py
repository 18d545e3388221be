"""SCRAM end to end: Cyrus imtest and pop3test (which send an authorization
identity), stored secrets for one-way passwords, and -PLUS channel binding
over real TLS (tls-exporter and tls-server-end-point)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import ssl
import struct
import subprocess
from collections.abc import Callable

import pytest
from cryptography import x509
from OpenSSL import SSL

from tests.integration.conftest import Server, admin

pytestmark = pytest.mark.integration

IMTEST = "/usr/lib/cyrus/bin/imtest"
POP3TEST = "/usr/lib/cyrus/bin/pop3test"
SCRAMS = ("SCRAM-SHA-1", "SCRAM-SHA-256")


def cyrus(tool: str, port: int, mechanism: str, user: str, password: str, *extra: str) -> str:
    """Run imtest or pop3test once; their whole dialogue as text."""
    commands = b"a SELECT INBOX\r\nb LOGOUT\r\n" if tool == IMTEST else b"STAT\r\nQUIT\r\n"
    result = subprocess.run(
        [tool, "-m", mechanism, "-a", user, "-w", password, *extra, "-p", str(port), "127.0.0.1"],
        input=commands,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return (result.stdout + result.stderr).decode(errors="replace")


@pytest.fixture(scope="module")
def hashed(server: Server) -> str:
    """An account whose password is stored as bcrypt (UB-crpt)."""
    name = "scram-hashed@client2.com"
    admin(server.base, "account", "create", name, "PasswordEncryption=UB-crpt")
    admin(server.base, "account", "password", name, "--password", "hashed-pw")
    return name


@pytest.mark.parametrize("mechanism", SCRAMS)
@pytest.mark.parametrize("tool", [IMTEST, POP3TEST])
def test_cyrus_clients_with_authzid(server: Server, tool: str, mechanism: str) -> None:
    """imtest/pop3test with ``-u`` send ``n,a=info@client2.com,...``: accepted."""
    port = server.imap_port if tool == IMTEST else server.port
    user = "info@client2.com"
    out = cyrus(tool, port, mechanism, user, "pw-client2.com", "-u", user)
    assert "Authenticated." in out, out
    assert ("a OK [READ-WRITE]" in out) if tool == IMTEST else ("+OK 1 " in out), out


@pytest.mark.parametrize("mechanism", SCRAMS)
def test_authzid_of_another_account_needs_impersonation(server: Server, mechanism: str) -> None:
    """An authzid naming another account is refused without CanImpersonate."""
    out = cyrus(
        IMTEST,
        server.imap_port,
        mechanism,
        "info@client2.com",
        "pw-client2.com",
        "-u",
        "info@client1.com",
    )
    assert "Authenticated." not in out, out
    assert "NO [AUTHORIZATIONFAILED]" in out or "NO [AUTHENTICATIONFAILED]" in out, out


@pytest.mark.parametrize("mechanism", SCRAMS)
@pytest.mark.parametrize("tool", [IMTEST, POP3TEST])
def test_scram_for_a_bcrypt_account(server: Server, hashed: str, tool: str, mechanism: str) -> None:
    """The stored SCRAM secret serves an account whose password is bcrypt;
    a wrong password is still refused."""
    port = server.imap_port if tool == IMTEST else server.port
    assert "Authenticated." in cyrus(tool, port, mechanism, hashed, "hashed-pw")
    assert "Authenticated." not in cyrus(tool, port, mechanism, hashed, "wrong")


# -- -PLUS over real TLS ------------------------------------------------------


def scram_plus(
    send: Callable[[bytes], None],
    receive: Callable[[], bytes],
    name: str,
    kind: str,
    binding: bytes,
    user: str,
    password: str,
    header: str | None = None,
) -> bytes:
    """Run AUTHENTICATE over an IMAP connection; the tagged answer."""
    algorithm = "sha256" if name.startswith("SCRAM-SHA-256") else "sha1"
    header = header if header is not None else f"p={kind},,"
    bare = f"n={user},r=plusclientnonce"
    send(f"A AUTHENTICATE {name} ".encode() + base64.b64encode((header + bare).encode()) + b"\r\n")
    line = receive()
    if not line.startswith(b"+ "):
        return line
    server_first = base64.b64decode(line[2:].strip()).decode()
    fields = dict(part.split("=", 1) for part in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(
        algorithm, password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", algorithm)
    stored = hashlib.new(algorithm, client_key).digest()
    channel = base64.b64encode(header.encode() + (binding if header.startswith("p=") else b""))
    without_proof = f"c={channel.decode()},r={fields['r']}"
    signature = hmac.digest(stored, f"{bare},{server_first},{without_proof}".encode(), algorithm)
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    send(base64.b64encode(f"{without_proof},p={proof.decode()}".encode()) + b"\r\n")
    line = receive()
    if line.startswith(b"+ "):
        send(b"\r\n")
        line = receive()
    return line


def test_plus_tls_server_end_point(server: Server) -> None:
    """Python's ssl client, binding with the hash of the certificate it
    received (RFC 5929), logs in with SCRAM-SHA-256-PLUS over imaps."""
    context = ssl.create_default_context(cafile=str(server.ca))
    with socket.create_connection(("127.0.0.1", server.imaps_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="company.com") as tls:
            stream = tls.makefile("rb")
            greeting = stream.readline()
            assert b"OK" in greeting
            tls.sendall(b"C CAPABILITY\r\n")
            capability = stream.readline()
            stream.readline()
            assert b"AUTH=SCRAM-SHA-256-PLUS" in capability, capability
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            certificate = x509.load_der_x509_certificate(der)
            algorithm = certificate.signature_hash_algorithm
            name = (
                "sha256"
                if algorithm is None or algorithm.name in ("md5", "sha1")
                else algorithm.name
            )
            binding = hashlib.new(name, der).digest()
            answer = scram_plus(
                tls.sendall,
                stream.readline,
                "SCRAM-SHA-256-PLUS",
                "tls-server-end-point",
                binding,
                "info@company.com",
                "pw-company.com",
            )
            assert answer.startswith(b"A OK"), answer


def openssl_client(
    server: Server, starttls: bool = False
) -> tuple[SSL.Connection, Callable[[], bytes]]:
    """A pyOpenSSL client (it can export keying material) on imaps, or on
    the plain port after STARTTLS; the TLS greeting line is still to read
    (for STARTTLS, a CAPABILITY answer stands in for it)."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.load_verify_locations(str(server.ca))
    context.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
    port = server.imap_port if starttls else server.imaps_port
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    # pyOpenSSL wants a blocking socket; the kernel bounds each read instead.
    raw.setblocking(True)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 10, 0))
    if starttls:
        plain = raw.makefile("rb")
        plain.readline()
        raw.sendall(b"S STARTTLS\r\n")
        assert plain.readline().startswith(b"S OK")
    connection = SSL.Connection(context, raw)
    connection.set_tlsext_host_name(b"company.com")
    connection.set_connect_state()
    connection.do_handshake()
    if starttls:
        connection.sendall(b"C NOOP\r\n")
    buffer = bytearray()

    def readline() -> bytes:
        while b"\n" not in buffer:
            buffer.extend(connection.recv(4096))
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        return line + b"\n"

    return connection, readline


@pytest.mark.parametrize(
    ("name", "starttls"),
    [("SCRAM-SHA-1-PLUS", False), ("SCRAM-SHA-256-PLUS", False), ("SCRAM-SHA-256-PLUS", True)],
)
def test_plus_tls_exporter(server: Server, name: str, starttls: bool) -> None:
    """A pyOpenSSL client binding with tls-exporter (RFC 9266) logs in, on
    imaps and after STARTTLS; the same exchange with a wrong binding (a man
    in the middle) is refused."""
    for binding_of, expected in ((lambda c: c, b"A OK"), (lambda c: b"x" * 32, b"A NO")):
        connection, readline = openssl_client(server, starttls)
        try:
            readline()
            exported = connection.export_keying_material(b"EXPORTER-Channel-Binding", 32)
            answer = scram_plus(
                connection.sendall,
                readline,
                name,
                "tls-exporter",
                binding_of(exported),
                "info@company.com",
                "pw-company.com",
            )
            assert answer.startswith(expected), answer
        finally:
            connection.close()


def test_downgrade_refused_on_tls(server: Server) -> None:
    """On TLS, where -PLUS is advertised, ``y,,`` (could bind, did not) is refused."""
    connection, readline = openssl_client(server)
    try:
        readline()
        answer = scram_plus(
            connection.sendall,
            readline,
            "SCRAM-SHA-256",
            "",
            b"",
            "info@company.com",
            "pw-company.com",
            header="y,,",
        )
        assert answer.startswith(b"A NO"), answer
    finally:
        connection.close()
