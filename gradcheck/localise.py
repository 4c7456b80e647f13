"""Group testing: find the wrong entries of a gradient with O(k log N) block tests.

A directional derivative along a direction ``u`` that is zero outside a block ``B`` of
coordinates tests the whole block at once: ``⟨g_hand, u⟩ = ∂L/∂u`` fails when some entry of the
block is wrong (a random Gaussian ``u`` makes a cancellation between wrong entries a measure-zero
event).  Bisection then needs, for ``k`` wrong entries among ``N``, about ``2·k·log₂(N/k)`` block
tests instead of the ``N`` partial derivatives (``2N`` forward calls) of an element-by-element
check::

    search(block):            block known to be wrong
        split it in halves A, B; test both
        neither wrong         -> test both again (up to ``retries`` times: a random direction
                                 can be small at the wrong entry); still neither: the errors
                                 hide below the halves' resolution: measure every entry
        both wrong, |block| ≤ dense_block -> dense errors: measure every entry of the block
        otherwise             -> search each wrong half

Blocks of at most ``leaf_block`` entries are measured entry by entry.  The search is breadth
first and stops splitting when the next level would exceed ``max_tests`` block tests or leave
more than ``max_entries`` entries to measure one by one; the blocks still wrong then are returned
as *unresolved* (their entries are reported as not verified, never blamed one by one).

The module is independent of how a block is tested: :func:`search` takes a callback.

Examples:
    >>> import numpy as np
    >>> wrong = {3, 700}
    >>> found = search(1024, lambda idx: bool(wrong & set(idx.tolist())))
    >>> sorted(int(i) for block in found.measure for i in block if int(i) in wrong), found.tests <= 60
    ([3, 700], True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Search", "search"]

Index = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Search:
    """The outcome of :func:`search`.

    Attributes:
        measure: blocks of flat indices to measure entry by entry (they contain every wrong entry
            the search isolated).
        unresolved: blocks still wrong when the budget ran out.
        tests: block tests spent.
    """

    measure: tuple[Index, ...]
    unresolved: tuple[Index, ...]
    tests: int

    @property
    def n_measure(self) -> int:
        return int(sum(b.size for b in self.measure))


def search(
    n: int,
    is_wrong: Callable[[Index], bool],
    *,
    leaf_block: int = 4,
    dense_block: int = 64,
    max_tests: int = 4096,
    max_entries: int = 16384,
    retries: int = 2,
) -> Search:
    """Bisect ``range(n)`` (known to hold a wrong entry) down to the wrong entries.

    Args:
        n: the number of entries.
        is_wrong: ``is_wrong(indices) -> bool`` tests one block of flat indices.
        leaf_block: blocks of at most this many entries are measured one by one.
        dense_block: a block whose two halves are both wrong is measured one by one when it has at
            most this many entries (dense errors: bisecting further costs more than measuring).
        max_tests: the budget of block tests.
        max_entries: the budget of entries to measure one by one.
        retries: when neither half of a wrong block tests wrong, both are tested again (a fresh
            direction each time: ``is_wrong`` is random) this many times before the block is
            measured entry by entry.

    Returns:
        A :class:`Search`.
    """
    measure: list[Index] = []
    frontier: list[Index] = [np.arange(n, dtype=np.int64)]
    tests = 0
    while frontier:
        level: list[Index] = []
        for block in frontier:
            if block.size <= leaf_block:
                measure.append(block)
                continue
            half = block.size // 2
            halves = (block[:half], block[half:])
            wrong = [h for h in halves if is_wrong(h)]
            tests += 2
            for _ in range(retries if not wrong else 0):
                # A random direction can be small at the wrong entry: ask again before
                # measuring the whole block one by one.
                wrong = [h for h in halves if is_wrong(h)]
                tests += 2
                if wrong:
                    break
            if not wrong or (len(wrong) == 2 and block.size <= dense_block):
                measure.append(block)
            else:
                level.extend(wrong)
        if sum(b.size for b in measure) > max_entries:
            return _spill(measure, level, tests, max_entries)
        if level and tests + 2 * len(level) > max_tests:
            return Search(tuple(measure), tuple(level), tests)
        frontier = level
    return Search(tuple(measure), (), tests)


def _spill(measure: list[Index], level: list[Index], tests: int, max_entries: int) -> Search:
    """Keep the blocks to measure that fit in ``max_entries``; the rest stay unresolved."""
    keep: list[Index] = []
    spill: list[Index] = []
    total = 0
    for b in measure:
        if total + b.size <= max_entries:
            keep.append(b)
            total += b.size
        else:
            spill.append(b)
    return Search(tuple(keep), tuple(spill + level), tests)
