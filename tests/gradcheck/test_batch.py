"""Batched finite differences (``batch=True``): jax.jit of jax.vmap of the same forward.

The batch is only an evaluation strategy: the partials, their error bars and the verdict are
those of the one-call-at-a-time path, to rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc
from gradcheck import numeric
from tests._profile import examples


def _layer(seed: int, n_in: int, n_out: int) -> tuple[Any, Any, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x, dy = rng.normal(size=(3, n_in)), rng.normal(size=(3, n_out))
    params = {"W": rng.normal(size=(n_in, n_out)) / np.sqrt(n_in), "b": rng.normal(size=n_out)}

    def loss(p: Any) -> Any:
        xp = p["W"].__array_namespace__()
        return xp.sum(dy * xp.tanh(x @ p["W"] + p["b"]))

    def grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        d = dy * (1 - np.tanh(x @ p["W"] + p["b"]) ** 2)
        return {"W": x.T @ d, "b": d.sum(axis=0)}

    return loss, grad, params


@settings(max_examples=examples(8), deadline=None)
@given(seed=st.integers(0, 2**16), n_in=st.integers(16, 40), n_out=st.integers(16, 40))
def test_batched_partials_match_the_one_at_a_time_path(seed: int, n_in: int, n_out: int) -> None:
    loss, grad, params = _layer(seed, n_in, n_out)
    opts = {"mode": "full", "complex_step": False, "references": "numeric"}
    plain = gc.check_grad(loss, grad, params, **opts)
    batched = gc.check_grad(loss, grad, params, batch=True, **opts)
    assert plain.passed and batched.passed
    assert any("compiled batches" in n for n in batched.notes)
    assert not any("compiled batches" in n for n in plain.notes)
    assert batched.forward_calls == plain.forward_calls
    a, b = plain.leaf("W"), batched.leaf("W")
    assert a.hand_vs_numeric is not None and b.hand_vs_numeric is not None
    assert b.hand_vs_numeric.max_abs_err <= 10 * (a.fd_error_estimate + b.fd_error_estimate)


def test_a_wrong_entry_is_named_with_batched_partials() -> None:
    loss, grad, params = _layer(1, 30, 30)

    def bad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = grad(p)
        g["W"][4, 7] += 1e-4
        return g

    res = gc.check_grad(loss, bad, params, mode="full", batch=True, references="numeric")
    leaf = res.leaf("W")
    assert leaf.verdict == "fail" and [e.index for e in leaf.worst if e.status == "hand"] == [(4, 7)]


def test_a_batch_evaluator_that_fails_falls_back_to_the_users_forward() -> None:
    base = [np.linspace(-1, 1, 600)]

    def objective() -> numeric.Objective:
        obj = numeric.Objective(lambda ls: float(np.sum(np.sin(ls[0]))), base)
        obj.noise, obj.f0 = 1e-13, float(np.sum(np.sin(base[0])))
        return obj

    def broken(k: int, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        raise RuntimeError("cannot vmap this forward")

    obj = objective()
    obj.batch = broken
    p = numeric.central_partials(obj, 0, np.arange(600), eps=numeric.EPS64, kink_rtol=1e-7, name="x")
    assert obj.batch is None and obj.batched_calls == 0 and obj.calls == 2400
    q = numeric.central_partials(objective(), 0, np.arange(600), eps=numeric.EPS64, kink_rtol=1e-7,
                                 name="x")
    assert np.array_equal(p.value, q.value) and np.array_equal(p.error, q.error)
    assert np.all(np.abs(p.value - np.cos(base[0])) <= p.error)


def test_batch_option_is_validated() -> None:
    loss, grad, params = _layer(0, 3, 3)
    with pytest.raises(gc.InvalidArgument, match="batch="):
        gc.check_grad(loss, grad, params, batch="yes")
