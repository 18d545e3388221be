"""The LDAP layout: settings ⇄ attributes, DNs, Router records, modify ops."""

from __future__ import annotations

import datetime
import random

import pytest
from passlib.hash import ldap_salted_sha1

from communigate.cred import passwords
from communigate.store.ldap.lookups import name_query
from communigate.store.ldap.mapping import (
    EntryKind,
    Layout,
    MappingError,
    account_entry,
    attributes_to_settings,
    login_filter,
    modifications,
    rights_from_attribute,
    rights_to_attribute,
    router_from_attribute,
    router_to_attribute,
    settings_to_attributes,
)
from communigate.store.settingsformat import Value

LAYOUT = Layout("dc=example,dc=com")


def test_account_settings_round_trip() -> None:
    """Every kind of account setting comes back from its attributes unchanged."""
    settings: dict[str, Value] = {
        "Password": "plain secret",
        "RealName": "Jane Q. Doe",
        "PasswordEncryption": "UB-crpt",
        "AccessModes": ["IMAP", "POP"],
        "SCRAM-SHA-1": "4096,c2FsdA==,a2V5,c2Vy,abc",
        "NTHash": "878d8014606cda29677a44efa1353fc7",
        "MaxAccountSize": "100M",
        "FailedLoginFlow": ["#3", "1m"],
        "Quota": 12,
        "Created": datetime.datetime(2026, 11, 30, 12, 0, 0),
        "MailToAll": {"Rule": "x y", "Next": ["a", "b"]},
    }
    attributes = settings_to_attributes(EntryKind.ACCOUNT, settings)
    assert attributes["userpassword"] == ["plain secret"]
    assert attributes["displayname"] == ["Jane Q. Doe"]
    assert "MaxAccountSize=100M" in attributes["cgpsetting"]
    assert attributes_to_settings(EntryKind.ACCOUNT, attributes) == settings


@pytest.mark.parametrize(
    ("stored", "in_ldap"),
    [
        ("$2b$12$abcdefghijklmnopqrstuu", "{CRYPT}$2b$12$abcdefghijklmnopqrstuu"),
        ("{CRYPT}abJnggxhB/yW.", "{CRYPT}abJnggxhB/yW."),
        ("{SSHA}c2FsdHNhbHRzYWx0c2FsdA==", "{SSHA}c2FsdHNhbHRzYWx0c2FsdA=="),
        ("clear", "clear"),
        ("{PLAIN}{odd}", "{PLAIN}{odd}"),
    ],
)
def test_password_forms(stored: str, in_ldap: str) -> None:
    """Password maps to userPassword with RFC 2307 schemes, and back exactly."""
    attributes = settings_to_attributes(EntryKind.ACCOUNT, {"Password": stored})
    assert attributes["userpassword"] == [in_ldap]
    assert attributes_to_settings(EntryKind.ACCOUNT, attributes)["Password"] == stored


def test_hashes_written_by_ldap_tools_verify() -> None:
    """{SSHA} and {CRYPT} bcrypt values put in by other tools open the account."""
    for value in (
        ldap_salted_sha1.hash("s3cret"),
        "{CRYPT}" + passwords.encode("s3cret", "UB-crpt"),
    ):
        settings = attributes_to_settings(EntryKind.ACCOUNT, {"userpassword": [value]})
        stored = settings["Password"]
        assert isinstance(stored, str)
        assert passwords.verify(stored, b"s3cret")
        assert not passwords.verify(stored, b"wrong")


def test_domain_lists_and_fallbacks() -> None:
    """String lists get their own attribute (sorted); other shapes stay settings."""
    attributes = settings_to_attributes(
        EntryKind.DOMAIN,
        {"IPAddresses": ["127.0.0.3", "127.0.0.2"], "DomainAliases": [["nested"]]},
    )
    assert attributes["cgpipaddress"] == ["127.0.0.2", "127.0.0.3"]
    assert attributes["cgpsetting"] == ["DomainAliases=((nested))"]
    assert attributes_to_settings(EntryKind.DOMAIN, attributes) == {
        "IPAddresses": ["127.0.0.2", "127.0.0.3"],
        "DomainAliases": [["nested"]],
    }


def test_bad_setting_value_is_refused() -> None:
    """A cgpSetting that is not Key=Value in CommuniGate syntax raises."""
    with pytest.raises(MappingError) as raised:
        attributes_to_settings(EntryKind.ACCOUNT, {"cgpsetting": ["hunter2-secret"]})
    # The message is logged: it never quotes the value, which may be a secret.
    assert "hunter2" not in str(raised.value)
    with pytest.raises(MappingError) as raised:
        attributes_to_settings(EntryKind.ACCOUNT, {"cgpsetting": ["Password=(hunter2"]})
    assert "hunter2" not in str(raised.value)


def test_account_entry_is_an_inet_org_person() -> None:
    """A new account entry has the classes and attributes RFC 2798/4519 require."""
    entry = account_entry("example.com", "jane", {"Password": "x"})
    assert "inetOrgPerson" in entry["objectclass"] and "cgpAccount" in entry["objectclass"]
    assert entry["uid"] == entry["cn"] == entry["sn"] == ["jane"]
    assert entry["mail"] == ["jane@example.com"]


def test_layout_locates_its_own_dns() -> None:
    """Every DN the layout makes is read back as the object it names."""
    assert LAYOUT.locate(LAYOUT.server) == (EntryKind.SERVER, "", "")
    assert LAYOUT.locate(LAYOUT.domain("a.com")) == (EntryKind.DOMAIN, "a.com", "a.com")
    for kind in (EntryKind.ACCOUNT, EntryKind.GROUP, EntryKind.FORWARDER):
        assert LAYOUT.locate(LAYOUT.object(kind, "a.com", "j.doe")) == (kind, "a.com", "j.doe")
    assert LAYOUT.locate(LAYOUT.container("a.com", EntryKind.ACCOUNT)) is None
    assert LAYOUT.locate("uid=x,ou=people,dc=example,dc=com") is None
    assert LAYOUT.locate("cn=server,dc=other,dc=com") is None
    assert LAYOUT.locate("not a dn") is None


def test_router_order_survives_unordered_values() -> None:
    """Router records come back in their order whatever order LDAP returns."""
    text = "".join(f"<r{index}> = x{index}@a.com\n" for index in range(12))
    values = router_to_attribute(text)
    random.Random(5).shuffle(values)
    assert router_from_attribute(values) == text


def test_rights_round_trip() -> None:
    """Access rights survive as holder=(rights) values, addresses included."""
    rights: dict[str, Value] = {"postmaster": ["Master"], "bob@b.com": ["CanImpersonate", "x"]}
    assert rights_from_attribute(rights_to_attribute(rights)) == rights


def test_modifications_touch_only_what_changed() -> None:
    """Multi-valued attributes change by exact values, single ones by replace."""
    old = {"cgpsetting": ["A=1", "B=2"], "userpassword": ["x"], "cgpalias": ["j"]}
    new = {"cgpsetting": ["A=1", "B=3"], "userpassword": ["y"], "cgpalias": ["j"]}
    assert modifications(EntryKind.ACCOUNT, old, new) == {
        "cgpsetting": [("MODIFY_DELETE", ["B=2"]), ("MODIFY_ADD", ["B=3"])],
        "userpassword": [("MODIFY_REPLACE", ["y"])],
    }
    assert modifications(EntryKind.ACCOUNT, new, new) == {}


def test_login_filter_escapes() -> None:
    """A login name cannot change the search's meaning (RFC 4515 escapes)."""
    assert login_filter("a*)(x") == r"(|(uid=a\2a\29\28x)(cgpAlias=a\2a\29\28x))"


def test_clear_value_is_never_dressed_as_a_hash() -> None:
    """Only a real crypt hash gets {CRYPT}; a clear value starting with $
    stays clear in userPassword, and comes back as it was."""
    for stored in ("$ecret", "$x$y"):
        attributes = settings_to_attributes(EntryKind.ACCOUNT, {"Password": stored})
        assert attributes["userpassword"] == [stored]
        assert attributes_to_settings(EntryKind.ACCOUNT, attributes)["Password"] == stored
    sha = passwords.encode("s3cret", "UB-crpt")
    attributes = settings_to_attributes(EntryKind.ACCOUNT, {"Password": sha})
    assert attributes["userpassword"] == ["{CRYPT}" + sha]


def test_derived_secrets_follow_their_password() -> None:
    """SCRAM keys and the NT hash are read only while userPassword is the
    one they were made from (cgpPasswordStamp); changed elsewhere, or
    stamped by nobody, they are dropped."""
    settings: dict[str, Value] = {
        "Password": "{CRYPT}abJnggxhB/yW.",
        "SCRAM-SHA-256": "4096,c2FsdA==,a2V5,c2VydmVy",
        "NTHash": "8846F7EAEE8FB117AD06BDD830B7586C",
    }
    attributes = settings_to_attributes(EntryKind.ACCOUNT, settings)
    assert len(attributes["cgppasswordstamp"][0]) == 32
    assert attributes_to_settings(EntryKind.ACCOUNT, attributes) == settings
    changed = {**attributes, "userpassword": ["{SSHA}c2FsdHNhbHRzYWx0c2FsdA=="]}
    assert attributes_to_settings(EntryKind.ACCOUNT, changed) == {
        "Password": "{SSHA}c2FsdHNhbHRzYWx0c2FsdA=="
    }
    unstamped = {key: value for key, value in attributes.items() if key != "cgppasswordstamp"}
    assert "NTHash" not in attributes_to_settings(EntryKind.ACCOUNT, unstamped)
    plain = settings_to_attributes(EntryKind.ACCOUNT, {"Password": "x"})
    assert "cgppasswordstamp" not in plain


@pytest.mark.parametrize(
    "dn",
    [
        "uid=a\\2Cou\\3Dx,ou=accounts,cgpDomainName=b.com,ou=domains,dc=example,dc=com",
        "uid=a\\,b,ou=accounts,cgpDomainName=b.com,ou=domains,dc=example,dc=com",
        "uid=a b,ou=accounts,cgpDomainName=b.com,ou=domains,dc=example,dc=com",
        "uid=jane,ou=accounts,cgpDomainName=b\\2Ccom,ou=domains,dc=example,dc=com",
        "cgpDomainName=b.com.,ou=domains,dc=example,dc=com",
        "cn=*,ou=groups,cgpDomainName=b.com,ou=domains,dc=example,dc=com",
    ],
)
def test_names_outside_the_rules_locate_nothing(dn: str) -> None:
    """An entry whose RDN value is no valid name (spec §1.7) is not an object."""
    assert LAYOUT.locate(dn) is None


def test_hostile_names_are_escaped_in_filters_and_dns() -> None:
    """Filter and DN syntax in a name stays inside its value (RFC 4515, RFC 4514)."""
    assert LAYOUT.object(EntryKind.ACCOUNT, "b.com", "a,ou=x").startswith("uid=a\\,ou\\=x,")
    assert LAYOUT.locate(LAYOUT.object(EntryKind.ACCOUNT, "b.com", "a,ou=x")) is None
    assert login_filter("*") == r"(|(uid=\2a)(cgpAlias=\2a))"
    assert name_query("x)(cn=*").count("(cn=x\\29\\28cn=\\2a)") == 1


@pytest.mark.parametrize(
    "value", ["{ARGON2}$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA", "{SASL}jane@REALM", "{X}y"]
)
def test_unknown_scheme_is_no_clear_password(value: str) -> None:
    """A userPassword {SCHEME} the password sources cannot verify gives no
    Password setting: read as clear text, the hash itself would open the
    account."""
    settings = attributes_to_settings(EntryKind.ACCOUNT, {"userpassword": [value]})
    assert "Password" not in settings
    known = attributes_to_settings(EntryKind.ACCOUNT, {"userpassword": ["{SSHA}c2FsdA=="]})
    assert known["Password"] == "{SSHA}c2FsdA=="


def test_plain_dns_are_split_escaped_ones_parsed() -> None:
    """A DN without escapes is read by plain splitting (attribute names in
    any case, names made canonical); one with escapes still goes through
    ldap3's parser and names nothing."""
    layout = Layout("dc=example,dc=com")
    plain = "UID=Info,ou=accounts,cgpDomainName=Company.COM,ou=domains,dc=example,dc=com"
    spelled = r"uid=in\2Cfo,ou=accounts,cgpDomainName=Company.COM,ou=domains,dc=example,dc=com"
    expected = (EntryKind.ACCOUNT, "company.com", "info")
    assert layout.locate(plain) == expected
    assert layout.locate(spelled) is None
    assert layout.locate("cn=server,dc=example,dc=com") == (EntryKind.SERVER, "", "")
    assert layout.locate("uid=info,ou=accounts,cgpDomainName=a.com,ou=domains,dc=other") is None
