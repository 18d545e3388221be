"""RFC 7622 JIDs: splitting, PRECIS preparation of each part, formatting."""

from __future__ import annotations

import pickle

import precis_i18n
import pytest

from communigate.protocols.xmpp import jid
from communigate.protocols.xmpp.jid import JID, InvalidJID, make, parse, split


def test_full_jid_parts() -> None:
    """A full JID splits into localpart, domainpart and resourcepart."""
    assert parse("juliet@example.com/balcony") == JID("juliet", "example.com", "balcony")


def test_bare_and_domain_jids() -> None:
    """A bare JID has no resource; a domain JID has neither local nor resource."""
    assert parse("juliet@example.com") == JID("juliet", "example.com", None)
    assert parse("example.com") == JID(None, "example.com", None)
    assert parse("example.com/res") == JID(None, "example.com", "res")


def test_split_at_first_slash_then_first_at() -> None:
    """RFC 7622 §3.1: the resource follows the first '/', even if it holds '@' or '/'."""
    assert split("a@b/c@d/e") == ("a", "b", "c@d/e")
    assert split("b/c@d") == (None, "b", "c@d")
    assert parse("example.com/a@b/c") == JID(None, "example.com", "a@b/c")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty domainpart"),
        ("@example.com", "empty localpart"),
        ("juliet@", "empty domainpart"),
        ("juliet@example.com/", "empty resourcepart"),
        ("/res", "empty domainpart"),
        ("a@b@example.com", "invalid domainpart"),
    ],
)
def test_empty_or_misplaced_parts_are_refused(text: str, reason: str) -> None:
    """Separators with nothing around them make the JID invalid."""
    with pytest.raises(InvalidJID, match=reason):
        parse(text)


def test_localpart_is_case_mapped() -> None:
    """UsernameCaseMapped lower-cases the localpart, ASCII or not."""
    assert parse("Juliet@Example.COM").local == "juliet"
    assert parse("ΣΑΣ@example.com").local == "σας"
    assert parse("JULIET@example.com") == parse("juliet@example.com")


def test_localpart_width_mapping() -> None:
    """Fullwidth characters are mapped to their ASCII forms (RFC 8265 §3.3)."""
    assert parse("\uff2a\uff55\uff4c\uff49\uff45\uff54@example.com").local == "juliet"


@pytest.mark.parametrize("char", ['"', "&", "'", ":", "<", ">"])
def test_localpart_forbidden_characters(char: str) -> None:
    """RFC 7622 §3.3.1 forbids "&'/:<>@ in a localpart."""
    with pytest.raises(InvalidJID, match="forbidden character"):
        parse(f"ju{char}liet@example.com")


def test_localpart_with_space_or_control_is_refused() -> None:
    """Spaces and control characters are no IdentifierClass characters."""
    with pytest.raises(InvalidJID, match="invalid localpart"):
        parse("jul iet@example.com")
    with pytest.raises(InvalidJID, match="invalid localpart"):
        parse("jul\x07iet@example.com")


def test_localpart_symbols_allowed() -> None:
    """Printable ASCII other than the forbidden characters is allowed."""
    assert parse("a.b-c_d+e!#$%*=?^`{|}~@example.com").local == "a.b-c_d+e!#$%*=?^`{|}~"


def test_resource_is_opaque() -> None:
    """OpaqueString keeps case and spaces in a resource."""
    assert parse("a@example.com/Home Office").resource == "Home Office"
    assert parse("a@example.com/ΣΑΣ").resource == "ΣΑΣ"


def test_resource_non_ascii_space_is_mapped() -> None:
    """OpaqueString maps non-ASCII spaces to ASCII space."""
    assert parse("a@example.com/a\u00a0b").resource == "a b"


def test_resource_normalised_to_nfc() -> None:
    """A decomposed resource is stored composed (NFC)."""
    assert parse("a@example.com/e\u0301").resource == "\u00e9"


def test_resource_with_control_is_refused() -> None:
    """Control characters are not allowed in a resource."""
    with pytest.raises(InvalidJID, match="invalid resourcepart"):
        parse("a@example.com/x\x00y")
    with pytest.raises(InvalidJID, match="invalid resourcepart"):
        parse("a@example.com/x\ty")


def test_domain_lowercased_and_final_dot_removed() -> None:
    """Domain names are case-insensitive and a final dot is dropped."""
    assert parse("a@Example.COM.").domain == "example.com"
    assert parse("a@example.com.") == parse("a@example.com")


def test_domain_international_name_unicode_form() -> None:
    """An IDN is kept in Unicode form; an A-label is shown in Unicode too."""
    assert parse("a@BÜCHER.example").domain == "bücher.example"
    assert parse("a@xn--bcher-kva.example").domain == "bücher.example"


def test_domain_ip_literals() -> None:
    """IPv4 addresses and bracketed IPv6 literals are valid domainparts."""
    assert parse("a@192.0.2.1").domain == "192.0.2.1"
    assert parse("a@[2001:DB8::0:1]").domain == "[2001:db8::1]"
    with pytest.raises(InvalidJID, match="IPv6"):
        parse("a@[nonsense]")
    with pytest.raises(InvalidJID, match="IPv6"):
        parse("a@[::1")
    with pytest.raises(InvalidJID, match="IPv4"):
        parse("a@300.1.1.1")


@pytest.mark.parametrize("domain", ["exa mple.com", "a..b", ".", "ex<ample.com", "-a.com"])
def test_invalid_domains_refused(domain: str) -> None:
    """Names that are no host names are refused."""
    with pytest.raises(InvalidJID):
        parse(f"a@{domain}")


def test_domain_with_underscore_tolerated() -> None:
    """Underscores, common in internal host names, are accepted."""
    assert parse("a@my_host.example").domain == "my_host.example"


def test_length_limits() -> None:
    """Each part may have at most 1023 bytes after preparation."""
    assert parse("a" * 1023 + "@example.com").local == "a" * 1023
    with pytest.raises(InvalidJID, match="longer than 1023"):
        parse("a" * 1024 + "@example.com")
    with pytest.raises(InvalidJID, match="longer than 1023"):
        parse("a@example.com/" + "é" * 600)
    assert parse("a@example.com/" + "é" * 511).resource == "é" * 511
    with pytest.raises(InvalidJID, match="too long"):
        parse("x" * 5000)


def test_str_round_trip() -> None:
    """str() writes the prepared JID back in its text form."""
    for text in ("juliet@example.com/balcony", "juliet@example.com", "example.com", "e.com/r"):
        assert str(parse(text)) == text
    assert str(parse("Juliet@Example.com/Balcony")) == "juliet@example.com/Balcony"


def test_bare_is_bare_with_resource() -> None:
    """bare() drops the resource; with_resource() prepares and sets one."""
    full = parse("juliet@example.com/balcony")
    assert not full.is_bare
    assert full.bare() == JID("juliet", "example.com")
    assert full.bare().is_bare
    bare = full.bare()
    assert bare.bare() is bare
    # Made once, and no part of the JID's value: equal and hashed alike.
    assert full.bare() is bare
    assert full == JID("juliet", "example.com", "balcony")
    assert hash(full) == hash(JID("juliet", "example.com", "balcony"))
    assert repr(full) == "JID(local='juliet', domain='example.com', resource='balcony')"
    assert full.bare().with_resource("chamber") == JID("juliet", "example.com", "chamber")
    assert full.with_resource("x\u00a0y").resource == "x y"
    with pytest.raises(InvalidJID):
        full.with_resource("")


def test_jids_are_hashable_and_equal_after_preparation() -> None:
    """Prepared JIDs can key a dictionary: equal addresses are one key."""
    seen = {parse("JULIET@EXAMPLE.COM/r"): 1}
    assert seen[parse("juliet@example.com/r")] == 1
    assert parse("a@example.com/R") != parse("a@example.com/r")


def test_text_hash_and_equality_kept_with_the_jid() -> None:
    """A JID's text and hash, made once, are those of its parts: JIDs
    made apart and differing in any one part are told apart."""
    full = JID("juliet", "example.com", "balcony")
    assert str(full) == str(full) == "juliet@example.com/balcony"
    assert hash(full) == hash(full) == hash(JID("juliet", "example.com", "balcony"))
    for other in (
        JID("romeo", "example.com", "balcony"),
        JID("juliet", "example.org", "balcony"),
        JID("juliet", "example.com", "garden"),
        JID("juliet", "example.com"),
        JID(None, "example.com", "balcony"),
    ):
        assert other != full and full != other
        assert str(other) != str(full)
    assert (full == "juliet@example.com/balcony") is False
    assert str(JID(None, "example.com")) == "example.com"
    assert str(JID(None, "example.com", "r")) == "example.com/r"


def test_pickled_jid_is_hashed_afresh() -> None:
    """A JID taken through pickle keeps its parts, not the hash or text
    made in this process (another process hashes strings differently)."""
    full = JID("juliet", "example.com", "balcony")
    assert hash(full) and str(full)
    copied = pickle.loads(pickle.dumps(full))
    assert copied._hash is None and copied._text is None
    assert copied == full and {full: 1}[copied] == 1


def test_make_prepares_each_part() -> None:
    """make() prepares parts given separately, as from a login."""
    assert make("Juliet", "Example.com", "Balcony") == JID("juliet", "example.com", "Balcony")
    assert make(None, "EXAMPLE.com") == JID(None, "example.com")
    with pytest.raises(InvalidJID, match="forbidden"):
        make("a@b", "example.com")


def test_is_valid() -> None:
    """is_valid() answers without raising."""
    assert jid.is_valid("a@example.com/r")
    assert not jid.is_valid("a@example.com/")


def test_invalid_jid_is_value_error() -> None:
    """InvalidJID is a ValueError, so callers catching that keep working."""
    assert issubclass(InvalidJID, ValueError)


def test_parse_is_cached() -> None:
    """Parsing the same text twice gives the same object (the cache)."""
    assert parse("cache@example.com/x") is parse("cache@example.com/x")


def test_ascii_fast_path_agrees_with_precis() -> None:
    """The shortcut for printable ASCII gives what the PRECIS profiles give."""
    username = precis_i18n.get_profile("UsernameCaseMapped")
    opaque = precis_i18n.get_profile("OpaqueString")
    for code in range(0x20, 0x7F):
        text = f"aB{chr(code)}c"
        assert jid.prepare_resource(text) == opaque.enforce(text)
        if code > 0x20 and chr(code) not in jid.FORBIDDEN_LOCAL:
            assert jid.prepare_local(text) == username.enforce(text)
