"""Loss functions C(y, d) with their hand-derived gradients ∂C/∂y, and a loss-as-layer adapter.

Symbols (Guo 2013): ``y`` the network output (probabilities, or logits ``z`` where said),
``d`` the desired output, ``n = y.shape[0]`` the number of samples (index ``p``), ``k`` the
output units (last axis).  Shapes: ``y`` is ``(n, ..., K)``; ``d`` has the shape of ``y``, except
integer class labels, of shape ``y.shape[:-1]``.

Forward (written once with ``xp``) and backward (hand-derived numpy, ``dy = ∂C/∂y``)::

    SSE            C = ½ Σ (d - y)²                          dy = y - d                 (eq. 5)
    MSE            C = (1/N) Σ (y - d)²,  N = y.size          dy = (2/N) (y - d)
    BCE            C = -Σ [d ln y + (1 - d) ln(1 - y)]         dy = (y - d) / (y (1 - y))  (eq. 16)
    sigmoid BCE    C = Σ [softplus(z) - d z]                  dz = σ(z) - d             (eq. 17)
                     (= BCE of y = σ(z), written on the logits z)
    softmax CE     C = -Σ_k d_k ln softmax(z)_k   (probability / one-hot targets d)
                                                              dz = softmax(z) Σ_k d_k - d
                                                                 = softmax(z) - d      (eq. 17)
                   C = -Σ ln softmax(z)[label]    (integer labels)
                                                              dz = softmax(z) - onehot(label)

Second order (hand-derived numpy): ``hvp(y, d, v) = ∇²_y C · v``, the derivative of the backward
along a tangent ``v`` of ``y`` (Pearlmutter's ``R{dy}``; the loss's Hessian ``H_ℓ`` in a
Gauss–Newton product ``Jᵀ H_ℓ J``)::

    SSE            H v = v
    MSE            H v = (2/N) v
    BCE            H v = [d / y² + (1 - d) / (1 - y)²] ⊙ v
    sigmoid BCE    H v = σ(z)(1 - σ(z)) ⊙ v
    softmax CE     H v = (Σ_k d_k) · p ⊙ (v - Σ_k p_k v_k),   p = softmax(z)
                       (= (diag(p) - p pᵀ) v per row; Σ_k d_k = 1 for labels and one-hot rows)

``reduction="sum"`` (the default, as in eqs. 5 and 16) sums over every entry;
``reduction="mean"`` divides the sum (and the gradient) by the number of samples ``n``, the
leading axis, keeping the sum over the other axes (for ``(n, T, K)`` sequences: summed over time,
averaged over the batch).  MSE always averages over all ``N`` entries (it has no reduction).

Notes:
    Guo writes the error as ``δ = -∂C/∂net = d - y``; here every backward returns the gradient
    itself, ``∂C/∂y`` (or ``∂C/∂z``), so the eq. 17 identity reads ``∂C/∂z = y - d``.
    ``softplus(z) = log(1 + e^z)`` is evaluated as ``logaddexp(0, z)`` and ``ln softmax`` as
    ``z - max z - ln Σ exp(z - max z)``: no overflow for large logits.  BCE on probabilities
    needs ``0 < y < 1``; it uses ``log1p(-y)`` for ``ln(1 - y)``.

References:
    Jiang Guo, "BackPropagation Through Time" (2013), eqs. 5, 16, 17
    (``/work/shared/background/001_*.txt``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from reference._xp import namespace
from reference.activations import Sigmoid, Softmax

__all__ = [
    "LOSSES",
    "MSE",
    "SSE",
    "BinaryCrossEntropy",
    "Loss",
    "LossLayer",
    "Reduction",
    "SigmoidBinaryCrossEntropy",
    "SoftmaxCrossEntropy",
    "make_case",
]

Array = Any  # a numpy or a JAX array
NDArray = npt.NDArray[Any]
Params = dict[str, Any]
Reduction = Literal["sum", "mean"]


def _check_reduction(reduction: str) -> None:
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction={reduction!r}: choose 'sum' or 'mean'")


@dataclass(frozen=True, slots=True)
class Loss(ABC):
    """Base class: a loss ``C(y, d)``; subclasses define ``_total`` (xp) and ``_grad`` (numpy).

    Attributes:
        reduction: ``"sum"`` over everything, or ``"mean"``: the sum divided by ``n = y.shape[0]``.
    """

    name: ClassVar[str] = "loss"
    reduction: Reduction = "sum"

    def __post_init__(self) -> None:
        _check_reduction(self.reduction)

    def _scale(self, y: Any) -> float:
        return 1.0 / y.shape[0] if self.reduction == "mean" else 1.0

    @abstractmethod
    def _total(self, y: Array, d: Array) -> Array:
        """The summed loss (xp-generic), before the reduction's scale."""

    @abstractmethod
    def _grad(self, y: NDArray, d: NDArray) -> NDArray:
        """∂(summed loss)/∂y (numpy), before the reduction's scale."""

    def forward(self, y: Array, d: Array) -> Array:
        """Return ``C(y, d)``, a 0-d array of the dtype of ``y`` (numpy or JAX, like ``y``).

        Args:
            y: the network output, shape ``(n, ..., K)``.
            d: the target, shaped like ``y`` (or integer labels of shape ``y.shape[:-1]`` for
                :class:`SoftmaxCrossEntropy`).
        """
        xp = namespace(y, d)
        return xp.asarray(self._total(y, d) * self._scale(y))

    def backward(self, y: NDArray, d: NDArray) -> NDArray:
        """Return ``∂C/∂y`` (numpy), shaped like ``y``, in the dtype of ``y``."""
        y = np.asarray(y)
        g = self._grad(y, np.asarray(d)) * self._scale(y)
        return np.asarray(g, dtype=y.dtype)

    def _hvp(self, y: NDArray, d: NDArray, v: NDArray) -> NDArray:
        """``∇²_y (summed loss) · v`` (numpy), before the reduction's scale."""
        raise NotImplementedError(f"{type(self).__name__} defines no Hessian-vector product")

    def hvp(self, y: NDArray, d: NDArray, v: NDArray) -> NDArray:
        """Return ``∇²_y C · v`` (numpy): the derivative of :meth:`backward` along ``v``.

        Args:
            y: the network output, shape ``(n, ..., K)``.
            d: the target (as in :meth:`forward`).
            v: a tangent of ``y``, shaped like ``y``.

        Returns:
            ``H_ℓ v`` shaped like ``y``, in the dtype of ``y`` (see the module docstring).
        """
        y = np.asarray(y)
        if np.shape(v) != y.shape:
            raise ValueError(f"v has shape {np.shape(v)}; y has {y.shape}")
        h = self._hvp(y, np.asarray(d), np.asarray(v)) * self._scale(y)
        return np.asarray(h, dtype=y.dtype)


def _like(d: Array, y: Array) -> Array:
    """``d`` as an array of ``y``'s namespace and dtype (so float32 stays float32)."""
    return namespace(y, d).asarray(d, dtype=y.dtype)


@dataclass(frozen=True, slots=True)
class SSE(Loss):
    """Summed squared error ``C = ½ Σ (d - y)²`` (eq. 5); ``∂C/∂y = y - d``."""

    name: ClassVar[str] = "sse"

    def _total(self, y: Array, d: Array) -> Array:
        r = _like(d, y) - y
        return 0.5 * namespace(y).sum(r * r)

    def _grad(self, y: NDArray, d: NDArray) -> NDArray:
        return y - d

    def _hvp(self, y: NDArray, d: NDArray, v: NDArray) -> NDArray:
        return v


@dataclass(frozen=True, slots=True)
class MSE(Loss):
    """Mean squared error over all ``N = y.size`` entries: ``C = (1/N) Σ (y - d)²``.

    ``∂C/∂y = (2/N)(y - d)``.  Always a mean over every entry; ``reduction`` must stay ``"sum"``
    (it would divide by ``n`` once more).
    """

    name: ClassVar[str] = "mse"

    def __post_init__(self) -> None:
        if self.reduction != "sum":
            raise ValueError("MSE already averages over all entries: leave reduction='sum'")

    def _total(self, y: Array, d: Array) -> Array:
        r = y - _like(d, y)
        return namespace(y).sum(r * r) / y.size

    def _grad(self, y: NDArray, d: NDArray) -> NDArray:
        return (2.0 / y.size) * (y - d)

    def _hvp(self, y: NDArray, d: NDArray, v: NDArray) -> NDArray:
        return (2.0 / y.size) * v


@dataclass(frozen=True, slots=True)
class BinaryCrossEntropy(Loss):
    """Cross-entropy on probabilities ``0 < y < 1`` (eq. 16).

    ``C = -Σ [d ln y + (1 - d) ln(1 - y)]``;
    ``∂C/∂y = -d/y + (1 - d)/(1 - y) = (y - d)/(y(1 - y))``.
    """

    name: ClassVar[str] = "bce"

    def _total(self, y: Array, d: Array) -> Array:
        xp = namespace(y)
        d = _like(d, y)
        return -xp.sum(d * xp.log(y) + (1 - d) * xp.log1p(-y))

    def _grad(self, y: NDArray, d: NDArray) -> NDArray:
        g: NDArray = (y - d) / (y * (1 - y))
        return g

    def _hvp(self, y: NDArray, d: NDArray, v: NDArray) -> NDArray:
        h: NDArray = (d / (y * y) + (1 - d) / ((1 - y) * (1 - y))) * v
        return h


@dataclass(frozen=True, slots=True)
class SigmoidBinaryCrossEntropy(Loss):
    """Eq. 16 on logits ``z``, ``y = σ(z)``: ``C = Σ [softplus(z) - d z]``, ``∂C/∂z = σ(z) - d``.

    From ``-ln σ(z) = softplus(-z)`` and ``-ln(1 - σ(z)) = softplus(z)``, and
    ``softplus(-z) = softplus(z) - z``.  The gradient is eq. 17's ``y - d``.
    """

    name: ClassVar[str] = "sigmoid_bce"

    def _total(self, y: Array, d: Array) -> Array:
        xp = namespace(y)
        return xp.sum(xp.logaddexp(0, y) - _like(d, y) * y)

    def _grad(self, y: NDArray, d: NDArray) -> NDArray:
        g: NDArray = Sigmoid().forward(y) - d
        return g

    def _hvp(self, y: NDArray, d: NDArray, v: NDArray) -> NDArray:
        s = Sigmoid().forward(y)
        h: NDArray = s * (1 - s) * v
        return h


@dataclass(frozen=True, slots=True)
class SoftmaxCrossEntropy(Loss):
    """Softmax cross-entropy on logits ``z`` (last axis = classes ``K``).

    Targets ``d`` are either probabilities / one-hot rows shaped like ``z``:
    ``C = -Σ d ⊙ ln softmax(z)``, ``∂C/∂z = softmax(z) ⊙ Σ_k d_k - d`` (``= softmax(z) - d`` when
    each row of ``d`` sums to 1, eq. 17); or integer class labels of shape ``z.shape[:-1]``:
    ``C = -Σ ln softmax(z)[label]``, ``∂C/∂z = softmax(z) - onehot(label)``.
    Which one is decided by ``d.ndim`` (static, never by values).
    """

    name: ClassVar[str] = "softmax_ce"

    @staticmethod
    def _labels(y: Any, d: Any) -> bool:
        if d.ndim == y.ndim - 1:
            if not np.issubdtype(d.dtype, np.integer):
                raise TypeError(f"class labels must be integers, got dtype {d.dtype}")
            return True
        if d.shape != y.shape:
            raise ValueError(
                f"targets of shape {d.shape} for logits of shape {y.shape}: expected labels of "
                f"shape {y.shape[:-1]} or probabilities of shape {y.shape}"
            )
        return False

    def _total(self, y: Array, d: Array) -> Array:
        xp = namespace(y)
        z = y - xp.max(y, axis=-1, keepdims=True)
        logp = z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))
        if self._labels(y, d):
            return -xp.sum(xp.take_along_axis(logp, d[..., None], axis=-1))
        return -xp.sum(_like(d, y) * logp)

    def _grad(self, y: NDArray, d: NDArray) -> NDArray:
        p: NDArray = Softmax().forward(y)
        if self._labels(y, d):
            onehot = np.arange(y.shape[-1]) == d[..., None]
            g_labels: NDArray = p - onehot
            return g_labels
        g: NDArray = p * np.sum(d, axis=-1, keepdims=True) - d
        return g

    def _hvp(self, y: NDArray, d: NDArray, v: NDArray) -> NDArray:
        p: NDArray = Softmax().forward(y)
        mass = 1.0 if self._labels(y, d) else np.sum(d, axis=-1, keepdims=True)
        h: NDArray = mass * p * (v - np.sum(p * v, axis=-1, keepdims=True))
        return h


LOSSES: dict[str, Loss] = {
    c.name: c()
    for c in (SSE, MSE, BinaryCrossEntropy, SigmoidBinaryCrossEntropy, SoftmaxCrossEntropy)
}
"""The losses by name, each with ``reduction="sum"``."""


@dataclass(frozen=True, eq=False)
class LossLayer:
    """A loss with its target fixed, as a parameter-free layer: ``x = y`` in, scalar ``C`` out.

    Forward ``C = loss.forward(x, target)`` (0-d); backward ``({}, dC · loss.backward(x, target))``
    where ``dC`` is the (0-d) upstream gradient.  Lets a loss be checked with the layer protocol.

    Attributes:
        loss: the :class:`Loss`.
        target: the desired output ``d`` (numpy), fixed.
    """

    loss: Loss
    target: NDArray = field(repr=False)

    def forward(self, params: Params, x: Array) -> Array:
        """Return ``C(x, target)``, a 0-d array; ``params`` must be ``{}``."""
        return self.loss.forward(x, self.target)

    def backward(self, params: Params, x: NDArray, dy: NDArray) -> tuple[Params, NDArray]:
        """Return ``({}, dy · ∂C/∂x)``; ``dy`` is a scalar (0-d)."""
        g = self.loss.backward(x, self.target)
        return {}, np.asarray(np.asarray(dy) * g, dtype=g.dtype)


def make_case(
    rng: np.random.Generator,
    *,
    loss: str | Loss = "sse",
    dtype: npt.DTypeLike = np.float64,
    batch: int = 3,
    width: int = 4,
    targets: Literal["labels", "probs", "onehot"] = "labels",
) -> tuple[LossLayer, Params, NDArray]:
    """Build ``(LossLayer(loss, d), {}, y)`` with ``y`` of shape ``(batch, width)``.

    ``y`` is drawn in ``(0.1, 0.9)`` for BCE on probabilities, and standard normal otherwise
    (logits or regression outputs).  Targets: normal for SSE/MSE, in ``[0, 1]`` for the binary
    losses; for softmax CE, ``targets`` picks integer labels of shape ``(batch,)`` in
    ``[0, width)``, random probability rows, or one-hot rows.

    Args:
        rng: the source of randomness.
        loss: a name in :data:`LOSSES` or a :class:`Loss`.
        dtype: the dtype of ``y`` (and of float targets).
        batch: ``n``, the rows of ``y``.
        width: ``K``, the output units / classes.
        targets: the kind of softmax-CE target.

    Returns:
        ``(layer, params, y)`` with ``params == {}`` and ``layer.target`` the target ``d``.

    Examples:
        >>> layer, params, y = make_case(np.random.default_rng(0), loss="softmax_ce")
        >>> layer.forward(params, y).shape
        ()
    """
    lo = LOSSES[loss] if isinstance(loss, str) else loss
    shape = (batch, width)
    probs = isinstance(lo, BinaryCrossEntropy)
    y = rng.uniform(0.1, 0.9, shape) if probs else rng.normal(size=shape)
    d: NDArray
    if isinstance(lo, SoftmaxCrossEntropy):
        labels = rng.integers(0, width, batch)
        if targets == "labels":
            d = labels
        elif targets == "onehot":
            d = (np.arange(width) == labels[:, None]).astype(dtype)
        else:
            e = np.exp(rng.normal(size=shape))
            d = (e / e.sum(-1, keepdims=True)).astype(dtype)
    elif isinstance(lo, BinaryCrossEntropy | SigmoidBinaryCrossEntropy):
        d = rng.uniform(0.0, 1.0, shape).astype(dtype)
    else:
        d = rng.normal(size=shape).astype(dtype)
    return LossLayer(lo, d), {}, y.astype(dtype)
