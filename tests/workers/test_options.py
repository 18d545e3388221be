"""``--workers``: a count, or ``auto`` for one per core."""

from __future__ import annotations

import pytest
from twisted.python import usage

from communigate.options import MAX_WORKERS, Options
from communigate.workpool import usable_cores


@pytest.mark.parametrize(
    ("given", "expected"), [([], 0), (["--workers", "3"], 3), (["--workers", "AUTO"], None)]
)
def test_workers_option(given: list[str], expected: int | None) -> None:
    """No option serves here (0); a count is taken; auto is one per core."""
    options = Options()
    options.parseOptions(given)
    assert options["workers"] == (usable_cores() if expected is None else expected)


@pytest.mark.parametrize("given", ["many", "-1", str(MAX_WORKERS + 1)])
def test_workers_option_refuses_nonsense(given: str) -> None:
    """A count that is no number, negative or absurd ends with a usage error."""
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--workers", given])
