"""power.py as a stage: detection power and the negative control of a judged leaf (the claim
against fresh check_grad runs is tested in test_power.py)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import full, judge, power, screen
from gradcheck.judge import Judgement
from gradcheck.measure import Evidence, Leaf, Partials, Run, leaf
from gradcheck.result import Control
from tests.gradcheck import _functions as F
from tests.gradcheck._stages import make_run


def tanh_case(seed: int, m: int = 6, n: int = 5) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(size=(m, n))}, rng.normal(size=(5, m)), rng.normal(size=(5, n))


def np_tanh(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> float:
    return float(np.sum(v * np.tanh(np.dot(x, p["W"]))))  # float(): no JAX path


def judged(run: Run, mode: str) -> tuple[Leaf, Evidence, Judgement]:
    hand = run.problem.hand[0]
    assert hand is not None
    lf = leaf(run, 0, hand)
    if mode == "full":
        ev = full.gather(run, lf, run.problem.total)
        return lf, ev, judge.full(run, lf, ev)
    ev = screen.gather(run, lf)
    return lf, ev, judge.screen(run, lf, ev)


def case(point: int = 0, *, numeric_only: bool = False, mode: str = "full", grad: Any = None,
         **options: Any) -> tuple[Run, Leaf, Evidence, Judgement]:
    params, x, v = tanh_case(point)
    fun = np_tanh if numeric_only else F.tanh_layer
    if numeric_only:
        options = {"jax_twin": False, **options}  # no automatic JAX twin either
    run = make_run(fun, grad or F.tanh_layer_grad, params, x, v, mode=mode, **options)
    assert (run.refs.ad is None) == numeric_only
    return (run, *judged(run, mode))


# --------------------------------------------------------------------------- nothing to plant


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_a_failing_leaf_has_no_power(mode: str) -> None:
    run, lf, ev, j = case(grad=lambda p, x, v: {"W": 1.1 * F.tanh_layer_grad(p, x, v)["W"]}, mode=mode)
    assert j.verdict == "fail"
    assert power.measure(run, lf, ev, j) is None


def test_an_inconclusive_leaf_has_no_power() -> None:
    run, lf, ev, j = case()
    assert power.measure(run, lf, ev, dataclasses.replace(j, verdict="inconclusive")) is None


def test_a_localised_leaf_has_no_power() -> None:
    run, lf, _, j = case(numeric_only=True)
    where = Evidence("localised", Partials.empty(lf.size), unresolved=np.zeros(0, np.int64))
    assert j.verdict == "pass"
    assert power.measure(run, lf, where, j) is None


# --------------------------------------------------------------------------- full mode


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), numeric_only=st.booleans())
def test_full_mode_control_is_caught_and_power_is_fine(seed: int, numeric_only: bool) -> None:
    run, lf, ev, j = case(seed, numeric_only=numeric_only, seed=seed)
    assert j.verdict == "pass"
    got = power.measure(run, lf, ev, j)
    assert got is not None
    assert isinstance(got.control, Control) and got.control.caught
    assert 0 < got.power < 1e-5
    assert got.control.size == pytest.approx(got.power * j.scale, rel=1e-12)
    assert len(got.control.index) == 2
    assert all(0 <= i < s for i, s in zip(got.control.index, lf.shape, strict=True))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**10), where=st.integers(0, 29), sign=st.sampled_from([1.0, -1.0]),
       numeric_only=st.booleans())
def test_full_mode_power_is_caught_at_any_entry(seed: int, where: int, sign: float, numeric_only: bool) -> None:
    """An error a little above the claimed power, at any entry and of either sign, is blamed on
    the hand by the same rule (judge.full_status on the same evidence)."""
    run, lf, ev, j = case(seed, numeric_only=numeric_only)
    got = power.measure(run, lf, ev, j)
    assert got is not None and j.unreliable is not None
    hand = lf.hand.copy()
    hand[where] += sign * 1.01 * got.control.size
    status, _ = judge.full_status(run, dataclasses.replace(lf, hand=hand), ev, j.tol, j.unreliable)
    assert status[where] == "hand"
    assert set(np.delete(status, where).tolist()) == {"ok"}


def test_measure_changes_neither_the_leaf_nor_the_evidence() -> None:
    run, lf, ev, j = case(1)
    assert ev.parts is not None
    kept = (lf.hand.copy(), lf.native.copy(), ev.parts.num.copy(), ev.parts.err.copy(), j.status.copy())
    first = power.measure(run, lf, ev, j)
    second = power.measure(run, lf, ev, j)
    assert first == second
    for a, b in zip(kept, (lf.hand, lf.native, ev.parts.num, ev.parts.err, j.status), strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- screening


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_screening_without_autodiff_is_coarser_than_full_mode(seed: int) -> None:
    by_mode = {}
    for mode in ("full", "directional"):
        run, lf, ev, j = case(seed, numeric_only=True, mode=mode, seed=seed)
        assert j.verdict == "pass"
        got = power.measure(run, lf, ev, j)
        assert got is not None and got.control.caught, mode
        by_mode[mode] = got.power
    assert 0 < by_mode["full"] < by_mode["directional"] < 1e-1
    assert by_mode["full"] < 1e-5


def test_screening_with_autodiff_compares_every_entry() -> None:
    run, lf, ev, j = case(3, mode="directional")
    got = power.measure(run, lf, ev, j)
    assert got is not None and got.control.caught
    assert 0 < got.power < 1e-5


def test_screening_without_probes_has_no_power() -> None:
    run, lf, ev, j = case(4, numeric_only=True, mode="directional")
    bare = dataclasses.replace(ev, probes=())
    assert power.measure(run, lf, bare, j) is None


# --------------------------------------------------------------------------- the control entry


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_the_control_entry_is_seeded(mode: str) -> None:
    def control(seed: int) -> tuple[int, ...]:
        run, lf, ev, j = case(0, numeric_only=True, mode=mode, seed=seed)
        got = power.measure(run, lf, ev, j)
        assert got is not None
        return got.control.index

    assert control(11) == control(11)
    indices = {control(s) for s in range(6)}
    assert len(indices) > 1


def test_an_all_zero_gradient_has_infinite_relative_power() -> None:
    def flat(p: dict[str, Any]) -> Any:
        return F.xp_of(p["W"]).sum(0.0 * p["W"])

    run = make_run(flat, lambda p: {"W": np.zeros_like(p["W"])}, {"W": np.ones((2, 2))}, mode="full")
    lf, ev, j = judged(run, "full")
    assert j.verdict == "pass" and j.scale == 0.0
    got = power.measure(run, lf, ev, j)
    # no size to be relative to: the absolute control is still planted, and caught
    assert got is not None and math.isinf(got.power)
    assert got.control.size > 0 and got.control.caught
