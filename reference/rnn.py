"""Elman recurrent network with hand-derived (optionally truncated) backpropagation through time.

Notation follows "BackPropagation Through Time" (J. Guo, 2013; ``shared/background/001``):
``V`` maps the input to the hidden layer, ``U`` the previous hidden state to the hidden layer and
``W`` the hidden layer to the output.  Arrays are time-major and *row vectors*::

    x      (T, B, D)   inputs x_t, one row per batch element
    V      (D, H)      input -> hidden          (the document's V, transposed: V[i, j] = v_ji)
    U      (H, H)      hidden(t-1) -> hidden(t) (the document's U, transposed: U[h, j] = u_jh)
    W      (H, K)      hidden -> output         (the document's W, transposed: W[j, k] = w_kj)
    b      (H,)        hidden bias   (the document's b_j)
    c      (K,)        output bias   (the document's b_k)
    h0     (H,)        initial state s_{-1}, a learnable parameter shared by the batch
    y      (T, B, K)   linear outputs y_t at every step (a loss is applied on top by the user)

Forward (eqs. 1-4 with g = identity; ``a_t`` is the document's ``net(t)``)::

    s_{-1} = h0                          (broadcast to (B, H))
    a_t    = x_t V + s_{t-1} U + b       (B, H)
    s_t    = f(a_t)                      f in {tanh, sigmoid, relu}
    y_t    = s_t W + c                   (B, K)

Backward of ``L = sum_t <dy_t, y_t>`` (full BPTT, eqs. 19 and 26-28 in row form)::

    ds_t = dy_t Wᵀ + e_{t+1} Uᵀ          (∂L/∂s_t, total; e_T := 0)          eq. 19 / 26
    e_t  = ds_t ⊙ f'(a_t)                (∂L/∂a_t; f' written from s_t)    eq. 23
    ∂L/∂W  = Σ_t s_tᵀ dy_t               ∂L/∂c = Σ_{t,batch} dy_t          eq. 21
    ∂L/∂V  = Σ_t x_tᵀ e_t                                                  eq. 27
    ∂L/∂U  = Σ_t s_{t-1}ᵀ e_t                                              eq. 28
    ∂L/∂b  = Σ_{t,batch} e_t
    ∂L/∂x_t = e_t Vᵀ                     ∂L/∂h0 = Σ_batch e_0 Uᵀ

    f'(a) = 1 - s²  (tanh),  s (1 - s)  (sigmoid),  [s > 0]  (relu)

Forward mode (real-time recurrent learning along one tangent; a dot marks a tangent,
``V̇ = dparams["V"]`` etc., ``ẋ_t = dx[t]``; the sensitivities are carried *forward* in time
with the states, nothing is stored)::

    ṡ_{-1} = ḣ0                                   (broadcast to (B, H))
    ȧ_t    = ẋ_t V + x_t V̇ + ṡ_{t-1} U + s_{t-1} U̇ + ḃ
    ṡ_t    = f'(a_t) ⊙ ȧ_t                        (f' from s_t, as in the backward)
    ẏ_t    = ṡ_t W + s_t Ẇ + ċ                    the output tangent, (T, B, K)

The term ``ṡ_{t-1} U`` is the recurrent carry of the sensitivity; the others are the explicit,
one-step dependence on the tangents of step t.  This is Williams & Zipser's RTRL restricted to
one direction: full RTRL carries the whole sensitivity matrix ``P_t = ∂s_t/∂θ`` (H × |θ|, with
|θ| = O(H²) recurrent weights), ``P_t = diag(f'(a_t)) (Uᵀ P_{t-1} + ∂a_t/∂θ|explicit)``, which
costs O(H⁴) time per step and O(H³) memory for n = H hidden units, against BPTT's O(H²) per
step and O(T·H) memory of stored states (and an O(T) backward sweep).  A JVP along one tangent
is the O(H²)-per-step special case: ``ṡ_t = P_t θ̇``, never forming ``P_t``.
(``ElmanRNN.rtrl`` / ``ElmanRNN.jvp``; ``jvp_fun(layer, x) -> (fun, jvp)`` gives it the
signatures of ``gradcheck.check_jvp(fun, jvp, params)``, ``x`` fixed.)

Relation to the document's column notation: the document writes net(t) = V x(t) + U s(t-1) + b
with column vectors (``v_ji`` is the weight from input i to hidden unit j), so each matrix here is
the transpose of the document's and every product is read right-to-left there, left-to-right
here; e.g. eq. 28's ``s(t-1) e_h(t)ᵀ`` (an (H, H) outer product indexed [h, j]) is our
``s_{t-1}ᵀ e_t``.  The document's error ``δ = -∂C/∂net`` (eq. 7) carries a minus sign for
gradient *descent*; the ``e_t`` here is the plain derivative ``+∂L/∂a_t``.  The document's eq. 19
propagates a single output error; here every step has an output, so ``dy_t Wᵀ`` is added to the
recurrent term at each step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from reference._xp import namespace
from reference.dense import _input_tangent, _jvp_problem, check_tangents

__all__ = ["Activation", "ElmanRNN", "jvp_fun", "make_case", "validate_truncation"]

Array = Any  # a numpy array, or a jax.numpy array (possibly a tracer) in the forward
NDArray = npt.NDArray[Any]
Activation = Literal["tanh", "sigmoid", "relu"]
_ACTIVATIONS: tuple[str, ...] = ("tanh", "sigmoid", "relu")
_PARAM_KEYS: tuple[str, ...] = ("V", "U", "W", "b", "c", "h0")


def validate_truncation(truncation: object) -> None:
    """Check a BPTT(τ) truncation: ``None`` (full BPTT) or an int ``τ >= 1`` (not a bool).

    Raises:
        ValueError: for anything else, naming the value.
    """
    if truncation is not None and (
        isinstance(truncation, bool)
        or not isinstance(truncation, int | np.integer)
        or truncation < 1
    ):
        raise ValueError(f"truncation={truncation!r} must be None (full BPTT) or an int >= 1.")


def _activate(xp: ModuleType, name: str, a: Array) -> Array:
    """``f(a)`` written with ``xp``; the sigmoid is ``(1 + tanh(a/2)) / 2`` (no overflow)."""
    if name == "tanh":
        return xp.tanh(a)
    if name == "sigmoid":
        return 0.5 * (xp.tanh(0.5 * a) + 1.0)
    return xp.where(xp.real(a) > 0, a, 0.0)  # relu; real() keeps it complex-step safe


def _derivative_from_output(name: str, s: NDArray) -> NDArray:
    """``f'(a)`` expressed through the output ``s = f(a)`` (numpy)."""
    if name == "tanh":
        return 1.0 - s * s
    if name == "sigmoid":
        return s * (1.0 - s)
    return (s > 0).astype(s.dtype)


@dataclass(frozen=True)
class ElmanRNN:
    """Elman RNN ``s_t = f(x_t V + s_{t-1} U + b)``, ``y_t = s_t W + c``, with (truncated) BPTT.

    Shapes: ``x`` (T, B, D); params ``V`` (D, H), ``U`` (H, H), ``W`` (H, K), ``b`` (H,),
    ``c`` (K,), ``h0`` (H,); ``y`` (T, B, K).  Equations: see the module docstring.

    Args:
        activation: the hidden non-linearity ``f``: ``"tanh"``, ``"sigmoid"`` or ``"relu"``.
        truncation: ``None`` for full BPTT, or ``τ >= 1`` for truncated BPTT(τ) (see Notes).

    Notes:
        Truncated BPTT(τ) is the k-step truncated gradient of Williams & Peng (1990) with k = τ:
        the error injected at the output of step t is back-propagated through at most τ cell
        steps, i.e. it reaches the states ``s_t, s_{t-1}, ..., s_{t-τ+1}`` (and the
        pre-activations ``a_t, ..., a_{t-τ+1}``) and stops there.  Exactly, the truncated
        gradient is ``Σ_t ∂ℓ_t/∂θ`` where ``ℓ_t = <dy_t, y_t>`` is differentiated through the
        window unroll that starts from ``stop_gradient(s_{t-τ})`` when ``t-τ >= 0`` and from the
        leaf ``h0`` itself when the window reaches back past step 0 (``t <= τ-1``).  Per step,
        with ``ds_t^{(t')}`` the part of ∂ℓ_{t'}/∂s_t kept by the truncation::

            ds_{t'}^{(t')} = dy_{t'} Wᵀ
            ds_{k-1}^{(t')} = (ds_k^{(t')} ⊙ f'(a_k)) Uᵀ       for t'-τ+1 < k <= t'
            e_k  = Σ_{t'=k}^{min(k+τ-1, T-1)} ds_k^{(t')} ⊙ f'(a_k)

        and then ∂L/∂V, ∂L/∂U, ∂L/∂b, ∂L/∂x_t are the full-BPTT formulas with these ``e_k``.
        Consequences: ``dW`` and ``dc`` (explicit, one step) are unchanged; ``dV``, ``dU``,
        ``db`` are truncated sums; ``dx_k`` only collects the errors of outputs
        ``y_k, ..., y_{k+τ-1}``; ``dh0 = Σ_batch e_0 Uᵀ`` only collects the outputs
        ``y_0, ..., y_{τ-1}`` (the step-0 cell backward hands its state gradient to the leaf
        ``h0``).  τ = 1 keeps only the immediate (one-step) terms; τ >= T equals full BPTT.

        The truncation applies to the backward only: :meth:`jvp` (forward mode, RTRL along one
        tangent) is always the exact derivative of the forward.

    References:
        J. Guo, "BackPropagation Through Time", 2013 (eqs. 1-4, 19, 21, 26-28).
        R. J. Williams and J. Peng, "An efficient gradient-based algorithm for on-line training
        of recurrent network trajectories", Neural Computation 2(4), 1990.
        R. J. Williams and D. Zipser, "A learning algorithm for continually running fully
        recurrent neural networks", Neural Computation 1(2), 1989 (RTRL: :meth:`rtrl`).

    Examples:
        >>> import numpy as np
        >>> layer, params, x = make_case(np.random.default_rng(0), T=3, B=2)
        >>> y = layer.forward(params, x)
        >>> dparams, dx = layer.backward(params, x, np.ones_like(y))
        >>> y.shape, dparams["U"].shape, dx.shape
        ((3, 2, 2), (5, 5), (3, 2, 3))
    """

    activation: Activation = "tanh"
    truncation: int | None = None
    #: The key of the recurrent matrix ``U`` in ``params``: with :attr:`activation` it gives
    #: Pascanu's bound ``η = σ_max(U)·γ`` to a gradient-flow analysis.
    recurrent_key: ClassVar[str] = "U"

    def __post_init__(self) -> None:
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation={self.activation!r} is not one of {_ACTIVATIONS}; pick one of those."
            )
        validate_truncation(self.truncation)

    # ----------------------------------------------------------------------------- forward
    def cell_forward(self, params: dict[str, Array], s_prev: Array, x_t: Array) -> Array:
        """One step ``s_t = f(x_t V + s_prev U + b)`` (numpy or jax.numpy).

        Args:
            params: the layer's parameters (``V`` (D, H), ``U`` (H, H), ``b`` (H,) are used).
            s_prev: the previous state ``s_{t-1}``, (B, H).
            x_t: the input at step t, (B, D).

        Returns:
            ``s_t``, (B, H).
        """
        xp = namespace(x_t, s_prev, params["V"], params["U"], params["b"])
        a = xp.matmul(x_t, params["V"]) + xp.matmul(s_prev, params["U"]) + params["b"]
        return _activate(xp, self.activation, a)

    def initial_state(self, params: dict[str, Array], batch: int) -> Array:
        """``s_{-1}``: ``h0`` broadcast to (batch, H) (numpy or jax.numpy)."""
        xp = namespace(params["h0"])
        return xp.broadcast_to(params["h0"], (batch, params["h0"].shape[0]))

    def state_step(self, params: dict[str, Array], state: Array, x_t: Array) -> Array:
        """One step of the recurrent state, ``s_t`` from ``s_{t-1}``: :meth:`cell_forward`."""
        return self.cell_forward(params, state, x_t)

    def readout(self, params: dict[str, Array], state: Array) -> Array:
        """The output of one step, ``y_t = s_t W + c``, (B, K) (numpy or jax.numpy)."""
        xp = namespace(state, params["W"], params["c"])
        return xp.matmul(state, params["W"]) + params["c"]

    def forward(self, params: dict[str, Array], x: Array) -> Array:
        """Unroll the cell over time: ``y_t = s_t W + c`` for t = 0..T-1.

        Args:
            params: ``V`` (D, H), ``U`` (H, H), ``W`` (H, K), ``b`` (H,), ``c`` (K,), ``h0`` (H,).
            x: inputs, (T, B, D).

        Returns:
            ``y``, (T, B, K), in the dtype of the inputs.
        """
        xp = namespace(x, *(params[k] for k in _PARAM_KEYS))
        s = xp.broadcast_to(params["h0"], (x.shape[1], params["h0"].shape[0]))
        ys = []
        for t in range(x.shape[0]):
            s = self.cell_forward(params, s, x[t])
            ys.append(xp.matmul(s, params["W"]) + params["c"])
        return xp.stack(ys)

    def states(self, params: dict[str, Array], x: Array) -> NDArray:
        """The forward's saved states (numpy): ``S[0] = s_{-1}`` (h0 broadcast), ``S[t+1] = s_t``.

        Args:
            params: as in :meth:`forward`.
            x: inputs, (T, B, D).

        Returns:
            ``S``, (T+1, B, H): exactly what the backward needs (f' is read from ``s_t``).
        """
        x = np.asarray(x)
        p = {k: np.asarray(params[k]) for k in ("V", "U", "b", "h0")}
        s = np.broadcast_to(p["h0"], (x.shape[1], p["h0"].shape[0]))
        out = [s]
        for t in range(x.shape[0]):
            s = self.cell_forward(p, s, x[t])
            out.append(s)
        return np.stack(out)

    # ---------------------------------------------------------------------------- backward
    def cell_backward(
        self, params: dict[str, Array], s_prev: NDArray, x_t: NDArray, s_t: NDArray, ds_t: NDArray
    ) -> tuple[dict[str, NDArray], NDArray, NDArray]:
        """Backward of one step, given ``ds_t = ∂L/∂s_t`` (numpy)::

            e     = ds_t ⊙ f'(a_t)        (f' from s_t)
            dV    = x_tᵀ e     dU = s_prevᵀ e     db = Σ_batch e
            ds_prev = e Uᵀ     dx_t = e Vᵀ

        Args:
            params: ``V`` (D, H) and ``U`` (H, H) are used.
            s_prev: ``s_{t-1}``, (B, H).
            x_t: ``x_t``, (B, D).
            s_t: ``s_t = f(a_t)``, (B, H), saved by the forward.
            ds_t: ``∂L/∂s_t``, (B, H).

        Returns:
            ``({"V": dV, "U": dU, "b": db}, ds_prev (B, H), dx_t (B, D))``.
        """
        e = ds_t * _derivative_from_output(self.activation, s_t)
        V, U = np.asarray(params["V"]), np.asarray(params["U"])
        grads = {"V": x_t.T @ e, "U": s_prev.T @ e, "b": e.sum(axis=0)}
        return grads, e @ U.T, e @ V.T

    def bptt(
        self, params: dict[str, Array], x: Array, dy: Array
    ) -> tuple[dict[str, NDArray], NDArray, NDArray]:
        """Backpropagation through time (full, or BPTT(τ) when ``truncation`` is set).

        Args:
            params: as in :meth:`forward`.
            x: inputs, (T, B, D).
            dy: ``∂L/∂y``, (T, B, K).

        Returns:
            ``(dparams, dx, deltas)``: ``dparams`` has the keys and shapes of ``params``;
            ``dx`` (T, B, D); ``deltas`` (T, B, H) with ``deltas[t] = ∂L/∂s_t``, the total
            derivative through all later steps (with truncation, the truncated analogue
            ``Σ_{t'=t}^{t+τ-1} ds_t^{(t')}`` of the class Notes), for gradient-flow analysis.
        """
        p = {k: np.asarray(params[k]) for k in _PARAM_KEYS}
        x, dy = np.asarray(x), np.asarray(dy)
        S = self.states(p, x)
        g = {k: np.zeros_like(v) for k, v in p.items()}
        dx = np.zeros_like(x)
        deltas = np.zeros_like(S[1:])
        T = x.shape[0]
        for t in reversed(range(T)):  # the explicit, one-step output terms (eq. 21)
            g["W"] += S[t + 1].T @ dy[t]
            g["c"] += dy[t].sum(axis=0)
        if self.truncation is None:
            ds_prev = np.zeros_like(S[0])
            for t in reversed(range(T)):
                ds = dy[t] @ p["W"].T + ds_prev  # eq. 19 / 26: output error + recurrent carry
                deltas[t] = ds
                cell, ds_prev, dx[t] = self.cell_backward(p, S[t], x[t], S[t + 1], ds)
                for key, v in cell.items():
                    g[key] += v  # eqs. 27-28: fold the unrolled copies back with +=
            g["h0"] += ds_prev.sum(axis=0)
        else:
            for t in reversed(range(T)):  # source step: the error of y_t ...
                ds = dy[t] @ p["W"].T
                for k in range(t, max(t - self.truncation, -1), -1):  # ... reaches s_t..s_{t-τ+1}
                    deltas[k] += ds
                    cell, ds, dx_k = self.cell_backward(p, S[k], x[k], S[k + 1], ds)
                    dx[k] += dx_k
                    for key, v in cell.items():
                        g[key] += v
                    if k == 0:
                        g["h0"] += ds.sum(axis=0)
        dparams = {k: g[k].astype(p[k].dtype, copy=False) for k in _PARAM_KEYS}
        return dparams, dx.astype(x.dtype, copy=False), deltas

    def backward(
        self, params: dict[str, Array], x: Array, dy: Array
    ) -> tuple[dict[str, NDArray], NDArray]:
        """Gradient of ``L = sum(dy * forward(params, x))`` by (truncated) BPTT.

        Args:
            params: as in :meth:`forward`.
            x: inputs, (T, B, D).
            dy: ``∂L/∂y``, (T, B, K).

        Returns:
            ``(dparams, dx)``, shaped and typed like ``(params, x)``.
        """
        dparams, dx, _ = self.bptt(params, x, dy)
        return dparams, dx

    # ------------------------------------------------------------------------ forward mode
    def rtrl(
        self,
        params: dict[str, Array],
        x: Array,
        dparams: dict[str, Array],
        dx: Array | None = None,
    ) -> tuple[NDArray, NDArray]:
        """Real-time recurrent learning along one tangent: ``(ẏ, ṡ)`` carried forward in time.

        ``ṡ_{-1} = ḣ0``, ``ȧ_t = ẋ_t V + x_t V̇ + ṡ_{t-1} U + s_{t-1} U̇ + ḃ``,
        ``ṡ_t = f'(a_t) ⊙ ȧ_t``, ``ẏ_t = ṡ_t W + s_t Ẇ + ċ`` (the module docstring).

        Args:
            params: as in :meth:`forward`.
            x: inputs, (T, B, D).
            dparams: the tangents of every parameter, keyed and shaped like ``params``.
            dx: the input tangent ``ẋ``, (T, B, D), or ``None`` for zero.

        Returns:
            ``(ẏ, ṡ)``: the output tangent (T, B, K) in the dtype of the forward's output, and
            the state tangents ``ṡ[t] = ṡ_t`` (T, B, H).
        """
        p = {k: np.asarray(params[k]) for k in _PARAM_KEYS}
        t = check_tangents(p, dparams)
        x = np.asarray(x)
        ddx = _input_tangent(x, dx)
        S = self.states(p, x)
        T = x.shape[0]
        ds = np.broadcast_to(t["h0"], S[0].shape)
        dS = np.zeros_like(S[1:])
        out_dtype = np.result_type(S.dtype, p["W"].dtype, p["c"].dtype)
        dy = np.zeros((T, x.shape[1], p["W"].shape[1]), dtype=out_dtype)
        for k in range(T):
            da = x[k] @ t["V"] + ds @ p["U"] + S[k] @ t["U"] + t["b"]
            if ddx is not None:
                da = da + ddx[k] @ p["V"]
            ds = _derivative_from_output(self.activation, S[k + 1]) * da
            dS[k] = ds
            dy[k] = ds @ p["W"] + S[k + 1] @ t["W"] + t["c"]
        return dy, dS

    def jvp(
        self,
        params: dict[str, Array],
        x: Array,
        dparams: dict[str, Array],
        dx: Array | None = None,
    ) -> NDArray:
        """The output tangent ``ẏ = J_θ·dparams + J_x·dx`` of :meth:`forward`, by :meth:`rtrl`.

        Args:
            params: as in :meth:`forward`.
            x: inputs, (T, B, D).
            dparams: the tangents of every parameter, keyed and shaped like ``params``.
            dx: the input tangent, (T, B, D), or ``None`` for zero.

        Returns:
            ``ẏ``, (T, B, K).  Exact whatever :attr:`truncation` is (it truncates the backward).
        """
        return self.rtrl(params, x, dparams, dx)[0]

    # ---------------------------------------------------------------------------- analysis
    def with_truncation(self, truncation: int | None) -> ElmanRNN:
        """The same layer with BPTT truncated to ``truncation`` steps (``None``: full BPTT).

        Examples:
            >>> ElmanRNN("relu").with_truncation(3)
            ElmanRNN(activation='relu', truncation=3)
        """
        return dataclasses.replace(self, truncation=truncation)

    def recurrent_jacobian(self, params: dict[str, Array], s_prev: Array, x_t: Array) -> NDArray:
        """The one-step Jacobian ``J[b] = ∂s_t/∂s_{t-1}`` for each batch element (numpy).

        With row vectors, ``J[b, i, j] = ∂s_t[b, i] / ∂s_{t-1}[b, j] = f'(a_t[b, i]) U[j, i]``,
        i.e. ``J[b] = diag(f'(a_t[b])) Uᵀ``; ``deltas[t-1] = dy_{t-1} Wᵀ + deltas[t] @ J[b]``
        per batch row, and ``‖J‖ <= max|f'| · σ_max(U)`` bounds the growth per step.

        Args:
            params: ``V`` (D, H), ``U`` (H, H), ``b`` (H,) are used.
            s_prev: ``s_{t-1}``, (B, H).
            x_t: ``x_t``, (B, D).

        Returns:
            ``J``, (B, H, H).
        """
        p = {k: np.asarray(params[k]) for k in ("V", "U", "b")}
        s_t = self.cell_forward(p, np.asarray(s_prev), np.asarray(x_t))
        fprime = _derivative_from_output(self.activation, s_t)
        jac: NDArray = fprime[:, :, None] * p["U"].T[None, :, :]
        return jac


def jvp_fun(layer: ElmanRNN, x: Array) -> tuple[Any, Any]:
    """``(fun, jvp)`` for ``gradcheck.check_jvp(fun, jvp, params)``: the RNN on a fixed sequence.

    ``fun(params) = layer.forward(params, x)`` (written with ``xp``: JAX differentiates it) and
    ``jvp(params, t) = layer.jvp(params, x, t)``, RTRL along the tangent ``t`` (``ẋ = 0``; exact
    whatever the layer's ``truncation``).

    Examples:
        >>> layer, params, x = make_case(np.random.default_rng(0), T=3, B=2)
        >>> fun, jvp = jvp_fun(layer, x)
        >>> jvp(params, {k: np.ones_like(v) for k, v in params.items()}).shape
        (3, 2, 2)
    """
    return _jvp_problem(layer, x)


def make_case(
    rng: np.random.Generator,
    *,
    dtype: npt.DTypeLike = np.float64,
    T: int = 4,
    B: int = 3,
    D: int = 3,
    H: int = 5,
    K: int = 2,
    activation: Activation = "tanh",
    truncation: int | None = None,
    spectral_scale: float | None = None,
    kink_margin: float = 1e-2,
    max_tries: int = 100,
) -> tuple[ElmanRNN, dict[str, NDArray], NDArray]:
    """A small well-conditioned random case ``(layer, params, x)``.

    Args:
        rng: the only source of randomness.
        dtype: dtype of every parameter and of ``x``.
        T: sequence length (``x.shape[0]``).
        B: batch size (``x.shape[1]``).
        D: input width (``x.shape[2]``, ``V.shape[0]``).
        H: hidden width (``V.shape[1]``, ``U`` (H, H), ``b``, ``h0``, ``W.shape[0]``).
        K: output width (``W.shape[1]``, ``c``; ``y`` is (T, B, K)).
        activation: the layer's ``f``.
        truncation: the layer's ``τ`` (``None`` = full BPTT).
        spectral_scale: when given, ``U`` is rescaled so its largest singular value equals it
            (for vanishing / exploding studies); otherwise ``U`` has i.i.d. N(0, 1/H) entries.
        kink_margin: for ``"relu"``, the draw is repeated (up to ``max_tries`` times) until every
            pre-activation satisfies ``|a_t| >= kink_margin``; the draw with the largest
            ``min |a_t|`` is kept if none does.  Ignored for smooth activations.
        max_tries: see ``kink_margin``.

    Returns:
        ``(ElmanRNN(activation, truncation), params, x)`` with ``x`` of shape (T, B, D).
    """
    layer = ElmanRNN(activation=activation, truncation=truncation)
    best: tuple[float, dict[str, NDArray], NDArray] | None = None
    for _ in range(max_tries if activation == "relu" else 1):
        params, x = _draw(rng, T, B, D, H, K, spectral_scale)
        if activation != "relu":
            best = (np.inf, params, x)
            break
        S = layer.states(params, x)
        a = np.einsum("tbd,dh->tbh", x, params["V"]) + S[:-1] @ params["U"] + params["b"]
        margin = float(np.min(np.abs(a)))
        if best is None or margin > best[0]:
            best = (margin, params, x)
        if margin >= kink_margin:
            break
    assert best is not None
    cast = {k: v.astype(dtype) for k, v in best[1].items()}
    return layer, cast, best[2].astype(dtype)


def _draw(
    rng: np.random.Generator, T: int, B: int, D: int, H: int, K: int, spectral_scale: float | None
) -> tuple[dict[str, NDArray], NDArray]:
    """One float64 draw of the parameters and inputs (fan-in scaled Gaussians)."""
    U = rng.standard_normal((H, H)) / np.sqrt(H)
    if spectral_scale is not None:
        U *= spectral_scale / np.linalg.norm(U, ord=2)
    params = {
        "V": rng.standard_normal((D, H)) / np.sqrt(D),
        "U": U,
        "W": rng.standard_normal((H, K)) / np.sqrt(H),
        "b": 0.1 * rng.standard_normal(H),
        "c": 0.1 * rng.standard_normal(K),
        "h0": 0.5 * rng.standard_normal(H),
    }
    return params, rng.standard_normal((T, B, D))
