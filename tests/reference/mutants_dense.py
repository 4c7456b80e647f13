"""Planted bugs in the dense, MLP, activation and loss reference code, for the mutation tests.

Each mutant subclasses a reference layer (or an activation / loss it is built with) and overrides
its backward with ONE realistic bug.  ``MUTANTS`` maps a readable bug name to a factory
``rng -> (layer, params, x)`` building a small float64 case on which that bug really changes the
gradient (square weights where a transpose bug must keep the shapes, a batch > 1 where the
bias must be summed); ``WRONG_LEAVES`` names the leaves (param keys or ``"x"``) whose gradient is
wrong there — the other leaves stay exact.  Losses are checked as layers through
:class:`reference.losses.LossLayer` (``x`` is the network output ``y``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from reference import activations, dense, losses, mlp
from reference.activations import ReLU, Sigmoid, Softmax
from reference.dense import Dense
from reference.losses import SSE, SigmoidBinaryCrossEntropy, SoftmaxCrossEntropy
from reference.mlp import MLP, n_layers

__all__ = ["MUTANTS", "WRONG_LEAVES"]

NDArray = npt.NDArray[Any]
Params = dict[str, Any]
Case = tuple[Any, dict[str, NDArray], NDArray]


def _as(cls: type, case: Case) -> Case:
    """The same case with the layer rebuilt as the mutant class ``cls`` (same fields)."""
    layer, params, x = case
    return cls(**{f.name: getattr(layer, f.name) for f in fields(layer)}), params, x


# ----------------------------------------------------------------------------- Dense


def _dense_grads(
    layer: Dense,
    params: Params,
    x: Any,
    dy: Any,
    *,
    sign_dW: float = 1.0,
    transpose_dW: bool = False,
    db_first_row: bool = False,
) -> tuple[Params, NDArray]:
    """Dense.backward with one knob turned (all defaults: the correct backward)."""
    x, W = np.asarray(x), np.asarray(params["W"])
    net, y = layer.forward_cache(params, x)
    delta = activations.get_activation(layer.activation).backward(net, y, np.asarray(dy))
    dW = sign_dW * (x.T @ delta)
    if transpose_dW:
        dW = dW.T
    db = delta[0] if db_first_row else delta.sum(axis=0)
    return {"W": dW, "b": db}, delta @ W.T


@dataclass(frozen=True)
class _DenseSignFlipW(Dense):
    """dW = -xᵀ delta (the update direction folded into the gradient)."""

    def backward(self, params: Params, x: Any, dy: Any) -> tuple[Params, NDArray]:
        return _dense_grads(self, params, x, dy, sign_dW=-1.0)


@dataclass(frozen=True)
class _DenseTransposedW(Dense):
    """dW = (xᵀ delta)ᵀ = deltaᵀ x: Guo's ``w_kj`` layout mixed with the ``x W`` layout."""

    def backward(self, params: Params, x: Any, dy: Any) -> tuple[Params, NDArray]:
        return _dense_grads(self, params, x, dy, transpose_dW=True)


@dataclass(frozen=True)
class _DenseBiasFirstRow(Dense):
    """db = delta[0]: the bias gradient of the first example only, not summed over the batch."""

    def backward(self, params: Params, x: Any, dy: Any) -> tuple[Params, NDArray]:
        return _dense_grads(self, params, x, dy, db_first_row=True)


@dataclass(frozen=True)
class _SigmoidPrimeOfNet(Sigmoid):
    """g'(net) = net (1 - net): eq. 14 applied to the pre-activation instead of y = g(net)."""

    def derivative(self, x: NDArray, y: NDArray) -> NDArray:
        gprime: NDArray = x * (1 - x)
        return gprime


# ----------------------------------------------------------------------------- activations


@dataclass(frozen=True)
class _SoftmaxDiagonal(Softmax):
    """Softmax backward with the diagonal of the Jacobian only: dx = dy ⊙ y (1 - y)."""

    def backward(self, x: NDArray, y: NDArray, dy: NDArray) -> NDArray:
        dx: NDArray = dy * y * (1 - y)
        return dx


@dataclass(frozen=True)
class _ReLUMaskFromOutput(ReLU):
    """ReLU' = [y >= 0], tested on the output: always true, the mask is lost."""

    def derivative(self, x: NDArray, y: NDArray) -> NDArray:
        return (y >= 0).astype(x.dtype)


def _relu_case(rng: np.random.Generator) -> Case:
    layer, params, x = activations.make_case(rng, activation=_ReLUMaskFromOutput())
    x[0, 0] = -abs(x[0, 0])  # at least one negative input, so the mask matters
    return layer, params, x


# ----------------------------------------------------------------------------- losses


@dataclass(frozen=True)
class _SSETwice(SSE):
    """SSE backward dy = 2 (y - d): the derivative of (d - y)² without the ½ of C = ½ Σ (d - y)²."""

    def _grad(self, y: NDArray, d: NDArray) -> NDArray:
        g: NDArray = 2 * (y - d)
        return g


@dataclass(frozen=True)
class _CEMeanNotDivided(SoftmaxCrossEntropy):
    """Softmax CE with reduction="mean": the forward divides by n, the backward forgets to."""

    def backward(self, y: NDArray, d: NDArray) -> NDArray:
        y = np.asarray(y)
        return np.asarray(self._grad(y, np.asarray(d)), dtype=y.dtype)


@dataclass(frozen=True)
class _SigmoidBCEGuoSign(SigmoidBinaryCrossEntropy):
    """Sigmoid BCE gradient d - σ(z): Guo's error δ = -∂C/∂net (eq. 17) returned as ∂C/∂z."""

    def _grad(self, y: NDArray, d: NDArray) -> NDArray:
        g: NDArray = d - Sigmoid().forward(y)
        return g


# ----------------------------------------------------------------------------- MLP


def _mlp_grads(
    layer: MLP,
    params: Params,
    x: Any,
    dy: Any,
    *,
    propagate_with_W: bool = False,
    dW_from_output: bool = False,
    drop_hidden_fprime: bool = False,
    activation_of_layer_above: bool = False,
) -> tuple[Params, NDArray]:
    """MLP.backward with one knob turned (all defaults: the correct backward)."""
    fs = layer.activations(n_layers(params))
    a, net = layer.forward_cache(params, x)
    W = [np.asarray(params[f"W{i}"]) for i in range(len(fs))]
    deltas: list[NDArray] = [np.empty(0)] * len(fs)
    top = len(fs) - 1
    deltas[top] = fs[top].backward(net[top], a[top + 1], np.asarray(dy))
    for i in range(top, 0, -1):
        back = deltas[i] @ (W[i] if propagate_with_W else W[i].T)
        f = fs[i] if activation_of_layer_above else fs[i - 1]
        deltas[i - 1] = back if drop_hidden_fprime else f.backward(net[i - 1], a[i], back)
    dparams: Params = {}
    for i, delta in enumerate(deltas):
        dparams[f"W{i}"] = (a[i + 1] if dW_from_output else a[i]).T @ delta
        dparams[f"b{i}"] = delta.sum(axis=0)
    return dparams, deltas[0] @ W[0].T


@dataclass(frozen=True)
class _MLPPropagateWithW(MLP):
    """delta_{i-1} uses delta_i W_i instead of delta_i W_iᵀ (square widths keep the shapes)."""

    def backward(self, params: Params, x: Any, dy: Any) -> tuple[Params, NDArray]:
        return _mlp_grads(self, params, x, dy, propagate_with_W=True)


@dataclass(frozen=True)
class _MLPdWFromOutput(MLP):
    """dW_i = a_{i+1}ᵀ delta_i: the activations list indexed one layer too far."""

    def backward(self, params: Params, x: Any, dy: Any) -> tuple[Params, NDArray]:
        return _mlp_grads(self, params, x, dy, dW_from_output=True)


@dataclass(frozen=True)
class _MLPDropHiddenFPrime(MLP):
    """delta_{i-1} = delta_i W_iᵀ: the hidden activation's f'(net_{i-1}) left out."""

    def backward(self, params: Params, x: Any, dy: Any) -> tuple[Params, NDArray]:
        return _mlp_grads(self, params, x, dy, drop_hidden_fprime=True)


@dataclass(frozen=True)
class _MLPActivationOfLayerAbove(MLP):
    """delta_{i-1} uses f_i (the activation of the layer above) instead of f_{i-1}."""

    def backward(self, params: Params, x: Any, dy: Any) -> tuple[Params, NDArray]:
        return _mlp_grads(self, params, x, dy, activation_of_layer_above=True)


_SQUARE = (4, 4, 4, 4)
_HIDDEN = ("W0", "b0", "W1", "b1", "x")

# ----------------------------------------------------------------------------- tables

MUTANTS: dict[str, Callable[[np.random.Generator], Case]] = {
    "dense: dW sign flipped": lambda rng: _as(_DenseSignFlipW, dense.make_case(rng)),
    "dense: dW transposed (square W)": lambda rng: _as(
        _DenseTransposedW, dense.make_case(rng, d_in=4, d_out=4)
    ),
    "dense: db from the first example only, not summed over the batch": lambda rng: _as(
        _DenseBiasFirstRow, dense.make_case(rng, batch=3)
    ),
    "dense/sigmoid: g'(net) = net(1 - net) instead of y(1 - y)": lambda rng: dense.make_case(
        rng, activation=_SigmoidPrimeOfNet()
    ),
    "softmax: Jacobian diagonal only, dx = dy y(1 - y)": lambda rng: activations.make_case(
        rng, activation=_SoftmaxDiagonal()
    ),
    "relu: mask [y >= 0] on the output instead of [net > 0]": _relu_case,
    "sse: dy = 2(y - d), the 1/2 of C = 1/2 sum (d - y)^2 forgotten": lambda rng: losses.make_case(
        rng, loss=_SSETwice()
    ),
    "softmax CE (mean): backward not divided by the batch size": lambda rng: losses.make_case(
        rng, loss=_CEMeanNotDivided(reduction="mean"), batch=3
    ),
    "sigmoid BCE: gradient d - y (Guo's delta sign) instead of y - d": lambda rng: losses.make_case(
        rng, loss=_SigmoidBCEGuoSign()
    ),
    "mlp: error propagated with W instead of W^T (square widths)": lambda rng: _as(
        _MLPPropagateWithW, mlp.make_case(rng, sizes=_SQUARE)
    ),
    "mlp: dW_i from the layer's output a_(i+1) instead of its input a_i": lambda rng: _as(
        _MLPdWFromOutput, mlp.make_case(rng, sizes=_SQUARE)
    ),
    "mlp: hidden f'(net) dropped when propagating the error": lambda rng: _as(
        _MLPDropHiddenFPrime, mlp.make_case(rng, sizes=(4, 5, 3))
    ),
    "mlp: activation of the layer above used in the hidden derivative": lambda rng: _as(
        _MLPActivationOfLayerAbove,
        mlp.make_case(
            rng, sizes=(3, 4, 4, 2), hidden_activation="tanh", output_activation="sigmoid"
        ),
    ),
}

WRONG_LEAVES: dict[str, set[str]] = {
    "dense: dW sign flipped": {"W"},
    "dense: dW transposed (square W)": {"W"},
    "dense: db from the first example only, not summed over the batch": {"b"},
    "dense/sigmoid: g'(net) = net(1 - net) instead of y(1 - y)": {"W", "b", "x"},
    "softmax: Jacobian diagonal only, dx = dy y(1 - y)": {"x"},
    "relu: mask [y >= 0] on the output instead of [net > 0]": {"x"},
    "sse: dy = 2(y - d), the 1/2 of C = 1/2 sum (d - y)^2 forgotten": {"x"},
    "softmax CE (mean): backward not divided by the batch size": {"x"},
    "sigmoid BCE: gradient d - y (Guo's delta sign) instead of y - d": {"x"},
    "mlp: error propagated with W instead of W^T (square widths)": set(_HIDDEN),
    "mlp: dW_i from the layer's output a_(i+1) instead of its input a_i": {"W0", "W1", "W2"},
    "mlp: hidden f'(net) dropped when propagating the error": {"W0", "b0", "x"},
    "mlp: activation of the layer above used in the hidden derivative": set(_HIDDEN),
}
