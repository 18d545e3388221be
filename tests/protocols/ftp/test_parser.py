"""The sans-IO FTP parser: states, arguments, decoding, replies, addresses, paths."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from communigate.protocols.ftp import parser
from communigate.protocols.ftp.parser import (
    ALIASES,
    COMMANDS,
    Argument,
    Command,
    CommandError,
    State,
    decode,
    epsv_reply,
    list_argument,
    multiline,
    parse,
    parse_eprt,
    parse_port,
    parse_rest,
    pasv_reply,
    quote_path,
    reply,
    resolve,
    show,
)
from communigate.protocols.lines import LineSplitter, LineTooLong

LOGIN, PASSWORD, READY = State.LOGIN, State.PASSWORD, State.READY

#: Property tests: quick, reproducible, and no example database in the tree.
QUICK = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def code_of(line: bytes, state: State) -> int:
    """The reply code parse() refuses ``line`` with."""
    with pytest.raises(CommandError) as caught:
        parse(line, state)
    return caught.value.code


# -- states -------------------------------------------------------------------------


#: A representative command of each kind, and what each state makes of it:
#: a keyword (accepted) or a reply code.
MATRIX = [
    # Access control: before login only.
    (b"USER info", {LOGIN: "USER", PASSWORD: "USER", READY: 503}),
    (b"AUTH TLS", {LOGIN: "AUTH", PASSWORD: "AUTH", READY: 503}),
    # PASS: every state (the server answers 503 itself where it is out of turn).
    (b"PASS secret", {LOGIN: "PASS", PASSWORD: "PASS", READY: "PASS"}),
    # Any state, no argument.
    (b"NOOP", {LOGIN: "NOOP", PASSWORD: "NOOP", READY: "NOOP"}),
    (b"FEAT", {LOGIN: "FEAT", PASSWORD: "FEAT", READY: "FEAT"}),
    (b"QUIT", {LOGIN: "QUIT", PASSWORD: "QUIT", READY: "QUIT"}),
    # Any state, argument required or optional.
    (b"HOST client1.com", {LOGIN: "HOST", PASSWORD: "HOST", READY: "HOST"}),
    (b"TYPE I", {LOGIN: "TYPE", PASSWORD: "TYPE", READY: "TYPE"}),
    (b"STAT", {LOGIN: "STAT", PASSWORD: "STAT", READY: "STAT"}),
    (b"HELP", {LOGIN: "HELP", PASSWORD: "HELP", READY: "HELP"}),
    # Logged in only: navigation, data connection, transfer, file commands.
    (b"CWD /a", {LOGIN: 530, PASSWORD: 503, READY: "CWD"}),
    (b"PWD", {LOGIN: 530, PASSWORD: 503, READY: "PWD"}),
    (b"PASV", {LOGIN: 530, PASSWORD: 503, READY: "PASV"}),
    (b"EPSV", {LOGIN: 530, PASSWORD: 503, READY: "EPSV"}),
    (b"PORT 127,0,0,1,4,1", {LOGIN: 530, PASSWORD: 503, READY: "PORT"}),
    (b"LIST", {LOGIN: 530, PASSWORD: 503, READY: "LIST"}),
    (b"RETR a.txt", {LOGIN: 530, PASSWORD: 503, READY: "RETR"}),
    (b"STOR a.txt", {LOGIN: 530, PASSWORD: 503, READY: "STOR"}),
    (b"DELE a.txt", {LOGIN: 530, PASSWORD: 503, READY: "DELE"}),
    (b"RNFR a.txt", {LOGIN: 530, PASSWORD: 503, READY: "RNFR"}),
    (b"MKD d", {LOGIN: 530, PASSWORD: 503, READY: "MKD"}),
    (b"REST 10", {LOGIN: 530, PASSWORD: 503, READY: "REST"}),
]


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize(("line", "outcomes"), MATRIX, ids=[line.decode() for line, _ in MATRIX])
def test_state_matrix(line: bytes, outcomes: dict[State, str | int], state: State) -> None:
    """Each state accepts its commands and refuses the rest with 530 or 503."""
    expected = outcomes[state]
    if isinstance(expected, int):
        assert code_of(line, state) == expected
    else:
        command = parse(line, state)
        assert command.keyword == expected
        assert command.argument == line.partition(b" ")[2].decode()


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("keyword", sorted(COMMANDS))
def test_every_command_accepted_exactly_in_its_states(keyword: str, state: State) -> None:
    """Every command is accepted in its states, refused with 503/530 in others."""
    spec = COMMANDS[keyword]
    line = (keyword + (" x" if spec.argument is Argument.REQUIRED else "")).encode()
    if state in spec.states:
        assert parse(line, state).keyword == ALIASES.get(keyword, keyword)
    else:
        assert code_of(line, state) == (530 if state is LOGIN else 503)


def test_password_state_refuses_with_send_pass() -> None:
    """After USER, a logged-in-only command gets 503 saying PASS is expected."""
    with pytest.raises(CommandError) as caught:
        parse(b"LIST", PASSWORD)
    assert (caught.value.code, caught.value.text) == (503, "send PASS first")


@pytest.mark.parametrize(
    "line",
    [b"NOOP x", b"PWD /", b"CDUP ..", b"QUIT now", b"FEAT x", b"SYST x", b"PASV 1", b"CCC x"],
)
@pytest.mark.parametrize("state", list(State))
def test_stray_argument_is_501(line: bytes, state: State) -> None:
    """A command that takes no argument refuses one with 501 in every state."""
    assert code_of(line, state) == 501


@pytest.mark.parametrize("line", [b"CWD", b"CWD   ", b"RETR", b"USER", b"PORT", b"REST", b"HOST"])
def test_missing_argument_is_501(line: bytes) -> None:
    """A command that needs an argument refuses a missing or blank one with 501."""
    state = LOGIN if line.startswith((b"USER", b"HOST")) else READY
    assert code_of(line, state) == 501


@pytest.mark.parametrize("line", [b"FOO", b"", b"   ", b"NOOPX", b"N\x00OP", b"\x00", b"\xff\xff"])
@pytest.mark.parametrize("state", list(State))
def test_unknown_command_is_500(line: bytes, state: State) -> None:
    """Unknown keywords, empty lines and garbage get 500 in every state."""
    assert code_of(line, state) == 500


@pytest.mark.parametrize("line", ["\u017ftor a", "l\u0131st", "\ufb05or a"])
@pytest.mark.parametrize("state", list(State))
def test_non_ascii_keyword_is_500(line: str, state: State) -> None:
    """A non-ASCII keyword whose upper case spells a command is still unknown: 500."""
    assert code_of(line.encode(), state) == 500


@pytest.mark.parametrize(("alias", "name"), sorted(ALIASES.items()))
def test_x_aliases(alias: str, name: str) -> None:
    """The RFC 775 X-commands parse as their RFC 959 names."""
    argument = " d" if COMMANDS[name].argument is Argument.REQUIRED else ""
    assert parse((alias + argument).encode(), READY) == Command(name, argument.strip())


def test_keyword_case_and_leading_spaces() -> None:
    """Keywords are case-insensitive and may follow spaces; the argument is kept as sent."""
    assert parse(b"  rEtR  a b ", READY) == Command("RETR", " a b ")


def test_nul_in_argument_is_501() -> None:
    """A NUL byte in an argument is refused with 501."""
    assert code_of(b"RETR a\x00b", READY) == 501
    assert code_of(b"USER in\x00fo", LOGIN) == 501


# -- decoding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"\xff\xf4\xff\xf2ABOR", "ABOR"),  # IAC IP, IAC DM (RFC 959 §4.1.3)
        (b"NO\xff\xf1OP", "NOOP"),  # IAC NOP inside a word
        (b"RETR a\xff\xffb", "RETR a\xffb"),  # IAC IAC is one 0xff (then Latin-1)
        (b"RETR caf\xc3\xa9", "RETR café"),
        (b"RETR caf\xe9", "RETR café"),  # not UTF-8: Latin-1
        (b"RETR \xe4\xf6\xfc", "RETR äöü"),
    ],
)
def test_decode(line: bytes, text: str) -> None:
    """Telnet IAC sequences are dropped; UTF-8 first, Latin-1 when not UTF-8."""
    assert decode(line) == text


def test_abor_behind_telnet_synch_parses() -> None:
    """ABOR preceded by Telnet IP and Synch parses as ABOR in every state."""
    for state in State:
        assert parse(b"\xff\xf4\xff\xf2ABOR", state) == Command("ABOR", "")


def test_latin1_argument_reaches_command() -> None:
    """A Latin-1 file name is accepted, not refused."""
    assert parse(b"DELE r\xe9sum\xe9.txt", READY).argument == "résumé.txt"


# -- replies -------------------------------------------------------------------------


def test_reply_format() -> None:
    """reply() is code, space, text, CR LF."""
    assert reply(200, "NOOP ok") == b"200 NOOP ok\r\n"


def test_reply_never_contains_a_bare_line_break() -> None:
    """CR and LF inside a reply text become spaces: one line on the wire."""
    assert reply(550, "a\r\n250 fake\nb\rc") == b"550 a  250 fake b c\r\n"


@QUICK
@given(st.integers(100, 599), st.text())
def test_reply_is_one_line(code: int, text: str) -> None:
    """Whatever the text, a reply is exactly one CR LF terminated line."""
    data = reply(code, text)
    assert data.startswith(str(code).encode() + b" ")
    assert data.endswith(b"\r\n")
    assert b"\r" not in data[:-2] and b"\n" not in data[:-2]


def test_multiline_format() -> None:
    """RFC 959 §4.2: 'code-' first, body lines indented, 'code ' last."""
    assert multiline(211, "Features:", ["EPSV", "UTF8"], "End") == (
        b"211-Features:\r\n EPSV\r\n UTF8\r\n211 End\r\n"
    )


@QUICK
@given(st.text(), st.lists(st.text(), max_size=5), st.text())
def test_multiline_body_lines_start_with_a_space(first: str, lines: list[str], last: str) -> None:
    """Every body line begins with a space, so only the last line can end the reply."""
    wire = multiline(214, first, lines, last).split(b"\r\n")
    assert wire[-1] == b""
    assert wire[0].startswith(b"214-")
    assert wire[-2].startswith(b"214 ")
    assert len(wire) == len(lines) + 3
    assert all(line.startswith(b" ") for line in wire[1:-2])


@pytest.mark.parametrize(
    ("path", "quoted"),
    [("/", '"/"'), ('/a"b', '"/a""b"'), ('/"', '"/"""'), ('/a""b', '"/a""""b"')],
)
def test_quote_path_doubles_quotes(path: str, quoted: str) -> None:
    """RFC 959 Appendix II: quotes in a 257 path are doubled."""
    assert quote_path(path) == quoted


def test_command_repr_hides_password() -> None:
    """A PASS command's repr and str never show the password; others show the argument."""
    for state in State:
        command = parse(b"pass hunter2", state)
        assert "hunter2" not in repr(command) and "hunter2" not in str(command)
        assert "PASS" in repr(command)
    assert "a.txt" in repr(parse(b"RETR a.txt", READY))


def test_help_lines_cover_every_command() -> None:
    """HELP lists every command name exactly once."""
    names = " ".join(parser.help_lines()).split()
    assert sorted(names) == sorted(COMMANDS)


# -- addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "address"),
    [
        ("127,0,0,1,4,1", ("127.0.0.1", 1025)),
        (" 10, 0 ,0,9 ,255,255 ", ("10.0.0.9", 65535)),
        ("192,168,1,2,0,1", ("192.168.1.2", 1)),
    ],
)
def test_parse_port(argument: str, address: tuple[str, int]) -> None:
    """PORT h1,h2,h3,h4,p1,p2 gives the address and p1*256+p2."""
    assert parse_port(argument) == address


@pytest.mark.parametrize(
    "argument",
    [
        "",
        "127,0,0,1,4",  # five numbers
        "127,0,0,1,4,1,1",  # seven
        "256,0,0,1,4,1",  # not a byte
        "127,0,0,1,4,256",
        "127,0,0,-1,4,1",
        "127,0,0,1,4,x",
        "127,0,0,1,,1",
        "127.0.0.1,4,1",
        "1,2,3,4,0,0",  # port 0
    ],
)
def test_parse_port_refuses(argument: str) -> None:
    """Malformed PORT arguments, bytes over 255 and port 0 get 501."""
    with pytest.raises(CommandError) as caught:
        parse_port(argument)
    assert caught.value.code == 501


def test_parse_port_superscript_digit_is_501() -> None:
    """A non-ASCII 'digit' such as '²' in PORT is a 501, not a ValueError."""
    with pytest.raises(CommandError) as caught:
        parse_port("127,0,0,1,4,\u00b2")
    assert caught.value.code == 501


@pytest.mark.parametrize(
    ("argument", "address"),
    [
        ("|1|127.0.0.1|5000|", ("127.0.0.1", 5000)),
        ("|2|::1|5000|", ("::1", 5000)),
        ("!1!10.0.0.9!65535!", ("10.0.0.9", 65535)),  # any delimiter (RFC 2428 §2)
        (" |2|2001:db8::1|1| ", ("2001:db8::1", 1)),
    ],
)
def test_parse_eprt(argument: str, address: tuple[str, int]) -> None:
    """EPRT |af|address|port| gives the address and port."""
    assert parse_eprt(argument) == address


@pytest.mark.parametrize(
    ("argument", "code"),
    [
        ("|3|127.0.0.1|5000|", 522),  # unknown network protocol
        ("|0|127.0.0.1|5000|", 522),
        ("|1|::1|5000|", 501),  # IPv6 address under family 1
        ("|2|127.0.0.1|5000|", 501),  # IPv4 address under family 2
        ("|1|127.0.0.1|0|", 501),  # port 0
        ("|1|127.0.0.1|65536|", 501),
        ("|1|127.0.0.1|-1|", 501),
        ("|1|example.com|5000|", 501),  # not numeric
        ("|1|127.0.0.1|5000", 501),  # no closing delimiter
        ("|1|127.0.0.1|5000|x", 501),
        ("|1||5000|", 501),
        ("|", 501),
        ("", 501),
    ],
)
def test_parse_eprt_refuses(argument: str, code: int) -> None:
    """An unknown family gets 522; a mismatched address, bad port or bad syntax gets 501."""
    with pytest.raises(CommandError) as caught:
        parse_eprt(argument)
    assert caught.value.code == code


def test_parse_eprt_unknown_family_is_522_whatever_the_address() -> None:
    """RFC 2428 §2: an unsupported family gets 522 whatever its address."""
    with pytest.raises(CommandError) as caught:
        parse_eprt("|3|AA:BB:CC|5000|")
    assert caught.value.code == 522


def test_parse_eprt_superscript_digit_is_501() -> None:
    """A non-ASCII 'digit' in the EPRT port is a 501, not a ValueError."""
    with pytest.raises(CommandError) as caught:
        parse_eprt("|1|127.0.0.1|\u00b2|")
    assert caught.value.code == 501


def test_pasv_and_epsv_replies() -> None:
    """227 carries h1..h4,p1,p2; 229 carries |||port|."""
    assert pasv_reply("127.0.0.1", 50001) == b"227 entering passive mode (127,0,0,1,195,81)\r\n"
    assert epsv_reply(50001) == b"229 entering extended passive mode (|||50001|)\r\n"


@pytest.mark.parametrize(("argument", "offset"), [("0", 0), ("123", 123), (" 7 ", 7)])
def test_parse_rest(argument: str, offset: int) -> None:
    """REST takes a decimal byte offset."""
    assert parse_rest(argument) == offset


@pytest.mark.parametrize("argument", ["", "-1", "+1", "1.5", "abc", "1 2", "9" * 20, "0x10"])
def test_parse_rest_refuses(argument: str) -> None:
    """Negative, non-decimal and absurdly long offsets get 501."""
    with pytest.raises(CommandError) as caught:
        parse_rest(argument)
    assert caught.value.code == 501


def test_parse_rest_superscript_digit_is_501() -> None:
    """A non-ASCII 'digit' in REST is a 501, not a ValueError."""
    with pytest.raises(CommandError) as caught:
        parse_rest("\u00b2")
    assert caught.value.code == 501


# -- paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cwd", "argument", "path"),
    [
        ((), "a/b", ("a", "b")),
        (("a",), "b", ("a", "b")),
        (("a", "b"), "..", ("a",)),
        (("a",), "../../..", ()),
        ((), "..", ()),
        ((), "/../../x", ("x",)),
        (("a",), "/", ()),
        (("a",), "/b/./c//d/", ("b", "c", "d")),
        (("a",), "./b", ("a", "b")),
        ((), "/~name/..", ()),
        (("q",), "/~name/../..", ()),
        (("q",), "~x/y", ("~x", "y")),  # ~name starts an absolute path
        (("q",), "~x@client1.com", ("~x@client1.com",)),
        (("~x", "y"), "..", ("~x",)),
        (("~x",), "..", ()),
        (("~x",), "z", ("~x", "z")),
    ],
)
def test_resolve(cwd: tuple[str, ...], argument: str, path: tuple[str, ...]) -> None:
    """Path arithmetic from the working directory; '..' never goes above '/'."""
    assert resolve(cwd, argument) == path


@QUICK
@given(
    st.lists(st.text(st.characters(blacklist_characters="/"), min_size=1), max_size=4).filter(
        lambda parts: all(part not in (".", "..") for part in parts)
    ),
    st.text(),
)
def test_resolve_gives_clean_segments(cwd: list[str], argument: str) -> None:
    """A resolved path never holds '', '.', '..' or a '/'."""
    path = resolve(tuple(cwd), argument)
    assert all(part not in ("", ".", "..") and "/" not in part for part in path)


def test_show() -> None:
    """Paths show as '/' and '/a/b'."""
    assert show(()) == "/"
    assert show(("~x", "a b")) == "/~x/a b"


@pytest.mark.parametrize(
    ("argument", "path"),
    [
        ("", ""),
        ("-la", ""),
        ("-la /dir", "/dir"),
        ("-a -l x y", "x y"),
        ("-", "-"),
        ("x -l", "x -l"),
    ],
)
def test_list_argument_drops_ls_options(argument: str, path: str) -> None:
    """Leading ls options (-la) are dropped from LIST/NLST arguments."""
    assert list_argument(argument) == path


# -- properties --------------------------------------------------------------------------

_KEYWORDS = st.sampled_from(sorted(COMMANDS)).map(str.encode)
_LINES = st.one_of(
    st.binary(max_size=200),
    st.tuples(_KEYWORDS, st.sampled_from([b"", b" "]), st.binary(max_size=60)).map(b"".join),
)


@QUICK
@given(_LINES, st.sampled_from(State))
def test_parse_only_raises_command_error(line: bytes, state: State) -> None:
    """For any bytes in any state, parse returns a Command or raises CommandError."""
    try:
        command = parse(line, state)
    except CommandError as error:
        assert 500 <= error.code < 600
    else:
        assert command.keyword in COMMANDS
        assert state in COMMANDS[command.keyword].states


@QUICK
@given(st.lists(st.binary(max_size=3000), max_size=8), st.sampled_from(State))
def test_line_splitter_and_parse_never_raise(chunks: list[bytes], state: State) -> None:
    """Arbitrary byte streams split into bounded lines, each parsed or refused."""
    splitter = LineSplitter(parser.MAX_LINE)
    for chunk in chunks:
        for event in splitter.feed(chunk):
            if isinstance(event, LineTooLong):
                assert event.limit == parser.MAX_LINE
                continue
            assert len(event) <= parser.MAX_LINE and b"\n" not in event
            try:
                parse(event, state)
            except CommandError:
                pass
