"""Dense (fully connected) layer: an affine map followed by an optional activation.

Shapes: ``x`` is ``(B, D_in)``, ``W`` is ``(D_in, D_out)``, ``b`` is ``(D_out,)``; ``net``, ``y``,
``dy`` and ``delta`` are ``(B, D_out)``.

Forward (written once with ``xp``)::

    net = x W + b                 net[p, k] = Σ_j x[p, j] W[j, k] + b[k]        (eq. 4)
    y   = g(net)                  g = the activation (identity by default)

Backward (hand-derived numpy; ``dy = ∂L/∂y``)::

    delta = ∂L/∂net = g.backward(net, y, dy)    = dy ⊙ g'(net) when g is elementwise  (eq. 8)
    dW    = xᵀ delta              dW[j, k] = Σ_p x[p, j] delta[p, k]               (eq. 10)
    db    = Σ_p delta[p, :]       summed over the batch
    dx    = delta Wᵀ              dx[p, j] = Σ_k delta[p, k] W[j, k]               (eq. 9)

Notes:
    Guo's δ is ``-∂C/∂net``; ``delta`` here is ``+∂L/∂net`` (no sign flip anywhere).  Guo's
    weights ``w_kj`` map unit ``j`` to unit ``k`` (``net = W s``); this layer stores the transpose,
    ``W[j, k]``, so that a batch of row vectors is multiplied on the right: ``x W``.

References:
    Jiang Guo, "BackPropagation Through Time" (2013), eqs. 4, 8-10
    (``/work/shared/background/001_*.txt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from reference.activations import Activation, get_activation

__all__ = ["Dense", "init_params", "make_case"]

Array = Any  # a numpy or a JAX array
NDArray = npt.NDArray[Any]
Params = dict[str, Any]

_KINKED = ("relu", "leaky_relu")


@dataclass(frozen=True, slots=True)
class Dense:
    """``y = g(x W + b)``; params ``{"W": (D_in, D_out), "b": (D_out,)}``, ``x``: ``(B, D_in)``.

    Backward: ``delta = g.backward(net, y, dy)``, ``dW = xᵀ delta``, ``db = Σ_batch delta``,
    ``dx = delta Wᵀ`` (see the module docstring).

    Attributes:
        activation: a name in :data:`reference.activations.ACTIVATIONS` (default
            ``"identity"``: a plain affine layer) or an :class:`~reference.activations.Activation`.
    """

    activation: str | Activation = "identity"

    def __post_init__(self) -> None:
        get_activation(self.activation)  # an unknown name fails here, not in the backward

    def forward(self, params: Params, x: Array) -> Array:
        """Return ``y = g(x W + b)``, shape ``(B, D_out)``, numpy or JAX like the inputs."""
        return get_activation(self.activation).forward(x @ params["W"] + params["b"])

    def forward_cache(self, params: Params, x: NDArray) -> tuple[NDArray, NDArray]:
        """Numpy forward keeping what the backward needs: ``(net, y)``, both ``(B, D_out)``."""
        net = np.asarray(x) @ params["W"] + params["b"]
        return net, get_activation(self.activation).forward(net)

    def backward(self, params: Params, x: NDArray, dy: NDArray) -> tuple[Params, NDArray]:
        """Return ``({"W": dW, "b": db}, dx)`` for ``L = Σ dy ⊙ y``.

        Args:
            params: ``{"W": (D_in, D_out), "b": (D_out,)}``.
            x: the input, ``(B, D_in)``.
            dy: ``∂L/∂y``, ``(B, D_out)``.

        Returns:
            ``dW = xᵀ delta`` ``(D_in, D_out)``, ``db = Σ_p delta[p]`` ``(D_out,)`` and
            ``dx = delta Wᵀ`` ``(B, D_in)``, where ``delta = ∂L/∂net``.
        """
        x, W = np.asarray(x), np.asarray(params["W"])
        net, y = self.forward_cache(params, x)
        delta = get_activation(self.activation).backward(net, y, np.asarray(dy))
        dW = x.T @ delta
        db = delta.sum(axis=0)
        dx = delta @ W.T
        return {"W": dW.astype(W.dtype), "b": db.astype(params["b"].dtype)}, dx.astype(x.dtype)


def init_params(
    rng: np.random.Generator, d_in: int, d_out: int, *, dtype: npt.DTypeLike = np.float64
) -> Params:
    """Return ``{"W": N(0, 1/d_in) of shape (d_in, d_out), "b": N(0, 0.1²) of shape (d_out,)}``."""
    W = rng.normal(0.0, 1.0 / np.sqrt(d_in), (d_in, d_out))
    b = rng.normal(0.0, 0.1, d_out)
    return {"W": W.astype(dtype), "b": b.astype(dtype)}


def make_case(
    rng: np.random.Generator,
    *,
    dtype: npt.DTypeLike = np.float64,
    batch: int = 3,
    d_in: int = 4,
    d_out: int = 5,
    activation: str | Activation = "tanh",
    margin: float = 0.05,
    at_kink: bool = False,
) -> tuple[Dense, Params, NDArray]:
    """Build ``(Dense(activation), {"W": (d_in, d_out), "b": (d_out,)}, x: (batch, d_in))``.

    For ReLU / leaky ReLU the draw is repeated (up to 100 times) until every ``|net| >= margin``,
    so finite differences do not straddle the kink.

    Args:
        rng: the source of randomness.
        dtype: the dtype of ``W``, ``b`` and ``x``.
        batch: ``B``, rows of ``x``.
        d_in: ``D_in``, columns of ``x`` and rows of ``W``.
        d_out: ``D_out``, columns of ``W``, length of ``b``.
        activation: a name or an :class:`~reference.activations.Activation`.
        margin: the least ``|net|`` wanted for kinked activations.
        at_kink: put ``net[0, 0] = 0`` exactly (``x[0] = 0``, ``b[0] = 0``), on purpose.

    Returns:
        ``(layer, params, x)``.

    Examples:
        >>> layer, params, x = make_case(np.random.default_rng(0), batch=2, d_in=3, d_out=1)
        >>> layer.forward(params, x).shape
        (2, 1)
    """
    layer = Dense(activation)
    kinked = get_activation(activation).name in _KINKED
    for _ in range(100):
        params = init_params(rng, d_in, d_out, dtype=dtype)
        x = rng.normal(size=(batch, d_in)).astype(dtype)
        if not kinked or at_kink or np.min(np.abs(layer.forward_cache(params, x)[0])) >= margin:
            break
    if at_kink:
        x[0] = 0
        params["b"][0] = 0
    return layer, params, x
