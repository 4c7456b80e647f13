"""Unit and property tests of :mod:`gradcheck.twin`, the automatic JAX twin of plain numpy code.

Mirrors the module: the mutable :class:`~gradcheck.twin.Box` against numpy's semantics, gradients
through a twin against finite differences of the numpy code, ``float()`` / ``.item()`` on traced
values, float64 promotion, the gaps, the hygiene of the translation (the user's modules, globals,
classes and objects are never modified), :func:`~gradcheck.twin.is_user_code`, memoisation, and
the forwards whose numpy and JAX semantics differ (which the engine's value check must catch).
Everything that computes runs inside ``jax.enable_x64(True)``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy import tanh
from numpy.lib.stride_tricks import sliding_window_view
from numpy.linalg import norm

import gradcheck
import gradcheck as gc
from gradcheck import twin as tw
from gradcheck.twin import (
    MATH,
    NUMPY,
    Box,
    TwinGap,
    box_tree,
    clear_cache,
    is_user_code,
    plain_reason,
    raw_tree,
    twin_of,
)
from tests._profile import sizes

FEW = settings(max_examples=10, deadline=None)
SOME = settings(max_examples=20, deadline=None)
#: Small shapes (few distinct ones: eager JAX compiles each operation once per shape).
SHAPES = st.sampled_from([(1,), (3,), (1, 2), (2, 3), (3, 1), (2, 1, 2)])


@pytest.fixture(autouse=True)
def _x64() -> Any:
    with jax.enable_x64(True):
        yield


def value(x: Any) -> np.ndarray:
    """A twin's (or numpy's) result as a numpy array."""
    return np.asarray(raw_tree(x))


def twin_arrays(*arrays: np.ndarray) -> list[Box]:
    return [box_tree(np.array(a)) for a in arrays]


# ============================================================================ Box vs numpy


def _setitem_int(xp: Any, a: Any) -> Any:
    a[1] = 7.0
    return a


def _setitem_slice(xp: Any, a: Any) -> Any:
    a[1:3] = xp.array([5.0, 6.0])
    a[::2] = -1.0
    return a


def _setitem_mask(xp: Any, a: Any) -> Any:
    a[a > 2.0] = 0.5
    return a


def _setitem_fancy(xp: Any, a: Any) -> Any:
    a[[0, 3]] = xp.array([10.0, 30.0])
    a[xp.array([1, 1])] = 4.0
    return a


def _isub_repeated(xp: Any, a: Any) -> Any:
    a[xp.array([0, 0, 2, 2, 2])] -= 1.0  # buffered: each index once
    return a


def _iadd_list_repeated(xp: Any, a: Any) -> Any:
    a[[1, 1, 4]] += 2.0  # buffered: each index once
    return a


def _inplace_identity(xp: Any, a: Any) -> Any:
    b = a
    a += 1.0
    a *= 2.0
    a -= 0.5
    a /= 4.0
    a **= 2.0
    return b


def _inplace_slice(xp: Any, a: Any) -> Any:
    a[1:3] += 10.0
    a[0] *= -1.0
    return a


def _add_at(xp: Any, a: Any) -> Any:
    xp.add.at(a, [0, 0, 3], 1.0)
    xp.add.at(a, xp.array([4, 4]), xp.array([2.0, 3.0]))
    xp.subtract.at(a, [1, 1], 0.25)
    return a


def _multiply_maximum_at(xp: Any, a: Any) -> Any:
    xp.multiply.at(a, [2, 2], 3.0)
    xp.maximum.at(a, [0, 1], 2.5)
    return a


def _out_ufunc(xp: Any, a: Any) -> Any:
    out = xp.zeros(5)
    got = xp.add(a, 1.0, out=out)
    xp.multiply(out, out, out=out)
    return xp.stack([got, out])


def _out_tuple(xp: Any, a: Any) -> Any:
    out = xp.ones(5)
    xp.tanh(a, out=(out,))
    return out


def _out_function(xp: Any, a: Any) -> Any:
    out = xp.zeros((5, 5))
    xp.outer(a, a, out=out)
    return out


def _fill(xp: Any, a: Any) -> Any:
    b = a
    a.fill(3.5)
    return b


def _sort(xp: Any, a: Any) -> Any:
    b = a
    a.sort()
    return b


def _copy_independent(xp: Any, a: Any) -> Any:
    c = a.copy()
    c[0] = 100.0
    c += 1.0
    return xp.stack([a, c])


def _flat(xp: Any, a: Any) -> Any:
    m = a.reshape(1, 5).copy()
    m.flat[2] = -9.0
    m.flat[[0, 4]] = 8.0
    return xp.concatenate([m.reshape(-1), xp.array([m.flat[2]])])


def _len_iter(xp: Any, a: Any) -> Any:
    rows = [2.0 * r for r in a]
    return xp.array([float(len(a))] + [float(r) for r in rows])


def _transpose_reshape(xp: Any, a: Any) -> Any:
    m = xp.zeros((2, 5))
    m[0] = a
    m[1] = a * 2
    t = m.T
    return xp.concatenate([t.reshape(-1), m.reshape(5, 2)[:, 1], xp.array(t.shape, dtype=float)])


def _astype(xp: Any, a: Any) -> Any:
    i = (a * 3).astype(int)
    return i.astype(float) + a.astype(xp.float64)


def _float_concrete(xp: Any, a: Any) -> Any:
    return xp.array([float(a[0]), float(a.sum()), a[1].item(), a.item(2)])


def _compare(xp: Any, a: Any) -> Any:
    c = a * 0 + 2.0
    masks = [a > 2.0, a >= 2.0, a < 2.0, a <= 2.0, a == c, a != c]
    return xp.stack([m.astype(float) for m in masks])


def _reflected(xp: Any, a: Any) -> Any:
    n = np.arange(1.0, 6.0)  # a plain numpy array on the left
    return xp.stack([n + a, n - a, n * a, n / (a + 10.0), n ** (a / 10.0), (n > a).astype(float)])


def _matmul_reflected(xp: Any, a: Any) -> Any:
    m = np.arange(10.0).reshape(2, 5)
    return xp.concatenate([m @ a, a @ m.T])


def _setitem_2d(xp: Any, a: Any) -> Any:
    m = xp.zeros((3, 5))
    m[0] = a
    m[1, 1:4] = a[:3] * 2
    m[:, 0] += 1.0
    m[2, ...] = 1.0
    return m


BOX_PROGRAMS = [
    _setitem_int, _setitem_slice, _setitem_mask, _setitem_fancy, _isub_repeated,
    _iadd_list_repeated, _inplace_identity, _inplace_slice, _add_at, _multiply_maximum_at,
    _out_ufunc, _out_tuple, _out_function, _fill, _sort, _copy_independent, _flat, _len_iter,
    _transpose_reshape, _astype, _float_concrete, _compare, _reflected, _matmul_reflected,
    _setitem_2d,
]


@pytest.mark.parametrize("prog", BOX_PROGRAMS, ids=lambda f: f.__name__.strip("_"))
def test_box_operation_matches_numpy(prog: Any) -> None:
    start = np.array([3.0, 1.0, 4.0, 1.5, 2.0])
    want = prog(np, start.copy())
    got = prog(NUMPY, box_tree(start.copy()))
    assert isinstance(got, Box)
    np.testing.assert_allclose(value(got), want, rtol=1e-12, atol=1e-12)


def test_inplace_operators_keep_identity_and_are_seen_through_aliases() -> None:
    a = box_tree(np.arange(3.0))
    b = a
    before = id(a)
    a += 1
    a *= 3
    a[0] = -1.0
    assert a is b and id(a) == before
    np.testing.assert_array_equal(value(b), [-1.0, 6.0, 9.0])


def test_reflected_ops_with_numpy_on_the_left_give_boxes() -> None:
    a = box_tree(np.arange(3.0))
    n = np.ones(3)
    for got in (n + a, n - a, n * a, n / (a + 1), n @ a, n < a, n == a):
        assert isinstance(got, Box)
    np.testing.assert_array_equal(value(n - a), [1.0, 0.0, -1.0])
    np.testing.assert_array_equal(value(n < a), [False, False, True])


def test_comparisons_give_boolean_arrays() -> None:
    a = box_tree(np.array([1.0, 2.0, 3.0]))
    for got in (a > 2, a >= 2, a < 2, a <= 2, a == 2, a != 2):
        assert isinstance(got, Box) and got.dtype == np.bool_ and got.shape == (3,)


def test_isinstance_of_the_namespace_ndarray() -> None:
    a = box_tree(np.arange(3.0))
    assert isinstance(a, NUMPY.ndarray)
    assert isinstance(np.arange(3.0), NUMPY.ndarray)
    assert isinstance(jnp.arange(3.0), NUMPY.ndarray)
    assert not isinstance([1.0, 2.0], NUMPY.ndarray)
    assert not isinstance(a, np.ndarray)


def test_float_int_len_iter_on_concrete_boxes() -> None:
    a = box_tree(np.array([[1.5, 2.0], [3.0, 4.0]]))
    assert float(a[0, 0]) == 1.5 and isinstance(float(a[0, 0]), float)
    assert int(a[1, 1]) == 4
    assert len(a) == 2
    rows = list(a)
    assert len(rows) == 2 and all(isinstance(r, Box) for r in rows)
    np.testing.assert_array_equal(value(rows[1]), [3.0, 4.0])
    assert a[0, 1].item() == 2.0
    assert a.T.shape == (2, 2) and a.reshape(4).shape == (4,) and a.reshape(-1, 1).shape == (4, 1)
    assert a.tolist() == [[1.5, 2.0], [3.0, 4.0]]


def test_comparison_with_none_is_elementwise_as_in_numpy() -> None:
    a = box_tree(np.arange(3.0))
    np.testing.assert_array_equal(value(a == None), np.arange(3.0) == None)  # noqa: E711


# -- the property: one program, two namespaces


def _program(xp: Any, a: Any, b: Any, idx: list[int]) -> Any:
    out = xp.zeros(a.shape)
    out[0] = a[0] * 2
    out += b
    xp.add.at(out, idx, 1.0)
    out[idx] -= 0.5  # buffered: each repeated index once
    out[out > 1.0] = 1.0
    alias = out
    alias *= 1.5
    c = out.copy()
    c[-1] = 0.0
    total = xp.zeros(a.shape[1:])
    for row in out:  # iteration over the first axis
        total += xp.tanh(row) * float(len(out))
    res = xp.empty(1)
    xp.multiply(out.sum(), 2.0, out=res)
    return xp.tanh(out).sum() + c.sum() + total.sum() + res[0] + out.reshape(-1) @ c.T.reshape(-1)


def _arrays_for(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    idx = list(rng.integers(0, shape[0], size=3))
    return a, b, [int(i) for i in idx]


@FEW
@given(shape=SHAPES, seed=st.integers(0, 2**16))
def test_a_program_on_boxes_computes_what_it_computes_on_numpy(shape: tuple[int, ...], seed: int) -> None:
    a, b, idx = _arrays_for(shape, seed)
    want = _program(np, a.copy(), b.copy(), idx)
    got = _program(NUMPY, *twin_arrays(a, b), idx)
    np.testing.assert_allclose(value(got), want, rtol=1e-10, atol=1e-10)


def _program_twin_of(a: np.ndarray, b: np.ndarray, idx: list[int]) -> Any:
    return _program(np, a, b, idx)


@FEW
@given(shape=SHAPES, seed=st.integers(0, 2**16))
def test_the_twin_of_a_numpy_program_computes_its_value(shape: tuple[int, ...], seed: int) -> None:
    a, b, idx = _arrays_for(shape, seed)
    want = _program_twin_of(a.copy(), b.copy(), idx)
    got = twin_of(_program_twin_of)(*twin_arrays(a, b), idx)
    np.testing.assert_allclose(value(got), want, rtol=1e-10, atol=1e-10)


# ============================================================================ gradients


def rnn_loss(W: np.ndarray, x: np.ndarray) -> float:
    """A numpy forward of the kind hand-written backprop checks: loops, preallocated arrays,
    item assignment, in-place updates, ``np.add.at``, ``float()`` of the result."""
    T, D = x.shape
    h = np.zeros((T + 1, D))
    for t in range(T):
        h[t + 1] = np.tanh(x[t] + h[t] @ W)
    out = h[1:].copy()
    out[:, 0] *= 2.0
    out[[0, 0]] -= 0.1
    np.add.at(out, [0, 0], h[-1])
    acc = np.zeros(D)
    for row in out:
        acc += row ** 2
    acc[acc > 10.0] = 10.0
    return float(np.sum(acc) + math.exp(0.1 * W[0, 0]))


def central_differences(f: Any, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        g[i] = (f(up) - f(down)) / (2 * h)
    return g


def twin_grad(fn: Any, x: np.ndarray, *rest: Any) -> np.ndarray:
    made = twin_of(fn)
    data = [box_tree(r) for r in rest]

    def loss(v: Any) -> Any:
        return jnp.reshape(raw_tree(made(box_tree(v), *data)), ())

    return np.asarray(jax.grad(loss)(jnp.asarray(x, dtype=jnp.float64)))


@FEW
@given(seed=st.integers(0, 2**16))
def test_grad_through_the_twin_equals_finite_differences_of_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    W = 0.5 * rng.standard_normal((3, 3))
    x = rng.standard_normal((3, 3))
    got = twin_grad(rnn_loss, W, x)
    want = central_differences(lambda w: rnn_loss(w, x), W)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    made = twin_of(rnn_loss)
    assert float(value(made(box_tree(W), box_tree(x)))) == pytest.approx(rnn_loss(W, x), rel=1e-12)


def float_of_loss(x: np.ndarray) -> float:
    return float(np.sum(x ** 2))


def float_in_the_middle(x: np.ndarray) -> Any:
    c = float(np.sum(x))
    return np.sum(x) * c  # d/dx S² = 2S, not S


def item_in_the_middle(x: np.ndarray) -> Any:
    s = np.sum(x ** 2).item()
    first = x[0].item()
    return s * 3.0 + first


def test_float_on_a_traced_value_passes_it_through() -> None:
    x = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(twin_grad(float_of_loss, x), 2 * x)
    np.testing.assert_allclose(twin_grad(float_in_the_middle, x), np.full(3, 2 * x.sum()))


def test_item_on_a_traced_value_passes_it_through() -> None:
    x = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(twin_grad(item_in_the_middle, x), 6 * x + np.array([1.0, 0, 0]))


def test_float_and_item_outside_a_trace_are_python_numbers() -> None:
    assert tw._float(box_tree(np.array(2.5))) == 2.5 and type(tw._float(box_tree(np.array(2.5)))) is float
    assert tw._float(3) == 3.0 and tw._float() == 0.0
    assert box_tree(np.array([1.0, 4.0])).item(1) == 4.0


def test_math_on_traced_values_is_differentiable_and_math_on_numbers_is_math() -> None:
    assert MATH.sqrt(4.0) == 2.0 and MATH.pi == math.pi
    assert isinstance(MATH.exp(1.0), float)

    def f(v: Any) -> Any:
        b = box_tree(v)
        return raw_tree(MATH.exp(b[0]) + MATH.tanh(b[1]) + MATH.lgamma(b[2]))

    x = jnp.asarray([0.3, 0.2, 2.5])
    g = np.asarray(jax.grad(f)(x))
    from scipy.special import digamma  # scipy comes with jax

    np.testing.assert_allclose(g, [math.exp(0.3), 1 - math.tanh(0.2) ** 2, digamma(2.5)], rtol=1e-12)


# ============================================================================ dtypes


def float32_forward(x: np.ndarray) -> Any:
    acc = np.zeros(x.shape[0], dtype=np.float32)
    acc += x.astype(np.float32) + 1e-10
    full = np.full(2, 1.0, dtype="float32")
    return acc.sum() + full.sum() - 2.0


def test_float32_requests_compute_in_float64() -> None:
    assert NUMPY.zeros(3, dtype=np.float32).dtype == np.float64
    assert NUMPY.ones(2, dtype="float16").dtype == np.float64
    assert NUMPY.array([1, 2], dtype=np.complex64).dtype == np.complex128
    assert box_tree(np.ones(2, dtype=np.float32)).dtype == np.float64
    assert box_tree(np.arange(3.0)).astype(np.float32).dtype == np.float64
    assert box_tree(np.arange(3.0)).astype(np.int32).dtype == np.int32  # not a float: kept
    assert NUMPY.arange(3, dtype=np.int64).dtype == np.int64
    x = np.array([1.0, 2.0, 3.0])
    got = value(twin_of(float32_forward)(box_tree(x)))
    assert got.dtype == np.float64
    assert float(got) == pytest.approx(6.0 + 3e-10, rel=0, abs=1e-15)  # float32 would lose 3e-10
    assert float(float32_forward(x)) == 6.0


# ============================================================================ gaps


@st.composite
def windows(draw: Any) -> tuple[np.ndarray, tuple[int, ...], Any]:
    """An array, a window shape and ``axis`` (None, one axis, possibly negative, or several
    non-negative ones, possibly repeated: several negative ones are a known bug, below)."""
    shape = tuple(draw(st.lists(sizes(1, 4), min_size=1, max_size=3)))
    ndim = len(shape)
    seed = draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).standard_normal(shape)
    if draw(st.booleans()):
        axis = None
        axes = list(range(ndim))
    else:
        axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim))
        axis = axes[0] if len(axes) == 1 and draw(st.booleans()) else tuple(axes)
    left = list(shape)
    window = []
    for a in axes:
        w = draw(st.integers(1, left[a]))
        window.append(w)
        left[a] -= w - 1
    if isinstance(axis, int) and draw(st.booleans()):
        axis -= ndim
    return x, tuple(window) if len(window) > 1 or draw(st.booleans()) else window[0], axis


@SOME
@given(case=windows())
def test_sliding_window_view_equals_numpy(case: tuple[np.ndarray, Any, Any]) -> None:
    x, window, axis = case
    want = np.lib.stride_tricks.sliding_window_view(x, window, axis=axis)
    got = NUMPY.lib.stride_tricks.sliding_window_view(box_tree(x), window, axis=axis)
    assert got.shape == want.shape
    np.testing.assert_array_equal(value(got), want)


def test_sliding_window_view_with_one_negative_axis_equals_numpy() -> None:
    x = np.arange(24.0).reshape(2, 3, 4)
    for axis, window in ((-1, 2), (-2, 3), (-3, 1)):
        want = np.lib.stride_tricks.sliding_window_view(x, window, axis=axis)
        got = NUMPY.lib.stride_tricks.sliding_window_view(box_tree(x), window, axis=axis)
        np.testing.assert_array_equal(value(got), want)


def test_sliding_window_view_with_negative_axes_equals_numpy() -> None:
    x = np.arange(12.0).reshape(3, 4)
    want = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(-2, -1))  # (2, 3, 2, 2)
    got = NUMPY.lib.stride_tricks.sliding_window_view(box_tree(x), (2, 2), axis=(-2, -1))
    assert got.shape == want.shape
    np.testing.assert_array_equal(value(got), want)


def windowed_forward(x: np.ndarray) -> Any:
    return np.sum(np.tanh(np.lib.stride_tricks.sliding_window_view(x, 3)) ** 2)


def windowed_forward_imported(x: np.ndarray) -> Any:
    return np.sum(np.tanh(sliding_window_view(x, 3)) ** 2)


def test_sliding_window_view_is_differentiable_in_a_twin() -> None:
    x = np.linspace(-1.0, 1.0, 6)
    np.testing.assert_allclose(twin_grad(windowed_forward, x),
                               central_differences(windowed_forward, x), rtol=1e-7, atol=1e-9)


def test_sliding_window_view_imported_by_name_is_translated() -> None:
    assert sliding_window_view is np.lib.stride_tricks.sliding_window_view
    x = np.linspace(-1.0, 1.0, 6)
    np.testing.assert_allclose(twin_grad(windowed_forward_imported, x),
                               central_differences(windowed_forward_imported, x), rtol=1e-7, atol=1e-9)


def test_row_stack_equals_vstack() -> None:
    a, b = np.arange(3.0), np.arange(3.0, 6.0)
    got = NUMPY.row_stack([box_tree(a), box_tree(b)])
    np.testing.assert_array_equal(value(got), np.vstack([a, b]))
    got2 = NUMPY.row_stack((box_tree(a.reshape(1, 3)), b))
    np.testing.assert_array_equal(value(got2), np.vstack([a, b]))


def strided_forward(x: np.ndarray) -> Any:
    return np.sum(np.lib.stride_tricks.as_strided(x, shape=(2,), strides=(8,)))


def test_as_strided_is_a_gap_that_names_itself() -> None:
    with pytest.raises(TwinGap, match="as_strided"):
        NUMPY.lib.stride_tricks.as_strided(box_tree(np.arange(3.0)), (2,), (8,))
    with pytest.raises(TwinGap, match="as_strided") as got:
        twin_of(strided_forward)(box_tree(np.arange(3.0)))
    assert "as_strided" in plain_reason(got.value)
    # the user's line, from code without a file (a notebook cell, a doctest)
    cell: dict[str, Any] = {"np": np}
    exec(compile("def cell_forward(x):\n    return np.sum(np.lib.stride_tricks.as_strided(x, (2,), (8,)))\n",
                 "<cell 1>", "exec"), cell)
    with pytest.raises(TwinGap) as got:
        twin_of(cell["cell_forward"])(box_tree(np.arange(3.0)))
    assert plain_reason(got.value) == ("numpy.lib.stride_tricks.as_strided has no jax.numpy "
                                       "equivalent (at <cell 1>:2 in cell_forward)")


def test_plain_reason_names_the_line_of_a_user_file_under_a_gradcheck_folder() -> None:
    with pytest.raises(TwinGap) as got:
        twin_of(strided_forward)(box_tree(np.arange(3.0)))
    assert "test_twin.py" in plain_reason(got.value) and "strided_forward" in plain_reason(got.value)


def test_plain_reason_names_a_gap() -> None:
    assert plain_reason(TwinGap("numpy.foo has no jax.numpy equivalent")) == \
        "numpy.foo has no jax.numpy equivalent"


def test_plain_reason_says_why_on_common_tracer_errors() -> None:
    def to_numpy(v: Any) -> Any:
        return np.asarray(box_tree(v))

    def branch(v: Any) -> Any:
        b = box_tree(v)
        return b.sum() if b.sum() > 0 else -b.sum()

    for fn, words in ((to_numpy, "converts arrays"), (branch, "needs the concrete value")):
        with pytest.raises(Exception) as got:
            jax.jit(jax.grad(lambda v, fn=fn: raw_tree(fn(v)).sum()))(jnp.ones(2))
        assert words in plain_reason(got.value)


@pytest.mark.parametrize("name", ["asarray_chkfinite", "real_if_close"])
def test_numpy_function_without_equivalent_is_fine_on_constants_and_a_gap_on_traced_values(name: str) -> None:
    assert not hasattr(jnp, name)
    fn = getattr(NUMPY, name)
    np.testing.assert_array_equal(fn(box_tree(np.array([1.5, -2.5]))), [1.5, -2.5])
    with pytest.raises(TwinGap, match=name) as got:
        jax.grad(lambda v: raw_tree(fn(box_tree(v))).sum())(jnp.ones(3))
    assert f"numpy.{name}" in plain_reason(got.value)


def test_numpy_function_that_calls_ufuncs_is_a_gap_that_names_itself() -> None:
    assert not hasattr(jnp, "fix")
    with pytest.raises(TwinGap, match="fix"):
        jax.grad(lambda v: raw_tree(NUMPY.fix(box_tree(v))).sum())(jnp.ones(3))


# ============================================================================ hygiene


SCALE = 2.0
TABLE = np.array([1.0, 2.0, 3.0])
COUNTER = 0
WEIGHTS32 = np.array([0.5, 0.25, 0.125], dtype=np.float32)
OPTIONS = {"bias": np.array([0.1, 0.2, 0.3]), "names": ["a", "b"]}
STATE: Any = None


def helper(x: np.ndarray) -> Any:
    return np.tanh(x) * SCALE


def writes_module_array(x: np.ndarray) -> Any:
    TABLE[0] = 100.0
    TABLE[1:] += x[1:]
    OPTIONS["bias"][0] = -1.0
    return np.sum(x * TABLE) + np.sum(OPTIONS["bias"]) + np.sum(WEIGHTS32 * x)


def bumps_counter(x: np.ndarray) -> Any:
    global COUNTER
    COUNTER += 1
    return np.sum(x) + COUNTER


def make_closure(k: float) -> Any:
    offset = np.array([1.0, -1.0, 0.5])

    def inner(x: np.ndarray) -> Any:
        offset[0] = 7.0  # writes the closure's array (the twin's copy only)
        return np.sum(x * k + offset) + helper(x).sum()

    return inner


class Base:
    def __init__(self, n: int) -> None:
        self.W = np.eye(n, dtype=np.float32) * 0.5
        self.b = np.zeros(n)
        self.names = ["W", "b"]

    def forward(self, x: np.ndarray) -> Any:
        return np.tanh(x @ self.W + self.b)


class Layer(Base):
    scale = 3.0

    @staticmethod
    def act(x: np.ndarray) -> Any:
        return np.maximum(x, 0.0)

    @classmethod
    def make(cls, n: int) -> Layer:
        return cls(n)

    @property
    def Wt(self) -> np.ndarray:
        return self.W.T

    def forward(self, x: np.ndarray) -> Any:
        y = super().forward(x)
        self.cache = y  # a layer caching in self: the twin's instance only
        self.b[0] = 5.0  # writes its own attribute: the twin's copy only
        return self.act(y @ self.Wt).sum() * self.scale


def builds_a_layer(x: np.ndarray) -> Any:
    layer = Layer.make(3)
    return layer.forward(x) + Layer.act(x).sum()


def _snapshot() -> dict[str, Any]:
    return dict(globals())


def _assert_module_untouched(before: dict[str, Any]) -> None:
    now = globals()
    for key, obj in before.items():
        assert now[key] is obj, key
    assert now["np"] is sys.modules["numpy"] and np.__name__ == "numpy"
    assert now["math"] is sys.modules["math"]
    assert COUNTER == 0 and STATE is None and SCALE == 2.0
    np.testing.assert_array_equal(TABLE, [1.0, 2.0, 3.0])
    assert type(TABLE) is np.ndarray and TABLE.dtype == np.float64
    assert type(WEIGHTS32) is np.ndarray and WEIGHTS32.dtype == np.float32
    np.testing.assert_array_equal(OPTIONS["bias"], [0.1, 0.2, 0.3])
    assert type(OPTIONS["bias"]) is np.ndarray and OPTIONS["names"] == ["a", "b"]
    for name in ("forward", "act", "make", "Wt"):
        assert name in Layer.__dict__
    assert helper.__globals__ is now and Layer.__dict__["forward"].__globals__ is now
    assert Layer.__bases__ == (Base,) and Layer.scale == 3.0


def _run(fn: Any, *args: Any) -> float:
    return float(value(twin_of(fn)(*[box_tree(a) for a in args])))


def test_module_level_globals_and_arrays_are_left_alone() -> None:
    before = _snapshot()
    x = np.array([0.5, -1.0, 2.0])
    got = _run(writes_module_array, x)
    want_table = np.array([100.0, 2.0 - 1.0, 3.0 + 2.0])
    want = np.sum(x * want_table) + np.sum([-1.0, 0.2, 0.3]) + np.sum(WEIGHTS32.astype(float) * x)
    assert got == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(value(twin_of(helper)(box_tree(x))), np.tanh(x) * 2.0, rtol=1e-12)
    _assert_module_untouched(before)


def test_a_global_counter_written_by_a_twin_stays_in_the_twin() -> None:
    before = _snapshot()
    clear_cache()
    x = np.ones(3)
    assert _run(bumps_counter, x) == 4.0
    # Every call of a twin starts from the state it was translated from: what one call wrote
    # (here a counter, in a check a traced array) never reaches the next.
    assert _run(bumps_counter, x) == 4.0
    _assert_module_untouched(before)
    made = twin_of(bumps_counter)
    assert made.__globals__ is not globals()
    assert made.__globals__["np"] is NUMPY and made.__globals__["math"] is MATH


def assigns_a_global_before_reading_it(x: np.ndarray) -> Any:
    global STATE
    STATE = x * 2.0
    return np.sum(STATE)


def test_a_global_the_twin_assigns_is_read_back_from_the_twin() -> None:
    before = _snapshot()
    x = np.array([1.0, 2.0])
    assert _run(assigns_a_global_before_reading_it, x) == 6.0
    _assert_module_untouched(before)


def test_a_closure_is_translated_and_left_alone() -> None:
    before = _snapshot()
    inner = make_closure(2.0)
    offset_cell = inner.__closure__[[c for c in inner.__code__.co_freevars].index("offset")]
    offset = offset_cell.cell_contents
    x = np.array([0.5, -1.0, 2.0])
    got = _run(inner, x)
    want = np.sum(x * 2.0 + np.array([7.0, -1.0, 0.5])) + np.sum(np.tanh(x) * 2.0)
    assert got == pytest.approx(want, rel=1e-12)
    assert offset_cell.cell_contents is offset and type(offset) is np.ndarray
    np.testing.assert_array_equal(offset, [1.0, -1.0, 0.5])
    _assert_module_untouched(before)


def test_a_bound_method_of_an_instance_with_numpy_attributes_is_left_alone() -> None:
    before = _snapshot()
    layer = Layer(3)
    W, b, names = layer.W, layer.b, layer.names
    attrs = dict(vars(layer))
    x = np.array([0.5, -1.0, 2.0])
    twin = twin_of(layer.forward)
    got = float(value(twin(box_tree(x))))
    y = np.tanh(x @ W.astype(float) + np.zeros(3))
    assert got == pytest.approx(float(np.maximum(y @ W.T.astype(float), 0).sum() * 3.0), rel=1e-12)
    assert vars(layer) == attrs and not hasattr(layer, "cache")
    assert layer.W is W and type(W) is np.ndarray and W.dtype == np.float32
    np.testing.assert_array_equal(W, np.eye(3, dtype=np.float32) * 0.5)
    assert layer.b is b and type(b) is np.ndarray and b.dtype == np.float64
    np.testing.assert_array_equal(b, np.zeros(3))
    assert layer.names is names and names == ["W", "b"]
    assert type(layer) is Layer
    # the twin's instance is another object of a twin class, whose arrays are Boxes
    twin_self = twin.__self__
    assert twin_self is not layer and type(twin_self) is not Layer
    assert type(twin_self).__name__ == "Layer" and isinstance(twin_self.W, Box)
    assert isinstance(twin_self.cache, Box)
    _assert_module_untouched(before)


def test_classes_static_class_methods_properties_and_super_are_translated() -> None:
    before = _snapshot()
    x = np.array([0.5, -1.0, 2.0])
    got = _run(builds_a_layer, x)
    assert got == pytest.approx(float(builds_a_layer(x)), rel=1e-6)  # float32 W in numpy
    W = np.eye(3) * 0.5
    y = np.tanh(x @ W)
    want = np.maximum(y @ W.T, 0).sum() * 3.0 + np.maximum(x, 0).sum()
    assert got == pytest.approx(float(want), rel=1e-12)
    _assert_module_untouched(before)


def test_gradient_through_a_twin_method_matches_finite_differences() -> None:
    layer = Layer(3)
    x = np.array([0.5, -1.0, 2.0])

    def numpy_loss(v: np.ndarray) -> float:
        other = Layer(3)
        return float(other.forward(v))

    got = twin_grad(layer.forward, x)
    want = central_differences(numpy_loss, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # numpy's W is float32
    assert not hasattr(layer, "cache")


def test_twin_of_a_user_function_rebinds_numpy_but_not_the_original() -> None:
    made = twin_of(helper)
    assert made is not helper and made.__code__ is helper.__code__
    assert made.__name__ == "helper" and made.__qualname__ == helper.__qualname__
    assert isinstance(made(box_tree(np.ones(2))), Box)
    assert isinstance(helper(np.ones(2)), np.ndarray)  # the user's still computes on numpy


# ============================================================================ is_user_code


def test_is_user_code() -> None:
    import hypothesis

    assert is_user_code(__file__)
    assert is_user_code("<doctest x>") and is_user_code("<stdin>") and is_user_code("<string>")
    assert not is_user_code("<frozen importlib._bootstrap>")
    for module in (np, jax, os, json, hypothesis, pytest):
        assert not is_user_code(module.__file__), module.__name__
    assert not is_user_code(np.linalg.__file__)
    for module in (gradcheck, tw, gc.check):
        assert not is_user_code(module.__file__), module.__name__


def test_library_code_is_left_as_it_is() -> None:
    assert twin_of(np.tanh) is NUMPY.tanh
    assert twin_of(np.sum) is NUMPY.sum
    assert twin_of(np.linalg.norm) is NUMPY.linalg.norm
    assert twin_of(os.path.join) is os.path.join
    assert twin_of(json.dumps) is json.dumps
    assert twin_of(gc.tolerance) is gc.tolerance  # gradcheck's own code


def uses_imported_names(x: np.ndarray) -> Any:
    return norm(tanh(x)) + float(len(os.path.join("a", "b")))


def imports_numpy_locally(x: np.ndarray) -> Any:
    import numpy

    return numpy.sum(numpy.tanh(x))


def test_numpy_functions_imported_by_name_are_translated() -> None:
    x = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(twin_grad(uses_imported_names, x),
                               central_differences(uses_imported_names, x), rtol=1e-7)
    assert uses_imported_names.__globals__["tanh"] is np.tanh


def test_a_function_that_imports_numpy_in_its_body_is_translated() -> None:
    x = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(twin_grad(imports_numpy_locally, x), 1 - np.tanh(x) ** 2)


# ============================================================================ memoisation


def memo_target(x: np.ndarray) -> Any:
    return np.sum(x)


def test_twin_of_is_memoised_and_clear_cache_forgets() -> None:
    first = twin_of(memo_target)
    assert twin_of(memo_target) is first
    clear_cache()
    second = twin_of(memo_target)
    assert second is not first
    assert twin_of(memo_target) is second


def test_twin_of_a_bound_method_is_memoised() -> None:
    layer = Layer(3)
    assert twin_of(layer.forward) is twin_of(layer.forward)


BUFFER = np.zeros(3)


def writes_a_module_buffer(x: np.ndarray) -> Any:
    BUFFER[:] = x
    return np.sum(BUFFER ** 2)


def test_a_twin_that_writes_a_module_buffer_can_be_differentiated_twice() -> None:
    clear_cache()
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(twin_grad(writes_a_module_buffer, x), 2 * x)
    np.testing.assert_allclose(twin_grad(writes_a_module_buffer, x), 2 * x)


def buffer_forward(p: dict[str, np.ndarray]) -> float:
    BUFFER[:] = p["w"]
    return float(np.sum(np.tanh(BUFFER) ** 2))


def buffer_grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    t = np.tanh(p["w"])
    return {"w": 2 * t * (1 - t ** 2)}


def test_a_forward_writing_a_module_buffer_keeps_its_twin_on_a_second_check() -> None:
    clear_cache()
    p = {"w": np.array([0.5, -1.0, 2.0])}
    first = gc.check_grad(buffer_forward, buffer_grad, p, seed=0)
    assert first.passed and first.jax_source == "twin"
    second = gc.check_grad(buffer_forward, buffer_grad, p, seed=0)
    assert second.passed and second.jax_source == "twin", second.notes


# ============================================================================ differing semantics


def writes_through_a_view(p: dict[str, np.ndarray]) -> Any:
    h = np.zeros((2, 3))
    h[1] = p["w"]
    v = h[0]
    v += 1.0  # numpy: h[0] is now 1; the twin: h is unchanged
    return np.sum(h * p["w"])


def writes_through_a_view_grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"w": 1.0 + 2.0 * p["w"]}


def int32_overflow(p: dict[str, np.ndarray]) -> Any:
    k = np.array([3e9]).astype(np.int32)  # numpy: -2147483648; JAX: 2147483647
    out = np.zeros(3)
    out[:] = p["w"]
    return np.sum(out ** 2) + float(k[0]) * 1e-9


def int32_overflow_grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"w": 2.0 * p["w"]}


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
@pytest.mark.parametrize(("forward", "hand"), [(writes_through_a_view, writes_through_a_view_grad),
                                               (int32_overflow, int32_overflow_grad)],
                         ids=["view", "int32"])
def test_a_forward_with_other_semantics_gets_another_value_in_the_twin(forward: Any, hand: Any) -> None:
    p = {"w": np.array([0.5, -1.0, 2.0])}
    numpy_value = float(forward(p))
    twin_value = float(value(twin_of(forward)(box_tree(p))))
    assert abs(twin_value - numpy_value) > 1e-3
    res = gc.check_grad(forward, hand, p, seed=0)
    assert res.jax_source != "twin"
    assert res.passed  # the correct hand gradient passes against finite differences
    note = " ".join(res.notes)
    assert "automatic JAX twin cannot be used" in note, res.notes
    assert "not the same function" in note, res.notes
    assert "hand vs finite differences only" in note, res.notes


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_the_int32_overflow_differs_between_numpy_and_the_twin() -> None:
    assert np.array([3e9]).astype(np.int32)[0] == -2147483648
    assert int(NUMPY.array([3e9]).astype(np.int32)[0]) == 2147483647


def test_a_write_through_a_view_does_not_reach_the_base_in_the_twin() -> None:
    h = NUMPY.zeros((2, 3))
    v = h[0]
    v += 1.0
    np.testing.assert_array_equal(value(h), np.zeros((2, 3)))
    hn = np.zeros((2, 3))
    vn = hn[0]
    vn += 1.0
    assert hn[0].sum() == 3.0


def good_twin_forward(p: dict[str, np.ndarray]) -> Any:
    h = np.zeros((2, 3))
    h[0] = p["w"]
    h[1] += np.tanh(p["w"])
    return float(np.sum(h ** 2))


def good_twin_grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    t = np.tanh(p["w"])
    return {"w": 2 * p["w"] + 2 * t * (1 - t ** 2)}


def test_a_forward_with_the_same_semantics_uses_the_twin() -> None:
    res = gc.check_grad(good_twin_forward, good_twin_grad, {"w": np.array([0.5, -1.0, 2.0])}, seed=0)
    assert res.passed and res.jax_source == "twin"


# ============================================================================ box_tree / raw_tree


def test_box_tree_and_raw_tree_round_trip_structures() -> None:
    from collections import namedtuple

    Pair = namedtuple("Pair", "a b")
    tree = {"w": np.ones(2, dtype=np.float32), "n": 3, "s": "x", "l": [np.zeros(1), 2],
            "t": Pair(np.arange(2.0), None), "i": np.arange(3)}
    boxed = box_tree(tree)
    assert isinstance(boxed["w"], Box) and boxed["w"].dtype == np.float64
    assert boxed["n"] == 3 and boxed["s"] == "x" and boxed["l"][1] == 2
    assert isinstance(boxed["t"], Pair) and isinstance(boxed["t"].a, Box) and boxed["t"].b is None
    assert isinstance(boxed["i"], Box) and boxed["i"].dtype.kind == "i"
    assert box_tree(boxed["w"]) is boxed["w"]
    raw = raw_tree(boxed)
    assert isinstance(raw["w"], jax.Array) and isinstance(raw["t"], Pair)
    np.testing.assert_array_equal(np.asarray(raw["l"][0]), np.zeros(1))
    ns = types.SimpleNamespace(a=1)
    assert box_tree(ns) is ns and raw_tree(ns) is ns


# --------------------------------------------------------------------------- compiled and reused


def _buffered_loss(p: dict[str, Any], x: np.ndarray) -> Any:
    h = np.zeros((x.shape[0], p["W"].shape[1]))  # a shape tuple: must stay static under jit
    for i in range(x.shape[0]):
        h[i] = np.tanh(np.dot(x[i], p["W"]))
    return float(np.sum(h ** 2))


def _buffered_grad(p: dict[str, Any], x: np.ndarray) -> dict[str, np.ndarray]:
    y = np.tanh(x @ p["W"])
    return {"W": x.T @ (2 * y * (1 - y ** 2))}


def test_a_twin_is_traced_once_and_its_program_reused_across_checks() -> None:
    from gradcheck import autodiff

    autodiff.clear_cache()
    clear_cache()
    rng = np.random.default_rng(0)
    for _ in range(3):  # new data at the same shapes, as hypothesis examples are
        p, x = {"W": rng.normal(size=(3, 5))}, rng.normal(size=(4, 3))
        res = gc.check_grad(_buffered_loss, _buffered_grad, p, x)
        assert res.passed and res.jax_source == "twin"
    programs = [v for k, v in autodiff._PROGRAMS.items() if k[0][0] == "twin"]
    assert len(programs) == 1 and programs[0] is not False  # one traced program, reused
    bad = gc.check_grad(_buffered_loss, lambda p, x: {"W": -_buffered_grad(p, x)["W"]}, p, x)
    assert (bad.verdict, bad.leaf("W").blame, bad.jax_source) == ("fail", "hand", "twin")


SCALES = np.linspace(0.5, 1.5, 40)


def _scaled_sum(x: np.ndarray) -> Any:
    return np.sum(SCALES * np.tanh(x))


@pytest.mark.parametrize("full_compare_max", [10**6, 8])  # a copy / a sampled fingerprint
def test_a_global_array_changed_in_place_between_calls_is_seen(
        full_compare_max: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradcheck import twin

    monkeypatch.setattr(twin, "FULL_COMPARE_MAX", full_compare_max)
    clear_cache()
    x = np.linspace(-1.0, 1.0, 40)
    before = SCALES.copy()
    try:
        with jax.enable_x64(True):
            assert float(value(twin_of(_scaled_sum)(box_tree(x)))) == pytest.approx(
                float(_scaled_sum(x)), rel=1e-13)
            SCALES[:] = SCALES[::-1] * 2.0  # in place: the same object, new values
            assert float(value(twin_of(_scaled_sum)(box_tree(x)))) == pytest.approx(
                float(_scaled_sum(x)), rel=1e-13)
    finally:
        SCALES[:] = before
        clear_cache()
