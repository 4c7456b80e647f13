"""tolerance.py: the dtype table, elementwise agreement and error statistics."""

from __future__ import annotations

import math
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gradcheck.tolerance import agreement, close, tolerance

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
