"""screen.py: directional probes, settled hand-vs-autodiff disagreements, and localisation of a
leaf that failed screening by group testing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import judge, screen
from gradcheck.measure import SUSPECT_SAMPLE, Evidence, Leaf, Run, probe_seed
from gradcheck.result import Localisation
from tests.gradcheck import _functions as F
from tests.gradcheck._stages import first_leaf, make_run


def tanh_case(seed: int, m: int, n: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(size=(m, n))}, rng.normal(size=(5, m)), rng.normal(size=(5, n))


# --------------------------------------------------------------------------- probes


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), probes=st.integers(1, 5),
       refs=st.sampled_from([("numeric", "autodiff"), ("numeric",)]))
def test_a_smooth_function_gets_opts_probes_probes(seed: int, probes: int, refs: tuple[str, ...]) -> None:
    params, x, v = tanh_case(seed, 4, 3)
    run = make_run(F.tanh_layer, F.tanh_layer_grad, params, x, v, mode="directional", seed=seed,
                   probes=probes, references=refs)
    lf = first_leaf(run)
    ev = screen.gather(run, lf)
    assert isinstance(ev, Evidence) and ev.mode == "directional"
    assert len(ev.probes) == probes and ev.crossing == () and ev.notes == ()
    assert ev.parts is None  # a correct hand gradient: nothing to settle
    assert ev.method == "complex"
    true = F.tanh_layer_grad(params, x, v)["W"]
    for p, m in enumerate(ev.probes):
        assert m.seed == probe_seed(seed, 0, p)
        assert m.u.shape == lf.x.shape and not m.d.kink
        expect = float(np.sum(true * m.u))
        assert abs(m.d.value - expect) <= 1e-9 * max(1.0, float(np.linalg.norm(true * m.u)))


def test_probes_are_seeded_and_differ_between_seeds() -> None:
    params, x, v = tanh_case(0, 4, 3)
    a = [screen.gather(r, first_leaf(r)) for r in
         (make_run(F.tanh_layer, F.tanh_layer_grad, params, x, v, mode="directional", seed=s)
          for s in (5, 5, 6))]
    np.testing.assert_array_equal(a[0].probes[0].u, a[1].probes[0].u)
    assert a[0].probes[0].d.value == a[1].probes[0].d.value
    assert not np.array_equal(a[0].probes[0].u, a[2].probes[0].u)


def _relu(p: dict[str, Any]) -> float:
    return float(np.sum(1.5 * np.maximum(p["x"], 0.0)))  # float(): no JAX path


def _relu_grad(p: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"x": 1.5 * (p["x"] > 0).astype(np.float64)}


def _relu_point() -> dict[str, np.ndarray]:
    x = np.random.default_rng(1).normal(size=(6, 5))
    x[2, 3] = 0.0
    return {"x": x}


@pytest.mark.parametrize("probes", [1, 3])
def test_probes_across_a_relu_kink_are_crossing_with_a_note(probes: int) -> None:
    run = make_run(_relu, _relu_grad, _relu_point(), mode="directional", probes=probes, jax_twin=False)
    assert run.refs.ad is None
    ev = screen.gather(run, first_leaf(run))
    # every Gaussian probe moves the entry at 0, so every probe crosses the kink
    assert len(ev.crossing) == probes and ev.probes == ()
    assert all(m.d.kink for m in ev.crossing)
    assert ev.notes == (f"{probes} of {probes} probes cross a point where the forward is not "
                        "differentiable",)
    assert ev.parts is None


# --------------------------------------------------------------------------- settled disagreements


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), i=st.integers(0, 5), j=st.integers(0, 4),
       off=st.sampled_from([1e-3, 0.1, -0.5]))
def test_a_wrong_entry_is_settled_by_a_finite_difference(seed: int, i: int, j: int, off: float) -> None:
    params, x, v = tanh_case(seed, 6, 5)

    def bad(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
        g = F.tanh_layer_grad(p, x, v)["W"]
        g[i, j] += off * max(1.0, abs(g[i, j]))
        return {"W": g}

    run = make_run(F.tanh_layer, bad, params, x, v, mode="directional", seed=seed)
    lf = first_leaf(run)
    assert lf.ad is not None
    ev = screen.gather(run, lf)
    assert ev.parts is not None and len(ev.probes) == run.opts.probes
    flat = i * 5 + j
    np.testing.assert_array_equal(np.flatnonzero(ev.parts.taken), [flat])
    assert ev.method == ev.parts.method
    true = F.tanh_layer_grad(params, x, v)["W"][i, j]
    assert abs(ev.parts.num[flat] - true) <= 1e-7 * max(1.0, abs(true))
    assert np.isnan(np.delete(ev.parts.num, flat)).all()


def test_a_systematic_bug_settles_on_a_seeded_sample_of_the_disagreements() -> None:
    params, x, v = tanh_case(3, 20, 20)
    run = make_run(F.tanh_layer, lambda p, x, v: {"W": -F.tanh_layer_grad(p, x, v)["W"]},
                   params, x, v, mode="directional")
    lf = first_leaf(run)
    ev = screen.gather(run, lf)
    assert ev.parts is not None and lf.size > SUSPECT_SAMPLE
    # every sampled entry sides with autodiff at a smooth point: the rest keep autodiff's word
    assert int(ev.parts.taken.sum()) == SUSPECT_SAMPLE
    taken = ev.parts.taken
    assert lf.ad is not None
    np.testing.assert_allclose(ev.parts.num[taken], lf.ad[taken], rtol=1e-7, atol=1e-10)


def test_a_kink_where_hand_and_autodiff_differ_is_flagged_in_the_settled_partials() -> None:
    def relu(p: dict[str, Any]) -> Any:
        xp = F.xp_of(p["x"])
        return xp.sum(1.5 * xp.maximum(p["x"], 0.0))

    run = make_run(relu, _relu_grad, _relu_point(), mode="directional")
    lf = first_leaf(run)
    assert lf.ad is not None  # JAX splits the gradient of maximum at the tie: 0.75 ≠ 0
    ev = screen.gather(run, lf)
    assert ev.parts is not None
    flat = 2 * 5 + 3
    np.testing.assert_array_equal(np.flatnonzero(ev.parts.taken), [flat])
    np.testing.assert_array_equal(np.flatnonzero(ev.parts.kink), [flat])
    assert ev.parts.left[flat] == pytest.approx(0.0, abs=1e-6)
    assert ev.parts.right[flat] == pytest.approx(1.5, rel=1e-6)


def test_gather_changes_neither_the_leaf_nor_the_references() -> None:
    params, x, v = tanh_case(4, 6, 5)
    run = make_run(F.tanh_layer, lambda p, x, v: {"W": 2 * F.tanh_layer_grad(p, x, v)["W"]},
                   params, x, v, mode="directional")
    lf = first_leaf(run)
    assert lf.ad is not None and run.refs.ad is not None
    before = [a.copy() for a in (lf.x, lf.hand, lf.native, lf.ad, *run.refs.obj.base, *run.refs.ad)]
    ev = screen.gather(run, lf)
    assert ev.parts is not None
    after = (lf.x, lf.hand, lf.native, lf.ad, *run.refs.obj.base, *run.refs.ad)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- localisation

N_LOC = 50
_A = np.random.default_rng(11).normal(size=(N_LOC, N_LOC)) / 7


def _np_loss(p: dict[str, Any]) -> float:
    return float(np.sum(np.tanh(np.dot(p["W"], _A))))


def _np_grad(p: dict[str, Any]) -> np.ndarray:
    return np.dot(1 - np.tanh(np.dot(p["W"], _A)) ** 2, _A.T)


def _point() -> dict[str, np.ndarray]:
    return {"W": np.random.default_rng(12).normal(size=(N_LOC, N_LOC))}


def _screened(run: Run, lf: Leaf) -> tuple[Evidence, judge.Judgement]:
    ev = screen.gather(run, lf)
    return ev, judge.screen(run, lf, ev)


@settings(max_examples=8, deadline=None)
@given(i=st.integers(0, N_LOC - 1), j=st.integers(0, N_LOC - 1), off=st.sampled_from([0.05, -0.3, 1.0]))
def test_localise_leaf_names_a_single_wrong_entry(i: int, j: int, off: float) -> None:
    def bad(p: dict[str, Any]) -> dict[str, np.ndarray]:
        g = _np_grad(p)
        g[i, j] += off * float(np.max(np.abs(g)))  # relative to the leaf's largest entry
        return {"W": g}

    run = make_run(_np_loss, bad, _point(), jax_twin=False)
    assert run.refs.ad is None and run.refs.available == ("numeric",)
    lf = first_leaf(run)
    ev, found = _screened(run, lf)
    assert found.verdict == "fail"
    calls = run.refs.obj.calls
    where = screen.localise_leaf(run, lf, found.tol, (found.verdict, ev.method, ("screen note",)))
    spent = run.refs.obj.calls - calls
    assert where.mode == "localised" and where.parts is not None
    loc = where.localisation
    assert isinstance(loc, Localisation)
    assert loc.tests > 0 and 1 <= loc.entries <= 8 + screen.DENSE_SAMPLE and loc.blocks == ()
    assert where.unresolved is not None and where.unresolved.size == 0
    flat = i * N_LOC + j
    assert where.parts.taken[flat] and int(where.parts.taken.sum()) == loc.entries
    true = _np_grad(_point())[i, j]
    assert abs(where.parts.num[flat] - true) <= 1e-6 * max(1.0, abs(true))
    # far fewer forward calls than the 2·N of an entry-by-entry check
    assert spent < lf.size
    note, *rest = where.notes
    assert rest == ["screen note"]
    assert note.startswith("directional screening gave 'fail'")
    assert f"{loc.tests} block tests and {loc.entries} single-entry partials" in note
    assert f"({spent} forward calls for {lf.size} entries)" in note
    assert "unresolved" not in note
    status = judge.localised(run, lf, where, found.tol).status
    np.testing.assert_array_equal(np.flatnonzero(status == "hand"), [flat])


def test_localise_leaf_reports_blocks_left_unresolved_by_the_budget() -> None:
    def bad(p: dict[str, Any]) -> dict[str, np.ndarray]:
        g = _np_grad(p)
        g[::7, ::3] *= 1.5
        return {"W": g}

    run = make_run(_np_loss, bad, _point(), localise_max=16)
    lf = first_leaf(run)
    ev, found = _screened(run, lf)
    assert found.verdict == "fail"
    where = screen.localise_leaf(run, lf, found.tol, (found.verdict, ev.method, ()))
    loc = where.localisation
    assert loc is not None and loc.blocks
    assert where.unresolved is not None and where.unresolved.size > 0
    # the unresolved blocks' entries, less those the seeded sample measured first
    covered = np.concatenate([np.arange(a, b) for a, b in loc.blocks])
    assert where.parts is not None
    covered = np.setdiff1d(covered, np.flatnonzero(where.parts.taken))
    np.testing.assert_array_equal(covered, np.sort(where.unresolved))
    (note,) = where.notes
    assert (f"{where.unresolved.size} entries in {len(loc.blocks)} blocks stayed unresolved within "
            "the budget (localise_max=16)") in note


# --------------------------------------------------------------------------- a leaf wrong almost everywhere


def _scaled(factor: float) -> Any:
    def bad(p: dict[str, Any]) -> dict[str, np.ndarray]:
        return {"W": factor * _np_grad(p)}
    return bad


@settings(max_examples=6, deadline=None)
@given(factor=st.sampled_from([1.5, 0.5, -1.0, 1.01]), seed=st.integers(0, 2**16))
def test_a_leaf_wrong_almost_everywhere_stops_at_the_seeded_sample(factor: float, seed: int) -> None:
    """Bisection of a leaf wrong at every entry would measure all of them one by one; the seeded
    sample shows it is wrong almost everywhere and the check stops there, blaming the hand."""
    run = make_run(_np_loss, _scaled(factor), _point(), seed=seed)
    lf = first_leaf(run)
    ev, found = _screened(run, lf)
    assert found.verdict == "fail"
    calls = run.refs.obj.calls
    where = screen.localise_leaf(run, lf, found.tol, (found.verdict, ev.method, ()))
    spent = run.refs.obj.calls - calls
    assert where.sampled and where.parts is not None and where.localisation is not None
    taken = np.flatnonzero(where.parts.taken)
    assert taken.size == screen.DENSE_SAMPLE and where.localisation.tests == 0
    # the complex step, and central differences where it contradicts the hand: no block tests
    assert spent <= 8 * screen.DENSE_SAMPLE < lf.size
    assert where.unresolved is not None
    np.testing.assert_array_equal(np.sort(np.concatenate([taken, where.unresolved])), np.arange(lf.size))
    status = judge.localised(run, lf, where, found.tol).status
    assert set(status[taken]) == {"hand"} and set(status[where.unresolved]) == {"unverified"}
    assert "wrong almost everywhere" in where.notes[0]


def test_a_check_that_stops_at_the_sample_says_so_and_diagnoses_from_it() -> None:
    import gradcheck as gc

    res = gc.check_grad(_np_loss, _scaled(0.5), _point(), jax_twin=False)
    leaf = res.leaf("W")
    assert (res.verdict, leaf.blame, leaf.mode) == ("fail", "hand", "localised")
    assert leaf.diagnosis is not None and (leaf.diagnosis.kind, leaf.diagnosis.factor) == ("scale", 0.5)
    assert any(f"the other {N_LOC * N_LOC - screen.DENSE_SAMPLE} entries were not measured" in n
               for n in leaf.notes)
    # the unmeasured entries are not said to be beyond the finite differences' accuracy
    assert not any("could not be verified" in n for n in leaf.notes)
    res = gc.check_grad(_np_loss, lambda p: {"W": _np_grad(p) + np.sin(7 * p["W"])}, _point(), jax_twin=False)
    leaf = res.leaf("W")
    assert leaf.diagnosis is not None and leaf.diagnosis.kind in ("widespread", "sampled")
    assert f"of {screen.DENSE_SAMPLE} entries of a seeded sample" in leaf.diagnosis.summary
    # only a sample wrong at every entry is called spread over the tensor
    n_bad = int(leaf.diagnosis.summary.split("wrong at ")[1].split(" of ")[0].replace("every one", "-1"))
    assert (leaf.diagnosis.kind == "widespread") == (n_bad == -1)


def test_a_sparse_bug_is_not_taken_for_a_dense_one() -> None:
    """Two wrong entries: at most two sampled entries are wrong, never a quarter of the sample."""
    def bad(p: dict[str, Any]) -> dict[str, np.ndarray]:
        g = _np_grad(p)
        g[3, 4] += 0.1
        g[40, 2] -= 0.1
        return {"W": g}

    for seed in range(5):
        run = make_run(_np_loss, bad, _point(), seed=seed)
        lf = first_leaf(run)
        ev, found = _screened(run, lf)
        where = screen.localise_leaf(run, lf, found.tol, (found.verdict, ev.method, ()))
        assert not where.sampled and where.localisation is not None and where.localisation.tests > 0
        status = judge.localised(run, lf, where, found.tol).status
        np.testing.assert_array_equal(np.flatnonzero(status == "hand"), [3 * N_LOC + 4, 40 * N_LOC + 2])
