"""The twistd plugin is visible and documents its options."""

from __future__ import annotations

import subprocess

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

from tests.integration.conftest import TWISTD


def test_twistd_lists_plugin() -> None:
    """`twistd --help` lists communigate (plugins dir not hidden by the install)."""
    out = subprocess.run([*TWISTD, "--help"], capture_output=True, text=True, check=False).stdout
    assert "communigate" in out


def test_plugin_options_documented() -> None:
    """Every option of the plugin has a help text."""
    makers = [m for m in getPlugins(IServiceMaker) if m.tapname == "communigate"]
    assert len(makers) == 1
    options = makers[0].options()
    assert "--pop3" in str(options)
    for name, _short, _default, doc, *_ in options.optParameters:
        assert doc, name
