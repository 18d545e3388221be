"""A domain's trusted CA and CRL: checked before writing, read back, cleared."""

from __future__ import annotations

from pathlib import Path

import pytest

from communigate.store import trustedca
from tests.clientcerts import make_ca, make_client, make_crl


def test_install_and_read(tmp_path: Path) -> None:
    """A CA and its CRL are written and read back."""
    ca = make_ca("Client1 CA")
    crl = make_crl(ca, make_client(ca, "a@client1.com"))
    trustedca.install(tmp_path, ca.cert_pem, crl)
    assert (tmp_path / trustedca.TRUSTED_CA).read_bytes() == ca.cert_pem
    trusted = trustedca.read(tmp_path)
    assert trusted is not None
    assert trusted.authorities == (ca.certificate,)
    assert trusted.revocations is not None and len(list(trusted.revocations)) == 1
    assert trustedca.problems(tmp_path) == []


def test_several_authorities(tmp_path: Path) -> None:
    """A bundle of CA certificates is accepted."""
    first, second = make_ca("One"), make_ca("Two")
    trustedca.install(tmp_path, first.cert_pem + second.cert_pem)
    trusted = trustedca.read(tmp_path)
    assert trusted is not None and len(trusted.authorities) == 2


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"hello", "not a PEM CA certificate"),
        (b"", "not a PEM CA certificate"),
        (make_client(make_ca("X"), "a@b.c").cert_pem, "not a CA certificate"),
    ],
)
def test_not_a_ca_writes_nothing(tmp_path: Path, data: bytes, words: str) -> None:
    """Something that is not a PEM CA certificate is refused, nothing written."""
    with pytest.raises(trustedca.TrustedCAError, match=words):
        trustedca.install(tmp_path, data)
    assert not (tmp_path / trustedca.TRUSTED_CA).exists()


def test_bad_crl_writes_nothing(tmp_path: Path) -> None:
    """A CRL that does not parse, or is another CA's, is refused; nothing is written."""
    ca, other = make_ca("Mine"), make_ca("Other")
    with pytest.raises(trustedca.TrustedCAError, match="not a PEM certificate revocation"):
        trustedca.install(tmp_path, ca.cert_pem, ca.cert_pem)
    with pytest.raises(trustedca.TrustedCAError, match="not signed by the trusted CA"):
        trustedca.install(tmp_path, ca.cert_pem, make_crl(other))
    assert list(tmp_path.iterdir()) == []


def test_new_ca_without_crl_drops_old_crl(tmp_path: Path) -> None:
    """Installing a CA without --crl removes the CRL of the CA it replaces."""
    ca = make_ca("Old")
    trustedca.install(tmp_path, ca.cert_pem, make_crl(ca))
    trustedca.install(tmp_path, make_ca("New").cert_pem)
    assert not (tmp_path / trustedca.TRUSTED_CRL).exists()
    trusted = trustedca.read(tmp_path)
    assert trusted is not None and trusted.revocations is None


def test_clear(tmp_path: Path) -> None:
    """clear removes both files and says whether there was anything."""
    ca = make_ca("C")
    trustedca.install(tmp_path, ca.cert_pem, make_crl(ca))
    assert trustedca.clear(tmp_path) is True
    assert trustedca.read(tmp_path) is None
    assert trustedca.clear(tmp_path) is False


def test_problems_name_the_file(tmp_path: Path) -> None:
    """A damaged file is reported with its name (communigate check)."""
    (tmp_path / trustedca.TRUSTED_CA).write_bytes(b"junk")
    assert trustedca.problems(tmp_path) == ["trusted-ca.pem: not a PEM CA certificate"]
    (tmp_path / trustedca.TRUSTED_CA).unlink()
    (tmp_path / trustedca.TRUSTED_CRL).write_bytes(b"junk")
    assert trustedca.problems(tmp_path) == [
        "trusted-crl.pem: a revocation list without trusted-ca.pem"
    ]
    ca = make_ca("C")
    (tmp_path / trustedca.TRUSTED_CA).write_bytes(ca.cert_pem)
    problems = trustedca.problems(tmp_path)
    assert problems == ["trusted-crl.pem: not a PEM certificate revocation list"]
