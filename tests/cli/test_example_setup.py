"""etc/example-setup.sh builds the seed's layout and may be run again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "etc" / "example-setup.sh"


def snapshot(base: Path) -> dict[str, bytes]:
    """Every file of a base directory and its bytes."""
    return {
        str(path.relative_to(base)): path.read_bytes() for path in base.rglob("*") if path.is_file()
    }


def test_example_setup_runs_twice(tmp_path: Path) -> None:
    """The first run creates the domains, accounts and Router record; the
    second succeeds and changes nothing."""
    shim = tmp_path / "bin"
    shim.mkdir()
    command = shim / "communigate"
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m communigate.cli.main "$@"\n')
    command.chmod(0o755)
    base = tmp_path / "base"
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}", "COMMUNIGATE_BASE": str(base)}
    first = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, timeout=120)
    assert first.returncode == 0, first.stderr
    before = snapshot(base)
    assert any(name.endswith("j.smith.macnt/account.settings") for name in before)
    second = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, timeout=120)
    assert second.returncode == 0, second.stderr
    after = snapshot(base)
    assert after.keys() == before.keys()
    changed = [name for name in after if after[name] != before[name]]
    assert changed in ([], ["Settings/Main.settings"]), changed
