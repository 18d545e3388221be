"""XMPP addresses (JIDs) of RFC 7622: split, prepare, compare, format.

A JID is ``[localpart@]domainpart[/resourcepart]``.  :func:`parse` splits a
text by the rules of RFC 7622 §3.1 and prepares each part:

- the localpart with the PRECIS ``UsernameCaseMapped`` profile (§3.3,
  RFC 8265 §3.3), then refusing the characters ``"&'/:<>@`` (§3.3.1);
- the domainpart (§3.2): a final dot removed, an IPv6 literal in brackets
  or an IPv4 address kept as written, a name lower-cased by UTS-46 and kept
  in its Unicode (U-label) form;
- the resourcepart with the ``OpaqueString`` profile (§3.4, RFC 8265 §4.2).

Each part must be 1 to 1023 bytes of UTF-8 after preparation.  Texts that
break a rule raise :class:`InvalidJID`, whose message says which rule.

Prepared JIDs compare equal exactly when they name the same entity, so
:class:`JID` (frozen) can be a dictionary key.  Parsing is pure and cached:
the same few addresses come back in every stanza.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field

import precis_i18n

try:
    import idna as _idna
except ImportError:  # pragma: no cover - idna comes with Twisted (hyperlink)
    _idna = None  # type: ignore[assignment]

#: RFC 7622 §3.1: each part is at most 1023 bytes once prepared.
MAX_PART = 1023
#: RFC 7622 §3.3.1: characters a localpart may not hold.
FORBIDDEN_LOCAL = frozenset("\"&'/:<>@")

_USERNAME = precis_i18n.get_profile("UsernameCaseMapped")
_OPAQUE = precis_i18n.get_profile("OpaqueString")
#: An ASCII domain name that needs no IDNA work beyond lower-casing.  The
#: underscore is tolerated as it is in host names in the wild.
_ASCII_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}\Z")


class InvalidJID(ValueError):
    """A text that is no valid JID; the message names the broken rule."""


@dataclass(frozen=True, slots=True)
class JID:
    """A prepared XMPP address.

    Build one with :func:`parse` or :func:`make`; the constructor itself
    takes the parts as they are and checks nothing.
    """

    local: str | None
    domain: str
    resource: str | None = None
    #: The bare JID of a full one, made once (a session's JID is asked for
    #: its bare part several times per stanza it routes).
    _bare: JID | None = field(default=None, init=False, repr=False, compare=False)
    #: Its text and hash, made once: the router writes a session's JID into
    #: every stanza and looks sessions up by JID.
    _text: str | None = field(default=None, init=False, repr=False, compare=False)
    _hash: int | None = field(default=None, init=False, repr=False, compare=False)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, JID)
        return (
            self.domain == other.domain
            and self.local == other.local
            and self.resource == other.resource
        )

    def __reduce__(self) -> tuple[type[JID], tuple[str | None, str, str | None]]:
        # The parts only: a hash is only good in the process that made it.
        return self.__class__, (self.local, self.domain, self.resource)

    def __hash__(self) -> int:
        found = self._hash
        if found is None:
            found = hash((self.local, self.domain, self.resource))
            object.__setattr__(self, "_hash", found)
        return found

    @property
    def is_bare(self) -> bool:
        """Whether the JID has no resourcepart (RFC 7622 §3.1's bare JID)."""
        return self.resource is None

    def bare(self) -> JID:
        """The same JID without its resourcepart."""
        if self.resource is None:
            return self
        found = self._bare
        if found is None:
            found = JID(self.local, self.domain, None)
            object.__setattr__(self, "_bare", found)
        return found

    def with_resource(self, resource: str) -> JID:
        """The full JID of this bare JID with ``resource`` (prepared with
        OpaqueString); raise :class:`InvalidJID` if it is no resourcepart."""
        return JID(self.local, self.domain, prepare_resource(resource))

    def __str__(self) -> str:
        found = self._text
        if found is None:
            found = self.domain if self.local is None else f"{self.local}@{self.domain}"
            if self.resource is not None:
                found = f"{found}/{self.resource}"
            object.__setattr__(self, "_text", found)
        return found


def split(text: str) -> tuple[str | None, str, str | None]:
    """The raw (localpart, domainpart, resourcepart) of ``text`` by RFC 7622
    §3.1, without preparation: the resourcepart follows the first ``/``, the
    localpart precedes the first ``@`` before that.  Raise
    :class:`InvalidJID` for an empty part after a separator."""
    head, slash, resource = text.partition("/")
    if slash and not resource:
        raise InvalidJID("empty resourcepart")
    local, at, domain = head.partition("@")
    if not at:
        local, domain = "", head
    elif not local:
        raise InvalidJID("empty localpart")
    if not domain:
        raise InvalidJID("empty domainpart")
    return (local if at else None), domain, (resource if slash else None)


def _check_length(part: str, what: str) -> str:
    if not part:
        raise InvalidJID(f"empty {what}")
    if len(part) > MAX_PART // 4 and len(part.encode("utf-8")) > MAX_PART:
        raise InvalidJID(f"{what} longer than {MAX_PART} bytes")
    return part


def _printable_ascii(text: str, lowest: int) -> bool:
    """Whether every character of ``text`` is ASCII from ``lowest`` to ``~``:
    texts PRECIS maps to themselves (apart from case)."""
    return text.isascii() and all(lowest <= ord(char) <= 0x7E for char in text)


def prepare_local(text: str) -> str:
    """A localpart prepared by RFC 7622 §3.3 (UsernameCaseMapped, then the
    forbidden characters); raise :class:`InvalidJID`."""
    if len(text) > MAX_PART:
        raise InvalidJID(f"localpart longer than {MAX_PART} bytes")
    if _printable_ascii(text, 0x21):
        # UsernameCaseMapped maps printable ASCII to its lower case and
        # nothing else: skip the codec on the common path.
        prepared = text.lower()
    else:
        try:
            prepared = _USERNAME.enforce(text)
        except UnicodeError as error:
            raise InvalidJID(f"invalid localpart: {_reason(error)}") from None
    if any(char in FORBIDDEN_LOCAL for char in prepared):
        raise InvalidJID("localpart contains a forbidden character")
    return _check_length(prepared, "localpart")


def prepare_resource(text: str) -> str:
    """A resourcepart prepared by RFC 7622 §3.4 (OpaqueString); raise
    :class:`InvalidJID`."""
    if len(text) > MAX_PART:
        raise InvalidJID(f"resourcepart longer than {MAX_PART} bytes")
    if not _printable_ascii(text, 0x20):
        try:
            text = _OPAQUE.enforce(text)
        except UnicodeError as error:
            raise InvalidJID(f"invalid resourcepart: {_reason(error)}") from None
    return _check_length(text, "resourcepart")


def prepare_domain(text: str) -> str:
    """A domainpart prepared by RFC 7622 §3.2: final dot removed, IP
    literals checked, names lower-cased (UTS-46) in Unicode form; raise
    :class:`InvalidJID`."""
    if len(text) > MAX_PART + 1:
        raise InvalidJID(f"domainpart longer than {MAX_PART} bytes")
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise InvalidJID("empty domainpart")
    if text.startswith("["):
        if not text.endswith("]"):
            raise InvalidJID("unterminated IPv6 literal in domainpart")
        try:
            return f"[{ipaddress.IPv6Address(text[1:-1]).compressed}]"
        except ValueError:
            raise InvalidJID("invalid IPv6 literal in domainpart") from None
    if _IPV4.match(text):
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise InvalidJID("invalid IPv4 address in domainpart") from None
    labels = text.split(".")
    if all(_ASCII_NAME.match(label) for label in labels):
        prepared = text.lower()
        if prepared.startswith("xn--") or ".xn--" in prepared:
            # An A-label: show it in Unicode like a name typed in Unicode.
            prepared = _idna_name(prepared)
    else:
        prepared = _idna_name(text)
    return _check_length(prepared, "domainpart")


def _idna_name(text: str) -> str:
    """A domain name mapped by UTS-46 and checked by IDNA2008, in Unicode."""
    try:
        if _idna is not None:
            return str(_idna.decode(_idna.encode(text, uts46=True)))
        return text.lower().encode("idna").decode("idna")  # pragma: no cover
    except UnicodeError as error:
        raise InvalidJID(f"invalid domainpart: {_reason(error)}") from None


def _reason(error: UnicodeError) -> str:
    """The short reason a codec gives, without its long preamble."""
    if isinstance(error, UnicodeEncodeError):
        return error.reason
    return str(error) or type(error).__name__


@functools.lru_cache(maxsize=8192)
def parse(text: str) -> JID:
    """The prepared JID written in ``text``; raise :class:`InvalidJID`."""
    if len(text) > 3 * (MAX_PART + 1):
        raise InvalidJID("address too long")
    local, domain, resource = split(text)
    return JID(
        None if local is None else prepare_local(local),
        prepare_domain(domain),
        None if resource is None else prepare_resource(resource),
    )


def make(local: str | None, domain: str, resource: str | None = None) -> JID:
    """A JID from separate parts (say a login name and the stream's
    domain), each prepared as :func:`parse` does; raise
    :class:`InvalidJID`."""
    return JID(
        None if local is None else prepare_local(local),
        prepare_domain(domain),
        None if resource is None else prepare_resource(resource),
    )


def is_valid(text: str) -> bool:
    """Whether ``text`` is a valid JID."""
    try:
        parse(text)
    except InvalidJID:
        return False
    return True


@functools.lru_cache(maxsize=1024)
def block_candidates(jid: str) -> tuple[str, ...]:
    """The items that would block ``jid`` (XEP-0016 §2.1), most specific
    first; empty for a text that is no JID."""
    try:
        local, domain, resource = split(jid)
    except InvalidJID:
        return ()
    found = [jid]
    if local is not None and resource is not None:
        found.append(f"{local}@{domain}")
    found.append(domain)
    return tuple(dict.fromkeys(found))
