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

Forward mode (hand-derived numpy; a dot marks a tangent, ``Ẇ_i = dparams["W{i}"]``)::

    ȧ_0 = ẋ                        (zero when dx is None)
    ṅet_i = ȧ_i W_i + a_i Ẇ_i + ḃ_i
    ȧ_{i+1} = f_i'(net_i) ⊙ ṅet_i     (f_i.jvp; softmax's Jacobian for a softmax)
    ẏ = ȧ_L                                                                      jvp

(``jvp_fun(layer, x) -> (fun, jvp)`` gives it the signatures of ``gradcheck.check_jvp(fun,
jvp, params)``, ``x`` fixed.)

Second order, for a loss ``ℓ(y, d)`` of the output (``ℓ`` summed squared error
``½ Σ (y - t)²``, or softmax cross-entropy ``(1/B) Σ_p -ln softmax(y_p)[label_p]``: the *mean*
over the batch, ``y`` the logits).  With ``g_{i+1} = ∂ℓ/∂a_{i+1}`` (``g_L = dy = ∂ℓ/∂y``),
``delta_i = f_i.backward(net_i, a_{i+1}, g_{i+1})`` and ``g_i = delta_i W_iᵀ`` as above, and
Pearlmutter's R-operator along ``v = {"W{i}": V_Wi, "b{i}": V_bi}`` (``R{a_0} = R{x} = 0``)::

    R{net_i}   = R{a_i} W_i + a_i V_Wi + V_bi                        forward pass
    R{a_{i+1}} = f_i'(net_i) ⊙ R{net_i}
    R{dy}      = H_ℓ R{y}        SSE: R{y};  xent: (1/B) p ⊙ (R{y} - Σ_k p_k R{y}_k),
                                 p = softmax(y) (H_ℓ = (diag(p_p) - p_p p_pᵀ)/B per example)
    R{delta_i} = R{g_{i+1}} ⊙ f_i'(net_i) + g_{i+1} ⊙ f_i''(net_i) ⊙ R{net_i}
                                 (f_i.backward_jvp)                  backward pass
    R{g_i}     = R{delta_i} W_iᵀ + delta_i V_Wiᵀ
    (H v)_{W_i} = R{dW_i} = R{a_i}ᵀ delta_i + a_iᵀ R{delta_i}                   sse_hvp, xent_hvp
    (H v)_{b_i} = R{db_i} = Σ_p R{delta_i}[p]

The Gauss–Newton (generalised Gauss–Newton, Schraudolph 2002) product ``G v = Jᵀ H_ℓ J v``,
``J = ∂y/∂θ``: ``J v = R{y}`` from the forward pass above, ``u = H_ℓ R{y}``, and ``Jᵀ u`` is the
ordinary backward of ``u`` as if it were ``dy``                            sse_gnvp, xent_gnvp

``G`` is positive semi-definite (``H_ℓ`` is, for both losses) and equals the Hessian only where
the network is linear in the parameters (one affine layer with identity output) or ``dy = 0``:
it drops ``Σ_{p,k} ∂ℓ/∂y_pk ∂²y_pk/∂θ²``, i.e. the ``g_{i+1} ⊙ f_i''`` terms, the coupling
``delta_i V_Wiᵀ`` and the ``R{a_i}ᵀ delta_i`` term of the R-operator backward.

Per-example gradients (``per_example_loss``, ``per_example_grad``; differential privacy clips
them, gradient-noise estimates average their outer products).  With per-example losses
``ℓ_p`` (``sse``: ``½ ‖y_p - t_p‖²``; ``xent``: ``logsumexp(y_p) - Σ_k t_pk y_pk`` for
probability rows ``t_p``) every row of ``delta_i`` belongs to one example, so example ``p``'s
gradient is the outer product of its rows instead of their sum over the batch::

    dy_p        = y_p - t_p              (sse)       softmax(y_p) - t_p      (xent)
    (∂ℓ_p/∂W_i) = a_i[p]ᵀ delta_i[p]     (D_i, D_{i+1}) per example         per_example_grad
    (∂ℓ_p/∂b_i) = delta_i[p]

and ``Σ_p ∂ℓ_p/∂θ`` is the batch gradient of ``Σ_p ℓ_p`` (not of the mean).

Notes:
    ``delta_i`` here is ``+∂L/∂net_i``; Guo's δ is its negative.  ``backward_with_deltas`` returns
    every ``delta_i`` too, for gradient-flow analyses through depth.

References:
    Jiang Guo, "BackPropagation Through Time" (2013), eqs. 1-11
    (``/work/shared/background/001_*.txt``); the four steps of backpropagation in
    ``/work/shared/background/000_*.txt``.
    B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6(1),
    1994.  N. N. Schraudolph, "Fast curvature matrix-vector products for second-order gradient
    descent", Neural Computation 14(7), 2002.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from reference._xp import namespace
from reference.activations import Activation, get_activation
from reference.dense import _input_tangent, _jvp_problem, _output_hvp, check_tangents
from reference.losses import SSE, Loss, SoftmaxCrossEntropy

__all__ = [
    "MLP",
    "init_params",
    "jvp_fun",
    "make_case",
    "n_layers",
    "per_example_fun",
    "sse_gnvp",
    "sse_grad",
    "sse_hvp",
    "sse_loss",
    "xent_gnvp",
    "xent_grad",
    "xent_hvp",
    "xent_loss",
]

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

    Backward: :meth:`backward` / :meth:`backward_with_deltas`; forward mode: :meth:`jvp`
    (:meth:`jvp_with_tangents`); second order: ``sse_*`` (``½ Σ (y - t)²``) and ``xent_*``
    (mean softmax cross-entropy of the logits ``y``), each with ``_loss``, ``_grad``, ``_hvp``
    (Pearlmutter's R-operator) and ``_gnvp`` (Gauss–Newton ``Jᵀ H_ℓ J v``).

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

    # ------------------------------------------------------------------------ forward mode
    def jvp_with_tangents(
        self, params: Params, x: NDArray, dparams: Params, dx: NDArray | None = None
    ) -> tuple[list[NDArray], list[NDArray], list[NDArray], list[NDArray]]:
        """The forward pass with its tangents: ``(a, net, ȧ, ṅet)`` (numpy).

        ``a`` and ``net`` as in :meth:`forward_cache`; ``ȧ = [ȧ_0, ..., ȧ_L]`` and
        ``ṅet = [ṅet_0, ..., ṅet_{L-1}]``, shaped alike, by the module docstring's recursion.
        ``ȧ_0 = dx`` (zeros when ``dx`` is ``None``).
        """
        fs = self.activations(n_layers(params))
        t = check_tangents(params, dparams)
        a, net = self.forward_cache(params, x)
        ddx = _input_tangent(a[0], dx)
        da = [np.zeros_like(a[0]) if ddx is None else ddx]
        dnet: list[NDArray] = []
        for i, f in enumerate(fs):
            dnet.append(da[i] @ np.asarray(params[f"W{i}"]) + a[i] @ t[f"W{i}"] + t[f"b{i}"])
            da.append(f.jvp(net[i], a[i + 1], dnet[i]))
        return a, net, da, dnet

    def jvp(
        self, params: Params, x: NDArray, dparams: Params, dx: NDArray | None = None
    ) -> NDArray:
        """Return the output tangent ``ẏ = J_θ·dparams + J_x·dx`` of :meth:`forward` (numpy).

        Args:
            params: ``{"W{i}": (D_i, D_{i+1}), "b{i}": (D_{i+1},)}`` for ``i < L``.
            x: the input, ``(B, D_0)``.
            dparams: the parameter tangents, every key of ``params`` with its shape.
            dx: the input tangent ``ẋ``, ``(B, D_0)``, or ``None`` for zero.

        Returns:
            ``ẏ = ȧ_L``, ``(B, D_L)``, in the dtype of the forward's output.
        """
        a, _, da, _ = self.jvp_with_tangents(params, x, dparams, dx)
        return da[-1].astype(a[-1].dtype, copy=False)

    # ------------------------------------------------------------------------ second order
    def _loss_grad(self, params: Params, x: NDArray, d: NDArray, loss: Loss) -> Params:
        y = self.forward_cache(params, x)[0][-1]
        return self.backward(params, x, loss.backward(y, d))[0]

    def _loss_hvp(self, params: Params, v: Params, x: NDArray, d: NDArray, loss: Loss) -> Params:
        """``H v`` by the R-operator for ``ℓ = loss(y, d)`` (the module docstring)."""
        fs = self.activations(n_layers(params))
        t = check_tangents(params, v, "v")
        a, net, ra, rnet = self.jvp_with_tangents(params, x, t)
        W = [np.asarray(params[f"W{i}"]) for i in range(len(fs))]
        g, rg = loss.backward(a[-1], d), _output_hvp(loss, a[-1], d, ra[-1])  # g_L = dy, R{dy}
        out: Params = {}
        for i in reversed(range(len(fs))):
            delta = fs[i].backward(net[i], a[i + 1], g)
            r_delta = fs[i].backward_jvp(net[i], a[i + 1], g, rnet[i], rg)
            out[f"W{i}"] = (ra[i].T @ delta + a[i].T @ r_delta).astype(W[i].dtype)
            out[f"b{i}"] = r_delta.sum(axis=0).astype(np.asarray(params[f"b{i}"]).dtype)
            g, rg = delta @ W[i].T, r_delta @ W[i].T + delta @ t[f"W{i}"].T
        return {k: out[k] for k in params}

    def _loss_gnvp(self, params: Params, v: Params, x: NDArray, d: NDArray, loss: Loss) -> Params:
        """``Jᵀ H_ℓ J v``: ``J v = R{y}``, ``u = H_ℓ R{y}``, then the backward of ``u``."""
        a, _, ra, _ = self.jvp_with_tangents(params, x, check_tangents(params, v, "v"))
        return self.backward(params, x, _output_hvp(loss, a[-1], d, ra[-1]))[0]

    def sse_loss(self, params: Params, x: Array, target: Array) -> Array:
        """``ℓ = ½ Σ (y - t)²`` with ``y = forward(params, x)``: a 0-d array, numpy or JAX."""
        return SSE().forward(self.forward(params, x), target)

    def sse_grad(self, params: Params, x: NDArray, target: NDArray) -> Params:
        """The hand gradient of :meth:`sse_loss`: the backward of ``dy = y - t``."""
        return self._loss_grad(params, np.asarray(x), target, SSE())

    def sse_hvp(self, params: Params, v: Params, x: NDArray, target: NDArray) -> Params:
        """``H v`` of :meth:`sse_loss` by Pearlmutter's R-operator, ``R{dy} = R{y}``.

        Args:
            params: the MLP parameters.
            v: the direction, keyed and shaped like ``params``.
            x: the input, ``(B, D_0)``.
            target: ``t``, ``(B, D_L)``.

        Returns:
            ``H v``, keyed, shaped and typed like ``params`` (equations: the module docstring).
        """
        return self._loss_hvp(params, v, np.asarray(x), target, SSE())

    def sse_gnvp(self, params: Params, v: Params, x: NDArray, target: NDArray) -> Params:
        """The Gauss–Newton product ``Jᵀ J v`` of :meth:`sse_loss` (``H_ℓ = I``); PSD."""
        return self._loss_gnvp(params, v, np.asarray(x), target, SSE())

    def _xent(self) -> SoftmaxCrossEntropy:
        if get_activation(self.output_activation).name == "softmax":
            raise ValueError(
                "xent_* apply the softmax inside the loss: build the MLP with a non-softmax "
                "output_activation (its output are the logits)"
            )
        return SoftmaxCrossEntropy(reduction="mean")

    def xent_loss(self, params: Params, x: Array, labels: Array) -> Array:
        """``ℓ = (1/B) Σ_p -ln softmax(y_p)[label_p]``, ``y`` the logits: 0-d, numpy or JAX.

        The *mean* over the batch (``SoftmaxCrossEntropy(reduction="mean")``).  ``labels`` are
        integers of shape ``(B,)`` (probability rows of shape ``(B, D_L)`` work too).

        Raises:
            ValueError: when the output activation is a softmax (the loss applies it).
        """
        return self._xent().forward(self.forward(params, x), labels)

    def xent_grad(self, params: Params, x: NDArray, labels: NDArray) -> Params:
        """The hand gradient of :meth:`xent_loss`: the backward of ``dy = (p - onehot)/B``."""
        return self._loss_grad(params, np.asarray(x), labels, self._xent())

    def xent_hvp(self, params: Params, v: Params, x: NDArray, labels: NDArray) -> Params:
        """The true ``H v`` of :meth:`xent_loss` by the R-operator.

        ``R{dy} = (1/B) p ⊙ (R{y} - Σ_k p_k R{y}_k)``, then the R-operator backward of the
        module docstring (with every second-order term, unlike :meth:`xent_gnvp`).
        """
        return self._loss_hvp(params, v, np.asarray(x), labels, self._xent())

    def xent_gnvp(self, params: Params, v: Params, x: NDArray, labels: NDArray) -> Params:
        """The Gauss–Newton product ``G v = Jᵀ H_ℓ J v`` of :meth:`xent_loss`.

        ``H_ℓ = (diag(p_p) - p_p p_pᵀ)/B`` per example (the Hessian of the mean cross-entropy in
        the logits), ``J = ∂y/∂θ``: ``u = H_ℓ R{y}`` back-propagated as ``dy``.  Positive
        semi-definite.  It is *not* the Hessian: it equals :meth:`xent_hvp` only where the
        network is linear in the parameters, dropping ``Σ_{p,k} ∂ℓ/∂y_pk ∂²y_pk/∂θ²``.
        """
        return self._loss_gnvp(params, v, np.asarray(x), labels, self._xent())

    # ------------------------------------------------------------------------ per example
    def per_example_loss(self, params: Params, batch: dict[str, Array], loss: str = "sse") -> Array:
        """The per-example losses ``ℓ_p`` (shape ``(B,)``) of ``batch = {"x": x, "t": t}``.

        ``sse``: ``ℓ_p = ½ Σ_k (y_pk - t_pk)²``; ``xent``: ``ℓ_p = logsumexp(y_p) - Σ_k t_pk y_pk``
        (cross-entropy of the softmax of the logits ``y_p`` against the probability row
        ``t_p``).  Written with ``xp``: numpy or JAX like the inputs.

        Raises:
            ValueError: an unknown ``loss``; ``xent`` with a softmax output activation.
        """
        x, t = batch["x"], batch["t"]
        y = self.forward(params, x)
        xp = namespace(y, t)
        if loss == "sse":
            return 0.5 * xp.sum((y - t) ** 2, axis=-1)
        if loss == "xent":
            self._xent()  # the softmax belongs to the loss
            m = xp.max(y, axis=-1, keepdims=True)
            lse = m[..., 0] + xp.log(xp.sum(xp.exp(y - m), axis=-1))
            return lse - xp.sum(t * y, axis=-1)
        raise ValueError(f"loss={loss!r}: expected 'sse' or 'xent'")

    def per_example_grad(self, params: Params, batch: dict[str, NDArray], loss: str = "sse") -> Params:
        """The hand per-example gradients of :meth:`per_example_loss` (module docstring).

        Returns:
            ``{"W{i}": (B, D_i, D_{i+1}), "b{i}": (B, D_{i+1})}`` in the dtypes of ``params``:
            entry ``[p]`` is ``∂ℓ_p/∂θ``.
        """
        x, t = np.asarray(batch["x"]), np.asarray(batch["t"])
        y = np.asarray(self.forward(params, x))
        if loss == "sse":
            dy = y - t
        elif loss == "xent":
            self._xent()
            e = np.exp(y - y.max(axis=-1, keepdims=True))
            dy = e / e.sum(axis=-1, keepdims=True) - t
        else:
            raise ValueError(f"loss={loss!r}: expected 'sse' or 'xent'")
        a, _net = self.forward_cache(params, x)
        _, _, deltas = self.backward_with_deltas(params, x, dy)
        out: Params = {}
        for i, delta in enumerate(deltas):
            out[f"W{i}"] = np.einsum("pi,pj->pij", a[i], delta).astype(np.asarray(params[f"W{i}"]).dtype)
            out[f"b{i}"] = delta.astype(np.asarray(params[f"b{i}"]).dtype)
        return out


Hidden = str | Activation | tuple[str | Activation, ...]


def jvp_fun(layer: MLP, x: Array) -> tuple[Any, Any]:
    """``(fun, jvp)`` for ``gradcheck.check_jvp(fun, jvp, params)``: the network at a fixed input.

    ``fun(params) = layer.forward(params, x)`` (written with ``xp``: JAX differentiates it) and
    ``jvp(params, t) = layer.jvp(params, x, t)`` (the hand ``ẏ = ȧ_L``, ``ẋ = 0``).

    Examples:
        >>> layer, params, x = make_case(np.random.default_rng(0), sizes=(2, 3, 1))
        >>> fun, jvp = jvp_fun(layer, x)
        >>> jvp(params, {k: np.ones_like(v) for k, v in params.items()}).shape
        (3, 1)
    """
    return _jvp_problem(layer, x)


def per_example_fun(layer: MLP, loss: str = "sse") -> tuple[Any, Any]:
    """``(losses, grads)`` for ``gradcheck.check_batched(losses, grads, params, batch)``.

    ``losses(params, batch) = layer.per_example_loss(params, batch, loss)`` (``(B,)``, written
    with ``xp``) and ``grads(params, batch) = layer.per_example_grad(params, batch, loss)``;
    ``batch = {"x": (B, D_0), "t": (B, D_L)}``.

    Examples:
        >>> layer, params, x = make_case(np.random.default_rng(0), sizes=(2, 3, 2))
        >>> losses, grads = per_example_fun(layer)
        >>> batch = {"x": x, "t": np.zeros((3, 2))}
        >>> losses(params, batch).shape, grads(params, batch)["W0"].shape
        ((3,), (3, 2, 3))
    """

    def losses(params: Params, batch: dict[str, Array]) -> Array:
        return layer.per_example_loss(params, batch, loss)

    def grads(params: Params, batch: dict[str, NDArray]) -> Params:
        return layer.per_example_grad(params, batch, loss)

    losses.__name__, grads.__name__ = f"{loss}_losses", f"{loss}_per_example_grad"
    return losses, grads


def sse_loss(
    params: Params,
    x: Array,
    target: Array,
    *,
    hidden_activation: Hidden = "tanh",
    output_activation: str | Activation = "identity",
) -> Array:
    """``½ Σ (y - t)²`` of ``MLP(hidden_activation, output_activation)``: :meth:`MLP.sse_loss`."""
    return MLP(hidden_activation, output_activation).sse_loss(params, x, target)


def sse_grad(
    params: Params,
    x: NDArray,
    target: NDArray,
    *,
    hidden_activation: Hidden = "tanh",
    output_activation: str | Activation = "identity",
) -> Params:
    """The hand gradient of :func:`sse_loss`: :meth:`MLP.sse_grad`."""
    return MLP(hidden_activation, output_activation).sse_grad(params, x, target)


def sse_hvp(
    params: Params,
    v: Params,
    x: NDArray,
    target: NDArray,
    *,
    hidden_activation: Hidden = "tanh",
    output_activation: str | Activation = "identity",
) -> Params:
    """``H v`` of :func:`sse_loss` by the R-operator: :meth:`MLP.sse_hvp`."""
    return MLP(hidden_activation, output_activation).sse_hvp(params, v, x, target)


def sse_gnvp(
    params: Params,
    v: Params,
    x: NDArray,
    target: NDArray,
    *,
    hidden_activation: Hidden = "tanh",
    output_activation: str | Activation = "identity",
) -> Params:
    """The Gauss–Newton product ``Jᵀ J v`` of :func:`sse_loss`: :meth:`MLP.sse_gnvp`."""
    return MLP(hidden_activation, output_activation).sse_gnvp(params, v, x, target)


def xent_loss(
    params: Params,
    x: Array,
    labels: Array,
    *,
    hidden_activation: Hidden = "tanh",
    output_activation: str | Activation = "identity",
) -> Array:
    """Mean softmax cross-entropy of the logits: :meth:`MLP.xent_loss`."""
    return MLP(hidden_activation, output_activation).xent_loss(params, x, labels)


def xent_grad(
    params: Params,
    x: NDArray,
    labels: NDArray,
    *,
    hidden_activation: Hidden = "tanh",
    output_activation: str | Activation = "identity",
) -> Params:
    """The hand gradient of :func:`xent_loss`: :meth:`MLP.xent_grad`."""
    return MLP(hidden_activation, output_activation).xent_grad(params, x, labels)


def xent_hvp(
    params: Params,
    v: Params,
    x: NDArray,
    labels: NDArray,
    *,
    hidden_activation: Hidden = "tanh",
    output_activation: str | Activation = "identity",
) -> Params:
    """The true ``H v`` of :func:`xent_loss` by the R-operator: :meth:`MLP.xent_hvp`."""
    return MLP(hidden_activation, output_activation).xent_hvp(params, v, x, labels)


def xent_gnvp(
    params: Params,
    v: Params,
    x: NDArray,
    labels: NDArray,
    *,
    hidden_activation: Hidden = "tanh",
    output_activation: str | Activation = "identity",
) -> Params:
    """The Gauss–Newton product ``Jᵀ H_ℓ J v`` of :func:`xent_loss`: :meth:`MLP.xent_gnvp`."""
    return MLP(hidden_activation, output_activation).xent_gnvp(params, v, x, labels)


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
