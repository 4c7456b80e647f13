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

Forward mode (hand-derived numpy; a dot marks a tangent: ``Ẇ = dparams["W"]``, ``ḃ``, ``ẋ = dx``)::

    ṅet = ẋ W + x Ẇ + ḃ           the product rule on eq. 4
    ẏ    = g'(net) ⊙ ṅet           (softmax: ẏ = y ⊙ (ṅet - Σ_k y_k ṅet_k))

(``Dense.jvp``; ``jvp_fun(layer, x) -> (fun, jvp)`` gives it the signatures of
``gradcheck.check_jvp(fun, jvp, params)``, ``x`` fixed.)

Second order, for the summed squared error of the output against a target ``t``::

    ℓ(W, b) = ½ Σ (y - t)²                        sse_loss (written once with xp)
    dy = y - t;  delta, dW, db as above            sse_grad

Pearlmutter's R-operator along a direction ``v = {"W": V_W, "b": V_b}`` (``R{·}`` is the
directional derivative ``d/dε (·)(θ + ε v)`` at ε = 0; ``x`` and ``t`` are data, ``R{x} = 0``)::

    R{net}   = x V_W + V_b
    R{y}     = g'(net) ⊙ R{net}
    R{dy}    = R{y}                                 (the Hessian of ½ Σ (y - t)² in y is I)
    R{delta} = R{dy} ⊙ g'(net) + dy ⊙ g''(net) ⊙ R{net}      (g.backward_jvp)
    (H v)_W  = R{dW} = xᵀ R{delta}                  sse_hvp
    (H v)_b  = R{db} = Σ_p R{delta}[p]

and the Gauss–Newton product ``G v = Jᵀ J v`` (``J = ∂y/∂θ``; ``sse_gnvp``): the same with the
``dy ⊙ g''`` term dropped, i.e. ``u = R{y}`` back-propagated as if it were ``dy``.  For one dense
layer that term is the whole difference, ``H - G = Σ (y - t) ∂²y/∂θ²``: G equals H for the
identity activation (``g'' = 0``) or at zero residual ``y = t``.

Notes:
    Guo's δ is ``-∂C/∂net``; ``delta`` here is ``+∂L/∂net`` (no sign flip anywhere).  Guo's
    weights ``w_kj`` map unit ``j`` to unit ``k`` (``net = W s``); this layer stores the transpose,
    ``W[j, k]``, so that a batch of row vectors is multiplied on the right: ``x W``.

References:
    Jiang Guo, "BackPropagation Through Time" (2013), eqs. 4, 8-10
    (``/work/shared/background/001_*.txt``).
    B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6(1),
    1994.  N. N. Schraudolph, "Fast curvature matrix-vector products for second-order gradient
    descent", Neural Computation 14(7), 2002 (the Gauss–Newton product).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from reference.activations import Activation, Softmax, get_activation
from reference.losses import SSE, Loss, SoftmaxCrossEntropy

__all__ = [
    "Dense",
    "check_tangents",
    "init_params",
    "jvp_fun",
    "make_case",
    "sse_gnvp",
    "sse_grad",
    "sse_hvp",
    "sse_loss",
]

Array = Any  # a numpy or a JAX array
NDArray = npt.NDArray[Any]
Params = dict[str, Any]

_KINKED = ("relu", "leaky_relu")


def check_tangents(params: Params, tangents: Params, what: str = "dparams") -> dict[str, NDArray]:
    """Return ``tangents`` as numpy arrays after checking they match ``params`` key for key.

    A tangent (or direction) tree must be complete: the same keys as ``params`` and, for each,
    the same shape.  No key may be missing or ``None`` (a zero tangent is written as zeros).

    Args:
        params: the parameters.
        tangents: the tangents ``dparams`` (or a direction ``v``).
        what: the name used in error messages.

    Returns:
        ``{key: np.asarray(tangents[key])}`` in the key order of ``params``.

    Raises:
        ValueError: a missing, extra or ``None`` key, or a shape that differs, named.
    """
    if not isinstance(tangents, dict):
        raise ValueError(f"{what} must be a dict keyed like params ({sorted(params)}); "
                         f"got {type(tangents).__name__}")
    missing = [k for k in params if k not in tangents or tangents[k] is None]
    extra = [k for k in tangents if k not in params]
    if missing or extra:
        raise ValueError(f"{what} must have exactly the keys of params {sorted(params)}: "
                         f"missing or None {missing}, unexpected {extra}")
    out: dict[str, NDArray] = {}
    for key, value in params.items():
        t = np.asarray(tangents[key])
        if t.shape != np.shape(value):
            raise ValueError(f"{what}[{key!r}] has shape {t.shape}; params[{key!r}] has "
                             f"{np.shape(value)}")
        out[key] = t
    return out


def _output_hvp(loss: Loss, y: NDArray, d: NDArray, v: NDArray) -> NDArray:
    """``H_ℓ v``: the Hessian of the loss in the network output ``y`` times a tangent ``v`` of ``y``.

    Pearlmutter's ``R{dy}`` for ``dy = loss.backward(y, d)`` when ``y`` moves along ``v`` (the
    targets ``d`` are data), hand-derived here for the two losses of the second-order references::

        SSE ½ Σ (y - t)²:               H_ℓ v = v
        softmax cross-entropy of y:     H_ℓ v = m ⊙ p ⊙ (v - Σ_k p_k v_k) per row,  p = softmax(y)
                                        (= (diag(p) - p pᵀ) v;  m = Σ_k d_k, 1 for integer labels)

    each times ``1/n`` (``n = y.shape[0]``) under ``reduction="mean"``.  ``H_ℓ`` is positive
    semi-definite for both.

    Args:
        loss: an :class:`~reference.losses.SSE` or :class:`~reference.losses.SoftmaxCrossEntropy`.
        y: the network output, ``(n, ..., K)``.
        d: the target (as in ``loss.forward``).
        v: a tangent of ``y``, shaped like ``y``.

    Returns:
        ``H_ℓ v``, shaped like ``y``, in ``y``'s dtype.

    Raises:
        NotImplementedError: for another loss.
        ValueError: when ``v`` is not shaped like ``y``.
    """
    y, v = np.asarray(y), np.asarray(v)
    if v.shape != y.shape:
        raise ValueError(f"v has shape {v.shape}; y has {y.shape}")
    if isinstance(loss, SSE):
        h = v
    elif isinstance(loss, SoftmaxCrossEntropy):
        d = np.asarray(d)
        p = Softmax().forward(y)
        mass = 1.0 if d.dtype.kind in "iub" else np.sum(d, axis=-1, keepdims=True)
        h = mass * p * (v - np.sum(p * v, axis=-1, keepdims=True))
    else:
        raise NotImplementedError(f"no hand Hessian of {type(loss).__name__} in its output")
    scale = 1.0 / y.shape[0] if loss.reduction == "mean" else 1.0
    return np.asarray(h * scale, dtype=y.dtype)


def _jvp_problem(layer: Any, x: Any) -> tuple[Any, Any]:
    """``(fun, jvp)`` of any layer with ``forward(params, x)`` and ``jvp(params, x, dparams)``.

    ``fun(params) = layer.forward(params, x)`` and ``jvp(params, t) = layer.jvp(params, x, t)``,
    ``x`` fixed (its tangent zero): the signatures of ``gradcheck.check_jvp(fun, jvp, params)``.
    The functions are named ``"<Layer>.forward"`` and ``"<Layer>.jvp"``.
    """

    def fun(params: Params) -> Any:
        return layer.forward(params, x)

    def jvp(params: Params, tangents: Params) -> Any:
        return layer.jvp(params, x, tangents)

    fun.__name__ = fun.__qualname__ = f"{type(layer).__name__}.forward"
    jvp.__name__ = jvp.__qualname__ = f"{type(layer).__name__}.jvp"
    return fun, jvp


def _input_tangent(x: NDArray, dx: NDArray | None) -> NDArray | None:
    """``dx`` as numpy after checking its shape against ``x`` (``None``: a zero tangent)."""
    if dx is None:
        return None
    dx = np.asarray(dx)
    if dx.shape != x.shape:
        raise ValueError(f"dx has shape {dx.shape}; x has {x.shape}")
    return dx


@dataclass(frozen=True, slots=True)
class Dense:
    """``y = g(x W + b)``; params ``{"W": (D_in, D_out), "b": (D_out,)}``, ``x``: ``(B, D_in)``.

    Backward: ``delta = g.backward(net, y, dy)``, ``dW = xᵀ delta``, ``db = Σ_batch delta``,
    ``dx = delta Wᵀ`` (see the module docstring).  Forward mode: :meth:`jvp`.  Second order for
    ``½ Σ (y - t)²``: :meth:`sse_loss`, :meth:`sse_grad`, :meth:`sse_hvp` (R-operator),
    :meth:`sse_gnvp` (Gauss–Newton).

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

    # ------------------------------------------------------------------------ forward mode
    def jvp(
        self, params: Params, x: NDArray, dparams: Params, dx: NDArray | None = None
    ) -> NDArray:
        """Return the output tangent ``ẏ = J_θ·dparams + J_x·dx`` of :meth:`forward` (numpy).

        ``ṅet = ẋ W + x Ẇ + ḃ`` and ``ẏ = g'(net) ⊙ ṅet`` (``g.jvp``; softmax's Jacobian for
        the softmax).

        Args:
            params: ``{"W": (D_in, D_out), "b": (D_out,)}``.
            x: the input, ``(B, D_in)``.
            dparams: the parameter tangents ``{"W": Ẇ, "b": ḃ}``, the keys and shapes of
                ``params`` (all of them: see :func:`check_tangents`).
            dx: the input tangent ``ẋ``, ``(B, D_in)``, or ``None`` for zero.

        Returns:
            ``ẏ``, ``(B, D_out)``, in the dtype of the forward's output.
        """
        x, W = np.asarray(x), np.asarray(params["W"])
        t = check_tangents(params, dparams)
        ddx = _input_tangent(x, dx)
        net, y = self.forward_cache(params, x)
        dnet = x @ t["W"] + t["b"]
        if ddx is not None:
            dnet = dnet + ddx @ W
        return get_activation(self.activation).jvp(net, y, dnet).astype(y.dtype, copy=False)

    # ------------------------------------------------------------------------ second order
    def sse_loss(self, params: Params, x: Array, target: Array) -> Array:
        """``ℓ = ½ Σ (y - t)²`` with ``y = forward(params, x)``: a 0-d array, numpy or JAX."""
        return SSE().forward(self.forward(params, x), target)

    def sse_grad(self, params: Params, x: NDArray, target: NDArray) -> Params:
        """The hand gradient ``{"W": dW, "b": db}`` of :meth:`sse_loss` (``dy = y - t``)."""
        y = self.forward_cache(params, np.asarray(x))[1]
        return self.backward(params, x, SSE().backward(y, target))[0]

    def _r_forward(
        self, params: Params, v: Params, x: NDArray
    ) -> tuple[NDArray, NDArray, NDArray, NDArray]:
        """``(net, y, R{net}, R{y})`` along the direction ``v`` (``R{x} = 0``)."""
        t = check_tangents(params, v, "v")
        net, y = self.forward_cache(params, x)
        rnet = x @ t["W"] + t["b"]
        return net, y, rnet, get_activation(self.activation).jvp(net, y, rnet)

    def _from_delta(self, params: Params, x: NDArray, r_delta: NDArray) -> Params:
        """``{"W": xᵀ r_delta, "b": Σ_p r_delta[p]}`` in the dtypes of ``params``."""
        return {"W": (x.T @ r_delta).astype(np.asarray(params["W"]).dtype),
                "b": r_delta.sum(axis=0).astype(np.asarray(params["b"]).dtype)}

    def sse_hvp(self, params: Params, v: Params, x: NDArray, target: NDArray) -> Params:
        """The Hessian-vector product ``H v`` of :meth:`sse_loss` by Pearlmutter's R-operator.

        ``R{net} = x V_W + V_b``, ``R{y} = g'(net) ⊙ R{net}``, ``R{dy} = R{y}``,
        ``R{delta} = R{dy} ⊙ g'(net) + dy ⊙ g''(net) ⊙ R{net}``, ``(Hv)_W = xᵀ R{delta}``,
        ``(Hv)_b = Σ_p R{delta}[p]`` (the module docstring).

        Args:
            params: ``{"W": (D_in, D_out), "b": (D_out,)}``.
            v: the direction, keyed and shaped like ``params``.
            x: the input, ``(B, D_in)``.
            target: ``t``, ``(B, D_out)``.

        Returns:
            ``H v``, keyed, shaped and typed like ``params``.
        """
        x = np.asarray(x)
        act = get_activation(self.activation)
        net, y, rnet, ry = self._r_forward(params, v, x)
        loss = SSE()
        r_delta = act.backward_jvp(net, y, loss.backward(y, target), rnet,
                                   _output_hvp(loss, y, target, ry))
        return self._from_delta(params, x, r_delta)

    def sse_gnvp(self, params: Params, v: Params, x: NDArray, target: NDArray) -> Params:
        """The Gauss–Newton product ``G v = Jᵀ J v`` of :meth:`sse_loss` (``J = ∂y/∂θ``).

        ``J v = R{y}``, then ``Jᵀ u`` is the backward of ``u = R{y}``: ``delta_u = g.backward(net,
        y, u)``, ``G_W = xᵀ delta_u``, ``G_b = Σ_p delta_u[p]``.  Positive semi-definite; equals
        :meth:`sse_hvp` only where ``y`` is linear in the parameters (identity ``g``) or the
        residual ``y - t`` is zero: it drops ``Σ (y - t) ∂²y/∂θ²``.
        """
        x = np.asarray(x)
        net, y, _, ry = self._r_forward(params, v, x)
        u = _output_hvp(SSE(), y, target, ry)
        return self._from_delta(params, x, get_activation(self.activation).backward(net, y, u))


def sse_loss(
    params: Params, x: Array, target: Array, *, activation: str | Activation = "identity"
) -> Array:
    """``½ Σ (g(x W + b) - t)²``: :meth:`Dense.sse_loss` of ``Dense(activation)``."""
    return Dense(activation).sse_loss(params, x, target)


def sse_grad(
    params: Params, x: NDArray, target: NDArray, *, activation: str | Activation = "identity"
) -> Params:
    """The hand gradient of :func:`sse_loss`: :meth:`Dense.sse_grad`."""
    return Dense(activation).sse_grad(params, x, target)


def sse_hvp(
    params: Params,
    v: Params,
    x: NDArray,
    target: NDArray,
    *,
    activation: str | Activation = "identity",
) -> Params:
    """``H v`` of :func:`sse_loss` by the R-operator: :meth:`Dense.sse_hvp`."""
    return Dense(activation).sse_hvp(params, v, x, target)


def sse_gnvp(
    params: Params,
    v: Params,
    x: NDArray,
    target: NDArray,
    *,
    activation: str | Activation = "identity",
) -> Params:
    """The Gauss–Newton product ``Jᵀ J v`` of :func:`sse_loss`: :meth:`Dense.sse_gnvp`."""
    return Dense(activation).sse_gnvp(params, v, x, target)


def jvp_fun(layer: Dense, x: Array) -> tuple[Any, Any]:
    """``(fun, jvp)`` for ``gradcheck.check_jvp(fun, jvp, params)``: the layer at a fixed input.

    ``fun(params) = layer.forward(params, x)`` (written with ``xp``: JAX differentiates it) and
    ``jvp(params, t) = layer.jvp(params, x, t)`` (the hand ``ẏ``, ``ẋ = 0``).

    Examples:
        >>> layer, params, x = make_case(np.random.default_rng(0), batch=2, d_in=3, d_out=1)
        >>> fun, jvp = jvp_fun(layer, x)
        >>> jvp(params, {"W": np.zeros((3, 1)), "b": np.ones(1)}).shape
        (2, 1)
    """
    return _jvp_problem(layer, x)


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
