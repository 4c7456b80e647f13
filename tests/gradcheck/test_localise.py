"""Group testing (gradcheck.localise): every wrong entry is isolated, in O(k log N) block tests."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gradcheck.localise import search


@st.composite
def problems(draw: st.DrawFn) -> tuple[int, set[int]]:
    n = draw(st.integers(1, 5000))
    wrong = draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=min(n, 8)))
    return n, wrong


@given(problems())
def test_every_wrong_entry_is_isolated_within_k_log_n_tests(problem: tuple[int, set[int]]) -> None:
    n, wrong = problem
    seen: list[int] = []

    def is_wrong(idx: np.ndarray) -> bool:
        seen.append(idx.size)
        return bool(wrong & set(idx.tolist()))

    found = search(n, is_wrong)
    measured = {int(i) for block in found.measure for i in block}
    assert wrong <= measured and found.unresolved == ()
    assert found.tests == len(seen)
    k = len(wrong)
    assert found.tests <= 2 * k * max(1, math.ceil(math.log2(n))) + 2
    # Sparse errors leave few entries to measure one by one (dense 64-blocks at worst).
    assert found.n_measure <= k * 64


def test_a_whole_wrong_row_is_measured_not_bisected_entry_by_entry() -> None:
    n_rows, n_cols = 256, 256
    wrong = set(range(5 * n_cols, 6 * n_cols))  # row 5 of a C-ordered 256×256 tensor
    found = search(n_rows * n_cols, lambda idx: bool(wrong & set(idx.tolist())))
    measured = {int(i) for block in found.measure for i in block}
    assert measured == wrong
    assert found.tests < 2 * 16 + 2 * 256 // 64 * 2


def test_budgets_leave_the_rest_unresolved() -> None:
    wrong = set(range(0, 4096, 16))  # 256 scattered wrong entries
    found = search(4096, lambda idx: bool(wrong & set(idx.tolist())), max_tests=40)
    assert found.tests <= 40 and found.unresolved
    unresolved = {int(i) for block in found.unresolved for i in block}
    measured = {int(i) for block in found.measure for i in block}
    assert wrong <= unresolved | measured
    capped = search(4096, lambda idx: bool(wrong & set(idx.tolist())), max_entries=100)
    assert capped.n_measure <= 100 and capped.unresolved


def test_a_block_whose_halves_both_pass_is_measured_entry_by_entry() -> None:
    """Errors that cancel inside a block (or hide below the halves' resolution) are not lost."""
    found = search(100, lambda idx: idx.size == 100)
    assert found.n_measure == 100 and found.tests == 2 * (1 + 2)  # asked twice more first
    found = search(100, lambda idx: idx.size == 100, retries=0)
    assert found.n_measure == 100 and found.tests == 2


def test_halves_that_pass_once_are_asked_again_before_the_block_is_measured() -> None:
    """A block test that misses once (a random direction small at the wrong entry) is retried."""
    answers = iter([False, False])  # the first test of both halves misses entry 70

    def is_wrong(idx: np.ndarray) -> bool:
        if idx.size == 50:
            miss = next(answers, None)
            if miss is not None:
                return miss
        return bool(70 in idx)

    found = search(100, is_wrong)
    assert [int(i) for b in found.measure for i in b if int(i) == 70] == [70]
    assert found.n_measure <= 4
