"""compare.py: tolerance tables, elementwise agreement, error statistics, triangulation, the
diagnosis of planted bug shapes, and the mismatch message."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gradcheck as gc
from gradcheck import compare
from gradcheck.compare import GRAD_ATOL_FRACTION, agreement, close, diagnose, tolerance, triangulate

RTOL = 5e-7  # the float64 table entry

# --------------------------------------------------------------------------- tolerance


@pytest.mark.parametrize(("dtype", "rtol"), [
    (np.float16, 1e-2), (np.float32, 2e-3), (np.float64, 5e-7),
    ("float16", 1e-2), ("float32", 2e-3), ("float64", 5e-7),
    (np.dtype(np.float32), 2e-3), (float, 5e-7),
])
def test_tolerance_table(dtype: Any, rtol: float) -> None:
    assert tolerance(dtype) == rtol


@pytest.mark.parametrize(("dtype", "real"), [
    (np.complex64, np.float32), (np.complex128, np.float64), ("complex64", "float32"), (complex, float),
])
def test_complex_dtypes_use_their_real_counterpart(dtype: Any, real: Any) -> None:
    assert tolerance(dtype) == tolerance(real)
    assert tolerance(dtype, {real: 0.125}) == 0.125


@given(dtype=st.sampled_from([np.float16, np.float32, np.float64, np.complex64, np.complex128]),
       value=st.floats(0, 1))
def test_scalar_override_applies_to_every_dtype(dtype: Any, value: float) -> None:
    assert tolerance(dtype, value) == value
    assert isinstance(tolerance(dtype, value), float)


def test_scalar_override_accepts_an_int() -> None:
    assert tolerance(np.float32, 0) == 0.0


@pytest.mark.parametrize(("dtype", "override", "expected"), [
    (np.float32, {np.float32: 1e-2}, 1e-2),
    (np.float64, {np.float32: 1e-2}, 5e-7),  # missing dtypes fall back to the table
    (np.float16, {"float32": 1e-2, "float64": 1e-9}, 1e-2),
    ("float64", {"float32": 1e-2, "float64": 1e-9}, 1e-9),
    (np.complex64, {np.dtype(np.float32): 3e-3}, 3e-3),
    (np.float32, {}, 2e-3),
])
def test_dict_override_with_fallback(dtype: Any, override: dict[Any, float], expected: float) -> None:
    assert tolerance(dtype, override) == expected


def test_tolerance_table_is_strictest_for_float64() -> None:
    assert tolerance(np.float64) < tolerance(np.float32) < tolerance(np.float16)


# --------------------------------------------------------------------------- close

special = st.floats(allow_nan=True, allow_infinity=True, width=64)
same_shape_pairs = hnp.array_shapes(max_dims=2, max_side=5).flatmap(
    lambda s: st.tuples(hnp.arrays(np.float64, s, elements=special), hnp.arrays(np.float64, s, elements=special)))
tolerances = st.tuples(st.floats(0, 1), st.floats(0, 10), st.floats(0, 10))


@given(pair=same_shape_pairs, tol=tolerances)
def test_close_is_symmetric(pair: tuple[np.ndarray, np.ndarray], tol: tuple[float, float, float]) -> None:
    a, b = pair
    rtol, atol, err = tol
    np.testing.assert_array_equal(close(a, b, rtol=rtol, atol=atol, err=err),
                                  close(b, a, rtol=rtol, atol=atol, err=err))


@given(pair=same_shape_pairs, tol=tolerances)
def test_nan_never_agrees(pair: tuple[np.ndarray, np.ndarray], tol: tuple[float, float, float]) -> None:
    a, b = pair
    ok = close(a, b, rtol=tol[0], atol=tol[1], err=tol[2])
    assert not ok[np.isnan(a) | np.isnan(b)].any()
    assert not close(np.nan, np.nan, rtol=1.0, atol=math.inf, err=math.inf)


@given(sign=st.sampled_from([1.0, -1.0]), tol=tolerances)
def test_equal_infinities_agree(sign: float, tol: tuple[float, float, float]) -> None:
    inf = sign * math.inf
    assert close(inf, inf, rtol=tol[0], atol=tol[1], err=tol[2])
    assert close(np.array([inf, 1.0]), np.array([inf, 1.0]), rtol=0, atol=0).all()


def test_opposite_infinities_disagree_without_relative_tolerance() -> None:
    assert not close(math.inf, -math.inf, rtol=0.0, atol=1.0)
    assert not close(math.inf, 1.0, rtol=0.0, atol=1.0)


@given(x=st.floats(allow_nan=False), inf=st.sampled_from([math.inf, -math.inf]), rtol=st.floats(1e-9, 1))
def test_infinity_agrees_only_with_the_same_infinity(x: float, inf: float, rtol: float) -> None:
    assume(x != inf)
    assert not close(inf, x, rtol=rtol, atol=0.0)
    assert not close(x, inf, rtol=rtol, atol=0.0)


@given(pair=same_shape_pairs, tol=tolerances, more=st.floats(0, 10))
def test_close_widens_with_err_atol_and_rtol(
    pair: tuple[np.ndarray, np.ndarray], tol: tuple[float, float, float], more: float
) -> None:
    a, b = pair
    rtol, atol, err = tol
    ok = close(a, b, rtol=rtol, atol=atol, err=err)
    for wider in (dict(rtol=rtol, atol=atol, err=err + more), dict(rtol=rtol, atol=atol + more, err=err),
                  dict(rtol=min(1.0, rtol + more), atol=atol, err=err)):
        assert (close(a, b, **wider) >= ok).all()


@given(a=hnp.arrays(np.float64, st.integers(1, 8), elements=st.floats(-1e6, 1e6)),
       tol=tolerances)
def test_equal_finite_values_always_agree(a: np.ndarray, tol: tuple[float, float, float]) -> None:
    assert close(a, a.copy(), rtol=0, atol=0).all()
    assert close(a, a.copy(), rtol=tol[0], atol=tol[1], err=tol[2]).all()


def test_close_is_inclusive_and_uses_the_larger_magnitude() -> None:
    # |1 − 2| = 1 = 0.5 · max(1, 2): on the boundary, and inclusive
    assert close(1.0, 2.0, rtol=0.5, atol=0.0)
    assert not close(1.0, 2.0, rtol=0.49, atol=0.0)
    assert close(1.0, 2.0, rtol=0.0, atol=0.5, err=0.5)
    assert not close(1.0, 2.0, rtol=0.0, atol=0.5, err=0.49)


def test_close_broadcasts_an_elementwise_err() -> None:
    ok = close(np.zeros(3), np.array([1.0, 1.0, 1.0]), rtol=0, atol=0, err=np.array([0.5, 1.0, 2.0]))
    assert ok.tolist() == [False, True, True]


# --------------------------------------------------------------------------- agreement

# 0 or |x| >= 1e-100: squares of smaller entries underflow (see test_statistics_of_tiny_gradients)
finite = st.one_of(st.just(0.0), st.floats(1e-100, 1e3), st.floats(-1e3, -1e-100))


@st.composite
def compared(draw: st.DrawFn, elements: st.SearchStrategy[float] = finite) -> tuple[np.ndarray, ...]:
    shape = draw(hnp.array_shapes(max_dims=2, max_side=6))
    a = draw(hnp.arrays(np.float64, shape, elements=elements))
    b = draw(hnp.arrays(np.float64, shape, elements=elements))
    mask = draw(hnp.arrays(np.bool_, shape))
    return a, b, mask


def _reference_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    diff = np.abs(a - b)
    denom = np.maximum(np.abs(a), np.abs(b))
    rel = [0.0 if d == 0 else d / m for d, m in zip(diff.ravel(), denom.ravel(), strict=True)]
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return {
        "max_abs_err": float(diff.max()) if diff.size else 0.0,
        "max_rel_err": max(rel, default=0.0),
        "norm_rel_err": float(np.linalg.norm(a - b) / max(na, nb)) if max(na, nb) > 0 else 0.0,
        "cosine": float(a.ravel() @ b.ravel() / (na * nb)) if na > 0 and nb > 0 else float(na == nb),
    }


@given(data=compared(), tol=tolerances)
def test_agreement_statistics(data: tuple[np.ndarray, ...], tol: tuple[float, float, float]) -> None:
    a, b, _ = data
    rtol, atol, err = tol
    stats, ok = agreement(a, b, rtol=rtol, atol=atol, err=err)
    expect = _reference_stats(a, b)
    assert stats.max_abs_err == expect["max_abs_err"]
    assert stats.max_rel_err == expect["max_rel_err"]
    assert stats.norm_rel_err == pytest.approx(expect["norm_rel_err"], rel=1e-12, abs=1e-300)
    assert stats.cosine == pytest.approx(expect["cosine"], rel=1e-9, abs=1e-12)
    assert -1 - 1e-12 <= stats.cosine <= 1 + 1e-12
    assert 0 <= stats.max_rel_err <= 2.0  # |a−b| ≤ 2·max(|a|,|b|)
    np.testing.assert_array_equal(ok, close(a, b, rtol=rtol, atol=atol, err=err).ravel())
    assert stats.n_bad == int((~ok).sum())
    assert stats.n_compared == a.size
    assert stats.agree == (stats.n_bad == 0)


@given(data=compared(), tol=tolerances)
def test_agreement_mask_selects_what_is_compared(data: tuple[np.ndarray, ...], tol: tuple[float, float, float]) -> None:
    a, b, mask = data
    rtol, atol, err = tol
    poisoned = a.copy()
    poisoned[~mask] = np.nan  # entries left out cannot affect anything
    stats, ok = agreement(poisoned, b, rtol=rtol, atol=atol, err=err, mask=mask)
    sub, _ = agreement(a[mask], b[mask], rtol=rtol, atol=atol, err=err)
    assert stats == sub
    assert stats.n_compared == int(mask.sum())
    # the elementwise answer is still for every entry, masked or not
    assert ok.shape == (a.size,)
    assert not ok[~mask.ravel()].any()


@given(data=compared(), k=st.integers(-20, 20))
def test_agreement_relative_statistics_are_scale_free(data: tuple[np.ndarray, ...], k: int) -> None:
    a, b, _ = data
    s = 2.0**k  # exact scaling
    one, _ = agreement(a, b, rtol=RTOL, atol=0.0)
    two, _ = agreement(s * a, s * b, rtol=RTOL, atol=0.0)
    assert two.max_rel_err == one.max_rel_err
    assert two.norm_rel_err == pytest.approx(one.norm_rel_err, rel=1e-12, abs=1e-300)
    assert two.cosine == pytest.approx(one.cosine, rel=1e-12, abs=1e-15)
    assert two.n_bad == one.n_bad


def test_agreement_both_zero_is_safe() -> None:
    stats, ok = agreement(np.zeros((2, 3)), np.zeros((2, 3)), rtol=RTOL, atol=0.0)
    assert (stats.max_abs_err, stats.max_rel_err, stats.norm_rel_err, stats.cosine) == (0.0, 0.0, 0.0, 1.0)
    assert stats.n_bad == 0 and stats.n_compared == 6 and ok.all()


def test_agreement_zero_against_nonzero() -> None:
    stats, _ = agreement(np.zeros(3), np.array([0.0, 2.0, -1.0]), rtol=RTOL, atol=0.0)
    assert stats.max_rel_err == 1.0
    assert stats.norm_rel_err == 1.0
    assert stats.cosine == 0.0
    assert stats.n_bad == 2


@given(data=compared(), where=st.data())
def test_agreement_is_nan_aware(data: tuple[np.ndarray, ...], where: st.DataObject) -> None:
    a, b, _ = data
    i = where.draw(st.integers(0, a.size - 1), label="nan at")
    a = a.copy()
    a.reshape(-1)[i] = np.nan
    stats, ok = agreement(a, b, rtol=RTOL, atol=1.0, err=1.0)
    assert math.isnan(stats.max_rel_err)
    assert math.isnan(stats.max_abs_err)
    assert stats.n_bad >= 1 and not ok[i]


def test_statistics_of_tiny_gradients() -> None:
    tiny, _ = agreement(np.array([2e-170, 1e-170]), np.array([1e-170, 2e-170]), rtol=RTOL, atol=0.0)
    assert tiny.norm_rel_err == pytest.approx(math.sqrt(2 / 5))
    assert tiny.cosine == pytest.approx(0.8)
    mixed, _ = agreement(np.array([1.0]), np.array([1e-160]), rtol=RTOL, atol=0.0)
    assert mixed.cosine <= 1.0


def test_agreement_of_nothing() -> None:
    stats, ok = agreement(np.ones(3), np.zeros(3), rtol=RTOL, atol=0.0, mask=np.zeros(3, bool))
    assert stats.n_compared == 0 and stats.n_bad == 0 and stats.agree
    assert stats.max_abs_err == 0.0 and stats.max_rel_err == 0.0
    assert not ok.any()


def test_agreement_known_values() -> None:
    a, b = np.array([3.0, 0.0, 1.0]), np.array([4.0, 0.0, 1.0])
    stats, ok = agreement(a, b, rtol=0.1, atol=0.0, err=np.array([0.0, 0.0, 0.0]))
    assert stats.max_abs_err == 1.0
    assert stats.max_rel_err == 0.25
    assert stats.norm_rel_err == pytest.approx(1 / math.sqrt(17))
    assert stats.cosine == pytest.approx(13 / (math.sqrt(10) * math.sqrt(17)))
    assert ok.tolist() == [False, True, True]
    assert stats.to_dict()["agree"] is False


# --------------------------------------------------------------------------- triangulate

# (hand≈numeric, hand≈autodiff, numeric≈autodiff) -> status, from DESIGN.md plus the three
# combinations it leaves out (trust the two sources that agree).
TABLE = {
    (True, True, True): "ok",
    (False, True, False): "numeric",
    (False, False, True): "hand",
    (True, False, False): "autodiff",
    (False, False, False): "inconclusive",
    (True, True, False): "ok",
    (True, False, True): "hand",
    (False, True, True): "numeric",
}


@pytest.mark.parametrize("key", sorted(TABLE), ids=lambda k: "".join("y" if v else "n" for v in k))
def test_triangulate_every_row(key: tuple[bool, bool, bool]) -> None:
    hn, ha, na = (np.array([v]) for v in key)
    assert triangulate(hn, ha, na).tolist() == [TABLE[key]]


@given(masks=hnp.array_shapes(max_dims=3, max_side=4).flatmap(
    lambda s: st.tuples(*(hnp.arrays(np.bool_, s) for _ in range(3)))))
def test_triangulate_elementwise(masks: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    hn, ha, na = masks
    out = triangulate(hn, ha, na)
    assert out.shape == hn.shape and out.dtype == object
    for idx in np.ndindex(hn.shape):
        assert out[idx] == TABLE[(bool(hn[idx]), bool(ha[idx]), bool(na[idx]))]


@given(mask=hnp.arrays(np.bool_, hnp.array_shapes(max_dims=2, max_side=5)), which=st.sampled_from(["hn", "ha"]))
def test_triangulate_two_sources_collapse_to_hand_against_the_reference(mask: np.ndarray, which: str) -> None:
    kwargs: dict[str, Any] = {"hn": None, "ha": None, "na": None, which: mask}
    out = triangulate(**kwargs)
    assert out.shape == mask.shape
    np.testing.assert_array_equal(out == "ok", mask)
    np.testing.assert_array_equal(out == "hand", ~mask)


def test_triangulate_without_hand_comparison_is_unverified() -> None:
    assert triangulate(None, None, np.array([True, False])).tolist() == ["unverified", "unverified"]


def test_triangulate_needs_a_comparison() -> None:
    with pytest.raises(ValueError, match="at least one"):
        triangulate(None, None, None)


# --------------------------------------------------------------------------- diagnose


def _judge(hand: np.ndarray, ref: np.ndarray, **kw: Any) -> Any:
    """diagnose() the way check.py calls it: float64 tolerance, atol from the leaf's scale."""
    atol = RTOL * GRAD_ATOL_FRACTION * float(np.max(np.abs(ref)))
    bad = ~close(hand, ref, rtol=RTOL, atol=atol)
    return diagnose(hand, ref, bad, rtol=RTOL, atol=atol, **kw)


def _ref(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


seeds = st.integers(0, 2**32 - 1)
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)
multi = hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=6)


@given(seed=seeds, shape=shapes)
def test_nothing_bad_is_no_diagnosis(seed: int, shape: tuple[int, ...]) -> None:
    ref = _ref(seed, shape)
    assert _judge(ref.copy(), ref) is None
    assert _judge(ref * (1 + 1e-9), ref) is None  # within tolerance
    assert diagnose(-ref, ref, np.zeros(shape, bool), rtol=RTOL, atol=0.0) is None


@given(seed=seeds, shape=shapes)
def test_sign_flip(seed: int, shape: tuple[int, ...]) -> None:
    ref = _ref(seed, shape)
    found = _judge(-ref, ref)
    assert found.kind == "sign_flip" and found.factor == -1.0


@given(seed=seeds, shape=shapes, p=st.integers(-16, 16), q=st.integers(1, 16))
def test_scale_by_a_simple_fraction(seed: int, shape: tuple[int, ...], p: int, q: int) -> None:
    assume(p != 0 and abs(p) != q)
    ref = _ref(seed, shape)
    found = _judge(p / q * ref, ref)
    assert found.kind == "scale"
    assert found.factor == p / q  # snapped to the fraction exactly
    frac = Fraction(p, q)
    if frac.denominator in (1, 2, 4, 8, 16):
        assert f"{p / q:g} ×" in found.summary
    else:
        assert f"{frac.numerator}/{frac.denominator} ×" in found.summary


@given(seed=seeds, shape=shapes, factor=st.sampled_from([1.37, -2.71828, 0.3183, 123.456]))
def test_scale_by_an_arbitrary_factor(seed: int, shape: tuple[int, ...], factor: float) -> None:
    ref = _ref(seed, shape)
    found = _judge(factor * ref, ref)
    assert found.kind == "scale"
    assert found.factor == pytest.approx(factor, rel=1e-12)
    assert f"{factor:.6g} ×" in found.summary


def test_scale_examples() -> None:
    r = np.arange(1.0, 7.0).reshape(2, 3)
    assert _judge(0.5 * r, r).factor == 0.5  # a missing ½ of SSE
    assert _judge(2 * r, r).factor == 2.0
    found = _judge(r / 3, r)
    assert (found.factor, "1/3 ×" in found.summary) == (1 / 3, True)


@given(seed=seeds, n=st.integers(2, 6), batch=st.sampled_from([(), (3,)]))
def test_transpose(seed: int, n: int, batch: tuple[int, ...]) -> None:
    ref = _ref(seed, (*batch, n, n))
    found = _judge(np.swapaxes(ref, -1, -2), ref, time_axis=None)
    assert found.kind == "transpose"


def test_symmetric_reference_is_never_called_a_transpose() -> None:
    r = _ref(0, (4, 4))
    sym = r + r.T
    found = _judge(sym + np.eye(4), sym)
    assert found is not None and found.kind != "transpose"


@given(seed=seeds, shape=shapes)
def test_all_zero(seed: int, shape: tuple[int, ...]) -> None:
    ref = _ref(seed, shape)
    found = _judge(np.zeros(shape), ref)
    assert found.kind == "zero"


@given(seed=seeds, T=st.integers(3, 6), B=st.integers(1, 4), D=st.integers(1, 4), late=st.booleans())
def test_shift_by_one_time_step(seed: int, T: int, B: int, D: int, late: bool) -> None:
    ref = _ref(seed, (T, B, D))
    hand = np.zeros_like(ref)
    if late:
        hand[1:] = ref[:-1]  # hand[t+1] holds the reference's step t
    else:
        hand[:-1] = ref[1:]
    found = _judge(hand, ref)
    assert found.kind == "shift"
    assert found.factor == (1.0 if late else -1.0)
    assert found.axis == 0


@given(seed=seeds, T=st.integers(3, 6), B=st.integers(1, 4), D=st.integers(2, 4))
def test_shift_along_another_time_axis(seed: int, T: int, B: int, D: int) -> None:
    ref = _ref(seed, (B, T, D))
    hand = np.zeros_like(ref)
    hand[:, 1:] = ref[:, :-1]
    found = _judge(hand, ref, time_axis=1)
    assert (found.kind, found.axis) == ("shift", 1)


@given(seed=seeds, shape=multi, q=st.floats(0.2, 0.9))
def test_value_clipping(seed: int, shape: tuple[int, ...], q: float) -> None:
    ref = _ref(seed, shape)
    c = float(np.quantile(np.abs(ref), q))
    assume(c > 0 and (np.abs(ref) > c).any())
    found = _judge(np.clip(ref, -c, c), ref)
    assert found.kind == "clipped"
    assert found.factor == c
    assert f"{int((np.abs(ref) > c).sum())} entries clipped" in found.summary


def _grow(hand: np.ndarray, where: Any, rng: np.random.Generator) -> None:
    """A planted error that moves entries away from the reference, outwards (never towards a
    clipped value)."""
    v = hand[where]
    hand[where] = v + np.sign(v + 1e-300) * rng.uniform(0.5, 2.0, np.shape(v))


@given(seed=seeds, rows=st.integers(2, 6), cols=st.integers(4, 6), data=st.data())
def test_errors_confined_to_one_row(seed: int, rows: int, cols: int, data: st.DataObject) -> None:
    ref = _ref(seed, (rows, cols))
    i = data.draw(st.integers(0, rows - 1), label="row")
    hand = ref.copy()
    _grow(hand, (i, slice(None)), np.random.default_rng(seed + 1))
    found = _judge(hand, ref)
    assert (found.kind, found.axis, found.indices) == ("rows", 0, (i,))
    assert f"row [{i}] along axis 0" in found.summary


@given(seed=seeds, rows=st.integers(4, 6), cols=st.integers(2, 6), data=st.data())
def test_errors_confined_to_one_column(seed: int, rows: int, cols: int, data: st.DataObject) -> None:
    ref = _ref(seed, (rows, cols))
    j = data.draw(st.integers(0, cols - 1), label="column")
    hand = ref.copy()
    _grow(hand, (slice(None), j), np.random.default_rng(seed + 1))
    found = _judge(hand, ref)
    assert (found.kind, found.axis, found.indices) == ("columns", 1, (j,))


@given(seed=seeds, shape=shapes, data=st.data())
def test_errors_confined_to_a_few_entries(seed: int, shape: tuple[int, ...], data: st.DataObject) -> None:
    n = int(np.prod(shape))
    assume(n >= 2)
    k = data.draw(st.integers(1, min(3, n - 1)), label="how many")
    flat = data.draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k, unique=True), label="where")
    ref = _ref(seed, shape)
    hand = ref.copy()
    for f in flat:
        _grow(hand.reshape(-1), f, np.random.default_rng(seed + f))
    found = _judge(hand, ref)
    assert found.kind == "entries"
    expected = sorted(tuple(int(i) for i in np.unravel_index(f, shape)) for f in flat)
    assert list(found.indices) == expected


@given(seed=seeds, T=st.integers(3, 6), B=st.integers(2, 4), D=st.integers(2, 4), data=st.data())
def test_errors_confined_to_one_time_step(seed: int, T: int, B: int, D: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(0, T - 1), label="step")
    ref = _ref(seed, (T, B, D))
    hand = ref.copy()
    _grow(hand, t, np.random.default_rng(seed + 1))
    found = _judge(hand, ref)
    assert (found.kind, found.axis, found.indices) == ("time_steps", 0, (t,))


def test_dropped_term_is_noted() -> None:
    ref = _ref(3, (5, 6))
    hand = ref.copy()
    hand[2] = 0.0
    found = _judge(hand, ref)
    assert found.kind == "rows" and "dropped term" in found.summary


@settings(max_examples=40)
@given(seed=seeds, shape=multi)
def test_unrelated_hand_is_not_misnamed(seed: int, shape: tuple[int, ...]) -> None:
    ref = _ref(seed, shape)
    hand = _ref(seed ^ 0x5A5A5A5A, shape)
    found = _judge(hand, ref)
    assert found is not None
    assert found.kind not in ("sign_flip", "scale", "transpose", "zero")


# --------------------------------------------------------------------------- format_mismatch


def _loss(p: dict[str, np.ndarray]) -> float:
    return float(0.5 * np.sum(p["W"] ** 2) + np.sum(np.sin(p["W"])) + np.sum(p["b"] ** 3))


def _buggy_grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    gb = 3 * p["b"] ** 2
    gb[2] += 1.0  # one wrong entry
    return {"W": -(p["W"] + np.cos(p["W"])), "b": gb}  # W: a sign flip


@pytest.fixture(scope="module")
def failing() -> gc.CheckResult:
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((50, 50)), "b": rng.standard_normal(5)}
    return gc.check_grad(_loss, _buggy_grad, params, references=("numeric",), seed=7, name="planted")


def test_format_mismatch_names_what_where_and_who(failing: gc.CheckResult) -> None:
    assert failing.verdict == "fail"
    msg = compare.format_mismatch(failing)
    assert msg == failing.message()
    assert msg.startswith("check_grad 'planted': fail")
    assert "dL/dW (float64, shape (50, 50)): 2500 of 2500 elements outside rtol=5e-07" in msg
    assert "dL/db (float64, shape (5,)): 1 of 5 elements outside rtol=5e-07" in msg
    assert "worst at [" in msg
    assert "worst at [2]: hand=" in msg
    assert "diagnosis: sign flip" in msg
    assert "diagnosis: 1 wrong entry at [2]" in msg
    assert msg.count("blame: the hand-derived backward") == 2
    assert "Check the sign of the W term" in msg
    assert msg.count("reproduce with seed=7") == 2
    assert "two sources only: hand against numeric" in msg


def test_format_mismatch_never_dumps_the_array(failing: gc.CheckResult) -> None:
    msg = failing.message()
    blocks = msg.split("\ndL/d")[1:]
    assert len(blocks) == 2
    for block in blocks:
        assert len(block.splitlines()) < 20
        assert block.count("worst at") <= 5
    assert len(msg.splitlines()) < 40
    assert "[[" not in msg  # no numpy array repr


def test_format_mismatch_skips_passing_leaves() -> None:
    rng = np.random.default_rng(1)
    params = {"W": rng.standard_normal((3, 3)), "b": rng.standard_normal(4)}

    def grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"W": p["W"] + np.cos(p["W"]), "b": -3 * p["b"] ** 2}

    res = gc.check_grad(_loss, grad, params, references=("numeric",), seed=3)
    msg = compare.format_mismatch(res)
    assert "dL/db" in msg and "dL/dW" not in msg
    assert "diagnosis: sign flip" in msg
    assert "reproduce with seed=3" in msg
