"""The files directory backend: layout, names, caches that follow changes."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from communigate.store.directory import (
    DirectoryError,
    IDirectory,
    IDirectoryAdmin,
    ObjectKind,
)
from communigate.store.files import FileDirectory
from tests.conftest import ManualClock


def test_provides_interfaces(directory: FileDirectory) -> None:
    """The backend implements both directory interfaces."""
    assert verifyObject(IDirectory, directory)
    assert verifyObject(IDirectoryAdmin, directory)


def test_layout(directory: FileDirectory) -> None:
    """Main Domain in Accounts/, others in Domains/<name>/, accounts .macnt."""
    base = directory.base
    assert (base / "Settings" / "Main.settings").is_file()
    assert (base / "Accounts" / "info.macnt" / "account.settings").is_file()
    assert (base / "Accounts" / "postmaster.macnt" / "account.settings").is_file()
    assert (base / "Domains" / "client1.com" / "info.macnt" / "account.settings").is_file()
    assert "postmaster" in (base / "Accounts" / "Settings" / "Access.settings").read_text()


def test_address_to_domain(directory: FileDirectory) -> None:
    """Assigned addresses pick their domain; all others the Main Domain."""
    assert directory.domain_for_address("127.0.0.2") == "client1.com"
    assert directory.domain_for_address("::ffff:127.0.0.2") == "client1.com"
    assert directory.domain_for_address("127.0.0.1") == "company.com"
    assert directory.domain_for_address("not an address") == "company.com"


def test_domain_alias(directory: FileDirectory) -> None:
    """A domain alias finds the real domain; its name is taken."""
    record = directory.domain("ALIAS2.com")
    assert record is not None and record.name == "client2.com"
    with pytest.raises(DirectoryError):
        directory.create_domain("alias2.com")
    with pytest.raises(DirectoryError):
        directory.update_domain_settings("client1.com", {"DomainAliases": ["alias2.com"]})


@pytest.mark.parametrize("name", [".lead", "trail.", "sp ace", "x" * 129, "semi;colon", ""])
def test_invalid_object_names(directory: FileDirectory, name: str) -> None:
    """Names outside spec §1.7 are refused."""
    with pytest.raises(DirectoryError):
        directory.create_account("company.com", name, {})


def test_shared_namespace(directory: FileDirectory) -> None:
    """Accounts, aliases, groups and forwarders share one namespace, any case."""
    directory.add_object(ObjectKind.ALIAS, "company.com", "boss", "info")
    with pytest.raises(DirectoryError):
        directory.create_account("company.com", "BOSS", {})
    with pytest.raises(DirectoryError):
        directory.add_object(ObjectKind.GROUP, "company.com", "Info", {"Members": []})
    found = directory.find_object("company.com", "boss")
    assert found is not None and found.kind is ObjectKind.ALIAS and found.targets == ("info",)


def test_account_settings_layers(directory: FileDirectory) -> None:
    """Built-in defaults, then server, domain and account values."""
    directory.update_server_settings({"AccountDefaults": {"PasswordEncryption": "U-crpt"}})
    directory.update_domain_settings(
        "client1.com", {"AccountDefaults": {"PasswordEncryption": "UB-crpt", "X": "d"}}
    )
    directory.update_account_settings("client1.com", "info", {"X": "a"})
    assert directory.account_settings("company.com", "info")["PasswordEncryption"] == "U-crpt"
    settings = directory.account_settings("client1.com", "info")
    assert settings["PasswordEncryption"] == "UB-crpt"
    assert settings["X"] == "a"
    assert settings["UseAppPassword"] == "YES"


def test_changes_seen_within_a_second(directory: FileDirectory, clock: ManualClock) -> None:
    """Another writer's change is seen once the recheck interval passed."""
    assert directory.server_settings()["HideAccountUnknown"] == "NO"
    other = FileDirectory(directory.base)
    other.update_server_settings({"HideAccountUnknown": "YES"})
    clock.advance(0.6)
    assert directory.server_settings()["HideAccountUnknown"] == "YES"
    other.create_domain("late.com", {"IPAddresses": ["127.0.0.9"]})
    clock.advance(0.6)
    assert directory.domain_for_address("127.0.0.9") == "late.com"


def test_rename_and_delete_follow_aliases(directory: FileDirectory) -> None:
    """Aliases follow a renamed account and go away with a deleted one."""
    directory.add_object(ObjectKind.ALIAS, "company.com", "boss", "info")
    directory.rename_account("company.com", "info", "chief")
    assert directory.objects("company.com", ObjectKind.ALIAS) == {"boss": "chief"}
    directory.delete_account("company.com", "chief")
    assert directory.objects("company.com", ObjectKind.ALIAS) == {}
    assert directory.find_object("company.com", "chief") is None


def test_main_domain_cannot_go(directory: FileDirectory) -> None:
    """The Main Domain cannot be deleted; MainDomainName cannot change."""
    with pytest.raises(DirectoryError):
        directory.delete_domain("company.com")
    with pytest.raises(DirectoryError):
        directory.update_server_settings({"MainDomainName": "x.com"})


def test_no_temporary_files_left(directory: FileDirectory) -> None:
    """Atomic writes leave no temporary file behind."""
    directory.update_account_settings("company.com", "info", {"A": "1"})
    leftovers = [path for path in directory.base.rglob("*.tmp")]
    assert leftovers == []
