"""The service a client's Kerberos ticket is for, read from its first token.

Sans-IO: a small DER walk over the GSS-API initial context token (RFC 2743
§3.1: ``[APPLICATION 0] { thisMech OID, innerToken }``), the Kerberos
mechanism's token (RFC 1964 §1.1: a two-byte TOK_ID ``01 00`` then the
AP-REQ) and the AP-REQ (RFC 4120 §5.5.1) down to its ticket's cleartext
part (§5.3): the realm, the service principal name and the key version the
ticket is encrypted with.  Nothing is decrypted; the server uses the name
to pick whose keys may accept the ticket, and the GSS library then proves
the ticket with those keys.
"""

from __future__ import annotations

from dataclasses import dataclass

#: 1.2.840.113554.1.2.2, the Kerberos V5 GSS-API mechanism (RFC 1964).
KRB5_OID = bytes.fromhex("2a864886f712010202")
TOK_AP_REQ = b"\x01\x00"


class TokenError(ValueError):
    """A token that is not a Kerberos AP-REQ in a GSS-API initial token."""


@dataclass(frozen=True)
class TicketService:
    """The cleartext service part of a ticket."""

    realm: str
    components: tuple[str, ...]
    name_type: int
    kvno: int | None
    enctype: int

    @property
    def principal(self) -> str:
        """``imap/host@REALM``."""
        return f"{'/'.join(self.components)}@{self.realm}"


def _header(data: bytes, offset: int) -> tuple[int, int, int]:
    """The tag, the content's start and its end of the DER item at ``offset``."""
    if offset + 2 > len(data):
        raise TokenError("truncated DER item")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise TokenError("multi-byte DER tags are not used in Kerberos")
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise TokenError("bad DER length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise TokenError("DER item longer than the token")
    return tag, start, end


def _expect(data: bytes, offset: int, tag: int, what: str) -> tuple[int, int]:
    found, start, end = _header(data, offset)
    if found != tag:
        raise TokenError(f"expected {what}")
    return start, end


def _fields(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """The context-tagged fields ``[n]`` of a SEQUENCE's contents: n ->
    (start, end) of the item inside each field."""
    fields: dict[int, tuple[int, int]] = {}
    offset = start
    while offset < end:
        tag, inner, after = _header(data, offset)
        if after > end:
            raise TokenError("DER field crosses its SEQUENCE")
        if tag & 0xE0 == 0xA0:
            fields[tag & 0x1F] = (inner, after)
        offset = after
    return fields


def _integer(data: bytes, start: int, end: int) -> int:
    begin, finish = _expect(data, start, 0x02, "INTEGER")
    if finish > end or finish == begin or finish - begin > 8:
        raise TokenError("bad INTEGER")
    return int.from_bytes(data[begin:finish], "big", signed=True)


def _string(data: bytes, start: int, end: int) -> str:
    begin, finish = _expect(data, start, 0x1B, "GeneralString")
    if finish > end:
        raise TokenError("bad GeneralString")
    try:
        return data[begin:finish].decode("utf-8")
    except UnicodeDecodeError:
        raise TokenError("a name is not UTF-8") from None


def ticket_service(token: bytes) -> TicketService:
    """The service principal of the ticket in a client's first GSSAPI
    token; :class:`TokenError` for any other token."""
    start, end = _expect(token, 0, 0x60, "a GSS-API initial context token")
    oid_start, oid_end = _expect(token, start, 0x06, "the mechanism OID")
    if token[oid_start:oid_end] != KRB5_OID:
        raise TokenError("not the Kerberos V5 mechanism")
    if token[oid_end : oid_end + 2] != TOK_AP_REQ:
        raise TokenError("not an AP-REQ token")
    ap_start, ap_end = _expect(token, oid_end + 2, 0x6E, "an AP-REQ")
    if ap_end > end:
        raise TokenError("the AP-REQ crosses the token")
    seq_start, seq_end = _expect(token, ap_start, 0x30, "the AP-REQ SEQUENCE")
    ap_fields = _fields(token, seq_start, seq_end)
    if 3 not in ap_fields:
        raise TokenError("an AP-REQ without a ticket")
    ticket_start, _ = ap_fields[3]
    t_start, _ = _expect(token, ticket_start, 0x61, "a Ticket")
    tseq_start, tseq_end = _expect(token, t_start, 0x30, "the Ticket SEQUENCE")
    ticket = _fields(token, tseq_start, tseq_end)
    if not {1, 2, 3} <= ticket.keys():
        raise TokenError("a ticket without realm, sname or enc-part")
    realm = _string(token, *ticket[1])
    name_start, _ = ticket[2]
    nseq_start, nseq_end = _expect(token, name_start, 0x30, "a PrincipalName")
    name = _fields(token, nseq_start, nseq_end)
    if not {0, 1} <= name.keys():
        raise TokenError("a PrincipalName without name-type or name-string")
    name_type = _integer(token, *name[0])
    list_start, list_end = _expect(token, name[1][0], 0x30, "the name-string SEQUENCE")
    components = []
    offset = list_start
    while offset < list_end:
        _, _, after = _header(token, offset)
        components.append(_string(token, offset, list_end))
        offset = after
    if not components:
        raise TokenError("a service name without components")
    enc_start, _ = ticket[3]
    eseq_start, eseq_end = _expect(token, enc_start, 0x30, "the EncryptedData SEQUENCE")
    encrypted = _fields(token, eseq_start, eseq_end)
    if 0 not in encrypted:
        raise TokenError("EncryptedData without etype")
    enctype = _integer(token, *encrypted[0])
    kvno = _integer(token, *encrypted[1]) if 1 in encrypted else None
    return TicketService(realm, tuple(components), name_type, kvno, enctype)


def service_domain(service: TicketService) -> str | None:
    """The domain name a service principal names: the only component of
    ``domain.dom@REALM``, the second of ``imap/domain.dom@REALM`` (a
    service of that host); None for an empty name."""
    components = service.components
    name = components[0] if len(components) == 1 else components[1]
    return name.lower().rstrip(".") or None
