"""Per-example gradients: the zoo's hand ``MLP.per_example_grad`` for the SSE and the softmax
cross-entropy, against JAX (``jax.vmap(jax.grad(ℓ_p))``, float64 inside ``jax.enable_x64``) and
through ``gc.check_batched``.

Each example's hand gradient equals JAX's per-example gradient; their sum over the batch equals
the zoo's batch gradient (``MLP.backward`` of ``Σ_p dy_p``); ``gc.check_batched`` passes them in
float64 and float32 and fails planted bugs written here, blaming the hand gradient on exactly
the leaves (and for one wrong entry, the example and entry) they break, with the notes that name
a mean/sum confusion and a batch gradient copied to every example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc
from reference import mlp

DTYPES = (np.float64, np.float32)
TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-3}
SEEDS = st.integers(0, 2**32 - 1)
LOSSES = ("sse", "xent")
SIZES = st.sampled_from(((4, 5, 3), (3, 2), (2, 3, 3, 2)))  # few shapes: JAX compiles per shape
Params = dict[str, Any]


def _problem(seed: int, sizes: tuple[int, ...], loss: str, dtype: Any, B: int = 4,
             hidden: str = "tanh") -> tuple[mlp.MLP, Params, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    layer, params, x = mlp.make_case(rng, sizes=sizes, batch=B, dtype=dtype, hidden_activation=hidden)
    K = sizes[-1]
    t = rng.dirichlet(np.ones(K), size=B) if loss == "xent" else rng.standard_normal((B, K))
    return layer, params, {"x": x, "t": t.astype(dtype)}


def _jax_per_example(layer: mlp.MLP, params: Params, batch: dict[str, np.ndarray], loss: str) -> Params:
    with jax.enable_x64(True):
        p = {k: jnp.asarray(np.asarray(v, np.float64)) for k, v in params.items()}
        b = {k: jnp.asarray(np.asarray(v, np.float64)) for k, v in batch.items()}

        def one(p: Params, x: Any, t: Any) -> Any:
            return layer.per_example_loss(p, {"x": x[None], "t": t[None]}, loss)[0]

        g = jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(p, b["x"], b["t"])
        return {k: np.asarray(v) for k, v in g.items()}


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@settings(max_examples=6)
@given(seed=SEEDS, sizes=SIZES, hidden=st.sampled_from(("tanh", "sigmoid")))
def test_per_example_grad_is_jax_per_example_grad_and_sums_to_the_batch_gradient(
        loss: str, dtype: Any, seed: int, sizes: tuple[int, ...], hidden: str) -> None:
    layer, params, batch = _problem(seed, sizes, loss, dtype, hidden=hidden)
    hand = layer.per_example_grad(params, batch, loss)
    ref = _jax_per_example(layer, params, batch, loss)
    assert set(hand) == set(params)
    for k, v in params.items():
        assert hand[k].shape == (4, *np.shape(v)) and hand[k].dtype == np.asarray(v).dtype, k
        scale = max(float(np.max(np.abs(ref[k]))), 1e-300)
        np.testing.assert_allclose(hand[k], ref[k], rtol=0, atol=TOL[np.dtype(dtype)] * scale, err_msg=k)
    # Σ_p ∂ℓ_p/∂θ is the gradient of Σ_p ℓ_p: the batch backward of the stacked dy rows
    y = np.asarray(layer.forward(params, batch["x"]), np.float64)
    if loss == "sse":
        dy = y - batch["t"]
    else:
        e = np.exp(y - y.max(axis=1, keepdims=True))
        dy = e / e.sum(axis=1, keepdims=True) - batch["t"]
    summed, _ = layer.backward({k: np.asarray(v, np.float64) for k, v in params.items()},
                               np.asarray(batch["x"], np.float64), dy)
    for k in params:
        np.testing.assert_allclose(hand[k].astype(np.float64).sum(axis=0), summed[k],
                                   rtol=TOL[np.dtype(dtype)], atol=TOL[np.dtype(dtype)] * 10, err_msg=k)


def test_per_example_loss_is_numpy_or_jax_like_its_inputs_and_refuses_bad_settings() -> None:
    layer, params, batch = _problem(0, (3, 2), "xent", np.float64)
    ours = layer.per_example_loss(params, batch, "xent")
    y = layer.forward(params, batch["x"])
    logp = y - np.log(np.exp(y).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(ours, -(batch["t"] * logp).sum(axis=1), rtol=1e-13)
    with jax.enable_x64(True):
        traced = layer.per_example_loss({k: jnp.asarray(v) for k, v in params.items()}, batch, "xent")
    assert isinstance(traced, jax.Array)
    np.testing.assert_allclose(np.asarray(traced), ours, rtol=1e-13)
    with pytest.raises(ValueError, match="expected 'sse' or 'xent'"):
        layer.per_example_grad(params, batch, "hinge")
    softmax_out = mlp.MLP("tanh", "softmax")
    with pytest.raises(ValueError, match="softmax inside the loss"):
        softmax_out.per_example_loss(params, batch, "xent")


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@settings(max_examples=3)
@given(seed=SEEDS)
def test_check_batched_passes_the_zoo_per_example_gradients(loss: str, dtype: Any, seed: int) -> None:
    layer, params, batch = _problem(seed, (4, 5, 3), loss, dtype)
    losses, grads = mlp.per_example_fun(layer, loss)
    res = gc.check_batched(losses, grads, params, batch, seed=seed % 1000)
    assert res.passed and res.kind == "check_batched", res.message()
    assert {leaf.name for leaf in res.leaves} == set(params)


# --------------------------------------------------------------------------- planted bugs


def _planted(layer: mlp.MLP, loss: str, bug: str) -> Callable[..., Params]:
    """The zoo's per-example gradient with one deliberate mistake."""

    def grads(params: Params, batch: dict[str, np.ndarray]) -> Params:
        if bug == "activation derivative dropped in layer 0":
            x, t = np.asarray(batch["x"]), np.asarray(batch["t"])
            a, _ = layer.forward_cache(params, x)
            g = layer.per_example_grad(params, batch, loss)
            dy = np.asarray(layer.forward(params, x)) - t if loss == "sse" else None
            assert dy is not None
            _, _, deltas = layer.backward_with_deltas(params, x, dy)
            d0 = deltas[1] @ np.asarray(params["W1"]).T  # no f'(net_0)
            g["W0"], g["b0"] = np.einsum("pi,pj->pij", a[0], d0), d0
            return g
        g = layer.per_example_grad(params, batch, loss)
        B = len(batch["x"])
        if bug == "mean over the batch":
            return {k: v / B for k, v in g.items()}
        if bug == "batch gradient copied to every example":
            return {k: np.repeat(v.sum(axis=0, keepdims=True), B, axis=0) for k, v in g.items()}
        if bug == "one entry of example 2":
            g["W1"][2, 1, 0] += 1e-3 * float(np.max(np.abs(g["W1"])))
            return g
        if bug == "examples reversed in b1":
            g["b1"] = g["b1"][::-1].copy()
            return g
        raise AssertionError(bug)

    return grads


def _assert_blamed(res: Any, broken: set[str], where: str) -> None:
    where = f"{where}\n{res.message()}"
    assert res.verdict == "fail" and res.kind == "check_batched", where
    assert {leaf.name for leaf in res.failures} == broken, where
    assert all(leaf.blame == "hand" for leaf in res.failures), where


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("bug, broken, note", [
    ("mean over the batch", {"W0", "b0", "W1", "b1"}, "mean/sum confusion"),
    ("batch gradient copied to every example", {"W0", "b0", "W1", "b1"}, "copied to each example"),
    ("one entry of example 2", {"W1"}, None),
    ("examples reversed in b1", {"b1"}, None),
    ("activation derivative dropped in layer 0", {"W0", "b0"}, None),
])
def test_check_batched_blames_planted_bugs(dtype: Any, bug: str, broken: set[str], note: str | None) -> None:
    layer, params, batch = _problem(7, (4, 5, 3), "sse", dtype)
    losses, _ = mlp.per_example_fun(layer, "sse")
    res = gc.check_batched(losses, _planted(layer, "sse", bug), params, batch, seed=0)
    _assert_blamed(res, broken, bug)
    if note is not None:
        assert any(note in n for n in res.notes), res.notes
    if bug == "one entry of example 2":
        (leaf,) = res.failures
        assert leaf.name == "W1" and leaf.n_mismatched == 1, res.message()
        assert tuple(leaf.worst[0].index) == (2, 1, 0), res.message()
        assert "1 wrong entry at [2, 1, 0]" in res.message()
