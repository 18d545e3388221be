"""The strcred checker factories, as any twistd application would use them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from twisted.cred import strcred
from twisted.cred.checkers import ICredentialsChecker
from zope.interface.verify import verifyObject

from communigate.cred.checkers.external import ExternalChecker
from communigate.cred.checkers.system import PAMChecker
from communigate.portal.checker import AccountChecker
from communigate.store.files import FileDirectory
from tests.integration.conftest import TWISTD


@pytest.mark.parametrize(
    ("argument", "kind"),
    [
        ("communigate-pam:other", PAMChecker),
        ("communigate-external:/bin/true", ExternalChecker),
    ],
)
def test_factories_build_checkers(argument: str, kind: type) -> None:
    """--auth communigate-… builds our checkers."""
    checker = strcred.makeChecker(argument)
    assert isinstance(checker, kind) and verifyObject(ICredentialsChecker, checker)


def test_internal_factory(directory: FileDirectory) -> None:
    """communigate-internal:BASE checks that base directory's accounts."""
    checker = strcred.makeChecker(f"communigate-internal:{directory.base}")
    assert isinstance(checker, AccountChecker)


def test_twistd_lists_them(tmp_path: Path) -> None:
    """A twistd application with --auth sees the factories in --help-auth."""
    out = subprocess.run(
        [*TWISTD, "ftp", "--help-auth"], capture_output=True, text=True, check=False, cwd=tmp_path
    ).stdout
    for name in ("communigate-internal", "communigate-pam", "communigate-external"):
        assert name in out
