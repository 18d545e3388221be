"""Creating a new base directory: Main Domain, postmaster, first settings.

Used by ``communigate init`` and by the server on its first start with an
empty base directory (spec §1.8: the Main Domain exists from the start and
holds ``postmaster`` with the Master right).
"""

from __future__ import annotations

import re
import secrets
import socket

from communigate.cred import derived
from communigate.store import certificates
from communigate.store.files import FileDirectory

_HOST = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)+\Z")


def default_main_domain() -> str:
    """This machine's fully qualified name, if it has one that can be a domain."""
    name = socket.getfqdn().lower()
    return name if _HOST.match(name) else "localhost.localdomain"


def initialise(
    directory: FileDirectory, main_domain: str, postmaster_password: str | None = None
) -> str:
    """Create the layout, the Main Domain and postmaster; return the password.

    The password is generated when none is given; it is stored encrypted
    (``UB-crpt``) and only returned, never logged.  The Main Domain gets a
    self-signed certificate for TLS.
    """
    password = postmaster_password or secrets.token_urlsafe(12)
    directory.initialise(main_domain)
    main = directory.main_domain()
    directory.create_account(
        main,
        "postmaster",
        {
            **{
                key: value
                for key, value in derived.password_settings(password, "UB-crpt").items()
                if value is not None
            },
            "PasswordEncryption": "UB-crpt",
        },
    )
    directory.update_access_rights(main, "postmaster", lambda _old: ["Master"])
    certificates.install(
        directory.domain_folder(main) / "Settings", *certificates.self_signed(main)
    )
    return password
