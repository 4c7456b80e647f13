"""hvp.py: check_hvp checks a hand Hessian-vector product, its symmetry and its curvature."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc


def quartic(p: dict[str, np.ndarray]) -> Any:
    return np.sum(p["w"] ** 4) / 4 + np.sum(p["w"][:-1] * p["w"][1:])


def quartic_grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    w = p["w"]
    g = w ** 3
    g[:-1] += w[1:]
    g[1:] += w[:-1]
    return {"w": g}


def quartic_hvp(p: dict[str, np.ndarray], v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    w, u = p["w"], v["w"]
    h = 3 * w ** 2 * u
    h[:-1] += u[1:]
    h[1:] += u[:-1]
    return {"w": h}


def _point(seed: int, n: int, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    return {"w": np.random.default_rng(seed).standard_normal(n).astype(dtype)}


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 6), with_grad=st.booleans(),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_a_correct_hvp_passes(seed: int, n: int, with_grad: bool, dtype: Any) -> None:
    res = gc.check_hvp(quartic, quartic_hvp, _point(seed, n, dtype), grad=quartic_grad if with_grad else None)
    assert res.passed, res.message()
    assert res.kind == "check_hvp" and res.jax_source in ("array-api", "twin")
    assert not any("not symmetric" in n_ for n_ in res.notes)


@pytest.mark.parametrize(("factor", "kind"), [(-1.0, "sign_flip"), (2.0, "scale")])
def test_a_sign_or_a_factor_is_named(factor: float, kind: str) -> None:
    res = gc.check_hvp(quartic, lambda p, v: {"w": factor * quartic_hvp(p, v)["w"]}, _point(1, 5),
                       grad=quartic_grad)
    leaf = res.leaf("w")
    assert (res.verdict, leaf.blame) == ("fail", "hand")
    assert leaf.diagnosis is not None and leaf.diagnosis.kind == kind
    if kind == "scale":
        assert leaf.diagnosis.factor == 2.0
    assert "H·v" in res.message()


def test_a_missing_cross_term_breaks_symmetry() -> None:
    def one_sided(p: dict[str, np.ndarray], v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        w, u = p["w"], v["w"]
        h = 3 * w ** 2 * u
        h[:-1] += u[1:]  # the other half of the coupling is missing
        return {"w": h}

    res = gc.check_hvp(quartic, one_sided, _point(2, 5), grad=quartic_grad)
    assert res.verdict == "fail" and res.leaf("w").blame == "hand"
    assert any("not symmetric" in n for n in res.notes)


# --------------------------------------------------------------------------- Gauss–Newton


def _least_squares(seed: int) -> tuple[Any, Any, Any, Any, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    X, t = rng.standard_normal((8, 3)), rng.standard_normal(8)

    def r(p: dict[str, np.ndarray]) -> Any:
        return np.tanh(X @ p["w"]) * 2 - t

    def loss(p: dict[str, np.ndarray]) -> Any:
        return 0.5 * np.sum(r(p) ** 2)

    def grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        y = np.tanh(X @ p["w"])
        return {"w": X.T @ (r(p) * 2 * (1 - y ** 2))}

    def gauss_newton(p: dict[str, np.ndarray], v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        J = 2 * (1 - np.tanh(X @ p["w"]) ** 2)[:, None] * X  # ∂r/∂w
        return {"w": J.T @ (J @ v["w"])}

    def hessian(p: dict[str, np.ndarray], v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        y = np.tanh(X @ p["w"])
        J = 2 * (1 - y ** 2)[:, None] * X
        second = r(p) * 2 * (-2 * y * (1 - y ** 2))  # Σ r_i ∂²r_i / ∂z²
        return {"w": J.T @ (J @ v["w"]) + X.T @ (second * (X @ v["w"]))}

    return loss, grad, gauss_newton, hessian, {"w": 1.5 * rng.standard_normal(3)}


def test_a_gauss_newton_product_is_not_taken_for_the_hessian() -> None:
    """Every seed: the true Hessian product passes and the Gauss–Newton one fails with blame
    hand; where the seeded directions meet negative curvature, the note names it."""
    noted = []
    for seed in range(5):
        loss, grad, gauss_newton, hessian, p = _least_squares(seed)
        assert gc.check_hvp(loss, hessian, p, grad=grad).passed
        res = gc.check_hvp(loss, gauss_newton, p, grad=grad)
        assert res.verdict == "fail" and res.leaf("w").blame == "hand"
        noted.append(any("Gauss–Newton" in n and "positive semi-definite" in n for n in res.notes))
    assert any(noted), noted


def test_a_wrong_grad_is_reported_before_hvp() -> None:
    res = gc.check_hvp(quartic, quartic_hvp, _point(3, 4), grad=lambda p: {"w": 2 * quartic_grad(p)["w"]})
    assert res.verdict == "fail" and res.kind == "check_hvp"
    assert "did not pass its own check" in res.notes[0]


def test_no_gradient_to_differentiate_is_a_clear_error() -> None:
    def opaque(p: dict[str, np.ndarray]) -> float:
        return float(sum(math.sin(float(v)) for v in p["w"]))  # no JAX path without the twin

    with pytest.raises(gc.InvalidArgument, match="needs a gradient"):
        gc.check_hvp(opaque, lambda p, v: v, _point(0, 3), jax_twin=False)
