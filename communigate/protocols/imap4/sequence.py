"""Sequence sets (RFC 3501 §9 ``sequence-set``): parsed once, tested by
membership, so ``1:4294967295`` costs nothing.  Pure code."""

from __future__ import annotations

import re

_RANGE = re.compile(r"(\d+|\*)(?::(\d+|\*))?\Z")
MAX_NUMBER = 2**32 - 1


class SequenceError(ValueError):
    """Text that is not a sequence set."""


class SequenceSet:
    """A set of numbers where ``*`` means the largest one in use."""

    def __init__(self, text: str) -> None:
        self.ranges: list[tuple[int | None, int | None]] = []
        if not text or len(text) > 100_000:
            raise SequenceError("invalid sequence set")
        for item in text.split(","):
            match = _RANGE.match(item)
            if match is None:
                raise SequenceError(f"invalid sequence set item {item!r}")
            low, high = (self._number(part) for part in match.groups(default=match.group(1)))
            self.ranges.append((low, high))

    @staticmethod
    def _number(text: str) -> int | None:
        if text == "*":
            return None
        value = int(text)
        if not 0 < value <= MAX_NUMBER:
            raise SequenceError("sequence numbers run from 1 to 4294967295")
        return value

    def contains(self, value: int, largest: int) -> bool:
        """Whether ``value`` is in the set when ``*`` is ``largest``."""
        for low, high in self.ranges:
            first = largest if low is None else low
            last = largest if high is None else high
            if first > last:
                first, last = last, first
            if first <= value <= last:
                return True
        return False

    def spans(self, largest: int, low: int = 1) -> list[tuple[int, int]]:
        """The set as sorted, disjoint ``(first, last)`` ranges within
        ``low``…``largest`` (``*`` is ``largest``)."""
        if largest < low:
            return []
        ranges = []
        for start, end in self.ranges:
            first = largest if start is None else start
            last = largest if end is None else end
            if first > last:
                first, last = last, first
            first, last = max(first, low), min(last, largest)
            if first <= last:
                ranges.append((first, last))
        ranges.sort()
        merged: list[tuple[int, int]] = []
        for first, last in ranges:
            if merged and first <= merged[-1][1] + 1:
                if last > merged[-1][1]:
                    merged[-1] = (merged[-1][0], last)
            else:
                merged.append((first, last))
        return merged

    def has_star(self) -> bool:
        """Whether ``*`` appears (``n:*`` always matches the largest)."""
        return any(low is None or high is None for low, high in self.ranges)
