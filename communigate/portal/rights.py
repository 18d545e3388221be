"""Server and domain rights (spec §6), as kept in each domain's
``Settings/Access.settings``: ``{ holder = (Right, ...); }``.

A holder is an account name of that domain, or a full name ``name@domain``
for an account of the Main Domain acting on another domain.  Server rights
(Master, Settings, Directory, AllDomains, AllDomainsRead, Monitor) are held
by Main Domain accounts in the Main Domain's file.  Master implies every
right; AllDomains implies every domain right in every domain.
"""

from __future__ import annotations

from communigate.store.directory import IDirectory
from communigate.store.settingsformat import as_string_list

SERVER_RIGHTS = ("Master", "Settings", "Directory", "AllDomains", "AllDomainsRead", "Monitor")
DOMAIN_RIGHTS = (
    "DomainAdmin",
    "CanCreateAccounts",
    "CanCreateAliases",
    "CanCreateGroups",
    "CanImpersonate",
    "KerberosKeys",
    "BasicSettings",
)


class Rights:
    """Answers "may this account do that in that domain?"."""

    def __init__(self, directory: IDirectory) -> None:
        self.directory = directory

    def held(self, domain: str, name: str, in_domain: str) -> set[str]:
        """The rights ``name@domain`` holds in ``in_domain``'s file."""
        access = self.directory.access_rights(in_domain)
        holders = [f"{name}@{domain}"]
        if domain == in_domain:
            holders.append(name)
        found: set[str] = set()
        for holder in holders:
            found.update(right.lower() for right in as_string_list(access.get(holder)))
        return found

    def server_rights(self, domain: str, name: str) -> set[str]:
        """Server rights: only accounts of the Main Domain have them."""
        main = self.directory.main_domain()
        if domain != main:
            return set()
        return self.held(domain, name, main) & {right.lower() for right in SERVER_RIGHTS}

    def has(self, domain: str, name: str, right: str, target_domain: str) -> bool:
        """Whether ``name@domain`` holds ``right`` for ``target_domain``."""
        wanted = right.lower()
        server = self.server_rights(domain, name)
        if "master" in server:
            return True
        if "alldomains" in server and wanted in {item.lower() for item in DOMAIN_RIGHTS}:
            return True
        return wanted in self.held(domain, name, target_domain)
