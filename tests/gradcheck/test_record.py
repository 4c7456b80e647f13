"""record.py: evidence and judgement → LeafResult / CheckResult records."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import full, judge, power, record, screen
from gradcheck.judge import Judgement
from gradcheck.measure import Evidence, Leaf, Run, leaf
from gradcheck.power import Power
from gradcheck.result import CheckResult, Control, LeafResult
from tests.gradcheck import _functions as F
from tests.gradcheck._stages import make_run, planted


def tanh_case(seed: int, m: int = 4, n: int = 3) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(size=(m, n))}, rng.normal(size=(5, m)), rng.normal(size=(5, n))


def np_tanh(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> float:
    return float(np.sum(v * np.tanh(np.dot(x, p["W"]))))  # float(): no JAX path


def stages(run: Run, k: int = 0) -> tuple[Leaf, Evidence, Judgement, Power | None]:
    """The per-leaf stages of check._check_leaf, without localisation."""
    hand = run.problem.hand[k]
    assert hand is not None
    lf = leaf(run, k, hand)
    if run.opts.mode == "directional":
        ev = screen.gather(run, lf)
        j = judge.screen(run, lf, ev)
    else:
        ev = full.gather(run, lf, run.problem.total)
        j = judge.full(run, lf, ev)
    return lf, ev, j, power.measure(run, lf, ev, j)


def recorded(run: Run, k: int = 0) -> tuple[LeafResult, Leaf, Evidence, Judgement, Power | None]:
    lf, ev, j, p = stages(run, k)
    return record.leaf_result(run, lf, ev, j, p), lf, ev, j, p




REFS = st.sampled_from([("numeric", "autodiff"), ("numeric",)])


# --------------------------------------------------------------------------- a passing leaf


@pytest.mark.parametrize("refs", [("numeric", "autodiff"), ("numeric",), ("autodiff",)])
def test_a_passing_leaf_record(refs: tuple[str, ...]) -> None:
    params, x, v = tanh_case(0)
    run = make_run(F.tanh_layer, F.tanh_layer_grad, params, x, v, references=refs, mode="full")
    r, _, ev, j, p = recorded(run)
    assert (r.name, r.shape, r.dtype, r.mode) == ("W", (4, 3), "float64", "full")
    assert (r.verdict, r.blame, r.passed) == ("pass", None, True)
    assert (r.rtol, r.atol, r.tolerance_dtype) == (j.tol.rtol, j.tol.atol, "float64")
    assert (r.n_elements, r.n_checked, r.n_mismatched, r.n_kinks) == (12, 12, 0, 0)
    assert r.numeric_method == ev.method
    assert r.diagnosis is None and r.kinks == () and r.notes == () and r.localisation is None
    assert (r.hand_vs_numeric is not None) == ("numeric" in refs)
    assert (r.hand_vs_autodiff is not None) == ("autodiff" in refs)
    assert (r.numeric_vs_autodiff is not None) == (len(refs) == 2)
    for a in (r.hand_vs_numeric, r.hand_vs_autodiff, r.numeric_vs_autodiff):
        assert a is None or (a.agree and a.n_compared == 12)
    if ev.parts is not None:
        assert r.fd_error_estimate == float(np.max(ev.parts.err))
        assert p is not None
        assert r.detection_power == p.power and r.control == p.control
    else:
        assert math.isnan(r.fd_error_estimate)
    assert len(r.worst) == run.opts.worst
    assert all(e.status == "ok" for e in r.worst)


# --------------------------------------------------------------------------- a failing leaf


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16),
       entries=st.sets(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=3),
       rel=st.sampled_from([1e-3, -0.2]), refs=REFS)
def test_a_failing_leaf_record_follows_its_judgement(
        seed: int, entries: set[tuple[int, int]], rel: float, refs: tuple[str, ...]) -> None:
    params, x, v = tanh_case(seed)
    run = make_run(F.tanh_layer, planted(sorted(entries), rel), params, x, v, references=refs, mode="full")
    r, _, _, j, p = recorded(run)
    assert p is None and math.isnan(r.detection_power) and r.control is None
    assert (r.verdict, r.blame) == (j.verdict, j.blame) == ("fail", "hand")
    assert r.n_mismatched == int(np.count_nonzero(j.status == "hand")) == len(entries)
    # the wrong entries come first, then the others
    head = r.worst[: len(entries)]
    assert {e.index for e in head} == entries
    assert all(e.status == "hand" for e in head)
    assert all(e.status == "ok" for e in r.worst[len(entries):])
    truth = F.tanh_layer_grad(params, x, v)["W"]
    for e in head:
        assert e.hand != pytest.approx(truth[e.index], rel=1e-6)
        ref = e.autodiff if e.autodiff is not None else e.numeric
        assert ref == pytest.approx(truth[e.index], rel=1e-6)
    assert r.diagnosis is not None
    if len(entries) == 1:
        # one entry pulled in from the leaf's largest magnitude fits clipping as well
        assert r.diagnosis.kind in ("entries", "clipped")
        if r.diagnosis.kind == "entries":
            assert r.diagnosis.indices == tuple(entries)


@pytest.mark.parametrize("numeric_only", [False, True])
@pytest.mark.parametrize("mode", ["full", "directional"])
def test_a_sign_flip_is_diagnosed(numeric_only: bool, mode: str) -> None:
    params, x, v = tanh_case(1, 5, 4)
    run = make_run(np_tanh if numeric_only else F.tanh_layer,
                   lambda p, x, v: {"W": -F.tanh_layer_grad(p, x, v)["W"]}, params, x, v, mode=mode)
    r, _, _, j, _ = recorded(run)
    assert (r.verdict, r.blame) == ("fail", "hand")
    assert r.diagnosis is not None and r.diagnosis.kind == "sign_flip"
    assert r.n_mismatched == 20
    assert r.probes == j.probes and len(r.probes) == (run.opts.probes if mode == "directional" else 0)


def _relu(p: dict[str, Any], v: np.ndarray) -> Any:
    xp = F.xp_of(p["x"])
    return xp.sum(v * xp.maximum(p["x"], 0.0))


def test_kinks_are_recorded_with_their_one_sided_slopes() -> None:
    rng = np.random.default_rng(2)
    x, v = rng.normal(size=(3, 4)), 1 + rng.random((3, 4))
    x[0, 1] = x[2, 3] = 0.0
    run = make_run(_relu, lambda p, v: {"x": v * (p["x"] > 0)}, {"x": x}, v, mode="full")
    r, *_ = recorded(run)
    assert r.verdict == "pass" and r.n_kinks == 2 and r.n_checked == 10
    assert [e.index for e in r.kinks] == [(0, 1), (2, 3)]
    for e in r.kinks:
        assert e.status == "kink"
        assert e.left == pytest.approx(0.0, abs=1e-6)
        assert e.right == pytest.approx(v[e.index], rel=1e-6)
    assert all(e.status != "kink" for e in r.worst)
    res = record.check_result("relu", "check_grad", run.refs, run.opts, [r])
    assert any("not differentiable at 2 checked entries" in n for n in res.notes)


# --------------------------------------------------------------------------- notes


def test_notes_are_own_then_evidence_then_control_then_judgement() -> None:
    params, x, v = tanh_case(3)
    run = make_run(F.tanh_layer, lambda p, x, v: {"W": F.tanh_layer_grad(p, x, v)["W"].astype(np.float32)},
                   params, x, v, mode="full")
    lf, ev, j, p = stages(run)
    assert j.verdict == "pass" and p is not None
    missed = Power(p.power, Control((1, 2), p.control.size, caught=False))
    r = record.leaf_result(run, lf, dataclasses.replace(ev, notes=("evidence note",)),
                           dataclasses.replace(j, notes=("judgement note",)), missed)
    own, evidence, control, judgement = r.notes
    assert own.startswith("the hand gradient is float32 for a float64 tensor: judged with")
    assert evidence == "evidence note"
    assert control.startswith("negative control failed: a single-entry error of")
    assert "planted at [1, 2] was not caught" in control
    assert judgement == "judgement note"
    assert r.dtype == "float32" and r.control == missed.control
    # a caught control adds no note
    plain = record.leaf_result(run, lf, ev, j, p)
    assert plain.notes == (own,)


def test_unverified_entries_are_noted_and_not_counted_as_checked() -> None:
    params, x, v = tanh_case(4)
    run = make_run(np_tanh, F.tanh_layer_grad, params, x, v, mode="full")
    lf, ev, j, _ = stages(run)
    status = j.status.copy()
    status[[0, 5]] = "unverified"
    j2 = dataclasses.replace(j, status=status, verdict="inconclusive", blame=None)
    r = record.leaf_result(run, lf, ev, j2)
    assert r.verdict == "inconclusive" and r.n_checked == 10 and r.n_mismatched == 0
    assert r.notes[0].startswith("2 entries could not be verified")
    assert r.hand_vs_numeric is not None and r.hand_vs_numeric.n_compared == 10


# --------------------------------------------------------------------------- localised leaves


def test_a_localised_leaf_record() -> None:
    rng = np.random.default_rng(5)
    A = rng.normal(size=(40, 40)) / 6

    def loss(p: dict[str, Any]) -> float:
        return float(np.sum(np.tanh(np.dot(p["W"], A))))

    def bad(p: dict[str, Any]) -> dict[str, np.ndarray]:
        g = np.dot(1 - np.tanh(np.dot(p["W"], A)) ** 2, A.T)
        g[7, 30] += 0.3 * float(np.max(np.abs(g)))
        return {"W": g}

    run = make_run(loss, bad, {"W": rng.normal(size=(40, 40))})
    lf, ev, j, _ = stages(dataclasses.replace(run, opts=dataclasses.replace(run.opts, mode="directional")))
    screened = record.leaf_result(run, lf, ev, j)
    where = screen.localise_leaf(run, lf, j.tol, (screened.verdict, screened.numeric_method, screened.notes))
    r = record.leaf_result(run, lf, where, judge.localised(run, lf, where, j.tol, j.probes))
    assert (r.mode, r.verdict, r.blame, r.n_mismatched) == ("localised", "fail", "hand", 1)
    assert r.localisation is where.localisation and r.localisation is not None
    assert r.worst[0].index == (7, 30) and r.worst[0].status == "hand"
    # entries outside the measured blocks agreed as a block: counted, not shown
    assert r.n_checked == 1600
    assert all(e.numeric is not None and not math.isnan(e.numeric) for e in r.worst)
    assert r.diagnosis is not None and r.diagnosis.indices == ((7, 30),)
    assert r.notes[0].startswith("directional screening gave 'fail'")
    assert r.probes == j.probes
    json.dumps(r.to_dict(), allow_nan=False)


# --------------------------------------------------------------------------- the whole check


def _with(r: LeafResult, verdict: str, mode: str | None = None) -> LeafResult:
    return dataclasses.replace(r, verdict=verdict, mode=mode or r.mode)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def two_leaves() -> tuple[Run, list[LeafResult]]:
    rng = np.random.default_rng(6)
    params = {"a": rng.normal(size=3), "b": rng.normal(size=(2, 2))}

    def loss(p: dict[str, Any]) -> Any:
        xp = F.xp_of(p["a"])
        return xp.sum(p["a"] ** 3) + xp.sum(xp.sin(p["b"]))

    def grad(p: dict[str, Any]) -> dict[str, np.ndarray]:
        return {"a": 3 * p["a"] ** 2, "b": np.cos(p["b"])}

    run = make_run(loss, grad, params, name="two")
    return run, [recorded(run, k)[0] for k in (0, 1)]


@pytest.mark.parametrize(("verdicts", "expected"), [
    (("pass", "pass"), "pass"),
    (("pass", "inconclusive"), "inconclusive"),
    (("inconclusive", "fail"), "fail"),
    (("fail", "pass"), "fail"),
])
def test_check_result_aggregates_verdicts(two_leaves: tuple[Run, list[LeafResult]],
                                          verdicts: tuple[str, str], expected: str) -> None:
    run, leaves = two_leaves
    res = record.check_result("two", "check_grad", run.refs, run.opts,
                              [_with(r, v) for r, v in zip(leaves, verdicts, strict=True)])
    assert res.verdict == expected and res.passed == (expected == "pass")


def test_check_result_fields(two_leaves: tuple[Run, list[LeafResult]]) -> None:
    run, leaves = two_leaves
    res = record.check_result("two", "check_grad", run.refs, run.opts, leaves)
    assert isinstance(res, CheckResult)
    assert (res.name, res.kind, res.verdict, res.seed) == ("two", "check_grad", "pass", 0)
    assert res.mode == "auto:full"
    assert [r.name for r in res.leaves] == ["a", "b"]
    assert res.references == run.refs.available == ("numeric", "autodiff")
    assert res.forward_calls == run.refs.obj.calls > 0
    assert res.loss == run.refs.obj.f0 and res.forward_noise == run.refs.obj.noise
    assert res.regime is None and res.growth == run.refs.regime.growth
    assert res.notes == run.refs.notes
    assert res.options == run.opts.summary()
    d = res.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["verdict"] == "pass" and back["forward_calls"] == run.refs.obj.calls
    assert [leaf["name"] for leaf in back["leaves"]] == ["a", "b"]
    assert back["leaves"][0]["control"]["caught"] is True


def test_check_result_mode_string(two_leaves: tuple[Run, list[LeafResult]]) -> None:
    run, leaves = two_leaves
    mixed = [_with(leaves[0], "pass", "full"), _with(leaves[1], "pass", "directional")]
    res = record.check_result("two", "check_grad", run.refs, run.opts, mixed)
    assert res.mode == "auto:directional+full"  # the leaves' modes, sorted
    localised = [_with(leaves[0], "fail", "localised"), _with(leaves[1], "pass", "directional")]
    assert record.check_result("two", "check_grad", run.refs, run.opts, localised).mode == \
        "auto:directional+localised"
    fixed = dataclasses.replace(run.opts, mode="full")
    assert record.check_result("two", "check_grad", run.refs, fixed, leaves).mode == "full"


def test_a_failing_check_result_is_json_serialisable() -> None:
    params, x, v = tanh_case(7)
    run = make_run(np_tanh, planted([(0, 0)], 0.1), params, x, v, mode="directional", jax_twin=False)
    r, *_ = recorded(run)
    assert r.verdict == "fail" and r.probes
    res = record.check_result("np_tanh", "check_grad", run.refs, run.opts, [r])
    assert res.verdict == "fail" and res.mode == "directional"
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["leaves"][0]["n_probes"] == run.opts.probes
    assert d["leaves"][0]["detection_power"] == "nan"
    assert d["references"] == ["numeric"]


# --------------------------------------------------------------------------- the error map


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16),
       entries=st.sets(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=4),
       refs=REFS)
def test_a_failing_leaf_carries_its_whole_error_map(seed: int, entries: set[tuple[int, int]],
                                                    refs: tuple[str, ...]) -> None:
    params, x, v = tanh_case(seed)
    run = make_run(F.tanh_layer, planted(sorted(entries), 1e-3), params, x, v, references=refs, mode="full")
    r, lf, _, _, _ = recorded(run)
    assert r.verdict == "fail" and r.error_map is not None and len(r.error_map) == 12
    assert r.error_reference == ("autodiff" if "autodiff" in refs else "numeric")
    truth = F.tanh_layer_grad(params, x, v)["W"]
    hand = lf.hand.reshape(truth.shape)
    expect = np.abs(hand - truth) / np.max(np.abs(truth))
    np.testing.assert_allclose(np.reshape(r.error_map, truth.shape), expect, rtol=1e-5, atol=1e-9)
    worst = {int(np.ravel_multi_index(e, truth.shape)) for e in entries}
    assert set(np.argsort(r.error_map)[-len(entries):].tolist()) == worst
    doc = r.to_dict()
    assert doc["error_map"]["reference"] == r.error_reference and len(doc["error_map"]["values"]) == 12
    assert doc["time_axis"] is None  # a 2-D weight is not a sequence
    json.dumps(doc, allow_nan=False)


def test_a_passing_or_large_leaf_has_no_error_map() -> None:
    params, x, v = tanh_case(0)
    run = make_run(F.tanh_layer, F.tanh_layer_grad, params, x, v, mode="full")
    assert recorded(run)[0].error_map is None and recorded(run)[0].to_dict()["error_map"] is None
    rng = np.random.default_rng(0)
    big = {"W": rng.normal(size=(70, 60))}  # 4,200 entries > ERROR_MAP_MAX
    assert big["W"].size > record.ERROR_MAP_MAX
    run = make_run(F.tanh_layer, planted([(0, 0)], 0.5), big, rng.normal(size=(3, 70)),
                   rng.normal(size=(3, 60)))
    r = recorded(run)[0]
    assert r.verdict == "fail" and r.error_map is None


def test_unmeasured_entries_are_null_in_the_error_map() -> None:
    """Entries a sample did not measure have no error to show: NaN, written as null."""
    rng = np.random.default_rng(2)
    params = {"W": rng.normal(size=(9, 8))}

    def loss(p: dict[str, Any]) -> float:
        return float(np.sum(np.sin(p["W"])))  # float(): numeric only

    import gradcheck as gc

    res = gc.check_grad(loss, lambda p: {"W": 0.5 * np.cos(p["W"]) + np.sin(3 * p["W"])}, params,
                        jax_twin=False)
    leaf = res.leaf("W")
    assert leaf.verdict == "fail" and leaf.error_map is not None
    values = leaf.to_dict()["error_map"]["values"]
    measured = [v for v in values if v is not None]
    assert 0 < len(measured) < 72  # the check stopped at its sample
    assert all(math.isnan(v) for v, d in zip(leaf.error_map, values, strict=True) if d is None)
