"""Stream negotiation of RFC 6120 as an explicit state machine, sans-IO.

The states a client-to-server stream goes through and what may arrive in
each (anything else is a stream error), and the XML the server writes
during negotiation: the stream header (§4.7), the features (§4.3.2, with
STARTTLS §5.4.1, SASL §6.4.1, bind §7.4), SASL replies (§6.4) and stream
errors (§4.9).  :mod:`.server` drives it with the socket and the portal.

::

    HEADER ──features──▶ NEGOTIATING ──<starttls/>──▶ (TLS) ──▶ HEADER
                          │ <auth>                                 ▲
                          ▼                                        │
                         SASL ──<success/>──▶ AUTHENTICATED ──restart┘
                                                    (header) ──▶ BINDING
    BINDING ──bind iq──▶ SESSION ──</stream>──▶ CLOSED
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from twisted.words.xish import domish

from communigate.protocols.xmpp.xmlstream import NS_CLIENT, NS_STREAMS

NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_SM = "urn:xmpp:sm:3"
NS_VER = "urn:xmpp:features:rosterver"
NS_PRE_APPROVAL = "urn:xmpp:features:pre-approval"


class State(enum.Enum):
    """Where a client-to-server stream stands."""

    #: Waiting for the client's stream header (first, after TLS, after SASL).
    HEADER = "header"
    #: Features sent before authentication: STARTTLS or SASL may start.
    NEGOTIATING = "negotiating"
    #: A SASL exchange runs (§6.4.2–6.4.6).
    SASL = "sasl"
    #: Authenticated, features sent: the client binds a resource (§7).
    BINDING = "binding"
    #: Bound: stanzas flow.
    SESSION = "session"
    #: The stream is over.
    CLOSED = "closed"

    # A member is one object, equal only to itself: hashed by identity, as
    # a C slot (Enum's own hash is a Python call, paid by every stanza's
    # look into :data:`ALLOWED`).
    __hash__ = object.__hash__


#: The stream management (XEP-0198) elements a client sends.  They are
#: allowed outside SASL: one sent too early or twice is answered with
#: ``<failed/>`` and the stream goes on (XEP-0198 §3, §5: recoverable).
SM_ELEMENTS = frozenset({(NS_SM, "enable"), (NS_SM, "resume"), (NS_SM, "r"), (NS_SM, "a")})

#: (state, qualified name of a first-level element) → whether it is allowed.
ALLOWED: dict[State, frozenset[tuple[str, str]]] = {
    State.HEADER: frozenset(),
    State.NEGOTIATING: frozenset({(NS_TLS, "starttls"), (NS_SASL, "auth")}) | SM_ELEMENTS,
    State.SASL: frozenset({(NS_SASL, "response"), (NS_SASL, "abort")}),
    State.BINDING: frozenset({(NS_CLIENT, "iq")}) | SM_ELEMENTS,
    State.SESSION: frozenset({(NS_CLIENT, "iq"), (NS_CLIENT, "message"), (NS_CLIENT, "presence")})
    | SM_ELEMENTS,
    State.CLOSED: frozenset(),
}


def allowed(state: State, element: domish.Element) -> bool:
    """Whether ``element`` may arrive in ``state``."""
    return (element.uri, element.name) in ALLOWED[state]


def unexpected_condition(state: State, element: domish.Element) -> str:
    """The stream error for an element ``state`` does not allow: a stanza
    before authentication is ``not-authorized`` (§4.9.3.12), an element of
    an unknown namespace ``invalid-namespace`` (§4.9.3.10), anything else
    ``unsupported-stanza-type`` (§4.9.3.24)."""
    known = {NS_CLIENT, NS_TLS, NS_SASL, NS_SM}
    if element.uri not in known:
        return "invalid-namespace"
    if element.uri == NS_CLIENT and state in (State.NEGOTIATING, State.SASL):
        return "not-authorized"
    return "unsupported-stanza-type"


@dataclass(frozen=True)
class HeaderCheck:
    """What the client's stream header said, or why it is refused."""

    domain: str | None
    error: str | None = None


def check_header(namespace: str, name: str, attributes: dict[str, str]) -> HeaderCheck:
    """The header's shape (§4.7, §4.8): ``stream`` in the streams
    namespace, version 1.0, a ``to``.  The domain is not looked up here."""
    if namespace != NS_STREAMS or name != "stream":
        return HeaderCheck(None, "invalid-namespace")
    version = attributes.get("version", "0.9")
    major = version.partition(".")[0]
    if not major.isdigit() or int(major) < 1:
        return HeaderCheck(None, "unsupported-version")
    to = attributes.get("to", "").strip().lower().rstrip(".")
    if not to:
        return HeaderCheck(None, "host-unknown")
    return HeaderCheck(to)


def header(domain: str, stream_id: str, to: str | None = None) -> bytes:
    """The server's response stream header (§4.7.1)."""
    attributes = f" from={quoteattr(domain)} id={quoteattr(stream_id)}"
    if to:
        attributes += f" to={quoteattr(to)}"
    return (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        f"xmlns:stream='{NS_STREAMS}'{attributes} version='1.0' xml:lang='en'>"
    ).encode()


def error_header(stream_id: str) -> bytes:
    """A header for a stream refused before a domain was known (§4.9.1.2)."""
    return (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        f"xmlns:stream='{NS_STREAMS}' id={quoteattr(stream_id)} version='1.0'>"
    ).encode()


def stream_error(condition: str, text: str = "", specific: str = "") -> bytes:
    """A stream error followed by the end of the stream (§4.9), with an
    application-specific condition element (``specific``, already XML)."""
    described = (
        f"<text xmlns='{NS_STREAM_ERRORS}' xml:lang='en'>{escape(text)}</text>" if text else ""
    )
    return (
        f"<stream:error><{condition} xmlns='{NS_STREAM_ERRORS}'/>{described}{specific}"
        "</stream:error></stream:stream>"
    ).encode()


CLOSE = b"</stream:stream>"


def features_before_auth(tls_offered: bool, tls_required: bool, mechanisms: list[str]) -> bytes:
    """The features before authentication: STARTTLS (marked required when
    clear text may not be used, and then alone, §5.3.1) and the SASL
    mechanisms."""
    parts = ["<stream:features>"]
    if tls_offered:
        parts.append(f"<starttls xmlns='{NS_TLS}'>")
        parts.append("<required/>" if tls_required else "")
        parts.append("</starttls>")
    if not tls_required and mechanisms:
        parts.append(f"<mechanisms xmlns='{NS_SASL}'>")
        parts.extend(f"<mechanism>{escape(name)}</mechanism>" for name in mechanisms)
        parts.append("</mechanisms>")
    parts.append("</stream:features>")
    return "".join(parts).encode()


def features_after_auth(stream_management: bool = True) -> bytes:
    """The features after authentication: bind (§7.4), the optional legacy
    session (RFC 3921 §3, for old clients), roster versioning, XEP-0198."""
    parts = [
        "<stream:features>",
        f"<bind xmlns='{NS_BIND}'/>",
        f"<session xmlns='{NS_SESSION}'><optional/></session>",
        f"<ver xmlns='{NS_VER}'/>",
    ]
    if stream_management:
        parts.append(f"<sm xmlns='{NS_SM}'/>")
    parts.append("</stream:features>")
    return "".join(parts).encode()


PROCEED = f"<proceed xmlns='{NS_TLS}'/>".encode()


def sasl_challenge(data: bytes) -> bytes:
    """``<challenge/>`` with base64 data (§6.4.2)."""
    return f"<challenge xmlns='{NS_SASL}'>".encode() + data + b"</challenge>"


def sasl_success(additional: bytes | None) -> bytes:
    """``<success/>``, with the mechanism's additional data (§6.3.10)."""
    if additional is None:
        return f"<success xmlns='{NS_SASL}'/>".encode()
    return f"<success xmlns='{NS_SASL}'>".encode() + additional + b"</success>"


def sasl_failure(condition: str, text: str = "") -> bytes:
    """``<failure/>`` with a SASL condition (§6.5)."""
    described = f"<text xml:lang='en'>{escape(text)}</text>" if text else ""
    return f"<failure xmlns='{NS_SASL}'><{condition}/>{described}</failure>".encode()


def stanza_error(
    stanza: domish.Element, error_type: str, condition: str, text: str = ""
) -> domish.Element:
    """The error reply to ``stanza`` (RFC 6120 §8.3): addresses swapped,
    the original children kept, an ``<error/>`` added."""
    reply = domish.Element((NS_CLIENT, stanza.name))
    for key in ("id",):
        if stanza.hasAttribute(key):
            reply[key] = stanza[key]
    if stanza.hasAttribute("from"):
        reply["to"] = stanza["from"]
    if stanza.hasAttribute("to"):
        reply["from"] = stanza["to"]
    reply["type"] = "error"
    for child in stanza.elements():
        if child.name != "error":
            reply.addChild(child)
    error = reply.addElement("error")
    error["type"] = error_type
    error.addElement((NS_STANZAS, condition))
    if text:
        error.addElement((NS_STANZAS, "text"), content=text)
    return reply


_XML_NS = "http://www.w3.org/XML/1998/namespace"


def _text(text: str) -> str:
    """Character data escaped (a search per special character is much
    cheaper than ``str.translate`` with a mapping, which looks up every
    character)."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        # A parser turns a CR it reads into a line end (XML 1.0 §2.11).
        text = text.replace("\r", "&#13;")
    return text


def _attribute(value: str) -> str:
    """An attribute value escaped for single quotes, with the white space
    a parser would turn into spaces (XML 1.0 §3.3.3) kept."""
    value = _text(value)
    if "'" in value:
        value = value.replace("'", "&apos;")
    if "\t" in value:
        value = value.replace("\t", "&#9;")
    if "\n" in value:
        value = value.replace("\n", "&#10;")
    return value


def _write(element: domish.Element, parent_uri: str | None, out: list[str]) -> None:
    """Append ``element`` (elements in default namespaces, attributes in
    others prefixed) to ``out``: its start tag as one string, each text
    child, each child element, its end tag."""
    name = element.name
    uri = element.uri
    tag = "<" + name if uri == parent_uri else f"<{name} xmlns='{_attribute(uri or '')}'"
    attributes = element.attributes
    if attributes:
        parts = [tag]
        prefixes: dict[str, str] | None = None
        for key, value in attributes.items():
            if key.__class__ is tuple:
                namespace, local = key
                if namespace == _XML_NS:
                    key = "xml:" + local
                else:
                    # An attribute in another namespace: a prefix declared
                    # on this element (its own scope).
                    if prefixes is None:
                        prefixes = {}
                    prefix = prefixes.get(namespace)
                    if prefix is None:
                        prefix = prefixes[namespace] = f"a{len(prefixes)}"
                        parts.append(f" xmlns:{prefix}='{_attribute(namespace)}'")
                    key = f"{prefix}:{local}"
            if value.__class__ is not str:
                value = str(value)
            # Nearly every value needs no escape: a search per character
            # that would, no call.
            if (
                "&" in value
                or "<" in value
                or ">" in value
                or "'" in value
                or "\r" in value
                or "\n" in value
                or "\t" in value
            ):
                value = _attribute(value)
            parts.append(f" {key}='{value}'")
        tag = "".join(parts)
    children = element.children
    if not children:
        out.append(tag + "/>")
        return
    out.append(tag + ">")
    for child in children:
        if isinstance(child, domish.Element):
            _write(child, uri, out)
        else:
            text = child if child.__class__ is str else str(child)
            out.append(
                _text(text) if "&" in text or "<" in text or ">" in text or "\r" in text else text
            )
    out.append(f"</{name}>")


def serialize(element: domish.Element) -> bytes:
    """A stanza as the server writes it (in the ``jabber:client`` default
    namespace of the stream).  Elements are written with default namespace
    declarations; an attribute in a namespace other than ``xml:`` with a
    prefix declared on its element."""
    out: list[str] = []
    _write(element, NS_CLIENT, out)
    return "".join(out).encode("utf-8")
