"""ladder.py: the precision ladder separates lost precision from a wrong formula."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import full, judge, ladder, power, record
from gradcheck.measure import Run, leaf
from gradcheck.result import LeafResult
from tests.gradcheck import _functions as F
from tests.gradcheck._stages import make_run

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
LONGDOUBLE_IS_WIDER = bool(np.finfo(np.longdouble).eps < np.finfo(np.float64).eps)



def leaf_record(run: Run, k: int, hand: np.ndarray, *, own_dtype: bool = False) -> LeafResult:
    """Leaf ``k`` through the full-mode stages, as check._check_leaf does."""
    lf = leaf(run, k, hand, own_dtype=own_dtype)
    ev = full.gather(run, lf, run.problem.total)
    j = judge.full(run, lf, ev)
    return record.leaf_result(run, lf, ev, j, power.measure(run, lf, ev, j))


def real_recheck(run: Run) -> ladder.Recheck:
    def recheck(k: int, hand: np.ndarray) -> LeafResult:
        return leaf_record(run, k, hand, own_dtype=True)
    return recheck


class Rechecks:
    """A hand-made ``recheck`` returning a fixed record, and what it was called with."""

    def __init__(self, result: LeafResult) -> None:
        self.result = result
        self.calls: list[tuple[int, np.ndarray]] = []

    def __call__(self, k: int, hand: np.ndarray) -> LeafResult:
        self.calls.append((k, hand))
        return self.result


def _cancelling(sign: float = 1.0, big: float = 1e5) -> Any:
    """The right gradient through ``(g + big) − big``: digits lost in float32, not in float64."""
    def grad(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
        g = F.tanh_layer_grad(p, x, v)["W"]
        b = np.asarray(big, dtype=g.dtype)
        return {"W": sign * ((g + b) - b)}
    return grad


def np_tanh(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> float:
    return float(np.sum(v * np.tanh(np.dot(x, p["W"]))))  # float(): no JAX path, no JAX import


def float32_point() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    W, x, v = (rng.normal(size=s).astype(np.float32) for s in ((3, 2), (4, 3), (4, 2)))
    return W, x, v


def float32_case(grad: Any, **options: Any) -> tuple[Run, list[LeafResult]]:
    W, x, v = float32_point()
    run = make_run(np_tanh, grad, {"W": W}, x, v, mode="full", references=("numeric",), **options)
    assert run.refs.available == ("numeric",)
    hand = run.problem.hand[0]
    assert hand is not None
    return run, [leaf_record(run, 0, hand)]


@pytest.fixture(scope="module")
def failing32() -> tuple[Run, list[LeafResult]]:
    run, results = float32_case(_cancelling())
    assert (results[0].verdict, results[0].blame, results[0].tolerance_dtype) == ("fail", "hand", "float32")
    return run, results


def passing(r: LeafResult) -> LeafResult:
    return dataclasses.replace(r, verdict="pass", blame=None, diagnosis=None, n_mismatched=0)


# --------------------------------------------------------------------------- wider


def test_wider_climbs_from_low_precision_to_float64() -> None:
    assert ladder.wider(F32, F64) == F64
    assert ladder.wider(F16, F64) == F64
    assert ladder.wider(F32, F32) == F64


def test_a_float64_forward_climbs_to_long_double_only_where_it_is_wider() -> None:
    got = ladder.wider(F64, F64)
    if LONGDOUBLE_IS_WIDER:
        assert got == np.dtype(np.longdouble)
    else:
        assert got is None


@pytest.mark.parametrize("precision", [F32, F16])
def test_a_forward_computing_in_lower_precision_gives_no_reason_to_climb(precision: np.dtype[Any]) -> None:
    assert ladder.wider(F64, precision) is None


# --------------------------------------------------------------------------- climb


def test_climb_leaves_passing_results_alone() -> None:
    run, results = float32_case(F.tanh_layer_grad)
    assert results[0].verdict == "pass"
    recheck = Rechecks(results[0])
    out = ladder.climb(run.problem, run.refs.precision, results, recheck)
    assert out == results and out[0] is results[0]
    assert recheck.calls == []


def test_climb_clears_a_float32_failure_the_float64_backward_gets_right(
        failing32: tuple[Run, list[LeafResult]]) -> None:
    run, results = failing32
    low = results[0]
    recheck = Rechecks(passing(low))
    out = ladder.climb(run.problem, run.refs.precision, results, recheck)
    assert results[0] is low and low.verdict == "fail"  # the input list is not changed
    ((k, hand),) = recheck.calls
    assert k == 0 and hand.dtype == F64
    # the same backward at the float64 point, which is exact here
    W, x, v = (a.astype(np.float64) for a in float32_point())
    truth = F.tanh_layer_grad({"W": W}, x, v)["W"]
    np.testing.assert_allclose(hand, truth, rtol=1e-9, atol=1e-9)
    (r,) = out
    assert (r.verdict, r.blame, r.diagnosis) == ("pass", None, None)
    assert r.notes[:-1] == low.notes
    note = r.notes[-1]
    assert f"in {low.n_mismatched} entr" in note
    assert "the same backward run in float64 is correct: float32 arithmetic loses the precision" in note
    lost = float(np.max(np.abs(run.problem.hand[0].astype(np.float64) - hand)) / np.max(np.abs(hand)))
    assert f"off by up to {lost:.2g} (relative)" in note
    # everything else is the low-precision record
    assert dataclasses.replace(r, verdict=low.verdict, blame=low.blame, diagnosis=low.diagnosis,
                               notes=low.notes) == low


def test_climb_with_the_real_recheck_clears_lost_digits_and_keeps_a_wrong_formula() -> None:
    run, results = float32_case(_cancelling())
    (r,) = ladder.climb(run.problem, run.refs.precision, results, real_recheck(run))
    assert r.verdict == "pass" and any("loses the precision" in n for n in r.notes)
    run, results = float32_case(_cancelling(-1.0))
    assert results[0].verdict == "fail"
    (r,) = ladder.climb(run.problem, run.refs.precision, results, real_recheck(run))
    assert r is results[0] and (r.verdict, r.blame) == ("fail", "hand")


def test_climb_keeps_the_verdict_when_the_wider_recheck_fails(failing32: tuple[Run, list[LeafResult]]) -> None:
    run, results = failing32
    recheck = Rechecks(results[0])
    out = ladder.climb(run.problem, run.refs.precision, results, recheck)
    assert len(recheck.calls) == 1 and out[0] is results[0]


def test_climb_keeps_the_verdict_when_hand_at_raises(failing32: tuple[Run, list[LeafResult]]) -> None:
    run, results = failing32

    def refuses(values: list[np.ndarray], upcast: Any) -> list[np.ndarray | None]:
        raise TypeError("this backward only takes float32")

    recheck = Rechecks(passing(results[0]))
    prob = dataclasses.replace(run.problem, hand_at=refuses)
    out = ladder.climb(prob, run.refs.precision, results, recheck)
    assert out[0] is results[0] and recheck.calls == []


def test_climb_keeps_the_verdict_of_a_backward_that_raises_on_float64_inputs() -> None:
    inner = _cancelling()

    def only32(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
        if p["W"].dtype != np.float32:
            raise TypeError("float32 only")
        return inner(p, x, v)

    run, results = float32_case(only32)
    assert results[0].verdict == "fail"
    recheck = Rechecks(passing(results[0]))
    out = ladder.climb(run.problem, run.refs.precision, results, recheck)
    assert out[0] is results[0] and recheck.calls == []


def test_climb_needs_hand_at(failing32: tuple[Run, list[LeafResult]]) -> None:
    run, results = failing32
    recheck = Rechecks(passing(results[0]))
    prob = dataclasses.replace(run.problem, hand_at=None)
    assert ladder.climb(prob, run.refs.precision, results, recheck) == results
    assert recheck.calls == []


def test_climb_skips_a_backward_that_ignores_the_wider_inputs(failing32: tuple[Run, list[LeafResult]]) -> None:
    run, results = failing32
    recheck = Rechecks(passing(results[0]))
    prob = dataclasses.replace(run.problem, hand_at=lambda values, upcast: [v.astype(np.float32) for v in values])
    assert ladder.climb(prob, run.refs.precision, results, recheck)[0] is results[0]
    assert recheck.calls == []


@pytest.mark.parametrize("blame", ["autodiff", "all", "numeric"])
def test_only_hand_blamed_failures_climb(failing32: tuple[Run, list[LeafResult]], blame: str) -> None:
    run, results = failing32
    other = [dataclasses.replace(results[0], blame=blame)]  # type: ignore[arg-type]
    recheck = Rechecks(passing(results[0]))
    assert ladder.climb(run.problem, run.refs.precision, other, recheck) == other
    assert recheck.calls == []


def test_a_forward_in_lower_precision_stops_the_float64_climb(failing32: tuple[Run, list[LeafResult]]) -> None:
    run, results = failing32
    judged64 = [dataclasses.replace(results[0], tolerance_dtype="float64")]
    recheck = Rechecks(passing(results[0]))
    assert ladder.climb(run.problem, F32, judged64, recheck) == judged64
    assert recheck.calls == []


# --------------------------------------------------------------------------- known bugs

_XA = np.random.default_rng(5).normal(size=(4, 3))
_VA = np.random.default_rng(6).normal(size=(4, 2))


def _mixed_loss(p: dict[str, np.ndarray]) -> float:
    a, b = p["a"].astype(np.float64), p["b"].astype(np.float64)
    return float(np.sum(_VA * np.tanh(np.dot(_XA, a))) + np.sum(np.sin(b)))


def _mixed_grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Both leaves right, both through a cancellation: ``a`` loses its digits in float32 (cleared
    in float64), ``b`` in float64 (cleared in long double)."""
    a, b = p["a"], p["b"]
    x, v = _XA.astype(a.dtype), _VA.astype(a.dtype)
    ga = x.T @ (v * (1 - np.tanh(x @ a) ** 2))
    big_a, big_b = np.asarray(1e5, a.dtype), np.asarray(1e10, b.dtype)
    return {"a": ((ga + big_a) - big_a).astype(a.dtype), "b": (np.cos(b) + big_b) - big_b}


@pytest.mark.skipif(not LONGDOUBLE_IS_WIDER, reason="needs a long double wider than float64 (x86)")
@pytest.mark.parametrize("order", [
    ("a", "b"),
    ("b", "a"),
])
def test_climb_clears_each_leaf_at_its_own_next_precision(order: tuple[str, str]) -> None:
    rng = np.random.default_rng(7)
    values = {"a": rng.normal(size=(3, 2)).astype(np.float32), "b": rng.normal(size=5)}
    run = make_run(_mixed_loss, _mixed_grad, {k: values[k] for k in order}, mode="full",
                   references=("numeric",))
    results = []
    for k in range(2):
        hand = run.problem.hand[k]
        assert hand is not None
        results.append(leaf_record(run, k, hand))
    assert [(r.verdict, r.blame) for r in results] == [("fail", "hand")] * 2
    out = ladder.climb(run.problem, run.refs.precision, results, real_recheck(run))
    # the same problem, only the order of its leaves differs: the same verdicts
    assert {r.name: r.verdict for r in out} == {"a": "pass", "b": "pass"}


# ----------------------------------------------------------------------------- no recheck that cannot clear


def _np_tanh_with(rel: float, wobble: float) -> Any:
    """The tanh layer's float64 hand gradient, off by ``rel·max|g|`` at entry (1, 0), and moved by
    up to ``wobble·max|g|`` everywhere when computed in a wider dtype (a platform-dependent
    rounding the precision ladder must see through)."""
    def grad(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> dict[str, Any]:
        wide = p["W"].dtype != np.float64
        W, x64, v64 = (np.asarray(a, np.float64) for a in (p["W"], x, v))
        g = F.tanh_layer_grad({"W": W}, x64, v64)["W"]
        scale = float(np.max(np.abs(g)))
        g[1, 0] += rel * scale
        if wide:
            g = g + wobble * scale * np.cos(np.arange(g.size).reshape(g.shape))
        return {"W": g.astype(p["W"].dtype)}
    return grad


@pytest.mark.skipif(not LONGDOUBLE_IS_WIDER, reason="needs a long double wider than float64 (x86)")
@settings(max_examples=12, deadline=None)
@given(rel=st.sampled_from([1e-2, 1e-4, 3e-6]), wobble=st.sampled_from([0.0, 1e-9, 1e-5, 1e-2]))
def test_a_recheck_is_skipped_only_when_it_could_not_clear_the_failure(rel: float, wobble: float) -> None:
    """Whenever the ladder skips the wider recheck, that recheck would have failed too."""
    rng = np.random.default_rng(8)
    W, x, v = rng.normal(size=(4, 3)), rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    run = make_run(np_tanh, _np_tanh_with(rel, wobble), {"W": W}, x, v, mode="full")
    hand = run.problem.hand[0]
    assert hand is not None
    low = leaf_record(run, 0, hand)
    assert (low.verdict, low.blame) == ("fail", "hand")
    spy = Rechecks(low)
    ladder.climb(run.problem, run.refs.precision, [low], spy)
    wide = run.problem.hand_at([w.astype(np.longdouble) for w in run.problem.values], np.longdouble)[0]
    assert wide is not None
    if not spy.calls:
        assert real_recheck(run)(0, wide).verdict == "fail"
    if wobble == 0.0:  # the wider run is the same numbers: never worth a second measurement
        assert spy.calls == []
