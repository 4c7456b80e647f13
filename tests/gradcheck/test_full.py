"""full.py: evidence at every entry, and the autodiff-led check of large leaves."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import full
from gradcheck.measure import Evidence, Leaf, Run, leaf
from tests.gradcheck import _functions as F
from tests.gradcheck._stages import first_leaf, make_run


def tanh_case(seed: int, m: int, n: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(size=(m, n))}, rng.normal(size=(5, m)), rng.normal(size=(5, n))


# A leaf of 70 × 70 = 4900 > FULL_NUMERIC_MAX entries, traceable by JAX.
N_BIG = 70
_A = np.random.default_rng(7).normal(size=(N_BIG, N_BIG)) / np.sqrt(N_BIG)


def big_loss(p: dict[str, Any]) -> Any:
    xp = F.xp_of(p["W"])
    return xp.sum(xp.tanh(p["W"] @ _A))


def big_grad(p: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"W": (1 - np.tanh(p["W"] @ _A) ** 2) @ _A.T}


def big_point() -> dict[str, np.ndarray]:
    return {"W": np.random.default_rng(8).normal(size=(N_BIG, N_BIG))}


def snapshot(run: Run, lf: Leaf) -> list[np.ndarray]:
    arrays = [lf.x, lf.native, lf.hand, *run.refs.obj.base]
    if lf.ad is not None:
        arrays.append(lf.ad)
    if run.refs.ad is not None:
        arrays.extend(run.refs.ad)
    return [a.copy() for a in arrays]


def assert_unchanged(before: list[np.ndarray], run: Run, lf: Leaf) -> None:
    after = snapshot(run, lf)
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- every entry


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), m=st.integers(1, 4), n=st.integers(1, 4),
       refs=st.sampled_from([("numeric", "autodiff"), ("numeric",)]))
def test_small_problem_measures_every_entry(seed: int, m: int, n: int, refs: tuple[str, ...]) -> None:
    params, x, v = tanh_case(seed, m, n)
    run = make_run(F.tanh_layer, F.tanh_layer_grad, params, x, v, references=refs, mode="full")
    lf = first_leaf(run)
    ev = full.gather(run, lf, run.problem.total)
    assert isinstance(ev, Evidence) and ev.mode == "full"
    assert ev.parts is not None and ev.led is None and ev.notes == ()
    assert ev.parts.num.shape == (m * n,)
    assert not np.isnan(ev.parts.num).any()
    assert ev.parts.taken.all()
    assert not ev.parts.kink.any()
    assert ev.method in ("complex", "complex+central")
    assert ev.method == ev.parts.method
    true = F.tanh_layer_grad(params, x, v)["W"].ravel()
    np.testing.assert_allclose(ev.parts.num, true, rtol=1e-7, atol=1e-9)


def test_without_the_complex_step_every_entry_is_a_central_difference() -> None:
    params, x, v = tanh_case(1, 3, 4)
    run = make_run(F.tanh_layer, F.tanh_layer_grad, params, x, v, complex_step=False, mode="full")
    assert not run.refs.complex_ok
    lf = first_leaf(run)
    ev = full.gather(run, lf, run.problem.total)
    assert ev.method == "central" and ev.parts is not None
    assert not np.isnan(ev.parts.num).any()
    np.testing.assert_allclose(ev.parts.num, F.tanh_layer_grad(params, x, v)["W"].ravel(), rtol=1e-5)


def test_without_a_numeric_reference_there_are_no_partials() -> None:
    params, x, v = tanh_case(2, 3, 3)
    run = make_run(F.tanh_layer, F.tanh_layer_grad, params, x, v, references=("autodiff",))
    assert not run.refs.numeric
    lf = first_leaf(run)
    calls = run.refs.obj.calls
    ev = full.gather(run, lf, run.problem.total)
    assert ev == Evidence("full", None)
    assert ev.parts is None and ev.method is None
    assert run.refs.obj.calls == calls  # nothing was measured


def test_a_problem_within_the_limit_is_measured_in_full_even_with_autodiff() -> None:
    params, x, v = tanh_case(3, 5, 5)
    run = make_run(F.tanh_layer, F.tanh_layer_grad, params, x, v, mode="full")
    lf = first_leaf(run)
    assert lf.ad is not None
    ev = full.gather(run, lf, full.FULL_NUMERIC_MAX)  # exactly at the limit: not led
    assert ev.led is None and ev.parts is not None and ev.parts.taken.all()


# --------------------------------------------------------------------------- autodiff-led


@pytest.fixture(scope="module")
def big_run() -> Run:
    return make_run(big_loss, big_grad, big_point(), mode="full")


def test_a_large_problem_is_autodiff_led(big_run: Run) -> None:
    run = big_run
    lf = first_leaf(run)
    assert lf.ad is not None and run.problem.total > full.FULL_NUMERIC_MAX
    ev = full.gather(run, lf, run.problem.total)
    assert ev.parts is not None and ev.led is not None
    measured = np.flatnonzero(~np.isnan(ev.parts.num))
    # the seeded sample and the four largest entries: hand and autodiff agree everywhere
    assert full.FULL_SAMPLE <= measured.size <= full.FULL_SAMPLE + 4
    assert ev.led == (measured.size, run.opts.probes)
    assert set(np.argsort(np.abs(lf.ad))[-4:].tolist()) <= set(measured.tolist())
    np.testing.assert_array_equal(ev.parts.taken, ~np.isnan(ev.parts.num))
    (note,) = ev.notes
    assert "every entry compared with autodiff" in note
    assert f"{run.opts.probes} seeded directions" in note
    assert f"at {measured.size} of {lf.size} entries" in note
    np.testing.assert_allclose(ev.parts.num[measured], lf.ad[measured], rtol=1e-7, atol=1e-10)


def test_autodiff_led_measures_where_hand_and_autodiff_differ(big_run: Run) -> None:
    run = big_run
    hand = big_grad(big_point())["W"].copy()
    wrong = [(0, 0), (13, 52), (69, 69)]
    for i in wrong:
        hand[i] *= 1.01
    lf = leaf(run, 0, hand)
    ev = full.gather(run, lf, run.problem.total)
    assert ev.parts is not None and ev.led is not None
    measured = set(np.flatnonzero(~np.isnan(ev.parts.num)).tolist())
    flat = {int(np.ravel_multi_index(i, hand.shape)) for i in wrong}
    assert flat <= measured
    assert len(measured) <= full.FULL_SAMPLE + 4 + len(wrong)
    assert ev.led[0] == len(measured)


def test_autodiff_led_sample_is_seeded(big_run: Run) -> None:
    lf = first_leaf(big_run)
    a = full.gather(big_run, lf, big_run.problem.total)
    b = full.gather(big_run, lf, big_run.problem.total)
    assert a.parts is not None and b.parts is not None
    np.testing.assert_array_equal(a.parts.taken, b.parts.taken)
    np.testing.assert_array_equal(a.parts.num, b.parts.num)
    assert a.notes == b.notes and a.led == b.led


@pytest.mark.parametrize(("m", "n"), [(8, 8), (9, 9)])
def test_the_leaf_must_be_larger_than_the_sample_to_be_led(m: int, n: int) -> None:
    """In a problem of more than FULL_NUMERIC_MAX entries, a leaf of at most FULL_SAMPLE entries
    is measured in full; a larger one is autodiff-led."""
    params, x, v = tanh_case(5, m, n)
    run = make_run(F.tanh_layer, F.tanh_layer_grad, params, x, v, mode="full")
    lf = first_leaf(run)
    ev = full.gather(run, lf, full.FULL_NUMERIC_MAX + 1)
    assert ev.parts is not None
    measured = int(np.count_nonzero(~np.isnan(ev.parts.num)))
    if lf.size <= full.FULL_SAMPLE:
        assert ev.led is None and measured == lf.size
    else:
        assert ev.led == (measured, run.opts.probes) and measured < lf.size


def _square(p: dict[str, Any]) -> Any:
    xp = F.xp_of(p["W"])
    return xp.sum(p["W"] ** 2)


def _half_square_grad(p: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"W": p["W"].copy()}  # the bug the twin shares: half of 2·W


def _stop_gradient_twin(p: dict[str, Any]) -> Any:
    import jax
    import jax.numpy as jnp

    return jnp.sum(p["W"] * jax.lax.stop_gradient(p["W"]))


def test_a_wrong_twin_sends_the_leaf_back_to_every_entry() -> None:
    run = make_run(_square, _half_square_grad, big_point(), mode="full", jax_fun=_stop_gradient_twin)
    lf = first_leaf(run)
    assert lf.ad is not None and run.problem.twin
    np.testing.assert_allclose(lf.ad, lf.hand)  # hand and twin share the bug
    ev = full.gather(run, lf, run.problem.total)
    assert ev.led is None and ev.notes == ()
    assert ev.parts is not None and ev.parts.taken.all()
    assert not np.isnan(ev.parts.num).any()
    # the finite differences see the forward's true gradient 2·W, within their error bars
    true = 2 * big_point()["W"].ravel()
    assert np.all(np.abs(ev.parts.num - true) <= 10 * ev.parts.err + 1e-12)
    assert np.abs(ev.parts.num - true).max() < 1e-5


# --------------------------------------------------------------------------- purity


@pytest.mark.parametrize("case", ["small", "led"])
def test_gather_changes_neither_the_leaf_nor_the_references(case: str, big_run: Run) -> None:
    if case == "small":
        params, x, v = tanh_case(4, 4, 3)
        run = make_run(F.tanh_layer, F.tanh_layer_grad, params, x, v, mode="full")
    else:
        run = big_run
    lf = first_leaf(run)
    before = snapshot(run, lf)
    ev = full.gather(run, lf, run.problem.total)
    assert ev.parts is not None
    assert_unchanged(before, run, lf)
    # the evidence holds arrays of its own, not views of the leaf
    assert not np.shares_memory(ev.parts.num, lf.hand)
    assert not np.shares_memory(ev.parts.num, lf.x)


def test_auto_mode_samples_fewer_entries_than_full_mode() -> None:
    """In ``auto`` the autodiff-led sample is AUTO_SAMPLE entries (plus the four largest): the
    verdict rests on hand vs autodiff at every entry, the sample only validates autodiff."""
    run = make_run(big_loss, big_grad, big_point(), mode="auto")
    lf = first_leaf(run)
    ev = full.gather(run, lf, run.problem.total)
    assert ev is not None and ev.parts is not None and ev.led is not None
    measured = np.flatnonzero(~np.isnan(ev.parts.num))
    assert full.AUTO_SAMPLE <= measured.size <= full.AUTO_SAMPLE + 4 < full.FULL_SAMPLE
    assert set(np.argsort(np.abs(lf.ad))[-4:].tolist()) <= set(measured.tolist())
