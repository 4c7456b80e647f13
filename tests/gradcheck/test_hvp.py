"""hvp.py: check_hvp checks a hand Hessian-vector product, its symmetry and its curvature.

Correct products (of Σ w⁴/4 with a coupling, of a quadratic ½θᵀAθ, of a small tanh MLP's
squared error, by Pearlmutter's R-operator written out in numpy) pass with and without ``grad=``
in float64 and float32; a sign, a factor 2, a missing cross term and a Gauss–Newton product
passed off as the Hessian fail with blame ``hand`` and the right diagnosis or note."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc

P = dict[str, np.ndarray]
DTYPES = [np.float64, np.float32]

# --------------------------------------------------------------------------- Σ w⁴/4 + coupling


def quartic(p: P) -> Any:
    return np.sum(p["w"] ** 4) / 4 + np.sum(p["w"][:-1] * p["w"][1:])


def quartic_grad(p: P) -> P:
    w = p["w"]
    g = w ** 3
    g[:-1] += w[1:]
    g[1:] += w[:-1]
    return {"w": g}


def quartic_hvp(p: P, v: P) -> P:
    w, u = p["w"], v["w"]
    h = 3 * w ** 2 * u
    h[:-1] += u[1:]
    h[1:] += u[:-1]
    return {"w": h}


def _point(seed: int, n: int, dtype: Any = np.float64) -> P:
    return {"w": np.random.default_rng(seed).standard_normal(n).astype(dtype)}


def pure_quartic(p: P) -> Any:
    return np.sum(p["w"] ** 4) / 4


def pure_quartic_grad(p: P) -> P:
    return {"w": p["w"] ** 3}


def pure_quartic_hvp(p: P, v: P) -> P:
    return {"w": 3 * p["w"] ** 2 * v["w"]}


# --------------------------------------------------------------------------- ½ θᵀAθ


def _quadratic(seed: int, n: int) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    M = np.random.default_rng(seed + 1).standard_normal((n, n))
    A = (M + M.T) / 2  # symmetric, indefinite

    def quad(p: P) -> Any:
        return 0.5 * np.sum(p["t"] * (A @ p["t"]))

    def quad_grad(p: P) -> P:
        return {"t": A @ p["t"]}

    def quad_hvp(p: P, v: P) -> P:
        return {"t": A @ v["t"]}

    return quad, quad_grad, quad_hvp


# --------------------------------------------------------------------------- a tanh MLP's SSE


def mlp_loss(p: P, x: np.ndarray, y: np.ndarray) -> Any:
    h = np.tanh(x @ p["W1"] + p["b1"])
    return 0.5 * np.sum((h @ p["w2"] - y) ** 2)


def mlp_grad(p: P, x: np.ndarray, y: np.ndarray) -> P:
    h = np.tanh(x @ p["W1"] + p["b1"])
    r = h @ p["w2"] - y
    dz = r[:, None] * p["w2"][None, :] * (1 - h ** 2)
    return {"W1": x.T @ dz, "b1": dz.sum(0), "w2": h.T @ r}


def mlp_hvp(p: P, v: P, x: np.ndarray, y: np.ndarray, *, cross: bool = True, curvature: bool = True) -> P:
    """Pearlmutter's R-operator of mlp_grad along v; ``cross=False`` drops the w2 → W1 cross
    term of the residual, ``curvature=False`` every residual term (the Gauss–Newton product)."""
    h = np.tanh(x @ p["W1"] + p["b1"])
    r = h @ p["w2"] - y
    s = 1 - h ** 2
    Rz = x @ v["W1"] + v["b1"]
    Rh = s * Rz
    Rr = Rh @ p["w2"] + h @ v["w2"]
    keep = 1.0 if curvature else 0.0
    R_dh = Rr[:, None] * p["w2"][None, :] + keep * (r[:, None] * v["w2"][None, :] if cross else 0)
    R_dz = R_dh * s + keep * (r[:, None] * p["w2"][None, :]) * (-2 * h * Rh)
    return {"W1": x.T @ R_dz, "b1": R_dz.sum(0), "w2": keep * (Rh.T @ r) + h.T @ Rr}


def _mlp_case(seed: int, dtype: Any = np.float64, N: int = 5, D: int = 3, H: int = 3,
              target: float = 1.0) -> tuple[P, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = {"W1": (0.7 * rng.standard_normal((D, H))).astype(dtype), "b1": (0.3 * rng.standard_normal(H)).astype(dtype),
         "w2": rng.standard_normal(H).astype(dtype)}
    return p, rng.standard_normal((N, D)).astype(dtype), (target * rng.standard_normal(N)).astype(dtype)


# --------------------------------------------------------------------------- no false alarms


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 6), with_grad=st.booleans(), pure=st.booleans())
def test_a_correct_quartic_hvp_passes(dtype: Any, seed: int, n: int, with_grad: bool, pure: bool) -> None:
    fun, grad, hvp = (pure_quartic, pure_quartic_grad, pure_quartic_hvp) if pure else \
        (quartic, quartic_grad, quartic_hvp)
    res = gc.check_hvp(fun, hvp, _point(seed, n, dtype), grad=grad if with_grad else None, seed=seed)
    assert res.passed, res.message()
    assert res.kind == "check_hvp" and res.to_dict()["kind"] == "check_hvp"
    assert res.jax_source in ("array-api", "twin")
    assert res.leaf("w").tolerance_dtype == np.dtype(dtype).name
    assert not any("not symmetric" in note or "Gauss–Newton" in note for note in res.notes)
    said = "grad= passed its own check" if with_grad else "no grad= given"
    assert any(note.startswith(said) for note in res.notes), res.notes


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 6), with_grad=st.booleans())
def test_a_correct_quadratic_hvp_passes(dtype: Any, seed: int, n: int, with_grad: bool) -> None:
    quad, quad_grad, quad_hvp = _quadratic(seed, n)
    p = {"t": np.random.default_rng(seed).standard_normal(n).astype(dtype)}
    res = gc.check_hvp(quad, quad_hvp, p, grad=quad_grad if with_grad else None)
    assert res.passed, res.message()
    assert res.leaf("t").shape == (n,)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**16), with_grad=st.booleans(), N=st.integers(1, 5))
def test_a_correct_mlp_hvp_passes(dtype: Any, seed: int, with_grad: bool, N: int) -> None:
    p, x, y = _mlp_case(seed, dtype, N=N)
    res = gc.check_hvp(mlp_loss, mlp_hvp, p, x, y, grad=mlp_grad if with_grad else None)
    assert res.passed, res.message()
    assert [leaf.name for leaf in res.leaves] == ["W1", "b1", "w2"]


def test_the_reference_without_jax() -> None:
    """grad= and no JAX twin: finite differences of the user's gradient are the one reference."""
    p, x, y = _mlp_case(0)
    res = gc.check_hvp(mlp_loss, mlp_hvp, p, x, y, grad=mlp_grad, jax_twin=False)
    assert res.passed and res.references == ("numeric",) and res.jax_source == "none"
    bad = gc.check_hvp(mlp_loss, lambda p, v, x, y: {k: -g for k, g in mlp_hvp(p, v, x, y).items()},
                       p, x, y, grad=mlp_grad, jax_twin=False)
    assert bad.verdict == "fail" and all(leaf.blame == "hand" for leaf in bad.leaves)


# --------------------------------------------------------------------------- planted bugs


@pytest.mark.parametrize("with_grad", [True, False])
@pytest.mark.parametrize(("factor", "kind"), [(-1.0, "sign_flip"), (2.0, "scale")])
def test_a_sign_or_a_factor_is_named(factor: float, kind: str, with_grad: bool) -> None:
    res = gc.check_hvp(quartic, lambda p, v: {"w": factor * quartic_hvp(p, v)["w"]}, _point(1, 5),
                       grad=quartic_grad if with_grad else None)
    leaf = res.leaf("w")
    assert (res.verdict, leaf.blame) == ("fail", "hand")
    assert leaf.diagnosis is not None and leaf.diagnosis.kind == kind
    if kind == "scale":
        assert leaf.diagnosis.factor == 2.0
    assert "H·v" in res.message()
    assert not any("not symmetric" in n for n in res.notes)  # a scaled Hessian is still symmetric


@pytest.mark.parametrize("dtype", DTYPES)
def test_planted_mlp_bugs_fail_with_blame_hand(dtype: Any) -> None:
    p, x, y = _mlp_case(3, dtype)
    sign = gc.check_hvp(mlp_loss, lambda p, v, x, y: {**mlp_hvp(p, v, x, y), "w2": -mlp_hvp(p, v, x, y)["w2"]},
                        p, x, y, grad=mlp_grad)
    w2 = sign.leaf("w2")
    assert (sign.verdict, w2.blame) == ("fail", "hand") and sign.leaf("W1").passed and sign.leaf("b1").passed
    assert w2.diagnosis is not None and w2.diagnosis.kind == "sign_flip"
    assert any("not symmetric" in n for n in sign.notes)  # −H on one block only is not symmetric
    twice = gc.check_hvp(mlp_loss, lambda p, v, x, y: {k: 2 * g for k, g in mlp_hvp(p, v, x, y).items()},
                         p, x, y)
    assert twice.verdict == "fail"
    for leaf in twice.leaves:
        assert leaf.blame == "hand" and leaf.diagnosis is not None
        assert (leaf.diagnosis.kind, leaf.diagnosis.factor) == ("scale", 2.0)


def test_a_missing_cross_term_breaks_symmetry() -> None:
    def one_sided(p: P, v: P) -> P:
        w, u = p["w"], v["w"]
        h = 3 * w ** 2 * u
        h[:-1] += u[1:]  # the other half of the coupling is missing
        return {"w": h}

    res = gc.check_hvp(quartic, one_sided, _point(2, 5), grad=quartic_grad)
    assert res.verdict == "fail" and res.leaf("w").blame == "hand"
    assert any("not symmetric" in n for n in res.notes)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_missing_mlp_cross_term_breaks_symmetry(dtype: Any) -> None:
    p, x, y = _mlp_case(4, dtype, N=6)
    res = gc.check_hvp(mlp_loss, lambda p, v, x, y: mlp_hvp(p, v, x, y, cross=False), p, x, y, grad=mlp_grad)
    assert res.verdict == "fail"
    assert res.leaf("W1").blame == "hand" and res.leaf("b1").blame == "hand" and res.leaf("w2").passed
    sym = [n for n in res.notes if "not symmetric" in n]
    assert sym and "cross term" in sym[0]


def test_an_asymmetric_product_fails_where_its_entries_pass() -> None:
    """H·d = A d + ε S d with S skew: at ε = 1e-6 the entries of H·v are within their float64
    tolerance, but ⟨u, H v⟩ ≠ ⟨v, H u⟩ for a second direction u makes the verdict fail, and
    the note shows digits enough to see the two values differ."""
    quad, quad_grad, quad_hvp = _quadratic(7, 4)
    p = {"t": np.random.default_rng(7).standard_normal(4)}
    assert gc.check_hvp(quad, quad_hvp, p, grad=quad_grad).passed
    skew = np.zeros((4, 4))
    skew[0, 1], skew[1, 0] = 1.0, -1.0
    res = gc.check_hvp(quad, lambda p, v: {"t": quad_hvp(p, v)["t"] + 1e-6 * skew @ v["t"]}, p, grad=quad_grad)
    assert res.verdict == "fail" and not res.passed
    assert res.leaf("t").passed  # the entries alone do not see it
    sym = [n for n in res.notes if "not symmetric" in n]
    assert sym and "relative difference" in sym[0]
    a, b = (s.split(" ")[0] for s in sym[0].split(" = ")[1:3])
    assert a != b, sym[0]
    with pytest.raises(gc.GradientMismatch, match="not symmetric"):
        res.raise_for_failure()


# --------------------------------------------------------------------------- Gauss–Newton


def _least_squares(seed: int) -> tuple[Any, Any, Any, Any, P]:
    """½‖r(w)‖² with r = 2 tanh(Xw) − t, the targets on the far side of each prediction: the
    residual's curvature term is negative and dominates, the Hessian is negative definite."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((8, 3))
    w0 = 1.5 * rng.standard_normal(3)
    t = -3 * np.sign(np.tanh(X @ w0))

    def r(p: P) -> Any:
        return np.tanh(X @ p["w"]) * 2 - t

    def loss(p: P) -> Any:
        return 0.5 * np.sum(r(p) ** 2)

    def grad(p: P) -> P:
        y = np.tanh(X @ p["w"])
        return {"w": X.T @ (r(p) * 2 * (1 - y ** 2))}

    def jac(p: P) -> np.ndarray:
        return 2 * (1 - np.tanh(X @ p["w"]) ** 2)[:, None] * X  # ∂r/∂w

    def gauss_newton(p: P, v: P) -> P:
        J = jac(p)
        return {"w": J.T @ (J @ v["w"])}

    def hessian_matrix(p: P) -> np.ndarray:
        y = np.tanh(X @ p["w"])
        second = r(p) * 2 * (-2 * y * (1 - y ** 2))  # Σ r_i ∂²r_i / ∂z²
        return jac(p).T @ jac(p) + X.T @ (second[:, None] * X)

    def hessian(p: P, v: P) -> P:
        return {"w": hessian_matrix(p) @ v["w"]}

    p = {"w": w0}
    assert np.all(np.linalg.eigvalsh(hessian_matrix(p)) < 0)  # the premise: negative curvature
    return loss, grad, gauss_newton, hessian, p


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("with_grad", [True, False])
def test_a_gauss_newton_product_is_not_taken_for_the_hessian(seed: int, with_grad: bool) -> None:
    loss, grad, gauss_newton, hessian, p = _least_squares(seed)
    g = grad if with_grad else None
    ok = gc.check_hvp(loss, hessian, p, grad=g)
    assert ok.passed, ok.message()
    assert not any("Gauss–Newton" in n for n in ok.notes)
    res = gc.check_hvp(loss, gauss_newton, p, grad=g)
    assert res.verdict == "fail" and res.leaf("w").blame == "hand"
    gn = [n for n in res.notes if "Gauss–Newton" in n]
    assert gn and "positive semi-definite" in gn[0]


def test_a_gauss_newton_mlp_product_is_named() -> None:
    """The MLP's Gauss–Newton product (every residual term dropped) where the targets are far
    from the predictions: the check fails and says Gauss–Newton; the true product passes."""
    p, x, y = _mlp_case(0, N=8, target=6.0)
    assert gc.check_hvp(mlp_loss, mlp_hvp, p, x, y, grad=mlp_grad).passed
    res = gc.check_hvp(mlp_loss, lambda p, v, x, y: mlp_hvp(p, v, x, y, curvature=False), p, x, y,
                       grad=mlp_grad)
    assert res.verdict == "fail" and any(leaf.blame == "hand" for leaf in res.leaves)
    assert not any("not symmetric" in n for n in res.notes)  # JᵀJ is symmetric
    assert any("Gauss–Newton" in n for n in res.notes), res.notes


# --------------------------------------------------------------------------- grad= and errors


def test_a_wrong_grad_is_reported_before_hvp() -> None:
    res = gc.check_hvp(quartic, quartic_hvp, _point(3, 4), grad=lambda p: {"w": 2 * quartic_grad(p)["w"]})
    assert res.verdict == "fail" and res.kind == "check_hvp" and not res.passed
    assert "did not pass its own check" in res.notes[0]
    leaf = res.leaf("w")
    assert leaf.blame == "hand" and leaf.diagnosis is not None and leaf.diagnosis.factor == 2.0


def test_a_wrong_mlp_grad_is_reported_before_hvp() -> None:
    p, x, y = _mlp_case(1)

    def no_bias(p: P, x: np.ndarray, y: np.ndarray) -> P:
        return {**mlp_grad(p, x, y), "b1": np.zeros_like(p["b1"])}

    res = gc.check_hvp(mlp_loss, mlp_hvp, p, x, y, grad=no_bias)
    assert res.verdict == "fail" and res.kind == "check_hvp"
    assert any("grad= did not pass" in n for n in res.notes)
    assert res.leaf("b1").blame == "hand" and res.leaf("W1").passed


def test_no_gradient_to_differentiate_is_a_clear_error() -> None:
    def opaque(p: P) -> float:
        return float(sum(math.sin(float(v)) for v in p["w"]))  # no JAX path without the twin

    with pytest.raises(gc.InvalidArgument, match="needs a gradient"):
        gc.check_hvp(opaque, lambda p, v: v, _point(0, 3), jax_twin=False)
    with pytest.raises(gc.InvalidArgument, match="pass grad="):
        gc.check_hvp(mlp_loss, mlp_hvp, *_mlp_case(0), jax_twin=False)


def test_the_opaque_loss_is_checked_with_its_grad() -> None:
    """Without JAX the user's grad= makes the check possible: finite differences of it."""
    def opaque(p: P) -> float:
        return float(sum(math.sin(float(v)) for v in p["w"]))

    p = _point(0, 3)
    res = gc.check_hvp(opaque, lambda p, v: {"w": -np.sin(p["w"]) * v["w"]}, p,
                       grad=lambda p: {"w": np.cos(p["w"])}, jax_twin=False)
    assert res.passed and res.references == ("numeric",)
    bad = gc.check_hvp(opaque, lambda p, v: {"w": np.sin(p["w"]) * v["w"]}, p,
                       grad=lambda p: {"w": np.cos(p["w"])}, jax_twin=False)
    assert bad.verdict == "fail" and bad.leaf("w").diagnosis is not None
    assert bad.leaf("w").diagnosis.kind == "sign_flip"
