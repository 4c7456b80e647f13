"""measure.py: the primitives evidence is gathered with.  Seeds are deterministic per (seed, leaf,
salt); a leaf is judged in the lowest of its dtypes; Partials fill only what is asked and never
change in place; partials and directional derivatives are accurate on smooth forwards and report
kinks; many hand-vs-autodiff suspects are sampled first; numeric_rtol follows the precision."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import measure
from gradcheck.measure import (
    SALT_CONTROL,
    SALT_LED_PROBE,
    SALT_LED_SAMPLE,
    SALT_SUSPECTS,
    SUSPECT_SAMPLE,
    Evidence,
    Measured,
    Partials,
    Run,
    directional,
    leaf,
    numeric_rtol,
    partials,
    probe_seed,
    probe_tol,
    suspects,
)
from gradcheck.numeric import Directional
from gradcheck.options import validate
from gradcheck.references import Regime
from gradcheck.tolerance import GRAD_RTOL, Tolerance
from tests.gradcheck._stages import make_run


# A smooth forward with a known gradient: Σ c0·sin(W) + c1·W³ + c2·exp(W/2).
def smooth(p: dict[str, Any], c: np.ndarray) -> Any:
    W = p["W"]
    return np.sum(c[0] * np.sin(W) + c[1] * W**3 + c[2] * np.exp(0.5 * W))


def smooth_grad_of(W: np.ndarray, c: np.ndarray) -> np.ndarray:
    return c[0] * np.cos(W) + 3 * c[1] * W**2 + 0.5 * c[2] * np.exp(0.5 * W)


def smooth_grad(p: dict[str, Any], c: np.ndarray) -> dict[str, Any]:
    return {"W": smooth_grad_of(p["W"], c)}


def smooth_run(W: np.ndarray, c: np.ndarray, **options: Any) -> Run:
    return make_run(smooth, smooth_grad, {"W": W}, c, references="numeric", **options)


def casts_to_float32(p: dict[str, Any]) -> Any:
    return np.sum(np.sin(np.real(p["W"]).astype(np.float32)))


def rtol_of(run: Run, lf: measure.Leaf) -> float:
    return lf.tolerance(run, float(np.max(np.abs(lf.hand)))).rtol


# --------------------------------------------------------------------------- seeds


def test_probe_seed_is_deterministic() -> None:
    assert probe_seed(0, 0, SALT_SUSPECTS) == probe_seed(0, 0, SALT_SUSPECTS)
    assert isinstance(probe_seed(3, 1, SALT_CONTROL), int)


def test_the_salts_are_distinct() -> None:
    salts = [SALT_LED_PROBE, SALT_LED_SAMPLE, SALT_SUSPECTS, SALT_CONTROL]
    assert len(set(salts)) == len(salts)


@given(seed=st.integers(0, 2**32), k=st.integers(0, 64), salt=st.integers(0, 2**16))
def test_probe_seed_differs_across_seeds_leaves_and_salts(seed: int, k: int, salt: int) -> None:
    s = probe_seed(seed, k, salt)
    assert s == probe_seed(seed, k, salt)
    assert s != probe_seed(seed + 1, k, salt)
    assert s != probe_seed(seed, k + 1, salt)
    assert s != probe_seed(seed, k, salt + 1)


def test_the_named_salts_give_different_choices() -> None:
    seeds = {probe_seed(0, 0, s) for s in (SALT_LED_PROBE, SALT_LED_SAMPLE, SALT_SUSPECTS,
                                             SALT_CONTROL)}
    assert len(seeds) == 4


# --------------------------------------------------------------------------- leaves

FLOATS = [np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)]


def lowest(*dtypes: np.dtype[Any]) -> np.dtype[Any]:
    return max(dtypes, key=lambda d: float(np.finfo(d).eps))


@pytest.fixture(scope="module")
def runs_by_param_dtype() -> dict[np.dtype[Any], Run]:
    c = np.array([1.0, 0.5, -0.3])
    return {np.dtype(dt): smooth_run(np.linspace(-1, 1, 6).astype(dt), c)
            for dt in (np.float32, np.float64)}


@pytest.mark.parametrize(("hand", "param", "precision"),
                         list(itertools.product(FLOATS, FLOATS[1:], FLOATS[1:])))
def test_leaf_is_judged_in_the_lowest_of_hand_param_and_forward_precision(
        runs_by_param_dtype: dict[np.dtype[Any], Run], hand: np.dtype[Any], param: np.dtype[Any],
        precision: np.dtype[Any]) -> None:
    run = runs_by_param_dtype[param]
    run = dataclasses.replace(run, refs=dataclasses.replace(run.refs, precision=precision))
    native = run.problem.hand[0]
    assert native is not None
    lf = leaf(run, 0, native.astype(hand))
    assert lf.judged == lowest(hand, param, precision)
    own = leaf(run, 0, native.astype(hand), own_dtype=True)
    assert own.judged == lowest(hand, precision)


def test_a_float32_forward_judges_a_float64_gradient_in_float32() -> None:
    W = np.linspace(0.1, 1, 5)
    run = make_run(casts_to_float32, lambda p: {"W": np.cos(p["W"])}, {"W": W}, references="numeric")
    assert run.refs.precision == np.float32
    hand = run.problem.hand[0]
    assert hand is not None and hand.dtype == np.float64
    assert leaf(run, 0, hand).judged == np.float32
    assert leaf(run, 0, hand, own_dtype=True).judged == np.float32


def test_own_dtype_ignores_the_parameter_dtype(runs_by_param_dtype: dict[np.dtype[Any], Run]) -> None:
    run = runs_by_param_dtype[np.dtype(np.float32)]
    assert run.refs.precision == np.float64
    wide = np.cos(run.refs.obj.base[0])  # a float64 recomputation of a float32 leaf's gradient
    assert leaf(run, 0, wide).judged == np.float32
    assert leaf(run, 0, wide, own_dtype=True).judged == np.float64


def test_leaf_fields(runs_by_param_dtype: dict[np.dtype[Any], Run]) -> None:
    run = runs_by_param_dtype[np.dtype(np.float32)]
    native = np.arange(6, dtype=np.float32).reshape(2, 3)
    lf = leaf(run, 0, native)
    assert lf.k == 0 and lf.name == "W"
    assert lf.x is run.refs.obj.base[0] and lf.x.dtype == np.float64
    assert lf.native is native and lf.shape == (2, 3) and lf.size == 6
    assert lf.hand.dtype == np.float64 and lf.hand.shape == (6,)
    np.testing.assert_array_equal(lf.hand, native.astype(np.float64).ravel())
    assert lf.ad is None and lf.ad_scale() == 0.0
    assert lf.x_scale == 1.0  # max(1, max|W|) with |W| <= 1
    big = dataclasses.replace(run, problem=dataclasses.replace(
        run.problem, values=(np.full(6, -4.0, np.float32),)))
    assert leaf(big, 0, np.zeros(6, np.float32)).x_scale == 4.0
    tol = lf.tolerance(run, 5.0)
    assert isinstance(tol, Tolerance) and tol.judged == np.float32
    assert tol.rtol == GRAD_RTOL[np.dtype(np.float32)]


# --------------------------------------------------------------------------- Partials


def test_empty_partials_measure_nothing() -> None:
    parts = Partials.empty(7)
    for a in (parts.num, parts.err, parts.left, parts.right):
        assert a.shape == (7,) and np.isnan(a).all()
    assert not parts.kink.any() and not parts.taken.any()
    assert parts.measured.size == 0 and parts.method is None


@pytest.fixture(scope="module")
def smooth_case() -> tuple[Run, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    W, c = rng.normal(size=(3, 4)), np.array([1.3, -0.4, 0.7])
    return smooth_run(W, c), W, c


def test_with_fills_only_the_requested_entries_and_leaves_the_original_unchanged(
        smooth_case: tuple[Run, np.ndarray, np.ndarray]) -> None:
    run, W, c = smooth_case
    lf = leaf(run, 0, smooth_grad_of(W, c))
    empty = Partials.empty(lf.size)
    idx = np.array([1, 5, 10])
    parts = empty.with_(run, lf, idx, rtol_of(run, lf))
    np.testing.assert_array_equal(parts.measured, idx)
    np.testing.assert_array_equal(np.flatnonzero(parts.taken), idx)
    np.testing.assert_allclose(parts.num[idx], smooth_grad_of(W, c).ravel()[idx], rtol=1e-12)
    assert (parts.err[idx] > 0).all()
    rest = np.setdiff1d(np.arange(lf.size), idx)
    assert np.isnan(parts.num[rest]).all() and np.isnan(parts.err[rest]).all()
    assert parts.method == "complex"
    # The original is unchanged.
    assert np.isnan(empty.num).all() and not empty.taken.any() and empty.measured.size == 0
    # Growing again keeps what was there, and is again a new object.
    more = parts.with_(run, lf, np.array([0, 2]), rtol_of(run, lf))
    np.testing.assert_array_equal(more.measured, [0, 1, 2, 5, 10])
    np.testing.assert_array_equal(more.num[idx], parts.num[idx])
    np.testing.assert_array_equal(parts.measured, idx)
    # Nothing asked: the same partials.
    assert parts.with_(run, lf, np.array([], dtype=np.int64), 5e-7) is parts


def test_with_widens_error_bars_by_the_regime(smooth_case: tuple[Run, np.ndarray, np.ndarray]) -> None:
    run, W, c = smooth_case
    lf = leaf(run, 0, smooth_grad_of(W, c))
    idx = np.arange(lf.size)
    plain = Partials.empty(lf.size).with_(run, lf, idx, 5e-7)
    exploding = dataclasses.replace(run, refs=dataclasses.replace(
        run.refs, regime=Regime("exploding", 1e4, 100.0, "exploding regime")))
    wide = Partials.empty(lf.size).with_(exploding, lf, idx, 5e-7)
    np.testing.assert_array_equal(wide.num, plain.num)
    np.testing.assert_allclose(wide.err, 100.0 * plain.err, rtol=1e-15)


def test_evidence_kink_without_partials_is_none() -> None:
    assert not Evidence("full", None).kink(4).any()
    parts = dataclasses.replace(Partials.empty(3), kink=np.array([False, True, False]))
    np.testing.assert_array_equal(Evidence("full", parts).kink(3), [False, True, False])


def test_records_are_frozen(smooth_case: tuple[Run, np.ndarray, np.ndarray]) -> None:
    run, W, c = smooth_case
    lf = leaf(run, 0, smooth_grad_of(W, c))
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.opts = validate({})  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        lf.judged = np.dtype(np.float16)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Partials.empty(2).num = np.zeros(2)  # type: ignore[misc]


# --------------------------------------------------------------------------- partials


shapes = hnp.array_shapes(min_dims=1, max_dims=2, max_side=4)


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), shape=shapes)
def test_complex_step_partials_of_a_smooth_function_are_the_gradient(
        seed: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(seed)
    W, c = rng.normal(size=shape), rng.normal(size=3)
    run = smooth_run(W, c)
    assert run.refs.complex_ok
    g = smooth_grad_of(W, c).ravel()
    lf = leaf(run, 0, g.reshape(shape))
    got = partials(run, lf, np.arange(lf.size), rtol_of(run, lf))
    assert got.method == "complex" and not got.kink.any()
    np.testing.assert_array_equal(got.indices, np.arange(lf.size))
    assert np.max(np.abs(got.value - g)) <= 1e-10 * np.max(np.abs(g))


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), shape=shapes)
def test_central_partials_of_a_smooth_function_are_the_gradient_within_their_bars(
        seed: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(seed)
    W, c = rng.normal(size=shape), rng.normal(size=3)
    run = smooth_run(W, c, complex_step=False)
    g = smooth_grad_of(W, c).ravel()
    lf = leaf(run, 0, g.reshape(shape))
    got = partials(run, lf, np.arange(lf.size), rtol_of(run, lf))
    assert got.method == "central" and not got.kink.any()
    # central differences are accurate relative to the loss's scale (about 1 here), not to a
    # gradient that happens to cancel to 6e-5
    assert np.max(np.abs(got.value - g)) <= 1e-8 * max(float(np.max(np.abs(g))), 1.0)
    assert (np.abs(got.value - g) <= got.error).all()


def test_entries_where_the_complex_step_contradicts_the_hand_are_re_measured(
        smooth_case: tuple[Run, np.ndarray, np.ndarray]) -> None:
    run, W, c = smooth_case
    g = smooth_grad_of(W, c).ravel()
    wrong = g.copy()
    wrong[[2, 7]] *= -1
    lf = leaf(run, 0, wrong.reshape(W.shape))
    got = partials(run, lf, np.arange(lf.size), rtol_of(run, lf))
    assert got.method == "complex+central"
    np.testing.assert_allclose(got.value, g, rtol=1e-8, atol=1e-10)
    # Only the contradicted entries carry central differences' one-sided slopes.
    np.testing.assert_array_equal(np.flatnonzero(~np.isnan(got.left)), [2, 7])


def test_abs_at_zero_is_a_kink_by_central_differences() -> None:
    W = np.array([[0.0, 1.0], [-2.0, 0.5]])
    run = make_run(lambda p: np.sum(np.abs(p["W"])), lambda p: {"W": np.sign(p["W"])}, {"W": W},
                   references="numeric")
    assert not run.refs.complex_ok
    hand = run.problem.hand[0]
    assert hand is not None
    lf = leaf(run, 0, hand)
    got = partials(run, lf, np.arange(4), rtol_of(run, lf))
    assert got.method == "central"
    np.testing.assert_array_equal(got.kink, [True, False, False, False])
    assert got.left[0] == pytest.approx(-1.0) and got.right[0] == pytest.approx(1.0)
    np.testing.assert_allclose(got.value[1:], [1.0, -1.0, 1.0], rtol=1e-9)


# --------------------------------------------------------------------------- directional


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), shape=shapes, complex_step=st.sampled_from([None, False]))
def test_directional_matches_the_inner_product_with_the_gradient(
        seed: int, shape: tuple[int, ...], complex_step: bool | None) -> None:
    rng = np.random.default_rng(seed)
    W, c = rng.normal(size=shape), rng.normal(size=3)
    run = smooth_run(W, c, complex_step=complex_step)
    g = smooth_grad_of(W, c)
    lf = leaf(run, 0, g)
    tol = lf.tolerance(run, float(np.max(np.abs(g))))
    u = rng.standard_normal(shape)
    d = directional(run, lf, u, float(np.sum(g * u)), tol)
    expected = float(np.sum(g * d.direction))
    scale = float(np.linalg.norm(g) * np.linalg.norm(u))
    if run.refs.complex_ok:
        assert d.method == "complex"
        np.testing.assert_array_equal(d.direction, u)
        assert abs(d.value - expected) <= 1e-12 * scale
    else:
        assert d.method == "central" and not d.kink
        assert abs(d.value - expected) <= max(d.error, 1e-8 * scale)


def test_directional_falls_back_to_central_when_the_hand_disagrees(
        smooth_case: tuple[Run, np.ndarray, np.ndarray]) -> None:
    run, W, c = smooth_case
    g = smooth_grad_of(W, c)
    lf = leaf(run, 0, g)
    tol = lf.tolerance(run, float(np.max(np.abs(g))))
    u = np.random.default_rng(5).standard_normal(W.shape)
    ph = float(np.sum(g * u))
    assert directional(run, lf, u, ph, tol).method == "complex"
    d = directional(run, lf, u, -ph, tol)  # a sign-flipped hand gradient's projection
    assert d.method == "central"
    assert d.value == pytest.approx(float(np.sum(g * d.direction)), rel=1e-7)


def test_directional_across_a_kink_reports_it() -> None:
    W = np.array([0.0, 1.0, -2.0])
    run = make_run(lambda p: np.sum(np.abs(p["W"])), lambda p: {"W": np.sign(p["W"])}, {"W": W},
                   references="numeric")
    hand = run.problem.hand[0]
    assert hand is not None
    lf = leaf(run, 0, hand)
    u = np.array([1.0, 0.3, 0.2])
    d = directional(run, lf, u, float(hand @ u), lf.tolerance(run, 1.0))
    assert d.method == "central" and d.kink


def test_probe_tol_is_rtol_of_the_terms_plus_atol_per_unit_plus_the_bar() -> None:
    hand = np.array([3.0, -4.0])
    u = np.array([1.0, 1.0])
    m = Measured(0, u, Directional(u, -1.0, 0.01, np.nan, np.nan, False, "central"))
    tol = Tolerance(1e-3, 1e-6, np.dtype(np.float64))
    # ‖hand ⊙ u‖ = 5 > |−1|
    assert probe_tol(hand, m, tol, 1.0) == pytest.approx(1e-3 * 5 + 1e-6 * np.sqrt(2) + 0.01)
    assert probe_tol(hand, m, tol, 10.0) == pytest.approx(1e-3 * 5 + 1e-6 * np.sqrt(2) + 0.1)
    far = Measured(0, u, Directional(u, -50.0, 0.0, np.nan, np.nan, False, "central"))
    assert probe_tol(hand, far, tol, 1.0) == pytest.approx(1e-3 * 50 + 1e-6 * np.sqrt(2))


# --------------------------------------------------------------------------- suspects


def quadratic(p: dict[str, Any], A: np.ndarray) -> Any:
    xp = p["W"].__array_namespace__()
    return xp.sum(A * p["W"] ** 2)


@pytest.fixture(scope="module")
def quad() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 20)), rng.uniform(0.5, 2.0, size=(20, 20))


@pytest.fixture(scope="module")
def sign_flipped(quad: tuple[np.ndarray, np.ndarray]) -> Run:
    """A 20×20 quadratic on an array-API forward (autodiff present), hand gradient negated."""
    W, A = quad
    return make_run(quadratic, lambda p, A: {"W": -2 * A * p["W"]}, {"W": W}, A)


def test_the_quadratic_has_an_autodiff_reference(sign_flipped: Run,
                                                 quad: tuple[np.ndarray, np.ndarray]) -> None:
    W, A = quad
    assert sign_flipped.refs.ad is not None
    lf = leaf(sign_flipped, 0, -2 * A * W)
    assert lf.ad is not None
    np.testing.assert_allclose(lf.ad, (2 * A * W).ravel(), rtol=1e-14)
    assert lf.ad_scale() == pytest.approx(float(np.max(np.abs(2 * A * W))))


def assert_on_gradient(parts: Partials, idx: np.ndarray, grad: np.ndarray) -> None:
    """The finite differences at ``idx`` are the gradient there, within their error bars (the
    entries the complex step contradicts the hand at are central differences: ~1e-8 absolute)."""
    g = grad.ravel()[idx]
    assert (np.abs(parts.num[idx] - g) <= parts.err[idx]).all()
    assert np.max(np.abs(parts.num[idx] - g)) <= 1e-7 * float(np.max(np.abs(grad)))


def _suspect_leaf(run: Run) -> tuple[measure.Leaf, Tolerance]:
    hand = run.problem.hand[0]
    assert hand is not None
    lf = leaf(run, 0, hand)
    return lf, lf.tolerance(run, lf.ad_scale())


def test_few_suspects_are_all_measured(sign_flipped: Run, quad: tuple[np.ndarray, np.ndarray]) -> None:
    W, A = quad
    lf, tol = _suspect_leaf(sign_flipped)
    which = np.arange(0, 400, 7)
    assert which.size <= SUSPECT_SAMPLE
    got = suspects(sign_flipped, lf, Partials.empty(400), which, tol)
    np.testing.assert_array_equal(np.flatnonzero(got.taken), which)
    assert_on_gradient(got, which, 2 * A * W)


def test_already_measured_suspects_are_not_measured_again(sign_flipped: Run) -> None:
    lf, tol = _suspect_leaf(sign_flipped)
    first = Partials.empty(400).with_(sign_flipped, lf, np.arange(5), tol.rtol)
    calls = sign_flipped.refs.obj.calls
    got = suspects(sign_flipped, lf, first, np.arange(10), tol)
    np.testing.assert_array_equal(np.flatnonzero(got.taken), np.arange(10))
    np.testing.assert_array_equal(got.num[:5], first.num[:5])
    # Five new entries, a few evaluations each (complex step, then central where it contradicts).
    assert 5 <= sign_flipped.refs.obj.calls - calls <= 5 * 5


def test_many_suspects_siding_with_autodiff_measure_only_the_sample(
        sign_flipped: Run, quad: tuple[np.ndarray, np.ndarray]) -> None:
    W, A = quad
    lf, tol = _suspect_leaf(sign_flipped)
    which = np.arange(400)
    got = suspects(sign_flipped, lf, Partials.empty(400), which, tol)
    taken = np.flatnonzero(got.taken)
    assert taken.size == SUSPECT_SAMPLE and got.measured.size == SUSPECT_SAMPLE
    # The sample is the seeded one.
    rng = np.random.default_rng(probe_seed(sign_flipped.opts.seed, 0, SALT_SUSPECTS))
    np.testing.assert_array_equal(taken, np.sort(rng.choice(which, SUSPECT_SAMPLE, replace=False)))
    assert_on_gradient(got, taken, 2 * A * W)
    # Reproducible, and another seed samples other entries.
    again = suspects(sign_flipped, lf, Partials.empty(400), which, tol)
    np.testing.assert_array_equal(np.flatnonzero(again.taken), taken)
    reseeded = dataclasses.replace(sign_flipped, opts=validate({"seed": 1}))
    other = suspects(reseeded, lf, Partials.empty(400), which, tol)
    assert np.flatnonzero(other.taken).size == SUSPECT_SAMPLE
    assert not np.array_equal(np.flatnonzero(other.taken), taken)


@pytest.fixture(scope="module")
def half_flipped(quad: tuple[np.ndarray, np.ndarray]) -> Run:
    """The quadratic with every other entry of the hand gradient negated."""
    W, A = quad
    sign = np.where(np.arange(400).reshape(20, 20) % 2 == 0, -1.0, 1.0)
    return make_run(quadratic, lambda p, A: {"W": sign * 2 * A * p["W"]}, {"W": W}, A)


def test_many_suspects_not_all_siding_with_autodiff_are_all_measured(half_flipped: Run) -> None:
    lf, tol = _suspect_leaf(half_flipped)
    which = np.arange(400)  # half of them the hand gets right: the sample is not unanimous
    got = suspects(half_flipped, lf, Partials.empty(400), which, tol)
    assert got.taken.all() and got.measured.size == 400
    capped = suspects(half_flipped, lf, Partials.empty(400), which, tol, limit=10)
    assert np.count_nonzero(capped.taken) == SUSPECT_SAMPLE
    generous = suspects(half_flipped, lf, Partials.empty(400), which, tol, limit=400)
    assert generous.taken.all()


# --------------------------------------------------------------------------- numeric_rtol


def test_numeric_rtol_is_the_table_rtol_of_the_forward_precision() -> None:
    W = np.linspace(0.1, 1, 5)
    exact = make_run(lambda p: np.sum(np.sin(p["W"])), lambda p: {"W": np.cos(p["W"])}, {"W": W},
                     references="numeric")
    low = make_run(casts_to_float32, lambda p: {"W": np.cos(p["W"])}, {"W": W}, references="numeric")
    assert exact.refs.precision == np.float64 and low.refs.precision == np.float32
    assert numeric_rtol(exact) == GRAD_RTOL[np.dtype(np.float64)]
    assert numeric_rtol(low) == GRAD_RTOL[np.dtype(np.float32)]
    # ...independent of the parameter's dtype: a float32 parameter through an exact forward.
    w32 = make_run(lambda p: np.sum(np.sin(p["W"])), lambda p: {"W": np.cos(p["W"])},
                   {"W": W.astype(np.float32)}, references="numeric")
    assert numeric_rtol(w32) == GRAD_RTOL[np.dtype(np.float64)]


def test_numeric_rtol_follows_an_rtol_override(runs_by_param_dtype: dict[np.dtype[Any], Run]) -> None:
    run = runs_by_param_dtype[np.dtype(np.float64)]
    assert numeric_rtol(dataclasses.replace(run, opts=validate({"rtol": 1e-3}))) == 1e-3
    by_dtype = dataclasses.replace(run, opts=validate({"rtol": {np.float64: 1e-9, np.float32: 0.1}}))
    assert numeric_rtol(by_dtype) == 1e-9
    other = dataclasses.replace(run, opts=validate({"rtol": {np.float32: 0.1}}))
    assert numeric_rtol(other) == GRAD_RTOL[np.dtype(np.float64)]
