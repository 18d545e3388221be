"""``--workers``: a count, or ``auto`` for one per core."""

from __future__ import annotations

import pytest
from twisted.python import usage

from communigate import options as options_module
from communigate.options import MAX_WORKERS, Options, worker_count
from communigate.workpool import usable_cores


@pytest.mark.parametrize(
    ("given", "expected"), [([], 0), (["--workers", "3"], 3), (["--workers", "AUTO"], None)]
)
def test_workers_option(given: list[str], expected: int | None) -> None:
    """No option serves here (0); a count is taken; auto is one per core."""
    options = Options()
    options.parseOptions(given)
    cores = usable_cores()
    auto = min(cores, MAX_WORKERS) if cores > 1 else 0
    assert options["workers"] == (auto if expected is None else expected)


@pytest.mark.parametrize(("cores", "expected"), [(1, 0), (2, 2), (8, 8), (500, MAX_WORKERS)])
def test_auto_is_one_per_core_within_bounds(
    monkeypatch: pytest.MonkeyPatch, cores: int, expected: int
) -> None:
    """auto: one worker per core, none on one core, never past MAX_WORKERS."""
    monkeypatch.setattr(options_module, "usable_cores", lambda: cores)
    assert worker_count("auto") == expected


@pytest.mark.parametrize("given", ["many", "-1", str(MAX_WORKERS + 1)])
def test_workers_option_refuses_nonsense(given: str) -> None:
    """A count that is no number, negative or absurd ends with a usage error."""
    with pytest.raises(usage.UsageError, match="auto or a number from 0 to"):
        Options().parseOptions(["--workers", given])
