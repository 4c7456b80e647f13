"""Smoke test of the automatic-twin benchmark (``benchmarks/twin.py``) on a few cases.

A planted bug, a single-entry error below what finite differences alone resolve, a float32
copy and a kink-heavy correct case, each under the three configurations: the twin is used on the
numpy-only forward (and only there), its outcomes match the array-API forward's, and the
markdown renders.  No wall-clock time is asserted.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import twin
from benchmarks.mutants import kink_cases, single_entry_cases, suite_cases


@pytest.fixture(scope="module")
def result() -> twin.TwinResult:
    cases = (suite_cases(["dense: dW sign flipped"]) + single_entry_cases((1e-6,), families=("dense",))
             + [c for c in twin.float32_mutants() if c.name.startswith("dense: dW sign flipped")]
             + kink_cases()[:1])
    return twin.run_twin(cases=cases, log=lambda s: None)


def test_the_twin_is_the_source_of_the_numpy_only_runs_only(result: twin.TwinResult) -> None:
    assert result.sources("array-API") == {"array-api": len(result.rows)}
    assert result.sources("numpy-only, no twin") == {"none": len(result.rows)}
    assert result.sources("numpy-only, twin") == {"twin": len(result.rows)}
    assert result.sources("float32 storage, no twin") == {"none": len(result.rows)}
    assert result.sources("float32 storage, twin") == {"twin": len(result.rows)}


def test_the_twin_matches_the_array_api_outcomes(result: twin.TwinResult) -> None:
    for row in result.rows:
        assert row.status["numpy-only, twin"] == row.status["array-API"], row.case.name
        assert row.caught["numpy-only, twin"] == row.caught["array-API"], row.case.name
    assert result.recall("numpy-only, twin") == (3, 3)
    assert result.false_alarms("numpy-only, twin", "kinks") == (0, 1)


def test_a_tiny_single_entry_error_needs_the_third_source(result: twin.TwinResult) -> None:
    (row,) = [r for r in result.rows if "single-entry" in r.case.tags]
    assert not row.caught["numpy-only, no twin"]
    assert row.caught["numpy-only, twin"]


def test_float32_copies_are_float32(result: twin.TwinResult) -> None:
    (row,) = [r for r in result.rows if "float32" in r.case.tags]
    assert all(v.dtype == np.float32 for v in row.case.params.values())
    assert row.caught["numpy-only, twin"]


def test_render(result: twin.TwinResult) -> None:
    md = twin.render(result)
    assert "| recall, all mutants | 3/3 (100 %)" in md
    assert "numpy-only, no twin" in md and "twin 4" in md
