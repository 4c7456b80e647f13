"""judge.py as a stage: entry statuses of full checks, screening and localisation, the verdict
rules, and purity (the triangulation table itself is tested in test_judge.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import full, judge, screen
from gradcheck.judge import Judgement
from gradcheck.measure import Evidence, Leaf, Partials, Run
from tests.gradcheck import _functions as F
from tests.gradcheck._stages import first_leaf, make_run, planted


def tanh_case(seed: int, m: int, n: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(size=(m, n))}, rng.normal(size=(5, m)), rng.normal(size=(5, n))




def judged_full(run: Run) -> tuple[Leaf, Evidence, Judgement]:
    lf = first_leaf(run)
    ev = full.gather(run, lf, run.problem.total)
    return lf, ev, judge.full(run, lf, ev)


def same(a: Any, b: Any) -> bool:
    """Equality of judgements/evidence field by field, arrays by value."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        if type(a) is not type(b):
            return False
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind == "f"))
    if isinstance(a, tuple | list):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def frozen_copy(lf: Leaf, ev: Evidence) -> tuple[Leaf, Evidence]:
    """Deep copies of a leaf and its evidence, to compare against after a judgement."""
    def cp(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return x.copy()
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return dataclasses.replace(x, **{f.name: cp(getattr(x, f.name)) for f in dataclasses.fields(x)
                                             if f.init})
        if isinstance(x, tuple):
            return tuple(cp(y) for y in x)
        return x
    return cp(lf), cp(ev)


REFS = st.sampled_from([("numeric", "autodiff"), ("numeric",)])


# --------------------------------------------------------------------------- full


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), m=st.integers(1, 5), n=st.integers(1, 5), refs=REFS)
def test_full_passes_a_correct_gradient(seed: int, m: int, n: int, refs: tuple[str, ...]) -> None:
    params, x, v = tanh_case(seed, m, n)
    run = make_run(F.tanh_layer, F.tanh_layer_grad, params, x, v, references=refs, mode="full")
    lf, ev, j = judged_full(run)
    assert j.status.shape == (m * n,) and j.status.dtype == object
    assert set(j.status.tolist()) == {"ok"}
    assert (j.verdict, j.blame) == ("pass", None)
    assert j.outvoted == 0 and j.notes == () and j.probes == ()
    assert j.unreliable is not None and not j.unreliable.any()
    ref = lf.ad if lf.ad is not None else ev.parts.num  # type: ignore[union-attr]
    assert j.scale == pytest.approx(float(np.max(np.abs(ref))))
    assert 0 < j.tol.rtol < 1e-3


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16),
       entries=st.sets(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=4),
       rel=st.sampled_from([1e-4, -1e-3, 0.5]), refs=REFS)
def test_full_blames_the_hand_exactly_at_the_planted_entries(
        seed: int, entries: set[tuple[int, int]], rel: float, refs: tuple[str, ...]) -> None:
    params, x, v = tanh_case(seed, 4, 3)
    run = make_run(F.tanh_layer, planted(sorted(entries), rel), params, x, v, references=refs, mode="full")
    _, _, j = judged_full(run)
    wrong = sorted(i * 3 + k for i, k in entries)
    np.testing.assert_array_equal(np.flatnonzero(j.status == "hand"), wrong)
    assert set(np.delete(j.status, wrong).tolist()) == {"ok"}
    assert (j.verdict, j.blame) == ("fail", "hand")


def _relu(p: dict[str, Any], v: np.ndarray) -> Any:
    xp = F.xp_of(p["x"])
    return xp.sum(v * xp.maximum(p["x"], 0.0))


def _relu_np(p: dict[str, Any], v: np.ndarray) -> float:
    return float(np.sum(v * np.maximum(p["x"], 0.0)))


def _relu_grad(p: dict[str, Any], v: np.ndarray) -> dict[str, np.ndarray]:
    return {"x": v * (p["x"] > 0)}


def relu_case() -> tuple[dict[str, np.ndarray], np.ndarray, list[int]]:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 5))
    kinks = [3, 11, 17]
    x.ravel()[kinks] = 0.0
    return {"x": x}, 1 + rng.random((4, 5)), kinks


@pytest.mark.parametrize("fun", [_relu, _relu_np], ids=["autodiff", "numeric-only"])
def test_full_marks_kinks_and_does_not_judge_them(fun: Any) -> None:
    params, v, kinks = relu_case()
    run = make_run(fun, _relu_grad, params, v, mode="full", jax_twin=False)
    assert (run.refs.ad is not None) == (fun is _relu)
    _, ev, j = judged_full(run)
    np.testing.assert_array_equal(np.flatnonzero(j.status == "kink"), kinks)
    np.testing.assert_array_equal(np.flatnonzero(ev.kink(20)), kinks)
    assert set(np.delete(j.status, kinks).tolist()) == {"ok"}
    assert j.verdict == "pass"


def test_full_with_autodiff_alone_compares_hand_with_autodiff() -> None:
    params, x, v = tanh_case(5, 4, 3)
    run = make_run(F.tanh_layer, planted([(1, 1)], 0.1), params, x, v, references=("autodiff",))
    _, ev, j = judged_full(run)
    assert ev.parts is None
    np.testing.assert_array_equal(np.flatnonzero(j.status == "hand"), [4])
    assert (j.verdict, j.blame) == ("fail", "hand")


def _double_twin(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> Any:
    import jax

    s = F.tanh_layer(p, x, v)
    return s + (s - jax.lax.stop_gradient(s))  # the forward's value, twice its gradient


def _shared_bug_twin(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> Any:
    import jax
    import jax.numpy as jnp

    W = p["W"]
    return jnp.sum(W * jax.lax.stop_gradient(W))


def test_full_blames_a_wrong_twin() -> None:
    params, x, v = tanh_case(6, 4, 3)
    run = make_run(F.tanh_layer, F.tanh_layer_grad, params, x, v, jax_fun=_double_twin, mode="full")
    assert run.problem.twin
    _, _, j = judged_full(run)
    assert set(j.status.tolist()) == {"autodiff"}
    assert (j.verdict, j.blame) == ("fail", "autodiff")


def test_full_outvotes_a_twin_that_shares_the_hand_bug() -> None:
    def square(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> Any:
        return F.xp_of(p["W"]).sum(p["W"] ** 2)

    params, x, v = tanh_case(7, 4, 3)
    run = make_run(square, lambda p, x, v: {"W": p["W"].copy()}, params, x, v,
                   jax_fun=_shared_bug_twin, mode="full")
    _, _, j = judged_full(run)
    assert set(j.status.tolist()) == {"hand"}
    assert j.outvoted == 12 and (j.verdict, j.blame) == ("fail", "hand")
    (note,) = j.notes
    assert note.startswith("autodiff agrees with the hand gradient on 12 entries")
    assert "stop_gradient" in note


# --------------------------------------------------------------------------- verdict


@pytest.mark.parametrize(("statuses", "twin", "expected"), [
    (["ok", "ok"], False, ("pass", None)),
    (["ok", "kink"], False, ("pass", None)),
    (["ok", "numeric"], False, ("pass", "numeric")),
    (["ok", "autodiff"], False, ("pass", "autodiff")),
    (["ok", "autodiff"], True, ("fail", "autodiff")),
    (["ok", "unverified"], False, ("inconclusive", None)),
    (["ok", "inconclusive"], False, ("inconclusive", "all")),
    (["hand", "autodiff", "inconclusive", "unverified", "numeric"], True, ("fail", "hand")),
    (["autodiff", "inconclusive", "unverified", "numeric"], True, ("fail", "autodiff")),
    (["autodiff", "inconclusive", "unverified", "numeric"], False, ("pass", "autodiff")),
    (["inconclusive", "unverified", "numeric"], False, ("inconclusive", "all")),
    (["unverified", "numeric"], True, ("inconclusive", None)),
])
def test_verdict_rules(statuses: list[str], twin: bool, expected: tuple[str, str | None]) -> None:
    assert judge.verdict(np.array(statuses, dtype=object), twin=twin) == expected


STATUSES = ["ok", "kink", "numeric", "unverified", "inconclusive", "autodiff", "hand"]


@given(statuses=st.lists(st.sampled_from(STATUSES), min_size=1, max_size=12), twin=st.booleans())
def test_verdict_follows_the_priority_of_statuses(statuses: list[str], twin: bool) -> None:
    got = judge.verdict(np.array(statuses, dtype=object).reshape(-1, 1), twin=twin)
    present = set(statuses)
    if "hand" in present:
        assert got == ("fail", "hand")
    elif "autodiff" in present:
        assert got == ("fail" if twin else "pass", "autodiff")
    elif "inconclusive" in present:
        assert got == ("inconclusive", "all")
    elif "unverified" in present:
        assert got == ("inconclusive", None)
    elif not present & {"ok", "numeric", "autodiff"}:
        assert got == ("inconclusive", None)  # only kinks: nothing verified, never a pass
    else:
        assert got == ("pass", "numeric" if "numeric" in present else None)


# --------------------------------------------------------------------------- screening


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_screen_status_marks_every_entry_hand_for_a_sign_flip_without_autodiff(seed: int) -> None:
    params, x, v = tanh_case(seed, 6, 5)

    def loss(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> float:
        return float(np.sum(v * np.tanh(np.dot(x, p["W"]))))

    run = make_run(loss, lambda p, x, v: {"W": -F.tanh_layer_grad(p, x, v)["W"]}, params, x, v,
                   mode="directional", seed=seed, jax_twin=False)
    lf = first_leaf(run)
    assert lf.ad is None
    ev = screen.gather(run, lf)
    tol = lf.tolerance(run, lf.ad_scale())
    status, probes, _ = judge.screen_status(run, lf, ev, tol)
    assert status.shape == (30,) and set(status.tolist()) == {"hand"}
    assert len(probes) == run.opts.probes
    assert all(p.status == "hand" and p.autodiff is None for p in probes)
    for p in probes:
        assert p.hand == pytest.approx(-p.numeric, rel=1e-6)
    j = judge.screen(run, lf, ev)
    assert (j.verdict, j.blame) == ("fail", "hand") and j.probes == probes


def test_screen_status_of_a_correct_gradient_is_ok() -> None:
    params, x, v = tanh_case(3, 6, 5)
    run = make_run(F.tanh_layer, F.tanh_layer_grad, params, x, v, mode="directional")
    lf = first_leaf(run)
    ev = screen.gather(run, lf)
    status, probes, _ = judge.screen_status(run, lf, ev, lf.tolerance(run, lf.ad_scale()))
    assert set(status.tolist()) == {"ok"}
    assert [p.status for p in probes] == ["ok"] * run.opts.probes
    assert all(p.autodiff is not None for p in probes)


def test_screen_with_autodiff_blames_the_wrong_entry_only() -> None:
    params, x, v = tanh_case(4, 6, 5)
    run = make_run(F.tanh_layer, planted([(5, 4)], 0.05), params, x, v, mode="directional")
    lf = first_leaf(run)
    ev = screen.gather(run, lf)
    j = judge.screen(run, lf, ev)
    np.testing.assert_array_equal(np.flatnonzero(j.status == "hand"), [29])
    assert (j.verdict, j.blame) == ("fail", "hand")
    assert j.scale == pytest.approx(lf.ad_scale())


def test_screen_status_without_any_comparison_is_unverified() -> None:
    params, x, v = tanh_case(5, 3, 3)

    def loss(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> float:
        return float(np.sum(v * np.tanh(np.dot(x, p["W"]))))

    run = make_run(loss, F.tanh_layer_grad, params, x, v, mode="directional", jax_twin=False)
    lf = first_leaf(run)
    ev = dataclasses.replace(screen.gather(run, lf), probes=())
    status, probes, _ = judge.screen_status(run, lf, ev, lf.tolerance(run, 0.0))
    assert set(status.tolist()) == {"unverified"} and probes == ()


# --------------------------------------------------------------------------- localisation


def _seq_loss(p: dict[str, Any], c: np.ndarray) -> float:
    return float(np.sum(c * np.tanh(p["x"])))


def _seq_grad(p: dict[str, Any], c: np.ndarray) -> dict[str, np.ndarray]:
    return {"x": c * (1 - np.tanh(p["x"]) ** 2)}


def seq_run(steps: tuple[int, ...], **options: Any) -> tuple[Run, Leaf]:
    rng = np.random.default_rng(9)
    x, c = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 3))

    def bad(p: dict[str, Any], c: np.ndarray) -> dict[str, np.ndarray]:
        g = _seq_grad(p, c)["x"]
        for t in steps:
            g[t, 1, 2] += 0.5
        return {"x": g}

    # numpy-only and no automatic JAX twin: the evidence these tests build is numeric only
    run = make_run(_seq_loss, bad, {"x": x}, c, **{"jax_twin": False, **options})
    return run, first_leaf(run)


def localised_evidence(run: Run, lf: Leaf, idx: np.ndarray, unresolved: np.ndarray | None = None
                       ) -> tuple[Evidence, Any]:
    tol = lf.tolerance(run, lf.ad_scale())
    parts = Partials.empty(lf.size).with_(run, lf, idx, tol.rtol)
    return Evidence("localised", parts, parts.method, unresolved=unresolved), tol


def test_localised_marks_unresolved_entries_unverified() -> None:
    run, lf = seq_run(())
    assert lf.ad is None
    ev, tol = localised_evidence(run, lf, np.arange(0, 6), unresolved=np.arange(20, 26))
    j = judge.localised(run, lf, ev, tol)
    np.testing.assert_array_equal(np.flatnonzero(j.status == "unverified"), np.arange(20, 26))
    assert set(np.delete(j.status, np.arange(20, 26)).tolist()) == {"ok"}
    assert (j.verdict, j.blame) == ("inconclusive", None) and j.notes == ()


def test_localised_blames_measured_wrong_entries_and_names_the_first_divergent_step() -> None:
    run, lf = seq_run((2, 4))
    assert run.problem.time_axis.axis == 0 and len(lf.shape) == 3
    ev, tol = localised_evidence(run, lf, np.arange(lf.size))
    j = judge.localised(run, lf, ev, tol)
    wrong = [int(np.ravel_multi_index((t, 1, 2), lf.shape)) for t in (2, 4)]
    np.testing.assert_array_equal(np.flatnonzero(j.status == "hand"), wrong)
    assert (j.verdict, j.blame) == ("fail", "hand")
    assert j.notes == ("hand and reference first diverge at time step 2 of 5 (axis 0 of x)",)


@pytest.mark.parametrize("time_axis", [None, 1])
def test_the_first_divergence_follows_time_axis(time_axis: int | None) -> None:
    run, lf = seq_run((3,), time_axis=time_axis)
    ev, tol = localised_evidence(run, lf, np.arange(lf.size))
    j = judge.localised(run, lf, ev, tol)
    assert j.verdict == "fail"
    if time_axis is None:
        assert j.notes == ()
    else:
        assert j.notes == ("hand and reference first diverge at time step 1 of 2 (axis 1 of x)",)


def test_localised_keeps_the_screening_probes() -> None:
    run, lf = seq_run((1,), mode="directional")
    ev = screen.gather(run, lf)
    screened = judge.screen(run, lf, ev)
    where = screen.localise_leaf(run, lf, screened.tol, (screened.verdict, ev.method, ()))
    j = judge.localised(run, lf, where, screened.tol, screened.probes)
    assert j.probes == screened.probes
    np.testing.assert_array_equal(np.flatnonzero(j.status == "hand"),
                                  [int(np.ravel_multi_index((1, 1, 2), lf.shape))])


# --------------------------------------------------------------------------- purity


def test_judgements_are_pure() -> None:
    params, x, v = tanh_case(8, 5, 4)
    bad = planted([(0, 1), (3, 3)], 0.01)
    for mode in ("full", "directional"):
        run = make_run(F.tanh_layer, bad, params, x, v, mode=mode)
        lf = first_leaf(run)
        ev = full.gather(run, lf, run.problem.total) if mode == "full" else screen.gather(run, lf)
        lf0, ev0 = frozen_copy(lf, ev)
        rule = judge.full if mode == "full" else judge.screen
        a, b = rule(run, lf, ev), rule(run, lf, ev)
        assert same(a, b), mode
        assert same(lf, lf0) and same(ev, ev0), mode
        assert a.verdict == "fail"
        tol = a.tol
        s1, p1, _ = judge.screen_status(run, lf, ev, tol) if mode == "directional" else (None, None, 0)
        s2, p2, _ = judge.screen_status(run, lf, ev, tol) if mode == "directional" else (None, None, 0)
        assert same(s1, s2) and same(p1, p2)
        assert same(lf, lf0) and same(ev, ev0)

    run, lf = seq_run((2,))
    ev, tol = localised_evidence(run, lf, np.arange(10), unresolved=np.arange(12, 14))
    lf0, ev0 = frozen_copy(lf, ev)
    assert same(judge.localised(run, lf, ev, tol), judge.localised(run, lf, ev, tol))
    assert same(lf, lf0) and same(ev, ev0)


def test_full_status_does_not_write_into_unreliable() -> None:
    params, x, v = tanh_case(9, 4, 3)
    run = make_run(F.tanh_layer, planted([(2, 2)], 0.1), params, x, v, mode="full")
    lf, ev, j = judged_full(run)
    unreliable = np.zeros(lf.size, bool)
    unreliable[[0, 8]] = True
    kept = unreliable.copy()
    status, outvoted = judge.full_status(run, lf, ev, j.tol, unreliable)
    np.testing.assert_array_equal(unreliable, kept)
    assert status[8] == "hand" and status[0] == "ok" and outvoted == 0  # autodiff alone decides there


# --------------------------------------------------------------------------- the numeric outvote


def test_screening_does_not_pass_a_bug_the_twin_shares() -> None:
    def square(p: dict[str, Any]) -> Any:
        return F.xp_of(p["W"]).sum(p["W"] ** 2)

    W = np.random.default_rng(10).normal(size=(5, 4))
    run = make_run(square, lambda p: {"W": p["W"].copy()}, {"W": W}, jax_fun=lambda p: _shared_bug_twin(p, W, W),
                   mode="directional")
    lf = first_leaf(run)
    ev = screen.gather(run, lf)
    # every probe measures twice what hand and twin say, far outside its error bar
    for m in ev.probes:
        said = float(np.sum(lf.hand.reshape(W.shape) * m.u))
        assert abs(m.d.value - 2 * said) <= 1e-6 * abs(m.d.value)
        assert abs(m.d.value - said) > 1e3 * (m.d.error + 1e-12)
    j = judge.screen(run, lf, ev)
    # full mode calls this the hand's failure (test_full_outvotes_a_twin_that_shares_the_hand_bug)
    assert j.verdict != "pass", (j.verdict, j.blame, set(j.status.tolist()))
    assert (j.verdict, j.blame) == ("fail", "hand")
    assert any("drops the same term" in n for n in j.notes)
