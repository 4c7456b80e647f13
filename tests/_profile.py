"""Example counts that follow the loaded Hypothesis profile (``tests/conftest.py``).

An expensive property test writes its count ``n`` for a 60-example profile and asks for
``examples(n)``: the quick profiles (``default`` and ``ci``, 20 examples, what the README's test
command runs) draw a third of it, ``HYPOTHESIS_PROFILE=thorough`` (1000) about 17 times as many,
never fewer than one.

Nearly all the cost of such an example is JAX compiling the eager primitives of a shape it has
not met yet, so a size drawn with :func:`sizes` takes every value of its range under the thorough
profile and only the ends and the middle under the quick ones: the quick run meets a few shapes
many times (values, seeds and dtypes still vary freely), the thorough run every shape.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st

__all__ = ["WRITTEN_FOR", "examples", "sizes", "thorough"]

#: The profile size the counts in the tests are written for.
WRITTEN_FOR = 60


def examples(n: int) -> int:
    """``n`` examples at a 60-example profile, scaled to the loaded profile (at least 1)."""
    return max(1, round(n * settings().max_examples / WRITTEN_FOR))


def thorough() -> bool:
    """Whether the loaded profile is a long property run (more examples than it is written for)."""
    return settings().max_examples > WRITTEN_FOR


def sizes(lo: int, hi: int) -> st.SearchStrategy[int]:
    """A size in ``[lo, hi]``: any under the thorough profile; ``lo``, the middle or ``hi`` under the
    quick ones (shrinking to ``lo`` either way)."""
    if thorough():
        return st.integers(lo, hi)
    return st.sampled_from(sorted({lo, (lo + hi) // 2, hi}))
