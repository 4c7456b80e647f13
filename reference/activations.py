"""Activation functions g(net) with their hand-derived derivatives, and as parameter-free layers.

Forward (written once with ``xp``, numpy or jax.numpy; ``net`` is the pre-activation, ``y`` the
activation, both of shape ``(..., D)``; elementwise unless said otherwise)::

    identity:    y = net
    sigmoid:     y = 1 / (1 + exp(-net))                 (eq. 13 of Guo 2013)
    tanh:        y = tanh(net)
    relu:        y = max(net, 0)
    leaky_relu:  y = net if net > 0 else alpha * net
    softmax:     y_k = exp(net_k) / Σ_q exp(net_q)       over the last axis (eq. 15)

Backward (hand-derived numpy; ``dy = ∂L/∂y``, ``dnet = ∂L/∂net``, same shape as ``net``)::

    identity:    g'(net) = 1                             dnet = dy
    sigmoid:     g'(net) = y (1 - y)                     dnet = dy ⊙ y ⊙ (1 - y)      (eq. 14)
    tanh:        g'(net) = 1 - y²                        dnet = dy ⊙ (1 - y²)
    relu:        g'(net) = [net > 0]                     dnet = dy ⊙ [net > 0]
    leaky_relu:  g'(net) = 1 if net > 0 else alpha       dnet = dy ⊙ g'(net)
    softmax:     ∂y_k/∂net_j = y_k (δ_kj - y_j)          dnet = y ⊙ (dy - Σ_k dy_k y_k)

Forward mode and second order (hand-derived numpy; ``ṅ`` a tangent of ``net``, ``ḋy`` one of
``dy``; ``R{·}`` is Pearlmutter's operator, the directional derivative along the tangent)::

    jvp:           ẏ = g'(net) ⊙ ṅ                   softmax: ẏ = y ⊙ (ṅ - Σ_k y_k ṅ_k)
    g'':           identity 0,  sigmoid y (1 - y)(1 - 2y),  tanh -2y (1 - y²),
                   relu 0,  leaky_relu 0     (softmax: not elementwise, NotImplementedError)
    backward_jvp:  R{dnet} = ḋy ⊙ g'(net) + dy ⊙ g''(net) ⊙ ṅ            (elementwise g)
                   softmax, with ẏ = y ⊙ (ṅ - Σ y ṅ) and s = Σ_k dy_k y_k:
                   R{dnet} = ẏ ⊙ (dy - s) + y ⊙ (ḋy - Σ_k (ḋy_k y_k + dy_k ẏ_k))

``backward_jvp`` is what Pearlmutter's R-operator needs to carry a Hessian-vector product
through a layer: the derivative of ``backward(net, y, dy)`` when ``net`` moves along ``ṅ`` and
``dy`` along ``ḋy`` (see ``reference.dense.Dense.sse_hvp``).

Notes:
    ReLU and leaky ReLU are not differentiable at ``net == 0``.  This module takes the
    subgradient on the *left*: ``g'(0) = 0`` for ReLU and ``g'(0) = alpha`` for leaky ReLU, and the
    forward is written with ``xp.where(net > 0, ...)`` so that JAX's autodiff of the forward makes
    the same choice (``jnp.maximum`` would give 1/2 at a tie).  Finite differences straddling 0
    see neither; a gradient checker should report such points as kinks, not as bugs.

    The sigmoid is evaluated as ``exp(-logaddexp(0, -net))`` (``= exp(-softplus(-net))``), which
    neither overflows nor loses relative accuracy in either tail.  The softmax subtracts the row
    maximum first; softmax is invariant to that shift, so the derivative is unchanged.

    ReLU's and leaky ReLU's ``g''`` is 0 away from the kink (at it the second derivative does
    not exist; 0 is what JAX's ``jvp`` of ``grad`` of the ``where`` forward gives too).

References:
    Jiang Guo, "BackPropagation Through Time" (2013), eqs. 13-15
    (``/work/shared/background/001_*.txt``).
    B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6(1),
    1994 (the R-operator).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from reference._xp import namespace

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "ActivationLayer",
    "Identity",
    "LeakyReLU",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "get_activation",
    "make_case",
]

Array = Any  # a numpy or a JAX array
NDArray = npt.NDArray[Any]
Params = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Activation(ABC):
    """Base class: an activation ``y = g(net)``; subclasses define ``forward`` and ``derivative``.

    Attributes:
        name: the key of this activation in :data:`ACTIVATIONS`.
        elementwise: whether ``g`` acts entry by entry (all but :class:`Softmax`).
    """

    name: ClassVar[str] = "activation"
    elementwise: ClassVar[bool] = True

    @abstractmethod
    def forward(self, x: Array) -> Array:
        """Return ``y = g(x)``; ``x`` of shape ``(..., D)`` (numpy or JAX), ``y`` alike."""

    @abstractmethod
    def derivative(self, x: NDArray, y: NDArray) -> NDArray:
        """Return the elementwise ``g'(x)`` (numpy) given ``x`` and ``y = g(x)``; shape of ``x``."""

    def second_derivative(self, x: NDArray, y: NDArray) -> NDArray:
        """Return the elementwise ``g''(x)`` (numpy) given ``x`` and ``y = g(x)``; shape of ``x``.

        Raises:
            NotImplementedError: for an activation that does not define it (a subclass written
                before second order was needed); the built-in elementwise ones all do.
        """
        raise NotImplementedError(
            f"{type(self).__name__} defines no second_derivative(x, y): Hessian-vector products "
            "through it need g''"
        )

    def backward(self, x: NDArray, y: NDArray, dy: NDArray) -> NDArray:
        """Return ``dx = ∂L/∂x`` given ``x``, ``y = g(x)`` and ``dy = ∂L/∂y`` (all one shape).

        For an elementwise activation ``dx = dy ⊙ g'(x)``; the result has the dtype of ``x``.
        """
        return np.asarray(dy * self.derivative(x, y), dtype=np.result_type(x))

    def jvp(self, x: NDArray, y: NDArray, dx: NDArray) -> NDArray:
        """Return the output tangent ``ẏ = g'(x) ⊙ ẋ`` for the input tangent ``dx = ẋ``.

        Args:
            x: the input, shape ``(..., D)``.
            y: ``g(x)``, same shape.
            dx: the tangent ``ẋ`` of ``x``, same shape.

        Returns:
            ``ẏ``, the dtype of ``x``.
        """
        return np.asarray(dx * self.derivative(x, y), dtype=np.result_type(x))

    def backward_jvp(
        self, x: NDArray, y: NDArray, dy: NDArray, dx: NDArray, ddy: NDArray
    ) -> NDArray:
        """Return ``R{∂L/∂x}``: the derivative of :meth:`backward` along ``(x, dy) → (ẋ, ḋy)``.

        For an elementwise activation ``R{∂L/∂x} = ḋy ⊙ g'(x) + dy ⊙ g''(x) ⊙ ẋ`` (the product
        rule on ``dy ⊙ g'(x)``), with ``ẋ = dx`` and ``ḋy = ddy``; the second term is the one a
        Gauss–Newton product drops.

        Args:
            x: the input, shape ``(..., D)``.
            y: ``g(x)``, same shape.
            dy: ``∂L/∂y``, same shape.
            dx: the tangent ``ẋ`` of ``x`` (``R{x}``), same shape.
            ddy: the tangent ``ḋy`` of ``dy`` (``R{dy}``), same shape.

        Returns:
            ``R{∂L/∂x}``, the dtype of ``x``.
        """
        r = ddy * self.derivative(x, y) + dy * self.second_derivative(x, y) * dx
        return np.asarray(r, dtype=np.result_type(x))

    def as_layer(self) -> ActivationLayer:
        """Return this activation as a parameter-free layer (see :class:`ActivationLayer`)."""
        return ActivationLayer(self)


@dataclass(frozen=True, slots=True)
class Identity(Activation):
    """``y = x``; ``g'(x) = 1``."""

    name: ClassVar[str] = "identity"

    def forward(self, x: Array) -> Array:
        return x

    def derivative(self, x: NDArray, y: NDArray) -> NDArray:
        return np.ones_like(x)

    def second_derivative(self, x: NDArray, y: NDArray) -> NDArray:
        """``g''(x) = 0``."""
        return np.zeros_like(x)


@dataclass(frozen=True, slots=True)
class Sigmoid(Activation):
    """``y = 1 / (1 + exp(-x))``; ``g'(x) = y (1 - y)`` (eqs. 13-14), computed from ``y``.

    ``g''(x) = y (1 - y)(1 - 2y)`` (the derivative of ``y - y²`` is ``(1 - 2y) g'``).
    """

    name: ClassVar[str] = "sigmoid"

    def forward(self, x: Array) -> Array:
        xp = namespace(x)
        return xp.exp(-xp.logaddexp(0, -x))

    def derivative(self, x: NDArray, y: NDArray) -> NDArray:
        gprime: NDArray = y * (1 - y)
        return gprime

    def second_derivative(self, x: NDArray, y: NDArray) -> NDArray:
        g2: NDArray = y * (1 - y) * (1 - 2 * y)
        return g2


@dataclass(frozen=True, slots=True)
class Tanh(Activation):
    """``y = tanh(x)``; ``g'(x) = 1 - y²``, ``g''(x) = -2y (1 - y²)``, computed from ``y``."""

    name: ClassVar[str] = "tanh"

    def forward(self, x: Array) -> Array:
        return namespace(x).tanh(x)

    def derivative(self, x: NDArray, y: NDArray) -> NDArray:
        return 1 - y * y

    def second_derivative(self, x: NDArray, y: NDArray) -> NDArray:
        g2: NDArray = -2 * y * (1 - y * y)
        return g2


@dataclass(frozen=True, slots=True)
class ReLU(Activation):
    """``y = x if x > 0 else 0``; ``g'(x) = [x > 0]`` (subgradient 0 chosen at ``x == 0``)."""

    name: ClassVar[str] = "relu"

    def forward(self, x: Array) -> Array:
        xp = namespace(x)
        return xp.where(x > 0, x, xp.zeros_like(x))

    def derivative(self, x: NDArray, y: NDArray) -> NDArray:
        return (x > 0).astype(np.result_type(x))

    def second_derivative(self, x: NDArray, y: NDArray) -> NDArray:
        """``g''(x) = 0`` (piecewise linear; undefined at the kink, taken as 0 there too)."""
        return np.zeros_like(x)


@dataclass(frozen=True, slots=True)
class LeakyReLU(Activation):
    """``y = x if x > 0 else alpha·x``; ``g'(x) = 1 if x > 0 else alpha`` (``alpha`` at 0).

    Attributes:
        alpha: the slope for ``x <= 0`` (default 0.01).
    """

    name: ClassVar[str] = "leaky_relu"
    alpha: float = 0.01

    def forward(self, x: Array) -> Array:
        return namespace(x).where(x > 0, x, self.alpha * x)

    def derivative(self, x: NDArray, y: NDArray) -> NDArray:
        one = np.ones_like(x)
        return np.where(x > 0, one, self.alpha * one)

    def second_derivative(self, x: NDArray, y: NDArray) -> NDArray:
        """``g''(x) = 0`` (piecewise linear; undefined at the kink, taken as 0 there too)."""
        return np.zeros_like(x)


@dataclass(frozen=True, slots=True)
class Softmax(Activation):
    """``y_k = exp(x_k) / Σ_q exp(x_q)`` over the last axis (eq. 15).

    Not elementwise: the Jacobian is ``∂y_k/∂x_j = y_k (δ_kj - y_j)``, so the backward is the
    vector-Jacobian product ``dx = y ⊙ (dy - Σ_k dy_k y_k)`` (sum over the last axis, kept), the
    JVP is ``ẏ = y ⊙ (ẋ - Σ_k y_k ẋ_k)`` (the Jacobian is symmetric), and the R-operator of the
    backward is, with ``s = Σ_k dy_k y_k``,
    ``R{dx} = ẏ ⊙ (dy - s) + y ⊙ (ḋy - Σ_k (ḋy_k y_k + dy_k ẏ_k))``.
    """

    name: ClassVar[str] = "softmax"
    elementwise: ClassVar[bool] = False

    def forward(self, x: Array) -> Array:
        xp = namespace(x)
        e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
        return e / xp.sum(e, axis=-1, keepdims=True)

    def derivative(self, x: NDArray, y: NDArray) -> NDArray:
        raise TypeError("softmax is not elementwise: it has no g'(x); use backward(x, y, dy)")

    def second_derivative(self, x: NDArray, y: NDArray) -> NDArray:
        """Not defined: raises :class:`NotImplementedError`.

        The softmax couples the entries of a row, so its second derivative is the 3-tensor
        ``∂²y_k/∂x_i∂x_j = y_k[(δ_ki - y_i)(δ_kj - y_j) - y_i(δ_ij - y_j)]``, not an elementwise
        ``g''`` of the shape of ``x``; :meth:`backward_jvp` contracts it with the tangents
        instead, which is all an R-operator needs.
        """
        raise NotImplementedError(
            "softmax is not elementwise: its second derivative is a 3-tensor "
            "∂²y_k/∂x_i∂x_j, not a g''(x) of x's shape; use backward_jvp(x, y, dy, dx, ddy), "
            "which contracts it with the tangents"
        )

    def backward(self, x: NDArray, y: NDArray, dy: NDArray) -> NDArray:
        dx = y * (dy - np.sum(dy * y, axis=-1, keepdims=True))
        return np.asarray(dx, dtype=np.result_type(x))

    def jvp(self, x: NDArray, y: NDArray, dx: NDArray) -> NDArray:
        dy = y * (dx - np.sum(y * dx, axis=-1, keepdims=True))
        return np.asarray(dy, dtype=np.result_type(x))

    def backward_jvp(
        self, x: NDArray, y: NDArray, dy: NDArray, dx: NDArray, ddy: NDArray
    ) -> NDArray:
        ry = y * (dx - np.sum(y * dx, axis=-1, keepdims=True))  # R{y}
        s = np.sum(dy * y, axis=-1, keepdims=True)
        rs = np.sum(ddy * y + dy * ry, axis=-1, keepdims=True)  # R{s}
        r = ry * (dy - s) + y * (ddy - rs)
        return np.asarray(r, dtype=np.result_type(x))


ACTIVATIONS: dict[str, Activation] = {
    a.name: a for a in (Identity(), Sigmoid(), Tanh(), ReLU(), LeakyReLU(), Softmax())
}
"""The activations by name; ``"leaky_relu"`` has ``alpha = 0.01`` (build others directly)."""


def get_activation(activation: str | Activation) -> Activation:
    """Return ``activation`` itself, or the one named so in :data:`ACTIVATIONS`.

    Args:
        activation: a name (``"identity"``, ``"sigmoid"``, ``"tanh"``, ``"relu"``,
            ``"leaky_relu"``, ``"softmax"``) or an :class:`Activation` instance.

    Returns:
        The :class:`Activation`.

    Raises:
        ValueError: for an unknown name.
    """
    if isinstance(activation, Activation):
        return activation
    try:
        return ACTIVATIONS[activation]
    except KeyError:
        raise ValueError(
            f"unknown activation {activation!r}: choose one of {sorted(ACTIVATIONS)} "
            "or pass an Activation instance (e.g. LeakyReLU(alpha=0.2))"
        ) from None


@dataclass(frozen=True, slots=True)
class ActivationLayer:
    """An activation as a layer with no parameters: ``y = g(x)``, ``params == {}``.

    Forward: ``y = g(x)``; backward: ``dparams = {}``, ``dx = activation.backward(x, y, dy)``
    (see the module docstring for each ``g``).  ``x``, ``y``, ``dy``, ``dx`` share one shape
    ``(..., D)``.

    Attributes:
        activation: the :class:`Activation` (or its name).
    """

    activation: Activation | str

    def forward(self, params: Params, x: Array) -> Array:
        """Return ``y = g(x)``; ``params`` must be ``{}``."""
        return get_activation(self.activation).forward(x)

    def backward(self, params: Params, x: NDArray, dy: NDArray) -> tuple[Params, NDArray]:
        """Return ``({}, dx)`` with ``dx = ∂L/∂x`` for ``L = Σ dy ⊙ g(x)``."""
        act = get_activation(self.activation)
        x = np.asarray(x)
        return {}, act.backward(x, act.forward(x), np.asarray(dy))

    def jvp(
        self, params: Params, x: NDArray, dparams: Params, dx: NDArray | None = None
    ) -> NDArray:
        """Return the output tangent ``ẏ = activation.jvp(x, g(x), ẋ)``; ``params == dparams == {}``.

        ``dx = None`` means a zero input tangent (then ``ẏ = 0``).
        """
        if dparams:
            raise ValueError(f"an activation layer has no parameters; got tangents {sorted(dparams)}")
        act = get_activation(self.activation)
        x = np.asarray(x)
        if dx is None:
            return np.zeros_like(x)
        if np.shape(dx) != x.shape:
            raise ValueError(f"dx has shape {np.shape(dx)}; x has {x.shape}")
        return act.jvp(x, act.forward(x), np.asarray(dx))


def make_case(
    rng: np.random.Generator,
    *,
    activation: str | Activation = "tanh",
    dtype: npt.DTypeLike = np.float64,
    batch: int = 3,
    width: int = 4,
    at_kink: bool = False,
) -> tuple[ActivationLayer, Params, NDArray]:
    """Build ``(ActivationLayer(activation), {}, x)`` with ``x`` of shape ``(batch, width)``.

    Entries of ``x`` are drawn with ``|x| in [0.2, 1.5]`` and a random sign, so ReLU and leaky
    ReLU are away from their kink at 0 and the sigmoid/tanh are far from saturation.

    Args:
        rng: the source of randomness.
        activation: a name in :data:`ACTIVATIONS` or an :class:`Activation`.
        dtype: the dtype of ``x``.
        batch: rows of ``x`` (``B``).
        width: columns of ``x`` (``D``, the softmax axis).
        at_kink: put ``x[0, 0] = 0`` exactly (the kink of ReLU / leaky ReLU).

    Returns:
        ``(layer, params, x)`` with ``params == {}``.

    Examples:
        >>> layer, params, x = make_case(np.random.default_rng(0), activation="relu", batch=2)
        >>> layer.forward(params, x).shape
        (2, 4)
    """
    x = rng.uniform(0.2, 1.5, (batch, width)) * rng.choice([-1.0, 1.0], (batch, width))
    if at_kink:
        x[0, 0] = 0.0
    return ActivationLayer(get_activation(activation)), {}, x.astype(dtype)
