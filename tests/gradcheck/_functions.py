"""Functions with known gradients, written once for numpy and jax.numpy, for the engine's tests.

Each entry is ``(fun, grad)`` with ``fun(params, *args)`` a scalar loss and ``grad`` its exact
gradient, computed in the dtype of the parameters (a float32 case gets a float32 gradient).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def xp_of(*arrays: Any) -> Any:
    for a in arrays:
        get = getattr(a, "__array_namespace__", None)
        if get is not None:
            return get()
    return np


# f(W) = Σ (c1·W + c2·W² + c3·W³)
def poly(p: dict[str, Any], c: np.ndarray) -> Any:
    xp = xp_of(p["W"])
    W = p["W"]
    return xp.sum(c[0] * W + c[1] * W**2 + c[2] * W**3)


def poly_grad(p: dict[str, Any], c: np.ndarray) -> dict[str, Any]:
    W = p["W"]
    dt = W.dtype
    return {"W": (c[0] + 2 * c[1] * W + 3 * c[2] * W**2).astype(dt)}


# f(W) = Σ v ⊙ tanh(x W)
def tanh_layer(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> Any:
    xp = xp_of(p["W"])
    return xp.sum(v * xp.tanh(x @ p["W"]))


def tanh_layer_grad(p: dict[str, Any], x: np.ndarray, v: np.ndarray) -> dict[str, Any]:
    t = np.tanh(x @ p["W"])
    return {"W": x.T @ (v * (1 - t**2))}


# Softmax cross-entropy with integer labels: C = −Σ_n log softmax(x_n W + b)[y_n]
def softmax_ce(p: dict[str, Any], x: np.ndarray, y: np.ndarray) -> Any:
    xp = xp_of(p["W"])
    z = x @ p["W"] + p["b"]
    z = z - xp.max(z, axis=1, keepdims=True)
    logp = z - xp.log(xp.sum(xp.exp(z), axis=1, keepdims=True))
    return -xp.sum(logp[np.arange(len(y)), y])


def softmax_ce_grad(p: dict[str, Any], x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    z = x @ p["W"] + p["b"]
    z = z - z.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    delta = prob.copy()
    delta[np.arange(len(y)), y] -= 1  # δ = y − d (eq. 17)
    return {"W": x.T @ delta, "b": delta.sum(axis=0)}


# A product over a pytree with several leaves: f = Σ_i a_i · Π_l layers[l].w_i
def tree_product(p: dict[str, Any]) -> Any:
    xp = xp_of(p["a"])
    prod = p["a"]
    for layer in p["layers"]:
        prod = prod * layer["w"]
    return xp.sum(prod)


def tree_product_grad(p: dict[str, Any]) -> dict[str, Any]:
    ws = [layer["w"] for layer in p["layers"]]
    total = p["a"] * np.prod(ws, axis=0)

    def without(i: int) -> Any:
        others = [w for j, w in enumerate(ws) if j != i]
        return p["a"] * np.prod(others, axis=0) if others else p["a"]

    return {
        "a": np.prod(ws, axis=0).astype(p["a"].dtype) if ws else np.ones_like(total),
        "layers": [{"w": without(i).astype(p["a"].dtype)} for i in range(len(ws))],
    }


# A small Elman RNN over a time-major sequence x (T, B, D):
#   h_t = tanh(x_t U + h_{t−1} Wh),  L = Σ_t Σ (h_t ⊙ v)
def rnn_loss(p: dict[str, Any]) -> Any:
    x = p["x"]
    xp = xp_of(p["U"], x)
    h = xp.zeros((x.shape[1], p["Wh"].shape[0]), dtype=x.dtype)
    total = 0.0
    for t in range(x.shape[0]):
        h = xp.tanh(x[t] @ p["U"] + h @ p["Wh"])
        total = total + xp.sum(h * p["v"])
    return total


def rnn_grad(p: dict[str, Any], *, bug: str | None = None) -> dict[str, Any]:
    """BPTT: δ_t = (v + δ_{t+1} Whᵀ) ⊙ (1 − h_t²), with an optional planted bug."""
    x = p["x"]
    T = x.shape[0]
    hs = [np.zeros((x.shape[1], p["Wh"].shape[0]))]
    for t in range(T):
        hs.append(np.tanh(x[t] @ p["U"] + hs[-1] @ p["Wh"]))
    dU, dWh, dv = np.zeros_like(p["U"]), np.zeros_like(p["Wh"]), np.zeros_like(p["v"])
    dx = np.zeros_like(x)
    carry = np.zeros_like(hs[0])
    for t in reversed(range(T)):
        dh = p["v"] + carry
        dv += hs[t + 1].sum(axis=0)
        da = dh * (1 - hs[t + 1] ** 2)
        dU += x[t].T @ da
        dWh += hs[t].T @ da
        dx[t] = da @ p["U"].T
        if bug == "step0" and t == 0:
            dx[t] = (p["v"] * (1 - hs[1] ** 2)) @ p["U"].T  # forgets the carry at t = 0
        carry = da @ p["Wh"].T
    if bug == "shift":
        dx = np.concatenate([np.zeros_like(dx[:1]), dx[:-1]])
    return {"U": dU, "Wh": dWh, "v": dv, "x": dx}
