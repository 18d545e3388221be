"""The twistd plugin is visible and documents its options."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

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


def test_wheel_ships_plugin(tmp_path: Path) -> None:
    """A normal install (the wheel) carries twisted/plugins/communigate_server.py."""
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("communigate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/communigate_server.py" in names
    assert "twisted/plugins/__init__.py" not in names
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)
