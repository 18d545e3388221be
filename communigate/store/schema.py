"""Every settings key the server reads: its type, default and allowed values.

One table per level (server ``Settings/Main.settings``, domain
``Settings/Domain.settings``, account ``account.settings``) lists the keys
the code reads, each with a :class:`Kind` that says which values the code
understands, read exactly as the code reads them (``as_bool``,
``as_seconds``, ``FailedLoginFlow``'s ``(count, interval)``, ...).  Pure
code: values in, problems out.  Three users:

* the command line refuses an unknown key (naming the nearest known one) or
  a value the server would not understand, and writes nothing;
* ``communigate check`` reports every problem of a base directory;
* the store (:mod:`communigate.store.files`) repairs a settings file when it
  is (re)loaded: :func:`repair` warns once and lets the default apply.

Numbers are written ``#20`` in CommuniGate's syntax.  A plain ``20`` given
for a key that takes only a number is refused with the hint ``write #20``:
the server reads ``20`` as text and would ignore it.  Keys that also take
text (sizes like ``10M``, intervals like ``10m``) take ``20`` as the code
does.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address, ip_network

from communigate.cred.passwords import ENCRYPTIONS
from communigate.store import settingsformat
from communigate.store.directory import DirectoryError, check_domain_name
from communigate.store.settingsformat import Value


class Level(enum.Enum):
    """Where a settings file sits."""

    SERVER = "server"
    DOMAIN = "domain"
    ACCOUNT = "account"


class SettingError(ValueError):
    """A ``Key=Value`` the server would not understand (one line of text)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a settings dictionary: the key (``Limits.imap4.
    IdleTimeout`` for a nested one) and what is wrong."""

    key: str
    message: str

    def __str__(self) -> str:
        return self.message


def _show(value: Value) -> str:
    """A value as it would be written in a settings file."""
    try:
        return settingsformat.dumps(value)
    except TypeError:
        return repr(value)


# -- kinds of values ---------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A kind of value: ``check`` returns why a value is bad (None if good);
    ``allowed`` says in a few words what is allowed."""

    allowed: str
    check: Callable[[Value], str | None]
    #: For a dictionary of known keys: its own table.
    table: Mapping[str, Setting] | None = None


def _text(value: Value) -> str | None:
    return None if isinstance(value, str) else "not a string"


def _boolean(value: Value) -> str | None:
    # As settingsformat.as_bool reads it: any other word means "the default".
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().upper() in _BOOLEAN_WORDS:
        return None
    return "not YES or NO"


_BOOLEAN_WORDS = frozenset({"YES", "NO", "TRUE", "FALSE", "1", "0", "ON", "OFF"})


def _number(least: int) -> Callable[[Value], str | None]:
    def check(value: Value) -> str | None:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return f"a number is written #{value.strip()}"
        if not isinstance(value, int) or isinstance(value, bool):
            return "not a number"
        return f"less than {least}" if value < least else None

    return check


def _interval(value: Value) -> str | None:
    try:
        settingsformat.as_seconds(value)
    except ValueError:
        return "not a time interval"
    return None


_DELAY = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?\Z", re.IGNORECASE)


def _delay(value: Value) -> str | None:
    # As communigate.portal.policy.failure_delay reads FailedLoginDelay.
    if isinstance(value, int) or (isinstance(value, str) and _DELAY.match(value.strip())):
        return None
    return "not a delay"


def _size_pattern(units: str) -> Callable[[Value], str | None]:
    pattern = re.compile(rf"(\d+)\s*([{units}]?)b?\Z", re.IGNORECASE)

    def check(value: Value) -> str | None:
        if isinstance(value, int) or (isinstance(value, str) and pattern.match(value.strip())):
            return None
        return "not a size"

    return check


def _storage_size(value: Value) -> str | None:
    # As communigate.store.filestorage.parse_size reads MaxWebSize.
    if isinstance(value, str) and value.strip().lower() in ("", "unlimited"):
        return None
    return _size_pattern("kmgt")(value)


def _strings(item: Callable[[str], str | None]) -> Callable[[Value], str | None]:
    """One string or an array of strings, each passing ``item``."""

    def check(value: Value) -> str | None:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            return "not a string or an array of strings"
        for entry in items:
            if not isinstance(entry, str):
                return f"{_show(entry)} is not a string"
            problem = item(entry)
            if problem:
                return problem
        return None

    return check


def _choice(choices: Iterable[str]) -> Callable[[str], str | None]:
    known = {choice.lower() for choice in choices}
    return lambda word: None if word.lower() in known else f"{word} is not known"


def _address(word: str) -> str | None:
    try:
        ip_address(word.split("%", 1)[0])
    except ValueError:
        return f"{word} is not an IP address"
    return None


def _network(word: str) -> str | None:
    try:
        ip_network(word.lstrip("!").strip(), strict=False)
    except ValueError:
        return f"{word} is not an address or network"
    return None


def _domain(word: str) -> str | None:
    try:
        check_domain_name(word)
    except DirectoryError as error:
        return str(error)
    return None


def _enum(choices: Iterable[str]) -> Callable[[Value], str | None]:
    item = _choice(choices)
    return lambda value: item(value) if isinstance(value, str) else "not a word"


def _access_modes(value: Value) -> str | None:
    # As communigate.portal.accounts.access_modes reads AccessModes.
    if isinstance(value, str) and value.lower() in ("all", "none"):
        return None
    return _strings(_choice(SERVICES))(value)


def _flow(value: Value) -> str | None:
    # As communigate.portal.policy.flow reads it: two strings, a count and
    # an interval; numbers (#3) are not read.
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(item, str) for item in value)
        and str(value[0]).isdigit()
        and _interval(value[1]) is None
    ):
        return None
    return "not (count, interval)"


def _dictionary(table: Mapping[str, Setting] | None) -> Callable[[Value], str | None]:
    def check(value: Value) -> str | None:
        if not isinstance(value, dict):
            return "not a dictionary"
        if table is not None:
            found = problems(table, value)
            if found:
                return found[0].message
        return None

    return check


def _kind(allowed: str, check: Callable[[Value], str | None]) -> Kind:
    return Kind(allowed, check)


TEXT = _kind("a string", _text)
BOOLEAN = _kind("YES or NO", _boolean)
INTERVAL = _kind("a time interval such as 30s, 10m, 2h, 1d or #60", _interval)
DELAY = _kind("a delay such as 2s, 500ms or #2 (0 turns it off)", _delay)
FLOW = _kind("(count, interval) such as (3,1m)", _flow)
STORAGE_SIZE = _kind("a size such as #1048576, 100K, 10M, 1G or unlimited", _storage_size)
LIMIT_SIZE = _kind("a size such as #8192, 8K or 1M", _size_pattern("km"))
ADDRESSES = _kind("an array of IP addresses", _strings(_address))
NETWORKS = _kind(
    "an array of addresses and networks (192.0.2.0/24; ! excludes)", _strings(_network)
)
DOMAINS = _kind("an array of domain names", _strings(_domain))
DOMAIN_NAME = _kind("a domain name", lambda value: _text(value) or _domain(str(value)))

#: Services that AccessModes and DomainAccessModes may name (spec §2).
SERVICES = (
    "Mail",
    "Relay",
    "Signal",
    "Mobile",
    "TLS",
    "POP",
    "IMAP",
    "MAPI",
    "AirSync",
    "SIP",
    "XMPP",
    "WebMail",
    "XIMSS",
    "FTP",
    "ACAP",
    "PWD",
    "LDAP",
    "RADIUS",
    "S/MIME",
    "WebCAL",
    "WebSite",
    "PBX",
    "HTTP",
)
ACCESS_MODES = _kind(f"All, None or an array of: {', '.join(SERVICES)}", _access_modes)

#: What LoginMethods may list: the SASL mechanisms the server has, and APOP.
LOGIN_METHODS = (
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "DIGEST-MD5",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256-PLUS",
    "GSSAPI",
    "EXTERNAL",
    "NTLM",
    "MSN",
    "APOP",
    "SESSIONID",
)


def enumerated(*choices: str) -> Kind:
    """One of ``choices`` (any case)."""
    return _kind(" or ".join(choices), _enum(choices))


def enumerated_list(choices: Iterable[str]) -> Kind:
    """One or an array of ``choices`` (any case)."""
    choices = tuple(choices)
    return _kind(f"an array of: {', '.join(choices)}", _strings(_choice(choices)))


def number(least: int = 0) -> Kind:
    """A number written ``#20``, at least ``least``."""
    return _kind(f"a number written #20 (at least {least})", _number(least))


def dictionary(table: Mapping[str, Setting] | None = None, allowed: str = "") -> Kind:
    """A dictionary; with ``table``, of those keys only."""
    if table is not None and not allowed:
        allowed = f"a dictionary of {', '.join(table)}"
    return Kind(allowed or "a dictionary", _dictionary(table), table)


def _protocols(names: Iterable[str], table: Mapping[str, Setting]) -> dict[str, Setting]:
    inner = dictionary(table)
    return {name: Setting(name, inner, None, f"{name} only") for name in names}


# -- the tables --------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One key: what it takes, its default (None: absent means off/unset),
    what it does, and whether a bad value found on disk is kept as it is
    (``keep``: a value the server already reads in the narrowest way, such
    as a list of services in which an unknown name enables nothing;
    replacing it by the default could widen access)."""

    key: str
    kind: Kind
    default: Value
    description: str
    keep: bool = False


def _table(*settings: Setting) -> dict[str, Setting]:
    return {setting.key: setting for setting in settings}


ACCOUNT = _table(
    Setting("Password", TEXT, None, "the CommuniGate password, clear or encrypted"),
    Setting(
        "PasswordEncryption",
        enumerated(*ENCRYPTIONS),
        "clear",
        "how a password is stored when it is next set",
    ),
    Setting(
        "SCRAM-SHA-1",
        TEXT,
        None,
        "SCRAM-SHA-1 secret of the password: iterations,salt,StoredKey,ServerKey,tag",
    ),
    Setting(
        "SCRAM-SHA-256",
        TEXT,
        None,
        "SCRAM-SHA-256 secret of the password: iterations,salt,StoredKey,ServerKey,tag",
    ),
    Setting("NTHash", TEXT, None, "NT hash of the password (hex), kept where NTLM is offered"),
    Setting("UseAppPassword", BOOLEAN, "YES", "check the CommuniGate password"),
    Setting("UseSysPassword", BOOLEAN, "NO", "check the OS password (PAM)"),
    Setting("UseExtPassword", BOOLEAN, "NO", "ask the External Authentication helper"),
    Setting("UseKerberosPassword", BOOLEAN, "NO", "a Kerberos ticket (GSSAPI) may log in"),
    Setting("UseCertificateAuth", BOOLEAN, "NO", "a client certificate (EXTERNAL) may log in"),
    Setting("OSUserName", TEXT, "*", "the OS user name; * is the account name"),
    Setting("PWDAllowed", BOOLEAN, "YES", "the user may change the password"),
    Setting("RequireAPOP", BOOLEAN, "NO", "refuse clear-text passwords on insecure links"),
    Setting("FailedLoginFlow", FLOW, None, "lock the account after count failures in interval"),
    Setting("AccessModes", ACCESS_MODES, "All", "enabled services", keep=True),
    Setting("MaxWebSize", STORAGE_SIZE, "unlimited", "File Storage quota"),
)

_EXTERNAL = _table(
    Setting("Enabled", BOOLEAN, "NO", "run the helper"),
    Setting("ProgramName", TEXT, None, "the helper program and its arguments"),
    Setting("Timeout", INTERVAL, "10s", "how long an answer may take"),
    Setting("RestartPause", INTERVAL, "0s", "pause before restarting the helper"),
)

_LISTENER = _table(
    Setting("Grant", NETWORKS, None, "only these addresses may connect"),
    Setting("Deny", NETWORKS, None, "these addresses may not connect"),
    Setting("MaxPerAddress", number(0), 50, "connections open at once from one address"),
)

#: Protocol names of the listeners (twistd options) and of Limits sections.
LISTENER_NAMES = (
    "pop3",
    "pop3s",
    "imap4",
    "imaps",
    "lmtp",
    "tftp",
    "ftp",
    "ftps",
    "pwd",
    "submission",
    "smtps",
    "xmpp",
    "xmpps",
    "http",
    "https",
)
LIMITS_PROTOCOLS = ("imap4", "pop3", "ftp", "lmtp", "pwd", "smtp", "xmpp", "http")

_KNOBS = _table(
    Setting("MaxLineLength", LIMIT_SIZE, None, "longest command line (per protocol)"),
    Setting("PreLoginData", LIMIT_SIZE, "8K", "largest literal before login"),
    Setting("LoginTimeout", INTERVAL, "60s", "time to log in"),
    Setting("IdleTimeout", INTERVAL, None, "time a client may stay silent (per protocol)"),
)

SERVER = _table(
    Setting("MainDomainName", DOMAIN_NAME, None, "the Main Domain (fixed)"),
    Setting("HideAccountUnknown", BOOLEAN, "NO", "unknown accounts get the wrong-password reply"),
    Setting(
        "AccountDefaults",
        dictionary(ACCOUNT, "a dictionary of account settings"),
        None,
        "account settings every account of the server has unless it says otherwise",
    ),
    Setting("PAMService", TEXT, "communigate", "the PAM service for OS passwords"),
    Setting("ExternalAUTH", dictionary(_EXTERNAL), None, "the External Authentication helper"),
    Setting(
        "Listeners",
        dictionary(_protocols(LISTENER_NAMES, _LISTENER)),
        None,
        "per listener: Grant, Deny, MaxPerAddress",
        keep=True,
    ),
    Setting(
        "Limits",
        dictionary({**_KNOBS, **_protocols(LIMITS_PROTOCOLS, _KNOBS)}),
        None,
        "connection limits, top level and per protocol",
        keep=True,
    ),
    Setting("TFTPDefaultStorage", TEXT, None, "the account whose File Storage TFTP serves"),
    Setting(
        "NonClientLogins",
        enumerated("Allow", "Prohibit"),
        "Allow",
        "whether addresses not in ClientIPs may log in",
    ),
    Setting("ClientIPs", NETWORKS, None, "the client addresses", keep=True),
    Setting("RehashPasswords", BOOLEAN, "NO", "store weaker passwords again at login"),
    Setting("FailedLoginDelay", DELAY, "2s", "least time before a failed login is answered"),
    Setting("SubmitRelayHost", TEXT, None, "host:port of the smart host for submitted mail"),
    Setting("SubmitRelayUser", TEXT, None, "the name to AUTH PLAIN with at the smart host"),
    Setting("SubmitRelayPassword", TEXT, None, "the password to AUTH PLAIN with at the smart host"),
    Setting(
        "SubmitRelayTLS",
        enumerated("Opportunistic", "No"),
        "Opportunistic",
        "STARTTLS to the smart host when offered (certificate not verified), or never",
    ),
    Setting("SubmitQueueExpiry", INTERVAL, "5d", "how long a queued message is retried"),
    Setting(
        "FailedLoginsPerAddress",
        FLOW,
        ["10", "1m"],
        "past count failures in interval, one address is slowed down",
    ),
)

DOMAIN = _table(
    Setting("IPAddresses", ADDRESSES, None, "local addresses that belong to the domain"),
    Setting("DomainAliases", DOMAINS, None, "other names of the domain"),
    Setting(
        "AccountDefaults",
        dictionary(ACCOUNT, "a dictionary of account settings"),
        None,
        "account settings every account of the domain has unless it says otherwise",
    ),
    Setting(
        "LoginMethods",
        enumerated_list(LOGIN_METHODS),
        ["PLAIN", "LOGIN"],
        "the login methods advertised",
        keep=True,
    ),
    Setting(
        "ClearTextLogin",
        enumerated("Secure", "Always"),
        "Secure",
        "clear-text passwords on insecure links: only from loopback, or always",
    ),
    Setting("DomainAccessModes", ACCESS_MODES, "All", "services the domain allows", keep=True),
    Setting(
        "ConsultExternalForUnknown",
        BOOLEAN,
        "NO",
        "the External helper may create unknown accounts",
    ),
    Setting("WebUserIdleTimeout", INTERVAL, "30m", "time a web session may stay unused"),
    Setting("WebUserSessionLimit", INTERVAL, "12h", "time a web session may last at most"),
)

TABLES: Mapping[Level, Mapping[str, Setting]] = {
    Level.SERVER: SERVER,
    Level.DOMAIN: DOMAIN,
    Level.ACCOUNT: ACCOUNT,
}


# -- checking ----------------------------------------------------------------


def nearest(table: Mapping[str, Setting], key: str) -> str | None:
    """The known key closest to a mistyped one (any case), if any is close."""
    by_lower = {known.lower(): known for known in table}
    if key.lower() in by_lower:
        return by_lower[key.lower()]
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def _unknown(table: Mapping[str, Setting], key: str, path: str, what: str = "") -> Problem:
    hint = nearest(table, key)
    suggestion = f" (did you mean {path}{hint}?)" if hint else ""
    return Problem(path + key, f"unknown {what}setting {path}{key}{suggestion}")


def _bad(setting: Setting, value: Value, path: str, why: str) -> Problem:
    return Problem(
        path + setting.key,
        f"bad value {_show(value)} for {path}{setting.key}: {why}; allowed: {setting.kind.allowed}",
    )


def problems(
    table: Mapping[str, Setting], settings: Mapping[str, Value], path: str = ""
) -> list[Problem]:
    """Every unknown key and bad value of a settings dictionary, nested
    dictionaries included (keys named ``Outer.Inner``)."""
    found: list[Problem] = []
    for key, value in settings.items():
        setting = table.get(key)
        if setting is None:
            found.append(_unknown(table, key, path))
            continue
        found.extend(_value_problems(setting, value, path))
    return found


def _value_problems(setting: Setting, value: Value, path: str) -> list[Problem]:
    inner = setting.kind.table
    if inner is not None and isinstance(value, dict):
        return problems(inner, value, f"{path}{setting.key}.")
    why = setting.kind.check(value)
    return [_bad(setting, value, path, why)] if why else []


def check_changes(level: Level, changes: Mapping[str, Value | None]) -> None:
    """Refuse (:class:`SettingError`, one line) the first unknown key or bad
    value among ``Key=Value`` changes; ``None`` (remove) is fine for a known
    key."""
    table = TABLES[level]
    for key, value in changes.items():
        if key not in table:
            message = _unknown(table, key, "", f"{level.value} ").message
            raise SettingError(message + _elsewhere(level, key))
        if value is not None:
            found = _value_problems(table[key], value, "")
            if found:
                raise SettingError(found[0].message)


def _elsewhere(level: Level, key: str) -> str:
    """A hint for a key given at the wrong level."""
    for other, table in TABLES.items():
        if other is not level and key in table:
            hint = f" ({key} is a{'n' * (other is Level.ACCOUNT)} {other.value} setting"
            if other is Level.ACCOUNT and "AccountDefaults" in TABLES[level]:
                hint += f"; for every account use AccountDefaults={{{key}=...;}}"
            return hint + ")"
    return ""


def repair(
    level: Level,
    settings: Mapping[str, Value],
    previous: Mapping[str, Value] | None = None,
) -> tuple[dict[str, Value], list[tuple[Problem, str]]]:
    """A settings file's dictionary as the server should use it, and what
    was done about each bad value (for a warning).

    A bad value is replaced by the one this file had at its previous
    (good) reading, so that a value turned to garbage never loosens what
    was in force (an account locked by its FailedLoginFlow stays locked);
    without one it is dropped so the default applies.  Keys marked
    ``keep`` stay as they are (the server reads them narrowly).  Inside
    ``AccountDefaults`` the same rules apply key by key.  Unknown keys are
    left alone: the server does not read them.
    """
    table = TABLES[level]
    result = dict(settings)
    actions: list[tuple[Problem, str]] = []
    for key, value in settings.items():
        setting = table.get(key)
        if setting is None:
            continue
        if key == "AccountDefaults" and isinstance(value, dict):
            before = previous.get(key) if previous else None
            inner, inner_actions = repair(
                Level.ACCOUNT, value, before if isinstance(before, dict) else None
            )
            result[key] = inner
            actions += [
                (Problem(f"{key}.{problem.key}", problem.message), action)
                for problem, action in inner_actions
            ]
            continue
        found = _value_problems(setting, value, "")
        if not found:
            continue
        if setting.keep:
            actions.append((found[0], "used as it is"))
        elif previous is not None and key in previous:
            result[key] = previous[key]
            actions.append((found[0], f"keeping the previous value {_show(previous[key])}"))
        else:
            del result[key]
            default = "unset" if setting.default is None else _show(setting.default)
            actions.append((found[0], f"using the default ({default})"))
    return result, actions
