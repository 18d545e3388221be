"""``communigate domain trusted-ca``: install, refuse bad files, clear."""

from __future__ import annotations

from pathlib import Path

import pytest

from communigate.cli.main import main
from communigate.store import trustedca
from tests.clientcerts import make_ca, make_client, make_crl


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A base directory with company.com and client1.com."""
    path = tmp_path / "base"
    assert main(["--base", str(path), "init", "--main-domain", "company.com"]) == 0
    assert main(["--base", str(path), "domain", "create", "client1.com"]) == 0
    return path


def settings(base: Path) -> Path:
    return base / "Domains" / "client1.com" / "Settings"


def test_install_with_crl_and_clear(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--ca and --crl are stored; --clear removes them."""
    ca = make_ca("Client1 CA")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "crl.pem").write_bytes(make_crl(ca))
    command = ["--base", str(base), "domain", "trusted-ca", "client1.com"]
    assert (
        main([*command, "--ca", str(tmp_path / "ca.pem"), "--crl", str(tmp_path / "crl.pem")]) == 0
    )
    assert "installed trusted CA for client1.com: CN=Client1 CA" in capsys.readouterr().out
    assert (settings(base) / trustedca.TRUSTED_CA).read_bytes() == ca.cert_pem
    assert (settings(base) / trustedca.TRUSTED_CRL).exists()
    assert main([*command, "--clear"]) == 0
    assert "removed the trusted CA of client1.com" in capsys.readouterr().out
    assert not (settings(base) / trustedca.TRUSTED_CA).exists()
    assert not (settings(base) / trustedca.TRUSTED_CRL).exists()


def test_bad_file_one_line_nothing_written(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client certificate given as --ca is refused with one line."""
    leaf = make_client(make_ca("CA"), "a@client1.com")
    (tmp_path / "leaf.pem").write_bytes(leaf.cert_pem)
    code = main(
        [
            "--base",
            str(base),
            "domain",
            "trusted-ca",
            "client1.com",
            "--ca",
            str(tmp_path / "leaf.pem"),
        ]
    )
    error = capsys.readouterr().err
    assert code == 1 and len(error.strip().splitlines()) == 1
    assert "not a CA certificate" in error
    assert not (settings(base) / trustedca.TRUSTED_CA).exists()


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["nosuch.com", "--clear"], "unknown domain nosuch.com"),
        (["client1.com"], "needs --ca FILE"),
        ([], "needs a domain name"),
    ],
)
def test_usage_errors(
    base: Path, arguments: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown domain, a missing --ca or domain name are one-line errors."""
    assert main(["--base", str(base), "domain", "trusted-ca", *arguments]) == 1
    assert words in capsys.readouterr().err
