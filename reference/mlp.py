"""Multi-layer perceptron: a stack of dense layers trained by the four steps of backpropagation.

Parameters are one flat dict ``{"W0", "b0", "W1", "b1", ..., "W{L-1}", "b{L-1}"}``: layer ``i``
(counting from 0 at the input) has ``W{i}`` of shape ``(D_i, D_{i+1})`` and ``b{i}`` of shape
``(D_{i+1},)``, for widths ``sizes = (D_0, D_1, ..., D_L)``; ``D_0`` is the input width and
``D_L`` the output width.  ``x`` is ``(B, D_0)``, ``y`` is ``(B, D_L)``.  (With 10 or more layers
the keys do not sort numerically, ``"W10" < "W2"``; look them up by name, never by order.)
Layers ``0 .. L-2`` use the hidden activation(s) ``f_i``, layer ``L-1`` the output activation
``g``.

Forward — step 1, the activations (written once with ``xp``)::

    a_0 = x
    net_i = a_i W_i + b_i                              (B, D_{i+1})
    a_{i+1} = f_i(net_i)      (f_{L-1} = g)            y = a_L

Backward (hand-derived numpy; ``delta_i = ∂L/∂net_i``, ``dy = ∂L/∂y``)::

    step 2, output error:      delta_{L-1} = g.backward(net_{L-1}, y, dy)      = dy ⊙ g'(net_{L-1})
    step 3, error propagated:  delta_{i-1} = f_{i-1}.backward(net_{i-1}, a_i, delta_i W_iᵀ)
                                           = (delta_i W_iᵀ) ⊙ f'_{i-1}(net_{i-1})          (eq. 9)
    step 4, weight gradients:  dW_i = a_iᵀ delta_i        (eqs. 10-11)
                               db_i = Σ_p delta_i[p]      (summed over the batch)
    input gradient:            dx = delta_0 W_0ᵀ

Notes:
    ``delta_i`` here is ``+∂L/∂net_i``; Guo's δ is its negative.  ``backward_with_deltas`` returns
    every ``delta_i`` too, for gradient-flow analyses through depth.

References:
    Jiang Guo, "BackPropagation Through Time" (2013), eqs. 1-11
    (``/work/shared/background/001_*.txt``); the four steps of backpropagation in
    ``/work/shared/background/000_*.txt``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from reference.activations import Activation, get_activation

__all__ = ["MLP", "init_params", "make_case", "n_layers"]

Array = Any  # a numpy or a JAX array
NDArray = npt.NDArray[Any]
Params = dict[str, Any]

_KINKED = ("relu", "leaky_relu")


def n_layers(params: Params) -> int:
    """Return ``L``, the number of layers in ``params`` (keys ``W0, b0, ..., W{L-1}, b{L-1}``).

    Raises:
        KeyError: when the keys are not exactly ``W0, b0, ..., W{L-1}, b{L-1}`` with ``L >= 1``.
    """
    L = sum(1 for k in params if k.startswith("W"))
    expected = {f"{p}{i}" for i in range(L) for p in "Wb"}
    if L == 0 or set(params) != expected:
        raise KeyError(f"MLP params must be W0, b0, ..., W{{L-1}}, b{{L-1}}; got {sorted(params)}")
    return L


@dataclass(frozen=True, slots=True)
class MLP:
    """``y = g(... f_1(f_0(x W0 + b0) W1 + b1) ... W{L-1} + b{L-1})``; see the module docstring.

    Attributes:
        hidden_activation: the activation ``f_i`` of every hidden layer ``i < L-1`` (a name or an
            :class:`~reference.activations.Activation`), or a tuple of ``L-1`` of them, one per
            hidden layer.
        output_activation: the activation ``g`` of the last layer (default ``"identity"``).
    """

    hidden_activation: str | Activation | tuple[str | Activation, ...] = "tanh"
    output_activation: str | Activation = "identity"

    def activations(self, L: int) -> list[Activation]:
        """Return ``[f_0, ..., f_{L-2}, g]`` for an ``L``-layer network.

        Raises:
            ValueError: when a tuple of hidden activations does not have ``L - 1`` entries.
        """
        hidden = self.hidden_activation
        if isinstance(hidden, tuple):
            if len(hidden) != L - 1:
                raise ValueError(f"{len(hidden)} hidden activations for {L} layers; need {L - 1}")
            fs = [get_activation(h) for h in hidden]
        else:
            fs = [get_activation(hidden)] * (L - 1)
        return [*fs, get_activation(self.output_activation)]

    def forward(self, params: Params, x: Array) -> Array:
        """Step 1: return ``y = a_L`` of shape ``(B, D_L)`` for ``x`` of shape ``(B, D_0)``."""
        a = x
        for i, f in enumerate(self.activations(n_layers(params))):
            a = f.forward(a @ params[f"W{i}"] + params[f"b{i}"])
        return a

    def forward_cache(self, params: Params, x: NDArray) -> tuple[list[NDArray], list[NDArray]]:
        """Numpy step 1 keeping what the backward needs: ``(a, net)``.

        ``a = [a_0 = x, a_1, ..., a_L = y]`` (``a_i`` is ``(B, D_i)``) and
        ``net = [net_0, ..., net_{L-1}]`` (``net_i`` is ``(B, D_{i+1})``).
        """
        a, net = [np.asarray(x)], []
        for i, f in enumerate(self.activations(n_layers(params))):
            net.append(a[i] @ params[f"W{i}"] + params[f"b{i}"])
            a.append(f.forward(net[i]))
        return a, net

    def backward_with_deltas(
        self, params: Params, x: NDArray, dy: NDArray
    ) -> tuple[Params, NDArray, list[NDArray]]:
        """Steps 2-4: return ``(dparams, dx, deltas)`` for ``L = Σ dy ⊙ y``.

        Args:
            params: ``{"W{i}": (D_i, D_{i+1}), "b{i}": (D_{i+1},)}`` for ``i < L``.
            x: the input, ``(B, D_0)``.
            dy: ``∂L/∂y``, ``(B, D_L)``.

        Returns:
            ``dparams`` with the keys and shapes of ``params``, ``dx`` ``(B, D_0)``, and
            ``deltas``, a list with ``deltas[i] = ∂L/∂net_i`` of shape ``(B, D_{i+1})``.
        """
        fs = self.activations(n_layers(params))
        a, net = self.forward_cache(params, x)
        W = [np.asarray(params[f"W{i}"]) for i in range(len(fs))]
        deltas: list[NDArray] = [np.empty(0)] * len(fs)
        top = len(fs) - 1
        deltas[top] = fs[top].backward(net[top], a[top + 1], np.asarray(dy))  # step 2
        for i in range(top, 0, -1):  # step 3
            deltas[i - 1] = fs[i - 1].backward(net[i - 1], a[i], deltas[i] @ W[i].T)
        dparams: Params = {}
        for i, delta in enumerate(deltas):  # step 4
            dparams[f"W{i}"] = (a[i].T @ delta).astype(W[i].dtype)
            dparams[f"b{i}"] = delta.sum(axis=0).astype(params[f"b{i}"].dtype)
        dx = (deltas[0] @ W[0].T).astype(a[0].dtype)
        return dparams, dx, deltas

    def backward(self, params: Params, x: NDArray, dy: NDArray) -> tuple[Params, NDArray]:
        """Return ``(dparams, dx)``: :meth:`backward_with_deltas` without the deltas."""
        dparams, dx, _ = self.backward_with_deltas(params, x, dy)
        return dparams, dx


def init_params(
    rng: np.random.Generator, sizes: Sequence[int], *, dtype: npt.DTypeLike = np.float64
) -> Params:
    """Return ``{"W{i}": N(0, 1/D_i) (D_i, D_{i+1}), "b{i}": N(0, 0.1²) (D_{i+1},)}`` for ``sizes``.

    Args:
        rng: the source of randomness.
        sizes: the widths ``(D_0, ..., D_L)``, at least two of them.
        dtype: the dtype of every parameter.
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes={tuple(sizes)!r}: need at least (D_in, D_out)")
    params: Params = {}
    for i, (d_in, d_out) in enumerate(itertools.pairwise(sizes)):
        params[f"W{i}"] = rng.normal(0.0, 1.0 / np.sqrt(d_in), (d_in, d_out)).astype(dtype)
        params[f"b{i}"] = rng.normal(0.0, 0.1, d_out).astype(dtype)
    return params


def make_case(
    rng: np.random.Generator,
    *,
    dtype: npt.DTypeLike = np.float64,
    batch: int = 3,
    sizes: Sequence[int] = (4, 5, 3),
    hidden_activation: str | Activation | tuple[str | Activation, ...] = "tanh",
    output_activation: str | Activation = "identity",
    margin: float = 0.05,
) -> tuple[MLP, Params, NDArray]:
    """Build ``(MLP(...), params, x)`` with ``x`` of shape ``(batch, sizes[0])``.

    ``sizes = (D_0, ..., D_L)`` gives ``L = len(sizes) - 1`` layers (``W{i}`` is
    ``(sizes[i], sizes[i+1])``).  With a ReLU / leaky ReLU anywhere the draw is repeated (up to
    100 times) until every pre-activation of such a layer has ``|net| >= margin``.

    Args:
        rng: the source of randomness.
        dtype: the dtype of the parameters and of ``x``.
        batch: ``B``, rows of ``x``.
        sizes: the widths, input first.
        hidden_activation: see :class:`MLP`.
        output_activation: see :class:`MLP`.
        margin: the least ``|net|`` wanted at kinked activations.

    Returns:
        ``(layer, params, x)``.

    Examples:
        >>> layer, params, x = make_case(np.random.default_rng(0), sizes=(2, 3, 3, 1))
        >>> sorted(params), layer.forward(params, x).shape
        (['W0', 'W1', 'W2', 'b0', 'b1', 'b2'], (3, 1))
    """
    layer = MLP(hidden_activation, output_activation)
    fs = layer.activations(len(sizes) - 1)
    for _ in range(100):
        params = init_params(rng, sizes, dtype=dtype)
        x = rng.normal(size=(batch, sizes[0])).astype(dtype)
        nets = layer.forward_cache(params, x)[1]
        if all(
            np.min(np.abs(n)) >= margin for n, f in zip(nets, fs, strict=True) if f.name in _KINKED
        ):
            break
    return layer, params, x
