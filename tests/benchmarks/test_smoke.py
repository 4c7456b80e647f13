"""Smoke test of the benchmark harness (``benchmarks/``) in its smallest configuration.

Tiny layers, three mutants and three correct cases, every checker: the rows are there, the
rates are rates, a planted bug is caught and named by gradcheck, the correct case passes, and the
report renders.  torch is optional: without it (or with it hidden, as in the last test) the torch
columns say "not installed" and the gradcheck and JAX parts still run.  No wall-clock time is
asserted anywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import adapters, cost, detection, mutants
from benchmarks.adapters import Case
from benchmarks.plot import plot_scaling
from benchmarks.run import observations, targets
from reference import dense


def _correct() -> Case:
    layer, params, x = dense.make_case(np.random.default_rng(0), batch=3, d_in=4, d_out=5)
    return Case("dense tanh 4x5", layer, params, x, family="dense", tags=("float64",))


def _cases() -> list[Case]:
    sign = mutants.suite_cases(["dense: dW sign flipped"])
    entries = mutants.single_entry_cases((1e-2, 1e-6), families=("dense",))
    kink = [c for c in mutants.kink_cases() if c.name.startswith("dense/relu")]
    return [*sign, *entries, _correct(), *kink]


@pytest.fixture(scope="module")
def result() -> detection.DetectionResult:
    return detection.run_detection(cases=_cases(), budget_s=30, log=lambda s: None)


def test_detection_rows_and_rates(result: detection.DetectionResult) -> None:
    assert result.mutants[0].case.name == "dense: dW sign flipped"
    assert len(result.mutants) == 3 and len(result.correct) == 2
    for row in result.mutants + result.correct:
        assert set(row.outcomes) == set(adapters.CHECKERS)
    for checker in adapters.CHECKERS:
        k, n = result.recall(checker)
        if adapters.torch_available() or not checker.startswith("torch"):
            assert n == 3 and 0 <= k / n <= 1
        fa, nc = result.false_alarms(checker)
        assert 0 <= fa <= nc <= 2


def test_planted_bugs_are_caught_and_named_by_gradcheck(result: detection.DetectionResult) -> None:
    sign, big, small = result.mutants
    assert sign.rel_error == pytest.approx(2.0)
    assert big.rel_error == pytest.approx(1e-2, rel=1e-6)
    for row in (sign, big, small):
        auto = row.outcomes["gc auto"]
        assert auto.status == "fail" and auto.caught, auto
        assert set(auto.failing) == set(row.case.wrong_leaves)
    for row in (big, small):
        assert row.outcomes["gc auto"].named is True
    assert result.smallest_single_entry("gc auto", "dense") == 1e-6
    # The sign flip is no challenge for anyone that ran.
    for checker in adapters.CHECKERS:
        if sign.outcomes[checker].status != "not installed":
            assert sign.caught(checker), (checker, sign.outcomes[checker])


def test_correct_cases_pass_gradcheck(result: detection.DetectionResult) -> None:
    smooth, kink = result.correct
    assert smooth.rel_error < 1e-12
    for checker in ("gc auto", "gc full", "gc directional"):
        assert smooth.outcomes[checker].status == "pass"
        assert smooth.false_alarm(checker) is False
        assert kink.outcomes[checker].status == "pass", kink.outcomes[checker]
    assert smooth.outcomes["jax check_grads"].status == "pass"


def test_cost_measurement_and_report(result: detection.DetectionResult, tmp_path: Path) -> None:
    case = _correct()
    rows = [cost.measure(case, c, budget_s=30, problem="dense 4x5", max_repeats=1)
            for c in ("gc auto", "gc directional", "torch slow", "jax check_grads")]
    for m in rows:
        if m.first.status != "not installed":
            assert m.first.status == "pass" and m.first.forward_calls > 0 and m.runs >= 1
    auto, directional = rows[0], rows[1]
    assert auto.first.engine_forward_calls is not None
    assert directional.first.forward_calls <= auto.first.forward_calls
    res = cost.CostResult(rows, [], (), tuple(m.checker for m in rows), 30.0, 0.0)
    table = cost.render(res)
    assert table.count("| dense 4x5 |") == 4
    assert "not installed" in table or "torch slow" in table
    svg = plot_scaling(res, tmp_path / "scaling.svg")
    assert svg.read_text().lstrip().startswith("<?xml")
    md = detection.render(result)
    assert "| recall, all mutants |" in md and "dense: dW sign flipped" in md
    rows_t = targets(res, result)
    assert any("recall 100 %" in t and ok == "**met**" for t, _, ok in rows_t)
    assert any("false alarms" in t and ok == "**met**" for t, _, ok in rows_t)
    assert not [n for n in observations(res, result) if n.startswith(("false alarm", "missed"))]


def test_without_torch_the_columns_say_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adapters, "torch_available", lambda: False)
    case = _correct()
    for fast in (False, True):
        assert adapters.torch_outcome(case, fast_mode=fast).status == "not installed"
    res = detection.run_detection(cases=[case], budget_s=30, log=lambda s: None)
    assert res.correct[0].outcomes["gc auto"].status == "pass"
    assert res.correct[0].outcomes["jax check_grads"].status == "pass"
    assert res.false_alarms("torch slow") == (0, 0)
    assert "not installed" in detection.render(res)
