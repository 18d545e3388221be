"""A real MIT Kerberos KDC in a temporary directory, on a loopback port.

:class:`KDC` writes a ``krb5.conf`` and a ``kdc.conf`` of its own, creates
the database with ``kdb5_util``, makes principals and keytabs with
``kadmin.local`` and runs ``krb5kdc`` in the foreground on a free port of
127.0.0.1 (UDP and TCP).  :attr:`KDC.env` is what a client or the server
needs to use it: ``KRB5_CONFIG`` (its realm and KDC), ``KRB5_KDC_PROFILE``,
``KRB5CCNAME`` (a credentials cache in the directory) and
``KRB5RCACHEDIR`` (replay caches in the directory).  Nothing is written
outside the directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.integration import ports

KRB5KDC = "/usr/sbin/krb5kdc"
KDB5_UTIL = "/usr/sbin/kdb5_util"
KADMIN_LOCAL = "/usr/sbin/kadmin.local"
KINIT = shutil.which("kinit") or "/usr/bin/kinit"
KVNO = shutil.which("kvno") or "/usr/bin/kvno"
ENCTYPES = "aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal"


def available() -> bool:
    """Whether the MIT KDC and its tools are installed (the benchmark asks)."""
    return all(os.access(tool, os.X_OK) for tool in (KRB5KDC, KDB5_UTIL, KADMIN_LOCAL, KINIT))


class KDC:
    """One realm's KDC under ``root``; :meth:`start`, then :meth:`stop`."""

    def __init__(self, root: Path, realm: str | None = None) -> None:
        self.root = root
        self.realm = realm or f"TEST{secrets.token_hex(3).upper()}.EXAMPLE"
        self.port = ports.free_port(udp=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "rcache").mkdir(exist_ok=True)
        self.env = {
            "KRB5_CONFIG": str(self.root / "krb5.conf"),
            "KRB5_KDC_PROFILE": str(self.root / "kdc.conf"),
            "KRB5CCNAME": f"FILE:{self.root / 'ccache'}",
            "KRB5RCACHEDIR": str(self.root / "rcache"),
        }
        self._write_config()

    def _write_config(self) -> None:
        root = self.root
        (root / "krb5.conf").write_text(
            "[libdefaults]\n"
            f"  default_realm = {self.realm}\n"
            "  dns_lookup_realm = false\n"
            "  dns_lookup_kdc = false\n"
            "  dns_canonicalize_hostname = false\n"
            "  rdns = false\n"
            "  ignore_acceptor_hostname = false\n"
            "[realms]\n"
            f"  {self.realm} = {{\n"
            f"    kdc = 127.0.0.1:{self.port}\n"
            "  }\n"
        )
        (root / "kdc.conf").write_text(
            "[kdcdefaults]\n"
            f"  kdc_ports = {self.port}\n"
            f"  kdc_tcp_ports = {self.port}\n"
            "[realms]\n"
            f"  {self.realm} = {{\n"
            f"    database_name = {root / 'principal'}\n"
            f"    key_stash_file = {root / 'stash'}\n"
            f"    acl_file = {root / 'kadm5.acl'}\n"
            f"    kdc_listen = 127.0.0.1:{self.port}\n"
            f"    kdc_tcp_listen = 127.0.0.1:{self.port}\n"
            f"    supported_enctypes = {ENCTYPES}\n"
            "  }\n"
            "[logging]\n"
            f"  kdc = FILE:{root / 'kdc.log'}\n"
        )
        (root / "kadm5.acl").write_text("")

    def environ(self) -> dict[str, str]:
        """The process environment with this KDC's variables."""
        return {**os.environ, **self.env}

    def run(self, *command: str, stdin: bytes = b"") -> str:
        """Run a Kerberos tool with this KDC's environment; it must succeed."""
        result = subprocess.run(
            list(command),
            input=stdin,
            capture_output=True,
            env=self.environ(),
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{command[0]} failed: {(result.stdout + result.stderr).decode(errors='replace')}"
            )
        return result.stdout.decode(errors="replace")

    def start(self) -> None:
        """Create the database and run ``krb5kdc`` until :meth:`stop`."""
        self.run(KDB5_UTIL, "create", "-s", "-r", self.realm, "-P", secrets.token_hex(16))
        log = open(self.root / "krb5kdc.out", "wb")
        self.process = subprocess.Popen(
            [KRB5KDC, "-n", "-r", self.realm, "-P", str(self.root / "kdc.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environ(),
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("krb5kdc exited: " + self.log())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("krb5kdc did not start: " + self.log())

    def log(self) -> str:
        """What the KDC wrote so far."""
        parts = [self.root / "krb5kdc.out", self.root / "kdc.log"]
        return "".join(path.read_text(errors="replace") for path in parts if path.exists())

    def stop(self) -> None:
        """Stop ``krb5kdc``."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kadmin(self, query: str) -> str:
        """One ``kadmin.local`` query, e.g. ``addprinc -pw x user``."""
        return self.run(KADMIN_LOCAL, "-r", self.realm, "-q", query)

    def add_user(self, name: str, password: str) -> str:
        """A client principal with a password; its full name."""
        self.kadmin(f"addprinc -pw {password} {name}")
        return f"{name}@{self.realm}"

    def add_service(self, name: str) -> str:
        """A service principal with a random key; its full name."""
        self.kadmin(f"addprinc -randkey {name}")
        return f"{name}@{self.realm}"

    def keytab(self, principal: str, path: Path, keep_old: bool = False) -> Path:
        """Write ``principal``'s keys to ``path`` (``ktadd`` makes a new kvno
        unless ``keep_old``: then the current keys are exported as they are)."""
        norand = " -norandkey" if keep_old else ""
        self.kadmin(f"ktadd -k {path}{norand} {principal}")
        return path

    def kinit(self, principal: str, password: str, ccache: Path) -> Path:
        """A ticket-granting ticket for ``principal`` in ``ccache``."""
        env = {**self.environ(), "KRB5CCNAME": f"FILE:{ccache}"}
        result = subprocess.run(
            [KINIT, principal],
            input=f"{password}\n".encode(),
            capture_output=True,
            env=env,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kinit failed: {result.stderr.decode(errors='replace')}")
        return ccache


class GSSAPIClient:
    """The client side of an RFC 4752 exchange, with python-gssapi: a
    ticket for ``service`` (``imap@client1.com`` host-based, or a
    principal name ``company.com@REALM``) from the credentials cache
    ``ccache``; answers with ``layer`` and ``authzid``."""

    def __init__(
        self,
        service: str,
        ccache: Path,
        authzid: bytes = b"",
        layer: int = 1,
        hostbased: bool = True,
    ) -> None:
        import gssapi.raw

        self.raw = gssapi.raw
        kind = (
            gssapi.raw.NameType.hostbased_service
            if hostbased
            else gssapi.raw.NameType.kerberos_principal
        )
        self.target = gssapi.raw.import_name(service.encode(), kind)
        self.creds = gssapi.raw.acquire_cred_from(
            {b"ccache": f"FILE:{ccache}".encode()}, usage="initiate"
        ).creds
        self.authzid = authzid
        self.layer = layer
        self.context: object = None
        self.established = False

    def first(self) -> bytes:
        """The first context token (the AP-REQ)."""
        flags = [self.raw.RequirementFlag.mutual_authentication, self.raw.RequirementFlag.integrity]
        result = self.raw.init_sec_context(
            self.target,
            creds=self.creds,
            flags=flags,
            mech=self.raw.OID.from_int_seq("1.2.840.113554.1.2.2"),
        )
        self.context = result.context
        self.established = not result.more_steps
        return bytes(result.token)

    def answer(self, challenge: bytes) -> bytes:
        """The answer to a server challenge: the mutual-authentication reply
        is checked and answered with nothing; the security-layer offer with
        the chosen layer, a size of 0 and the authzid (RFC 4752 §3.1)."""
        assert self.context is not None
        if not self.established:
            result = self.raw.init_sec_context(
                self.target, context=self.context, creds=self.creds, input_token=challenge
            )
            self.context = result.context
            self.established = not result.more_steps
            return bytes(result.token or b"")
        offer = self.raw.unwrap(self.context, challenge).message
        if len(offer) != 4 or not offer[0] & 1:
            raise ValueError(f"unexpected security layer offer {offer!r}")
        reply = bytes([self.layer, 0, 0, 0]) + self.authzid
        return self.raw.wrap(self.context, reply, confidential=False).message
