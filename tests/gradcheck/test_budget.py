"""A time budget ends a long check with an honest verdict that says what was verified.

Before, ``mode="full"`` on a slow forward ran for as long as it took (half an hour for a 100×100
layer at 0.05 s a call) with no output.  Tests here never assert wall-clock times: they assert
what was measured, verified and said.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import numpy as np
import pytest

import gradcheck as gc


def _xp(a: Any) -> Any:
    return a.__array_namespace__() if hasattr(a, "__array_namespace__") else np


def slow_loss(p: dict[str, Any], x: np.ndarray) -> Any:
    time.sleep(0.002)
    return np.sum(np.tanh(x @ np.asarray(p["W"])) ** 2)  # numpy only: no JAX path


def xp_loss(p: dict[str, Any], x: np.ndarray) -> Any:
    xp = _xp(p["W"])
    return xp.sum(xp.tanh(x @ p["W"]) ** 2)


def grad(p: dict[str, Any], x: np.ndarray) -> dict[str, np.ndarray]:
    y = np.tanh(x @ p["W"])
    return {"W": x.T @ (2 * y * (1 - y**2))}


@pytest.fixture
def case() -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    return {"W": rng.normal(size=(30, 30))}, rng.normal(size=(3, 30))


def _measured(note: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+) of (\d+) entries measured by finite differences, (\d+) verified", note)
    assert m, note
    return int(m[1]), int(m[2]), int(m[3])


def test_a_spent_budget_is_inconclusive_and_says_what_was_verified(case: Any) -> None:
    params, x = case
    res = gc.check_grad(slow_loss, grad, params, x, mode="full", complex_step=False, budget=1.0, jax_twin=False)
    leaf = res.leaf("W")
    assert (res.verdict, leaf.blame) == ("inconclusive", None)
    (note,) = [n for n in leaf.notes if n.startswith("time budget")]
    measured, total, verified = _measured(note)
    assert total == 900 and 0 < measured < total and verified == measured
    assert leaf.n_checked == measured
    assert any("time budget of 1 s was spent" in n for n in res.notes)
    assert res.forward_calls < 4 * total
    assert "budget=" in res.message()


def test_a_zero_budget_measures_nothing_and_never_passes(case: Any) -> None:
    params, x = case
    res = gc.check_grad(slow_loss, grad, params, x, mode="full", budget=0, jax_twin=False)
    (note,) = [n for n in res.leaf("W").notes if n.startswith("time budget")]
    assert _measured(note) == (0, 900, 0)
    assert res.verdict == "inconclusive"


def test_a_wrong_entry_found_within_the_budget_fails_and_is_named(case: Any) -> None:
    params, x = case

    def bad(p: dict[str, Any], x: np.ndarray) -> dict[str, np.ndarray]:
        g = grad(p, x)["W"].copy()
        g[0, 1] += 0.5
        return {"W": g}

    res = gc.check_grad(slow_loss, bad, params, x, mode="full", complex_step=False, budget=1.0)
    leaf = res.leaf("W")
    assert (res.verdict, leaf.blame, leaf.worst[0].index) == ("fail", "hand", (0, 1))
    assert any("1 found wrong" in n for n in leaf.notes)


def test_with_autodiff_the_unmeasured_entries_are_judged_against_it(case: Any) -> None:
    params, x = case
    res = gc.check_grad(xp_loss, grad, params, x, mode="full", budget=0)
    assert res.verdict == "pass" and res.references == ("numeric", "autodiff")
    assert any(n.startswith("time budget") for n in res.leaf("W").notes)
    wrong = gc.check_grad(xp_loss, lambda p, x: {"W": -grad(p, x)["W"]}, params, x, mode="full",
                          budget=0)
    assert (wrong.verdict, wrong.leaf("W").blame) == ("fail", "hand")


def test_without_a_budget_the_check_is_unchanged(case: Any) -> None:
    params, x = case
    res = gc.check_grad(xp_loss, grad, params, x, mode="full")
    assert res.verdict == "pass"
    assert not any("budget" in n for leaf in res.leaves for n in leaf.notes)
    assert res.options["budget"] is None


def test_a_long_check_logs_its_cost_and_progress(case: Any, caplog: pytest.LogCaptureFixture) -> None:
    params, x = case
    with caplog.at_level(logging.INFO, logger="gradcheck"):
        gc.check_grad(slow_loss, grad, params, x, mode="full", complex_step=False, budget=2.5)
    text = caplog.text
    assert re.search(r"about \d+ forward calls, \d+ s at [\d.]+ ms a call \(budget 2.5 s\)", text)
    assert re.search(r"W: \d+ of 900 entries measured, \d+ s elapsed, about \d+ s left", text)


@pytest.mark.parametrize("budget", [-1.0, float("nan"), "10", True])
def test_a_bad_budget_is_refused(budget: Any, case: Any) -> None:
    params, x = case
    with pytest.raises(gc.InvalidArgument, match=r"budget="):
        gc.check_grad(xp_loss, grad, params, x, budget=budget)
