"""A real OpenLDAP ``slapd`` for the tests, in a temporary directory.

Its cn=config is made with ``slapadd`` from a generated LDIF: one mdb
database for ``dc=example,dc=com`` with a root DN and password, the core,
cosine, nis and inetorgperson schemas and the shipped
``etc/ldap/communigate.schema.ldif``.  It listens on a free loopback port.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.integration import ports

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SYSTEM_SCHEMAS = Path("/etc/ldap/schema")
SHIPPED_SCHEMA = Path(__file__).resolve().parents[2] / "etc" / "ldap" / "communigate.schema.ldif"
SUFFIX = "dc=example,dc=com"
ROOT_DN = f"cn=admin,{SUFFIX}"
#: The root password of this throw-away test server.
ROOT_PASSWORD = "ldap-secret"

_CONFIG = """\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {folder}/slapd.pid
olcArgsFile: {folder}/slapd.args

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file://{schemas}/core.ldif

include: file://{schemas}/cosine.ldif

include: file://{schemas}/nis.ldif

include: file://{schemas}/inetorgperson.ldif

include: file://{shipped}

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: unlimited

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {folder}/data
olcSuffix: {suffix}
olcRootDN: {root}
olcRootPW: {password}
olcDbMaxSize: 268435456
olcDbIndex: objectClass eq
olcDbIndex: uid,cgpAlias,cgpDomainName,cn eq
olcDbIndex: modifyTimestamp eq
olcAccess: {{0}}to * by * none
"""


@dataclass
class LdapServer:
    """A slapd of the tests: its folder, port and process."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``--directory`` value naming its database."""
        return f"ldap://127.0.0.1:{self.port}/{SUFFIX}"

    @property
    def password_file(self) -> Path:
        """A file holding the root password (``--directory-password-file``)."""
        path = self.folder / "password"
        if not path.exists():
            path.write_text(ROOT_PASSWORD + "\n")
            path.chmod(0o600)
        return path

    def options(self) -> list[str]:
        """The command-line options that select this directory."""
        return [
            f"--directory={self.url}",
            f"--directory-bind-dn={ROOT_DN}",
            f"--directory-password-file={self.password_file}",
        ]

    def start(self) -> None:
        """Start slapd and wait until it accepts connections."""
        with open(self.folder / "slapd.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    SLAPD,
                    "-d",
                    "0",
                    "-h",
                    f"ldap://127.0.0.1:{self.port}/",
                    "-F",
                    str(self.folder / "config"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("slapd exited: " + (self.folder / "slapd.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("slapd did not start")

    def stop(self) -> None:
        """Stop slapd (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def make_server(folder: Path) -> LdapServer:
    """A configured slapd in ``folder`` (cn=config made by slapadd), not
    yet started."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config").mkdir()
    (folder / "data").mkdir()
    ldif = folder / "config.ldif"
    ldif.write_text(
        _CONFIG.format(
            folder=folder,
            schemas=SYSTEM_SCHEMAS,
            shipped=SHIPPED_SCHEMA,
            suffix=SUFFIX,
            root=ROOT_DN,
            password=ROOT_PASSWORD,
        )
    )
    subprocess.run(
        [SLAPADD, "-n", "0", "-F", str(folder / "config"), "-l", str(ldif)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return LdapServer(folder, ports.free_port())
