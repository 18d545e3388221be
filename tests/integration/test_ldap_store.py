"""The LDAP directory against a real ``slapd`` (no front end): hostile
names, passwords changed by other LDAP tools, deletions made by other
tools, the shipped schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest

from communigate.cred import derived, passwords
from communigate.portal.avatars import IIMAPAccount
from communigate.portal.realm import AccountRealm
from communigate.store.directory import DirectoryError, ObjectKind
from communigate.store.files import FileDirectory
from communigate.store.ldap import lookups
from communigate.store.ldap.connection import parse_location
from communigate.store.ldap.directory import LdapDirectory
from communigate.store.ldap.mapping import EntryKind, account_entry
from communigate.store.ldap.snapshot import SWEEP
from tests.conftest import ManualClock
from tests.integration.ldapserver import ROOT_DN, ROOT_PASSWORD, SUFFIX, LdapServer, make_server

#: Login names that must match nothing (filter and DN syntax in them).
HOSTILE = [
    "*",
    "*)(uid=*",
    "jane)(uid=*",
    "jane*",
    "*)(|(objectClass=*",
    "jane,ou=accounts",
    "a,ou=x",
    "jane\\2a",
    "jane\x00",
    "uid=jane",
    " jane",
    "#jane",
]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    """A slapd loaded with the shipped schema (slapadd refuses a bad one)."""
    server = make_server(tmp_path_factory.mktemp("ldapstore") / "slapd")
    server.start()
    try:
        with _raw(server) as raw:
            raw.add(SUFFIX, ["dcObject", "organization"], {"dc": "example", "o": "example"})
        yield server
    finally:
        server.stop()


def _open(slapd: LdapServer, base: Path, suffix: str, **options: object) -> LdapDirectory:
    """A directory on its own ``ou=`` under the test suffix."""
    url = slapd.url.replace("/dc=", f"/ou={suffix},dc=", 1)
    location = parse_location(url, bind_dn=ROOT_DN, password_file=slapd.password_file)
    directory = LdapDirectory(base, location, **options)  # type: ignore[arg-type]
    directory.initialise("company.com")
    return directory


def _raw(slapd: LdapServer) -> ldap3.Connection:
    """A plain connection as root, for what other LDAP tools do."""
    server = ldap3.Server("127.0.0.1", port=slapd.port, get_info=ldap3.NONE)
    return ldap3.Connection(server, ROOT_DN, ROOT_PASSWORD, auto_bind=True, raise_exceptions=True)


def test_hostile_names_match_nothing(slapd: LdapServer, tmp_path: Path) -> None:
    """Filter or DN syntax in a name finds no other object, in memory or in LDAP."""
    directory = _open(slapd, tmp_path, "hostile")
    directory.create_account("company.com", "jane", {"Password": "pw"})
    directory.add_object(ObjectKind.ALIAS, "company.com", "jq", "jane")
    directory.add_object(ObjectKind.FORWARDER, "company.com", "fw", "x@y.org")
    lazy = LdapDirectory(tmp_path, directory.location, lazy=True)
    lazy.refresh()
    for name in HOSTILE:
        for reader in (directory, lazy):
            assert reader.find_object("company.com", name) is None, name
            with pytest.raises(DirectoryError):
                reader.raw_account_settings("company.com", name)
        # Past the name check too: the search itself must find nothing.
        assert lookups.find(directory.entries, directory.layout, "company.com", name) is None
        assert lookups.account(directory.entries, directory.layout, "company.com", name) is None
        with pytest.raises(DirectoryError):
            directory.create_account("company.com", name, {})
    assert directory.find_object("company.com", "jq") is not None
    assert lazy.account_names("company.com") == ["jane"]


def test_entries_named_outside_the_rules_are_ignored(slapd: LdapServer, tmp_path: Path) -> None:
    """An entry another tool made with a name needing escapes names no object."""
    directory = _open(slapd, tmp_path, "oddnames")
    container = directory.layout.container("company.com", EntryKind.ACCOUNT)
    with _raw(slapd) as raw:
        raw.add(
            f"uid=jane\\2Cou\\3Dx,{container}",
            ["inetOrgPerson", "cgpAccount"],
            {"uid": "jane,ou=x", "cn": "j", "sn": "j", "userPassword": "pw"},
        )
    directory.refresh()
    assert directory.account_names("company.com") == []
    lazy = LdapDirectory(tmp_path, directory.location, lazy=True)
    lazy.refresh()
    assert lazy.account_names("company.com") == []


def test_password_changed_by_ldap_tools_drops_derived_secrets(
    slapd: LdapServer, tmp_path: Path
) -> None:
    """A userPassword replaced with ldapmodify leaves the SCRAM keys and NT
    hash of the old password unused, so the old password opens nothing."""
    directory = _open(slapd, tmp_path, "stamp")
    settings = derived.password_settings("old-secret", "UB-crpt", nt_hash=True)
    directory.create_account(
        "company.com", "jane", {k: v for k, v in settings.items() if v is not None}
    )
    own = directory.raw_account_settings("company.com", "jane")
    assert {"SCRAM-SHA-1", "SCRAM-SHA-256", "NTHash"} <= set(own)
    dn = directory.layout.object(EntryKind.ACCOUNT, "company.com", "jane")
    with _raw(slapd) as raw:
        raw.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["cgpPasswordStamp"])
        assert raw.entries[0].cgpPasswordStamp.value
        new = "{CRYPT}" + passwords.encode("new-secret", "UB-crpt")
        raw.modify(dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [new])]})
    directory.refresh()
    own = directory.raw_account_settings("company.com", "jane")
    assert not {"SCRAM-SHA-1", "SCRAM-SHA-256", "NTHash"} & set(own)
    stored = own["Password"]
    assert isinstance(stored, str) and passwords.verify(stored, b"new-secret")
    # A change made here writes the entry without the stale secrets.
    directory.update_account_settings("company.com", "jane", {"RealName": "Jane"})
    with _raw(slapd) as raw:
        raw.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["*"])
        held = {name.lower() for name in raw.entries[0].entry_attributes}
    assert not held & {"cgpscramsha1", "cgpscramsha256", "cgpnthash", "cgppasswordstamp"}


def test_deletion_by_other_tools_found_by_the_sweep(slapd: LdapServer, tmp_path: Path) -> None:
    """An account ldapdelete removed is gone after the next sweep, without a
    whole reload; one deleted through communigate is gone at once."""
    clock = ManualClock()
    directory = _open(slapd, tmp_path, "sweep", clock=clock)
    for name in ("ann", "bob", "cat"):
        directory.create_account("company.com", name, {"Password": "pw"})
    directory.add_object(ObjectKind.ALIAS, "company.com", "annie", "ann")
    complete_at = directory.complete_at
    with _raw(slapd) as raw:
        raw.delete(directory.layout.object(EntryKind.ACCOUNT, "company.com", "ann"))
    clock.advance(1)
    directory.refresh()
    assert directory.find_object("company.com", "ann") is not None
    clock.advance(SWEEP)
    directory.refresh()
    assert directory.find_object("company.com", "ann") is None
    assert directory.find_object("company.com", "annie") is None
    assert directory.complete_at == complete_at
    directory.delete_account("company.com", "bob")
    assert directory.find_object("company.com", "bob") is None
    assert directory.account_names("company.com") == ["cat"]


def test_password_other_software_reads_is_kept(slapd: LdapServer, tmp_path: Path) -> None:
    """A userPassword in a scheme only other software reads opens nothing
    here, and survives a change of the account's other settings."""
    directory = _open(slapd, tmp_path, "scheme")
    directory.create_account("company.com", "jane", {"Password": "pw"})
    dn = directory.layout.object(EntryKind.ACCOUNT, "company.com", "jane")
    foreign = "{ARGON2}$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA"
    with _raw(slapd) as raw:
        raw.modify(dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [foreign])]})
    directory.refresh()
    assert "Password" not in directory.raw_account_settings("company.com", "jane")
    directory.update_account_settings("company.com", "jane", {"RealName": "Jane"})
    with _raw(slapd) as raw:
        raw.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["userPassword", "displayName"])
        entry = raw.entries[0]
        assert entry.userPassword.raw_values == [foreign.encode()]
        assert entry.displayName.value == "Jane"


def test_account_made_by_another_tool_gets_its_folder_at_login(
    slapd: LdapServer, tmp_path: Path
) -> None:
    """An account entry another LDAP tool added (no folder in the base
    directory) logs in over IMAP: the realm makes its folder and INBOX;
    with the files directory a missing folder is a deleted account."""
    directory = _open(slapd, tmp_path, "provisioned")
    dn = directory.layout.object(EntryKind.ACCOUNT, "company.com", "ext")
    with _raw(slapd) as raw:
        raw.add(dn, attributes=account_entry("company.com", "ext", {"Password": "pw"}))
    directory.refresh()
    folder = directory.account_path("company.com", "ext")
    assert not folder.exists()
    realm = AccountRealm(directory)
    interface, _avatar, logout = realm.requestAvatar(b"ext@company.com", None, IIMAPAccount)
    assert interface is IIMAPAccount
    assert (folder / "INBOX.mdir").is_dir()
    logout()
    files = FileDirectory(tmp_path / "files")
    files.initialise("company.com")
    with pytest.raises(FileNotFoundError):
        AccountRealm(files).requestAvatar(b"gone@company.com", None, IIMAPAccount)
