"""Reading a ticket's service principal from a GSS-API initial token."""

from __future__ import annotations

import pytest

from communigate.cred.kerberos import apreq
from communigate.cred.kerberos.apreq import TicketService, TokenError

#: The first token of python-gssapi (MIT krb5 1.20) for imap@client1.com
#: in a throwaway test realm.
TOKEN = bytes.fromhex(
    "608202e106092a864886f71201020201006e8202d0308202cca003020105a10302010ea20703050020000000"
    "a38201dd618201d9308201d5a003020105a1141b12544553543345434433452e4558414d504c45a21e301ca0"
    "03020103a11530131b04696d61701b0b636c69656e74312e636f6da382019630820192a003020112a1030201"
    "02a282018404820180ddd8c0038398438cda3e05be466fd84a6e9e68824e7c6d178a7e60f4433a0a28d387ee"
    "bee5bc995e68664bc5f571980ebff15b92381a300bc4be11d4208ee71c34db59d05a0d88b2efbcbec883cf95"
    "9b7fddf18bbb20dc1322168563893e1957b8615f08b6d4e9097db020c9f065762b7fb57dfc360914a022ed4a"
    "3d14065c8624804c7cff7a710176ddd51c3e267450466a1c9fdc925bf1f6f83ee75c6e742d4a940f2e66491f"
    "6d05144a202ff60270feb774112fba9ba089f86adc992d0162abfec60c11ae84270835d9ac3c1e79cc8142d7"
    "f4a4ba63bb156b7a26c2a89393f488bc836ac0ea3abee56b8cf5bc89f349b57fc76c6546fe01d1b57200046e"
    "74b82868b7ab343ae42a6a8b08a1f1a17546ce9aedea5e50d12a910950bbe3118433c7fc52bba43e7fa38caf"
    "f4d8aa56cf13664a1da2577f8ea988963e8beef72c85d44d58521b7bfacaff5c5229c70da70025a5e9851afc"
    "83338150417ff988ff842f026d6cc0f0d4c60636d2a67e84fe1687332e6929ca1c3ca90d133c240fa6a481d5"
    "3081d2a003020112a281ca0481c712d4aca5b533a1e82b65dff7ae8ea7a330a48b40e9874072eb35168cbe97"
    "7485d22d17b5a249a624b3e1fe2b808f063df5a8cdfce3a51bb4c79d67c53a1ecdaf7ee13ba19e53c1e19325"
    "1df6553799f4dbb74a8ac2b175c989ee1a86f30a851a3b9bbbcb8192aaa7000f52e2f1e0214bf26d5dc68373"
    "63f53a7f8582123346f3e78e4f21c8edd9f8ad3cd67250a5ee240b333a70579282044d05c1d08d2e0f52d735"
    "8d2f568fba5517e47d0a2e903ce2d1f255c7ac2d90a7269149b86d23e196caa994e486c24f"
)


def test_reads_service_of_real_token() -> None:
    """Realm, sname, kvno and enctype of a real AP-REQ's ticket."""
    service = apreq.ticket_service(TOKEN)
    assert service == TicketService("TEST3ECD3E.EXAMPLE", ("imap", "client1.com"), 3, 2, 18)
    assert service.principal == "imap/client1.com@TEST3ECD3E.EXAMPLE"


@pytest.mark.parametrize(
    ("components", "domain"),
    [
        (("company.com",), "company.com"),
        (("imap", "Client1.COM"), "client1.com"),
        (("HTTP", "client1.com", "extra"), "client1.com"),
    ],
)
def test_service_domain(components: tuple[str, ...], domain: str) -> None:
    """One component is the domain; with more, the second one is."""
    assert apreq.service_domain(TicketService("R", components, 1, None, 18)) == domain


@pytest.mark.parametrize(
    "token",
    [
        b"",
        b"\x60",
        TOKEN[:50],
        TOKEN[:2] + b"\x06\x06\x2b\x06\x01\x05\x05\x02" + TOKEN[13:],
        TOKEN.replace(b"\x01\x00\x6e", b"\x02\x00\x6e", 1),
        b"\x30" + TOKEN[1:],
    ],
)
def test_other_tokens_refused(token: bytes) -> None:
    """Truncated tokens, another mechanism, another token type raise TokenError."""
    with pytest.raises(TokenError):
        apreq.ticket_service(token)


def test_length_beyond_token_refused() -> None:
    """A DER length pointing past the end raises TokenError, not IndexError."""
    with pytest.raises(TokenError):
        apreq.ticket_service(b"\x60\x84\xff\xff\xff\xff\x06")
