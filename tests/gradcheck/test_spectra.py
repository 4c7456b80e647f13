"""gradcheck.spectra: matrix-free singular spectra (Golub–Kahan–Lanczos) against a dense SVD."""

from __future__ import annotations

import json
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck.errors import InvalidArgument
from gradcheck.spectra import (
    AUTO_DENSE_ENTRIES,
    LinearMap,
    Spectrum,
    dense_spectrum,
    jax_linear_map,
    linear_map,
    spectrum,
)
from tests._profile import examples

#: Singular values from a complete bidiagonalisation are exact to O(q·ε·‖J‖), absolutely.
ABS = 1e-10

KINDS = ("gaussian", "rank-deficient", "ill-conditioned", "diagonal", "orthogonal", "zero")


def _blocks(rng: np.random.Generator, kind: str, B: int, m: int, n: int) -> np.ndarray:
    """B blocks (m, n) of one structure: the cases a bidiagonalisation can break down on."""
    q = min(m, n)
    if kind == "rank-deficient":
        r = int(rng.integers(0, q + 1))
        return rng.standard_normal((B, m, r)) @ rng.standard_normal((B, r, n))
    if kind in ("ill-conditioned", "diagonal", "orthogonal"):
        if kind == "ill-conditioned":
            s = 10.0 ** -rng.uniform(0, 14, size=(B, q))
        elif kind == "diagonal":
            s = rng.choice([0.0, 0.5, 1.0, 1.0, 3.0], size=(B, q))  # repeated values and zeros
        else:
            s = np.ones((B, q))
        S = np.zeros((B, m, n))
        S[:, np.arange(q), np.arange(q)] = s
        if kind == "diagonal":
            return S
        U = np.linalg.qr(rng.standard_normal((B, m, m)))[0]
        V = np.linalg.qr(rng.standard_normal((B, n, n)))[0]
        return U @ S @ V
    if kind == "zero":
        return np.zeros((B, m, n))
    return rng.standard_normal((B, m, n))


def _map(a: np.ndarray) -> LinearMap:
    """The blocks ``a`` (B, m, n) as a matrix-free batched map."""
    return LinearMap((a.shape[1], a.shape[2]),
                     lambda v: np.einsum("bmn,bn->bm", a, v),
                     lambda u: np.einsum("bmn,bm->bn", a, u), a.shape[0])


def _reference(a: np.ndarray) -> np.ndarray:
    """Every block's singular values, pooled and sorted ascending."""
    return np.sort(np.linalg.svd(a, compute_uv=False).ravel())


@settings(max_examples=examples(20), deadline=None)
@given(kind=st.sampled_from(KINDS), B=st.integers(1, 3), m=st.integers(1, 9), n=st.integers(1, 9),
       k=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_lanczos_matches_a_dense_svd(kind: str, B: int, m: int, n: int, k: int, seed: int) -> None:
    """Complete bidiagonalisation (q = min(m, n) steps): every singular value, to round-off."""
    a = _blocks(np.random.default_rng(seed), kind, B, m, n)
    ref = _reference(a)
    sp = spectrum(_map(a), k=k, method="lanczos", seed=seed)
    scale = max(float(ref[-1]), 1e-300)
    kk = min(k, ref.size)
    assert sp.method == "lanczos" and sp.exact and sp.steps == min(m, n)
    assert sp.n_products == 2 * min(m, n) and sp.shape == (m, n) and sp.batch == B
    np.testing.assert_allclose(sp.top, ref[::-1][:kk], rtol=0, atol=ABS * scale)
    np.testing.assert_allclose(sp.bottom, ref[:kk], rtol=0, atol=ABS * scale)
    assert sp.mean_sq == pytest.approx(float(np.mean(ref**2)), rel=1e-9, abs=ABS * scale**2)
    assert sp.var_sq == pytest.approx(float(np.var(ref**2)), rel=1e-7, abs=ABS * scale**4)
    if ref[-1] == 0:
        assert math.isnan(sp.spread)
    elif ref[0] > 1e-6 * ref[-1]:  # well enough conditioned for σ_min to carry relative accuracy
        assert sp.spread == pytest.approx(ref[-1] / ref[0], rel=1e-4)
    else:
        assert sp.spread > 1e3
    assert sp.residual <= 1e-8


@settings(max_examples=examples(10), deadline=None)
@given(kind=st.sampled_from(KINDS), m=st.integers(1, 12), n=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_dense_and_auto_match_the_svd(kind: str, m: int, n: int, seed: int) -> None:
    a = _blocks(np.random.default_rng(seed), kind, 2, m, n)
    ref = _reference(a)
    for method in ("dense", "auto"):
        sp = spectrum(_map(a), k=2, method=method)
        assert sp.method == ("dense" if method == "dense" or m * n <= AUTO_DENSE_ENTRIES else "lanczos")
        np.testing.assert_allclose(sp.top, ref[::-1][:2], rtol=0, atol=ABS * max(ref[-1], 1e-300))
        np.testing.assert_allclose(sp.bottom, ref[:2], rtol=0, atol=ABS * max(ref[-1], 1e-300))


def test_a_partial_run_bounds_from_below_and_estimates_the_moments() -> None:
    """Fewer steps than q: Ritz values interlace from below (θ_i ≤ σ_i), the largest has converged,
    and the moments are Hutchinson estimates."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((1, 300, 200)) / np.sqrt(300)
    a[0, :, 0] *= 5.0  # one well-separated top singular value
    ref = _reference(a)[::-1]
    sp = spectrum(_map(a), k=3, method="lanczos", max_steps=30, probes=32)
    assert not sp.exact and sp.steps == 30 and sp.n_products == 2 * 30 + 2 * 32
    assert np.all(sp.top <= ref[:3] * (1 + 1e-12))
    assert sp.top[0] == pytest.approx(ref[0], rel=1e-10)
    assert sp.mean_sq == pytest.approx(float(np.mean(ref**2)), rel=0.1)
    assert sp.bottom[0] >= ref[-1] * (1 - 1e-12)  # a Ritz estimate of σ_min, from above here
    assert sp.residual > 0


def test_the_spectrum_is_deterministic_in_the_seed() -> None:
    a = _blocks(np.random.default_rng(0), "gaussian", 2, 40, 30)
    one, two = (spectrum(_map(a), k=3, method="lanczos", seed=7, max_steps=10) for _ in range(2))
    np.testing.assert_array_equal(one.top, two.top)
    np.testing.assert_array_equal(one.bottom, two.bottom)
    assert one.mean_sq == two.mean_sq


def test_flat_closures_and_the_union_of_blocks() -> None:
    a = _blocks(np.random.default_rng(1), "gaussian", 3, 5, 4)
    per_block = [spectrum(linear_map(lambda v, b=b: b @ v, lambda u, b=b: b.T @ u, b.shape), k=1,
                          method="lanczos") for b in a]
    union = spectrum(_map(a), k=1, method="lanczos")
    assert union.sigma_max == pytest.approx(max(s.sigma_max for s in per_block), rel=1e-12)
    assert union.sigma_min == pytest.approx(min(s.sigma_min for s in per_block), rel=1e-10)
    assert union.mean_sq == pytest.approx(np.mean([s.mean_sq for s in per_block]), rel=1e-12)


def test_jax_jacobians_matrix_free_match_jacfwd() -> None:
    """JVP/VJP of a JAX function (one block per batch row) against the dense jax.jacfwd."""
    rng = np.random.default_rng(2)
    W1, W2 = rng.standard_normal((6, 7)), rng.standard_normal((7, 5))
    x = rng.standard_normal((3, 6))

    def f(v: Any) -> Any:
        return jnp.tanh(jnp.tanh(v @ W1) @ W2)

    op = jax_linear_map(f, x, batched=True)
    assert op.shape == (5, 6) and op.batch == 3
    with jax.enable_x64(True):
        J = np.stack([np.asarray(jax.jacfwd(lambda r: f(r[None])[0])(jnp.asarray(row))) for row in x])
    ref = _reference(J)
    sp = spectrum(op, k=5, method="lanczos")
    np.testing.assert_allclose(sp.top, ref[::-1][:5], rtol=1e-12)
    np.testing.assert_allclose(sp.bottom, ref[:5], rtol=1e-9)
    dense = spectrum(op, k=5, method="dense")  # the blocks from one vmapped JVP (matmat)
    assert op.matmat is not None and dense.n_products == 6
    np.testing.assert_allclose(dense.top, ref[::-1][:5], rtol=1e-12)
    np.testing.assert_allclose(dense.bottom, ref[:5], rtol=1e-9)
    whole = jax_linear_map(f, x)  # the whole batch as one block: the same singular values
    assert whole.shape == (15, 18) and whole.batch == 1
    np.testing.assert_allclose(spectrum(whole, k=5, method="lanczos").top, ref[::-1][:5], rtol=1e-12)


def test_dense_spectrum_and_strict_json() -> None:
    sp = dense_spectrum(np.diag([2.0, 0.0]), k=2)
    assert sp.top.tolist() == [2.0, 0.0] and sp.spread == math.inf and sp.var_sq == pytest.approx(4.0)
    d = sp.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False))["spread"] == "inf"
    assert set(d) >= {"top", "bottom", "spread", "mean_sq", "var_sq", "method", "n_products"}
    empty = spectrum(LinearMap((0, 3), lambda v: v[:, :0], lambda u: np.zeros((1, 3))), k=1)
    assert isinstance(empty, Spectrum) and empty.top.size == 0 and math.isnan(empty.spread)


def _op() -> LinearMap:
    return _map(np.ones((1, 2, 2)))


BAD = [
    ("k-zero", lambda: spectrum(_op(), k=0), "k=0"),
    ("k-bool", lambda: spectrum(_op(), k=True), "k=True"),
    ("method", lambda: spectrum(_op(), method="svd"), "method='svd'"),  # type: ignore[arg-type]
    ("max-steps", lambda: spectrum(_op(), max_steps=0), "max_steps=0"),
    ("probes", lambda: spectrum(_op(), probes=0), "probes=0"),
    ("shape", lambda: linear_map(lambda v: v, lambda u: u, (2,)), r"shape=\(2,\)"),  # type: ignore[arg-type]
    ("dense-rank", lambda: dense_spectrum(np.ones(3)), r"\(m, n\) or \(B, m, n\)"),
    ("jax-batch", lambda: jax_linear_map(lambda v: jnp.sum(v), np.ones((2, 2)), batched=True), "batched=False"),
]


@pytest.mark.parametrize(("call", "match"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_arguments(call: Any, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        call()
