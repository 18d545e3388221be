"""CommuniGate's dictionary syntax: reading, writing, round trips."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from communigate.store import settingsformat as sf


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("atom", "atom"),
        ('"two words"', "two words"),
        (r'"q\"b\\e\e!"', 'q"b\\e\n!'),
        (r'"\009tab\013"', "\ttab\r"),
        ("#123", 123),
        ("#-4", -4),
        ("[aGVsbG8=]", b"hello"),
        ("#T24-10-2026_13:05:00", datetime.datetime(2026, 10, 24, 13, 5, 0)),
        ("#T01-02-2025", datetime.datetime(2025, 2, 1)),
        ("#TPAST", datetime.datetime.min),
        ("#NULL#", None),
        ("(3, 1m)", ["3", "1m"]),
        ("()", []),
        ("{}", {}),
        ('{ a = b; "c d" = (x, {y = #1;}); }', {"a": "b", "c d": ["x", {"y": 1}]}),
    ],
)
def test_reads_every_form(text: str, value: object) -> None:
    """Each syntactic form reads as its documented Python value."""
    assert sf.loads(text) == value


@pytest.mark.parametrize(
    "value",
    [
        {"Password": 'with "quotes" and \\ and\nnewline', "n": 7, "d": b"\x00\xff"},
        {"list": ["a b", "", "#x", "(", {"nested": [1, 2, None]}]},
        {"t": datetime.datetime(2026, 1, 2, 3, 4, 5), "empty": {}, "utf": "Grüße"},
        {"ctrl": "\x01\x1f\x7f", "atomish": "user@dom.com", "star": "*%comp1"},
    ],
)
def test_round_trip(value: dict[str, sf.Value]) -> None:
    """dumps then loads gives back the same value."""
    assert sf.loads_dictionary(sf.dumps_dictionary(value)) == value
    assert sf.loads(sf.dumps(value)) == value


@pytest.mark.parametrize(
    "text",
    ['"unterminated', "{a = b}", "(a b)", "[!!!]", "#x", "{a b;}", "a b", '"\\q"', "(" * 100],
)
def test_rejects_malformed(text: str) -> None:
    """Malformed text raises SettingsSyntaxError, never something else."""
    with pytest.raises(sf.SettingsSyntaxError):
        sf.loads(text)


def test_settings_file_must_be_dictionary() -> None:
    """A settings file is a dictionary or empty."""
    assert sf.loads_dictionary("  \n") == {}
    with pytest.raises(sf.SettingsSyntaxError):
        sf.loads_dictionary("(a)")


def test_atoms_are_written_bare_and_others_quoted() -> None:
    """Safe atoms stay bare; anything else is quoted."""
    assert sf.dumps("YES") == "YES"
    assert sf.dumps("two words") == '"two words"'
    assert sf.dumps("") == '""'


@pytest.mark.parametrize(
    ("value", "seconds"), [("10s", 10), ("1m", 60), ("2h", 7200), ("1d", 86400), (5, 5)]
)
def test_intervals(value: sf.Value, seconds: int) -> None:
    """Time intervals read in seconds."""
    assert sf.as_seconds(value) == seconds


def test_booleans() -> None:
    """YES/NO and friends read as booleans; other values give the default."""
    assert sf.as_bool("YES") and sf.as_bool("1") and not sf.as_bool("NO")
    assert sf.as_bool(None, True) and not sf.as_bool(["x"])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_syntax_errors(data: bytes) -> None:
    """Any bytes, as text (undecodable bytes as surrogates), either parse or
    raise SettingsSyntaxError, nothing else."""
    text = data.decode("utf-8", "surrogateescape")
    for parse in (sf.loads, sf.loads_dictionary):
        try:
            parse(text)
        except sf.SettingsSyntaxError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from('(){}[];,="#\\ \naZ09-_.@T:+/=xe'), max_size=200))
def test_syntax_like_text_raises_only_syntax_errors(text: str) -> None:
    """Text made of the syntax's own characters either parses or raises
    SettingsSyntaxError, nothing else."""
    try:
        value = sf.loads(text)
    except sf.SettingsSyntaxError:
        return
    assert sf.loads(sf.dumps(value)) == value
