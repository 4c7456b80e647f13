"""Gradient flow: norms of ∂L/∂h_t through time and depth, spectral bounds, truncation, clipping.

Three kinds of model are analysed by :func:`gradient_flow`:

* a recurrent **cell** given as one time step (the :class:`Cell` protocol)::

      h_{-1} = init(params, B)                  (B, S)
      h_t    = step(params, h_{t-1}, x_t)       (B, S)      t = 0 .. T-1
      y_t    = readout(params, h_t)             (B, K)      (h_t itself without a readout)

  written with array-API code so that JAX can trace it;
* a **recurrent layer** with a hand BPTT (the :class:`RecurrentLayer` protocol, e.g.
  ``reference.rnn.ElmanRNN``, ``reference.lstm.LSTM``, ``reference.gru.GRU``): its
  ``bptt(params, x, dy) -> (dparams, dx, deltas)`` gives the hand ``deltas[t] = ∂L/∂h_t``, and
  its ``initial_state``, ``state_step`` and ``readout`` make the cell; optional capabilities add
  a hand Jacobian (:class:`RecurrentJacobian`), a hand truncated BPTT (:class:`TruncatableBPTT`),
  Pascanu's bound (:class:`PascanuBound`) and a partly observed state (:class:`ObservedState`);
* a **deep stack** (the :class:`DepthStack` protocol: ``forward`` and ``backward_with_deltas``,
  e.g. ``reference.mlp.MLP``): one layer plays the part of one time step, and the per-layer norms
  of the weight and bias gradients are Nielsen's "speed of learning" of each layer.

The protocols are structural: any object with the methods qualifies, whatever its class; the
class name only labels the result.

The loss is linear in the outputs, ``L = Σ_t ⟨dy_t, y_t⟩``; every first-order quantity below
depends only on ``dy = ∂L/∂y``.  Pass ``dy`` or a ``loss`` (``dy = ∂loss/∂y`` is then taken by
JAX); by default ``dy`` is a standard normal draw (from ``seed``) on the **last** output only,
Pascanu et al.'s ``∂E_T/∂h_k``, so that ‖∂L/∂h_t‖ against t shows the decay or growth alone
instead of a sum of terms of every reach.

What is measured, per time step ``t`` (``J_t = ∂h_t/∂h_{t-1}``, one (S, S) matrix per batch row)::

    ‖∂L/∂h_t‖                 hand (the layer's BPTT deltas) and autodiff (JAX, float64)
    σ_max(J_t)                largest over the batch
    ‖∂h_t/∂h_k‖ = ‖J_t J_{t-1} ⋯ J_{k+1}‖₂   for k ≤ t (spectral norm, largest over the batch)
    slope                     least-squares slope of log‖∂L/∂h_t‖ against T−1−t, the number of
                              steps back from the end: < 0 decays going back (vanishing), > 0 grows

and the bound of Pascanu, Mikolov & Bengio (2013, §3.1): for ``h_t = f(x_t V + h_{t-1} U + b)``
``‖J_t‖ ≤ σ_max(U)·γ = η`` with ``γ = sup|f'|`` (1 for tanh and ReLU, ¼ for the sigmoid), hence
``‖∂h_t/∂h_k‖ ≤ η^(t−k)``: η < 1 is *sufficient* for vanishing, η > 1 *necessary* for exploding.

Classification (thresholds are module constants):

1. η < 1: ``"vanishing"`` — the sufficient condition holds.
2. Otherwise the measured rate decides, from the fitted slope when at least three steps have a
   positive norm, else from the mean of ``log σ_max(J_t)``: a rate above
   ``max(SLOPE_THRESHOLD, 2·stderr)`` is ``"exploding"``, one below minus that is
   ``"vanishing"``.
3. A rate inside the band is borderline: with η ≥ 1 and at least ``SATURATION_THRESHOLD`` of
   the units saturated (``f' < 0.1·γ``; large input scale) the saturation cuts the gain and it is
   ``"stable"``; with unsaturated units (small inputs) and a mean ``log σ_max(J_t)`` above the
   band it is ``"exploding"``; otherwise ``"stable"``.  σγ ≥ 1 alone never makes a case exploding.

Truncated BPTT(τ) (Williams & Peng 1990; ``reference.rnn.ElmanRNN(truncation=τ)``): the error of
output ``y_t`` goes back through at most τ cell steps.  With ``G_j`` the parameter gradient that
arrives at depth j (j cell steps below its output) and ``G_y`` the read-out's, the truncated
gradient is ``g_τ = G_y + Σ_{j<τ} G_j``; this equals differentiating each output through a window
unrolled from ``stop_gradient(h_{t−τ})``.  Reported: ``‖g_τ − g‖ / ‖g‖`` for τ = 1..T, against
the full gradient ``g`` from ``jax.grad`` (or the layer's own truncated BPTT for the Elman RNN),
and the smallest τ with an error below 1 %.

Clipping (Pascanu et al., Algorithm 1): ``‖g‖`` before and ``min(‖g‖, threshold)`` after (a
non-finite norm is left unchanged, as ``reference.clipping``); the contribution of step t is the
parameter gradient through the step-t cell and read-out, and steps whose contribution alone
exceeds the threshold are listed.

References:
    R. Pascanu, T. Mikolov, Y. Bengio, "On the difficulty of training recurrent neural
    networks", ICML 2013, §2-3 and Algorithm 1.
    M. Nielsen, "Neural Networks and Deep Learning", ch. 5 (2015).
    R. J. Williams, J. Peng, Neural Computation 2(4), 1990 (truncated BPTT).

Examples:
    >>> import numpy as np, reference.rnn
    >>> layer, params, x = reference.rnn.make_case(np.random.default_rng(0), T=8, spectral_scale=0.5)
    >>> flow = gradient_flow(layer, params, x, clip=1.0)
    >>> flow.regime, flow.agree, round(flow.eta, 3)
    ('vanishing', True, 0.5)
    >>> bool(np.all(flow.spans[0, 1:] <= 0.5 ** np.arange(1, 8) + 1e-12))
    True
    >>> flow.to_dict()["schema"]
    'gradcheck.flow/1'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from gradcheck.errors import InvalidArgument
from gradcheck.result import json_number

__all__ = [
    "FLOW_SCHEMA_VERSION",
    "GAMMA",
    "SATURATION_THRESHOLD",
    "SLOPE_THRESHOLD",
    "TRUNCATION_TOLERANCE",
    "Cell",
    "ClipReport",
    "DepthStack",
    "FlowResult",
    "ObservedState",
    "PascanuBound",
    "RecurrentJacobian",
    "RecurrentLayer",
    "Regime",
    "TruncatableBPTT",
    "gradient_flow",
    "log_slope",
    "pascanu_eta",
]

#: Bumped whenever a field of :meth:`FlowResult.to_dict` changes meaning or disappears.
FLOW_SCHEMA_VERSION = "gradcheck.flow/1"
#: |log-slope| per step (≈ 5 % growth or decay per step) inside which the flow is borderline.
SLOPE_THRESHOLD = 0.05
#: The fraction of saturated units (f' < 0.1·γ) from which a borderline case is not exploding.
SATURATION_THRESHOLD = 0.5
#: The relative error of the truncated gradient that the smallest acceptable τ keeps under.
TRUNCATION_TOLERANCE = 0.01
#: γ = sup |f'| per activation (Pascanu et al. 2013, §3.1).
GAMMA: dict[str, float] = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0}

Regime = Literal["vanishing", "stable", "exploding"]
Axis = Literal["time", "depth"]
F64 = npt.NDArray[np.float64]
Fn = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Cell:
    """A recurrent cell as one time step: the small protocol :func:`gradient_flow` analyses.

    Shapes: ``h`` (B, S), ``x_t`` (B, D), ``y_t`` (B, K).  Every callable must be written with
    array-API code (``xp = x.__array_namespace__()``, ``@``) so JAX can trace it.

    Attributes:
        step: ``step(params, h_{t-1}, x_t) -> h_t``.
        init: ``init(params, B) -> h_{-1}`` (B, S), or a fixed array (S,) or (B, S).
        readout: ``readout(params, h_t) -> y_t``; ``None`` means ``y_t = h_t``.
        activation: the elementwise ``f`` of ``h_t = f(...)`` (``"tanh"``, ``"sigmoid"`` or
            ``"relu"``): gives γ for Pascanu's bound and the saturation fraction of ``h_t``.
        recurrent: the key of the recurrent matrix ``U`` in ``params`` (for η = σ_max(U)·γ).
        deltas: an optional hand BPTT, ``deltas(params, x, dy) -> ∂L/∂h`` (T, B, observed).
        observed: how many leading state columns the hand deltas and the reported norms cover
            (e.g. ``H`` of an LSTM state ``[h | c]``); ``None`` for all ``S``.

    Examples:
        >>> import numpy as np
        >>> def step(p, h, x):
        ...     a = x @ p["V"] + h @ p["U"]
        ...     return a.__array_namespace__().tanh(a)
        >>> cell = Cell(step, init=np.zeros(2), activation="tanh", recurrent="U")
        >>> params = {"V": np.eye(2), "U": 0.5 * np.eye(2)}
        >>> flow = gradient_flow(cell, params, np.ones((4, 1, 2)))
        >>> flow.regime, flow.eta
        ('vanishing', 0.5)
    """

    step: Fn
    init: Any
    readout: Fn | None = None
    activation: str | None = None
    recurrent: str | None = None
    deltas: Fn | None = None
    observed: int | None = None


# ----------------------------------------------------------------------------- model protocols


@runtime_checkable
class RecurrentLayer(Protocol):
    """A recurrent layer with a hand BPTT, analysed through time without a :class:`Cell`.

    Any object with these four methods (callables) qualifies, whatever its class;
    ``reference.rnn.ElmanRNN``, ``reference.lstm.LSTM`` and ``reference.gru.GRU`` implement it.
    Shapes: ``x`` (T, B, D), the state ``s`` (B, S), ``y_t`` (B, K).  ``initial_state``,
    ``state_step`` and ``readout`` must be written with array-API code so that JAX can trace them
    (they become the :class:`Cell`).

    Optional capabilities, used when present: :class:`ObservedState`, :class:`RecurrentJacobian`,
    :class:`TruncatableBPTT` and :class:`PascanuBound`.

    Examples:
        >>> import reference.gru
        >>> isinstance(reference.gru.GRU(), RecurrentLayer), isinstance(object(), RecurrentLayer)
        (True, False)
    """

    def bptt(self, params: Any, x: Any, dy: Any) -> tuple[Any, Any, Any]:
        """``(dparams, dx, deltas)`` of ``L = Σ_t ⟨dy_t, y_t⟩``; ``deltas[t] = ∂L/∂s_t`` (T, B, observed)."""
        ...

    def initial_state(self, params: Any, batch: int) -> Any:
        """``s_{-1}``, (batch, S)."""
        ...

    def state_step(self, params: Any, state: Any, x_t: Any) -> Any:
        """``s_t`` from ``s_{t-1}`` (B, S) and ``x_t`` (B, D)."""
        ...

    def readout(self, params: Any, state: Any) -> Any:
        """``y_t`` (B, K) from ``s_t``."""
        ...


@runtime_checkable
class ObservedState(Protocol):
    """A state of which the hand deltas cover only the leading columns (the LSTM's ``[h | c]``)."""

    def observed_width(self, params: Any) -> int:
        """How many leading state columns ``bptt``'s deltas and the reported norms cover."""
        ...


@runtime_checkable
class RecurrentJacobian(Protocol):
    """A hand one-step Jacobian, used instead of ``jax.jacfwd`` of the step."""

    def recurrent_jacobian(self, params: Any, state: Any, x_t: Any) -> Any:
        """``J[b] = ∂s_t/∂s_{t-1}`` per batch row, (B, S, S), from ``s_{t-1}`` and ``x_t``."""
        ...


@runtime_checkable
class TruncatableBPTT(Protocol):
    """A hand truncated BPTT(τ), used for the truncation curve instead of JAX's depth split."""

    def with_truncation(self, truncation: int | None) -> RecurrentLayer:
        """The same layer whose ``bptt`` is truncated to ``truncation`` steps."""
        ...


@runtime_checkable
class PascanuBound(Protocol):
    """``h_t = f(x_t V + h_{t-1} U + b)``: the activation ``f`` and the key of ``U`` in ``params``
    give Pascanu's ``η = σ_max(U)·γ``."""

    @property
    def activation(self) -> str:
        """``"tanh"``, ``"sigmoid"`` or ``"relu"``."""
        ...

    @property
    def recurrent_key(self) -> str:
        """The key of the recurrent matrix ``U`` in ``params``."""
        ...


@runtime_checkable
class DepthStack(Protocol):
    """A deep stack analysed through depth: layer ``i`` (from the input) has params ``W{i}``, ``b{i}``.

    Any object with these two methods qualifies, whatever its class; ``reference.mlp.MLP``
    implements it.  ``x`` is (B, D_0), ``y`` (B, D_L).
    """

    def forward(self, params: Any, x: Any) -> Any:
        """``y``, (B, D_L); JAX-traceable for the autodiff side."""
        ...

    def backward_with_deltas(self, params: Any, x: Any, dy: Any) -> tuple[Any, Any, Sequence[Any]]:
        """``(dparams, dx, deltas)`` of ``L = Σ dy ⊙ y``; ``deltas[i] = ∂L/∂net_i`` (B, D_{i+1})."""
        ...


@dataclass(frozen=True, slots=True)
class ClipReport:
    """Clipping by global norm at ``threshold`` (Pascanu et al., Algorithm 1).

    Attributes:
        threshold: the largest norm allowed.
        norm_before: ``‖g‖`` of the full parameter gradient.
        norm_after: ``threshold`` when ``norm_before > threshold`` (finite), else ``norm_before``.
        step_norms: ``‖g^{(t)}‖`` of the parameter gradient contributed by each step or layer.
        clipped_steps: the steps whose contribution alone exceeds ``threshold``.
    """

    threshold: float
    norm_before: float
    norm_after: float
    step_norms: F64
    clipped_steps: tuple[int, ...]

    @property
    def clipped(self) -> bool:
        return self.norm_after != self.norm_before

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": json_number(self.threshold),
            "norm_before": json_number(self.norm_before),
            "norm_after": json_number(self.norm_after),
            "clipped": self.clipped,
            "step_norms": _list(self.step_norms),
            "clipped_steps": list(self.clipped_steps),
        }


@dataclass(frozen=True, slots=True, eq=False)
class FlowResult:
    """Gradient flow through time (``axis="time"``) or depth (``axis="depth"``).

    Per-step arrays have length ``n`` (T steps, or L layers counted from the input); arrays a
    kind does not have are empty, scalars it does not have are NaN.

    Attributes:
        name: what was analysed.
        axis: ``"time"`` or ``"depth"``.
        hand_norms: ‖∂L/∂h_t‖ (time) or ‖∂L/∂net_i‖ (depth) from the hand backward, or empty.
        autodiff_norms: the same from JAX in float64 (depth: empty when the stack's forward does
            not take a bias per sample, see ``_autodiff_deltas``).
        rel_err: per step ``‖hand − autodiff‖ / max(‖hand‖, ‖autodiff‖)`` (depth: of the layer's
            weight and bias gradients); ``agree`` is ``max(rel_err) <= rtol``.
        rtol: the tolerance used (by the dtype of the hand gradient).
        local_sigma: σ_max(∂h_t/∂h_{t-1}), largest over the batch (T,).
        spans: ``spans[k, t] = ‖∂h_t/∂h_k‖₂`` (largest over the batch) for k ≤ t, NaN below (T, T).
        slope, slope_stderr: fitted d log‖∂L/∂h_t‖ per step back (see the module docstring).
        sigma_max, gamma, eta: σ_max(U), sup|f'| and η = σ_max(U)·γ (NaN when unknown).
        saturation: the fraction of state entries with f' < 0.1·γ (NaN when unknown).
        input_scale: the root mean square of the inputs.
        regime: ``"vanishing"``, ``"stable"`` or ``"exploding"``; ``reasons`` say why.
        truncation_errors: ‖g_τ − g‖/‖g‖ for τ = 1..T; ``min_truncation`` the least τ under 1 %.
        clip: the clipping report when a threshold was given.
        weight_norms, bias_norms: per layer ‖∂L/∂W_i‖, ‖∂L/∂b_i‖ (hand; depth only).
        notes: what else was noticed.
    """

    name: str
    axis: Axis
    hand_norms: F64
    autodiff_norms: F64
    rel_err: F64
    rtol: float
    local_sigma: F64
    spans: F64
    slope: float
    slope_stderr: float
    sigma_max: float
    gamma: float
    eta: float
    saturation: float
    input_scale: float
    regime: Regime
    reasons: tuple[str, ...]
    truncation_errors: F64
    min_truncation: int | None
    clip: ClipReport | None
    weight_norms: F64 = field(default_factory=lambda: _empty())
    bias_norms: F64 = field(default_factory=lambda: _empty())
    truncation_source: str = ""
    jacobian_source: str = ""
    notes: tuple[str, ...] = ()

    @property
    def agree(self) -> bool:
        """Whether the hand and autodiff per-step gradients agree within ``rtol``."""
        return bool(self.rel_err.size) and float(np.nanmax(self.rel_err)) <= self.rtol

    @property
    def norms(self) -> F64:
        """The per-step norms the slope is fitted to: hand when present, else autodiff."""
        return self.hand_norms if self.hand_norms.size else self.autodiff_norms

    def to_dict(self) -> dict[str, Any]:
        """The versioned, JSON-serialisable record (``schema`` = :data:`FLOW_SCHEMA_VERSION`)."""
        return {
            "schema": FLOW_SCHEMA_VERSION,
            "name": self.name,
            "axis": self.axis,
            "regime": self.regime,
            "reasons": list(self.reasons),
            "agree": self.agree,
            "rtol": self.rtol,
            "hand_norms": _list(self.hand_norms),
            "autodiff_norms": _list(self.autodiff_norms),
            "rel_err": _list(self.rel_err),
            "local_sigma": _list(self.local_sigma),
            "spans": [_list(row) for row in self.spans],
            "slope": json_number(self.slope),
            "slope_stderr": json_number(self.slope_stderr),
            "sigma_max": json_number(self.sigma_max),
            "gamma": json_number(self.gamma),
            "eta": json_number(self.eta),
            "saturation": json_number(self.saturation),
            "input_scale": json_number(self.input_scale),
            "truncation_errors": _list(self.truncation_errors),
            "min_truncation": self.min_truncation,
            "truncation_source": self.truncation_source,
            "jacobian_source": self.jacobian_source,
            "clip": self.clip.to_dict() if self.clip else None,
            "weight_norms": _list(self.weight_norms),
            "bias_norms": _list(self.bias_norms),
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------- small helpers


def _empty() -> F64:
    return np.zeros(0)


def _list(a: F64) -> list[float | str | None]:
    return [json_number(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def _norm(a: Any) -> float:
    """The float64 L2 norm, scaled by the largest entry so it neither overflows nor underflows."""
    flat = np.asarray(a, dtype=np.float64).ravel()
    if flat.size == 0:
        return 0.0
    if np.isnan(flat).any():
        return math.nan
    m = float(np.max(np.abs(flat)))
    if m == 0.0 or math.isinf(m):
        return m
    return m * float(np.sqrt(np.sum((flat / m) ** 2)))


def _rel(a: Any, b: Any) -> float:
    """``‖a − b‖ / max(‖a‖, ‖b‖)``, 0 when both are 0."""
    scale = max(_norm(a), _norm(b))
    return 0.0 if scale == 0.0 else _norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)) / scale


def _flat(tree: Any) -> F64:
    """Every leaf of a gradient pytree, in JAX's leaf order, as one float64 vector."""
    import jax

    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return np.zeros(0)
    return np.concatenate([np.asarray(leaf, dtype=np.float64).ravel() for leaf in leaves])


def log_slope(norms: Any) -> tuple[float, float, int]:
    """Least-squares slope of ``log‖·‖`` per step back from the end, its standard error, and n.

    With ``u_t = T−1−t`` and ``v_t = log norms[t]`` over the steps whose norm is finite and
    positive, ``slope = Σ(u−ū)(v−v̄) / Σ(u−ū)²`` and ``stderr = sqrt(Σr² / (n−2) / Σ(u−ū)²)``.

    Args:
        norms: per-step norms, (T,).

    Returns:
        ``(slope, stderr, n)``; the slope is NaN for n < 2 and the stderr for n < 3.

    Examples:
        >>> s, se, n = log_slope(0.5 ** np.arange(5)[::-1])
        >>> round(s, 6), round(se, 6), n
        (-0.693147, 0.0, 5)
    """
    v = np.asarray(norms, dtype=np.float64)
    u = (v.size - 1 - np.arange(v.size)).astype(np.float64)
    ok = np.isfinite(v) & (v > 0)
    u, y = u[ok], np.log(v[ok])
    n = int(u.size)
    if n < 2:
        return math.nan, math.nan, n
    du = u - u.mean()
    slope = float(du @ (y - y.mean()) / (du @ du))
    if n < 3:
        return slope, math.nan, n
    resid = y - y.mean() - slope * du
    return slope, float(np.sqrt(max(resid @ resid, 0.0) / (n - 2) / (du @ du))), n


def pascanu_eta(U: Any, activation: str) -> tuple[float, float, float]:
    """Pascanu et al.'s ``η = σ_max(U)·γ`` with ``γ = sup|f'|``: ``(σ_max, γ, η)``.

    Args:
        U: the recurrent matrix, (H, H).
        activation: ``"tanh"`` (γ = 1), ``"sigmoid"`` (γ = ¼) or ``"relu"`` (γ = 1).

    Raises:
        InvalidArgument: for another activation.

    Examples:
        >>> pascanu_eta(2.0 * np.eye(3), "sigmoid")
        (2.0, 0.25, 0.5)
    """
    if activation not in GAMMA:
        raise InvalidArgument(f"activation={activation!r}: Pascanu's γ is known for {sorted(GAMMA)}.")
    sigma = float(np.linalg.norm(np.asarray(U, dtype=np.float64), ord=2))
    return sigma, GAMMA[activation], sigma * GAMMA[activation]


def _saturation(states: F64, activation: str | None) -> float:
    """The fraction of ``h = f(a)`` entries with ``f'(a) < 0.1·γ`` (f' read from h)."""
    if activation is None or states.size == 0:
        return math.nan
    if activation == "tanh":
        fp = 1.0 - states**2
    elif activation == "sigmoid":
        fp = 4.0 * states * (1.0 - states)
    else:
        fp = (states > 0).astype(np.float64)
    return float(np.mean(fp < 0.1))


# ----------------------------------------------------------------------------- classification


def _classify(
    eta: float, slope: float, stderr: float, n: int, log_local: float, saturation: float
) -> tuple[Regime, tuple[str, ...]]:
    """The regime and the reasons, by the rules of the module docstring."""
    if eta < 1:
        return "vanishing", (f"η = {eta:.3g} < 1: Pascanu's sufficient condition for vanishing "
                             "holds, ‖∂h_t/∂h_k‖ ≤ η^(t−k)",)
    reliable = n >= 3 and math.isfinite(slope)
    band = max(SLOPE_THRESHOLD, 2 * stderr) if reliable and math.isfinite(stderr) else SLOPE_THRESHOLD
    rate, what = (slope, "fitted log-slope") if reliable else (log_local, "mean log σ_max(J_t)")
    why = f"{what} {rate:+.3g} per step (band ±{band:.3g})"
    bound = f"η = {eta:.3g} ≥ 1 is only necessary for exploding" if math.isfinite(eta) else "no bound"
    if rate > band:
        return "exploding", (why,)
    if rate < -band:
        return "vanishing", (why, bound)
    sat = f"{saturation:.0%} of units saturated" if math.isfinite(saturation) else "saturation unknown"
    if math.isfinite(saturation) and saturation >= SATURATION_THRESHOLD:
        return "stable", (why, bound, f"{sat}: f' ≈ 0 cuts the gain")
    if math.isfinite(saturation) and log_local > SLOPE_THRESHOLD:
        return "exploding", (why, bound, f"{sat}, local gain log σ_max(J_t) = {log_local:+.3g}")
    return "stable", (why, bound, sat)


# ----------------------------------------------------------------------------- adapters


@dataclass(frozen=True, slots=True)
class _Model:
    """A recurrent model reduced to a :class:`Cell` plus what its own code can say by hand."""

    cell: Cell
    name: str
    hand_deltas: Fn | None = None  # (params, x, dy) -> (T, B, observed)
    hand_grads: Fn | None = None  # (params, x, dy) -> dparams
    hand_jacobian: Fn | None = None  # (params, h_prev, x_t) -> (B, S, S)
    hand_truncated: Fn | None = None  # (params, x, dy, tau) -> dparams


def _protocol_methods(protocol: type) -> tuple[str, ...]:
    """The public methods a protocol class declares, in the order of its body."""
    return tuple(k for k, v in vars(protocol).items() if not k.startswith("_") and callable(v))


def _missing(model: Any, protocol: type) -> tuple[str, ...]:
    """The methods of ``protocol`` that ``model`` lacks (or has as non-callables)."""
    return tuple(m for m in _protocol_methods(protocol) if not callable(getattr(model, m, None)))


def _unsupported(model: Any) -> InvalidArgument:
    """The error for a model that follows none of the protocols, naming what it lacks."""
    lacks = ", ".join(_missing(model, RecurrentLayer))
    return InvalidArgument(
        f"model={model!r}: expected a Cell, a recurrent layer with bptt, initial_state, state_step "
        f"and readout (the RecurrentLayer protocol; this one lacks {lacks}), or a deep stack with "
        "forward and backward_with_deltas (DepthStack); wrap another recurrent layer in "
        "gradcheck.dynamics.Cell."
    )


def _layer_cell(layer: RecurrentLayer, params: Any) -> Cell:
    """The :class:`Cell` of a recurrent layer: its step, initial state and read-out."""
    bound = layer if isinstance(layer, PascanuBound) else None
    return Cell(
        step=layer.state_step,
        init=layer.initial_state,
        readout=layer.readout,
        activation=bound.activation if bound is not None else None,
        recurrent=bound.recurrent_key if bound is not None else None,
        observed=layer.observed_width(params) if isinstance(layer, ObservedState) else None,
    )


def _truncated_bptt(layer: TruncatableBPTT) -> Fn:
    """``(params, x, dy, tau) -> dparams`` of the layer's own BPTT(τ)."""

    def truncated(p: Any, x: Any, dy: Any, tau: int) -> Any:
        return layer.with_truncation(tau).bptt(p, x, dy)[0]

    return truncated


def _layer_model(layer: RecurrentLayer, params: Any) -> _Model:
    """A :class:`RecurrentLayer` as a cell plus its hand BPTT and optional capabilities."""

    def deltas(p: Any, x: Any, dy: Any) -> Any:
        return layer.bptt(p, x, dy)[2]

    def grads(p: Any, x: Any, dy: Any) -> Any:
        return layer.bptt(p, x, dy)[0]

    return _Model(
        cell=_layer_cell(layer, params),
        name=type(layer).__name__,  # a label only: what the model can do decides how it is analysed
        hand_deltas=deltas,
        hand_grads=grads,
        hand_jacobian=layer.recurrent_jacobian if isinstance(layer, RecurrentJacobian) else None,
        hand_truncated=_truncated_bptt(layer) if isinstance(layer, TruncatableBPTT) else None,
    )


# ----------------------------------------------------------------------------- JAX side


@dataclass(frozen=True, slots=True)
class _Trace:
    """What the float64 JAX pass measures on one sequence (all numpy float64)."""

    states: F64  # (T+1, B, S): h_{-1}, h_0, ..., h_{T-1}
    dy: F64  # (T, B, K)
    deltas: F64  # (T, B, S) ∂L/∂h_t by jax.grad over additive perturbations of the states
    jacobians: F64  # (T, B, S, S) ∂h_t/∂h_{t-1} by jax.jacfwd (empty when not asked for)
    grad: F64  # the full parameter gradient, flattened
    depth: F64  # (T, P): G_j, the parameter gradient arriving at depth j below its output
    readout_grad: F64  # (P,): G_y
    steps: F64  # (T, P): the contribution of step t (cell and read-out)


def _init_state(cell: Cell, p: Any, B: int) -> Any:
    import jax.numpy as jnp

    if callable(cell.init):
        return cell.init(p, B)
    h = jnp.asarray(cell.init, dtype=jnp.float64)
    return jnp.broadcast_to(h, (B, h.shape[-1]))


def _trace(
    cell: Cell, params: Any, x: Any, dy: Any, loss: Fn | None, rng: np.random.Generator, *, jacobian: bool
) -> _Trace:
    """Run the cell in float64 under JAX and measure everything autodiff can give."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.float64), params)
        xs = jnp.asarray(x, dtype=jnp.float64)
        T, B = xs.shape[0], xs.shape[1]
        read = cell.readout or (lambda _p, h: h)

        def unroll(p: Any, eps: Any) -> tuple[Any, Any]:
            h, hs, ys = _init_state(cell, p, B), [], []
            hs.append(h)
            for t in range(T):
                h = cell.step(p, h, xs[t]) + eps[t]
                hs.append(h)
                ys.append(read(p, h))
            return jnp.stack(hs), jnp.stack(ys)

        h_init = _init_state(cell, p, B)
        zeros = jnp.zeros((T, *h_init.shape), dtype=jnp.float64)
        hs, ys = unroll(p, zeros)
        cot = _cotangent(ys, dy, loss, rng)

        def lin(p: Any, eps: Any) -> Any:
            return jnp.sum(unroll(p, eps)[1] * cot)

        g_p, g_eps = jax.grad(lin, argnums=(0, 1))(p, zeros)
        jac = np.zeros((T * B, 0, 0))  # the layer's own recurrent_jacobian is used instead
        if jacobian:
            jac = jax.vmap(lambda h, xt: jax.jacfwd(lambda hh: cell.step(p, hh[None], xt[None])[0])(h))(
                hs[:-1].reshape(T * B, -1), xs.reshape(T * B, -1))
        depth, g_y, steps = _contributions(cell, p, xs, hs, cot, read)
        return _Trace(
            states=np.asarray(hs),
            dy=np.asarray(cot),
            deltas=np.asarray(g_eps),
            jacobians=np.asarray(jac).reshape(T, B, *jac.shape[1:]),
            grad=_flat(g_p),
            depth=depth,
            readout_grad=g_y,
            steps=steps,
        )


def _cotangent(ys: Any, dy: Any, loss: Fn | None, rng: np.random.Generator) -> Any:
    """``dy`` as given, ``∂loss/∂y`` by JAX, or by default N(0, 1) on the last output only."""
    import jax
    import jax.numpy as jnp

    if dy is not None:
        if np.shape(dy) != ys.shape:
            raise InvalidArgument(f"dy has shape {np.shape(dy)}, the outputs {tuple(ys.shape)}; pass ∂L/∂y.")
        return jnp.asarray(dy, dtype=jnp.float64)
    if loss is not None:
        return jax.grad(lambda y: jnp.real(jnp.asarray(loss(y))).reshape(()))(ys)
    last = np.zeros(ys.shape)
    last[-1] = rng.standard_normal(ys.shape[1:])
    return jnp.asarray(last)


def _contributions(cell: Cell, p: Any, xs: Any, hs: Any, cot: Any, read: Fn) -> tuple[F64, F64, F64]:
    """Per-depth (``G_j``), read-out (``G_y``) and per-step parameter gradients by chained VJPs."""
    import jax

    T = xs.shape[0]
    init_vjp = jax.vjp(lambda q: _init_state(cell, q, hs.shape[1]), p)[1]
    cells = [jax.vjp(lambda q, h, t=t: cell.step(q, h, xs[t]), p, hs[t])[1] for t in range(T)]
    reads = [jax.vjp(read, p, hs[t + 1])[1](cot[t]) for t in range(T)]
    g_y: F64 = np.sum([_flat(r[0]) for r in reads], axis=0)
    depth = np.zeros((T, g_y.size))
    steps = np.stack([_flat(r[0]) for r in reads])
    for t in range(T):  # the error of y_t, walked down j = 0 .. t cell steps
        ct = reads[t][1]
        for j in range(t + 1):
            gp, ct = cells[t - j](ct)
            depth[j] += _flat(gp)
            if j == t:
                depth[j] += _flat(init_vjp(ct)[0])
    carry = reads[T - 1][1] * 0.0
    for t in reversed(range(T)):  # full BPTT: δ_t = read-out part + carry from step t+1
        gp, carry = cells[t](reads[t][1] + carry)
        steps[t] += _flat(gp)
    return depth, np.asarray(g_y, dtype=np.float64), steps


# ----------------------------------------------------------------------------- analyses


def _spans(jac: F64) -> F64:
    """``spans[k, t] = max_b ‖J_t ⋯ J_{k+1}‖₂`` for k ≤ t (1 on the diagonal), NaN below."""
    T, B, S, _ = jac.shape
    out = np.full((T, T), np.nan)
    for k in range(T):
        prod = np.broadcast_to(np.eye(S), (B, S, S))
        out[k, k] = 1.0
        for t in range(k + 1, T):
            prod = jac[t] @ prod
            out[k, t] = float(np.max(np.linalg.norm(prod, ord=2, axis=(1, 2))))
    return out


def _truncation(tr: _Trace, model: _Model, params: Any, x: Any) -> tuple[F64, str]:
    """``‖g_τ − g‖ / ‖g‖`` for τ = 1..T, from the layer's own BPTT(τ) or the JAX depth split."""
    T = tr.depth.shape[0]
    if model.hand_truncated is not None:
        dy = tr.dy.astype(np.asarray(x).dtype)
        full = _flat(model.hand_grads(params, x, dy)) if model.hand_grads else tr.grad
        scale = _norm(full)
        errs = [0.0 if scale == 0 else _norm(_flat(model.hand_truncated(params, x, dy, tau)) - full) / scale
                for tau in range(1, T + 1)]
        return np.asarray(errs), f"{model.name}(truncation=τ).bptt"
    partial = tr.readout_grad + np.cumsum(tr.depth, axis=0)
    scale = _norm(tr.grad)
    errs = [0.0 if scale == 0 else _norm(g - tr.grad) / scale for g in partial]
    return np.asarray(errs), "JAX: per-depth VJPs (= stop_gradient windows)"


def _clip(threshold: float, grad: F64, steps: F64) -> ClipReport:
    if not (math.isfinite(threshold) and threshold > 0):
        raise InvalidArgument(f"clip={threshold!r}: expected a finite threshold > 0.")
    before = _norm(grad)
    after = threshold if math.isfinite(before) and before > threshold else before
    step_norms = np.asarray([_norm(s) for s in steps])
    clipped = tuple(int(i) for i in np.flatnonzero(step_norms > threshold))
    return ClipReport(threshold=float(threshold), norm_before=before, norm_after=after,
                      step_norms=step_norms, clipped_steps=clipped)


def _input_scale(x: Any) -> float:
    """The root mean square of the inputs."""
    return _norm(x) / math.sqrt(max(np.size(x), 1))


def _min_truncation(errors: F64) -> int | None:
    """The least τ whose truncation error is within :data:`TRUNCATION_TOLERANCE`, if any."""
    below = np.flatnonzero(errors <= TRUNCATION_TOLERANCE)
    return int(below[0]) + 1 if below.size else None


# ----------------------------------------------------------------------------- through time


@dataclass(frozen=True, slots=True)
class _StepNorms:
    """The per-step ‖∂L/∂h_t‖ of the hand BPTT (when there is one) beside JAX's."""

    hand: F64  # (T,), empty without a hand BPTT
    autodiff: F64  # (T,)
    rel_err: F64  # (T,), empty without a hand BPTT
    rtol: float
    has_hand: bool

    @property
    def fitted(self) -> F64:
        """The norms the slope is fitted to: the hand ones when there are, else JAX's."""
        return self.hand if self.has_hand else self.autodiff


def _run_trace(model: _Model, params: Any, x: Any, *, dy: Any, loss: Fn | None, seed: int) -> _Trace:
    """The float64 JAX pass of the model's cell; a cell JAX cannot trace is an InvalidArgument."""
    if np.ndim(x) != 3:
        raise InvalidArgument(f"x has shape {np.shape(x)}: a recurrent model takes (T, B, D) inputs.")
    try:
        return _trace(model.cell, params, x, dy, loss, np.random.default_rng(seed),
                      jacobian=model.hand_jacobian is None)
    except InvalidArgument:
        raise
    except Exception as exc:  # the user's cell, read-out or loss does not trace under JAX
        raise InvalidArgument(
            f"{model.name}: JAX could not run the cell ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "write step/init/readout with xp = h.__array_namespace__() instead of numpy calls."
        ) from exc


def _step_norms(model: _Model, params: Any, x: Any, tr: _Trace, rtol: float | None) -> _StepNorms:
    """Hand (``model.hand_deltas`` or the cell's ``deltas``) against JAX's ∂L/∂h_t, step by step."""
    from gradcheck.tolerance import tolerance

    auto = tr.deltas[..., slice(0, model.cell.observed)]
    auto_norms = np.asarray([_norm(d) for d in auto])
    hand_fn = model.hand_deltas or model.cell.deltas
    if hand_fn is None:
        tol = float(rtol) if rtol is not None else tolerance(np.float64)
        return _StepNorms(hand=_empty(), autodiff=auto_norms, rel_err=_empty(), rtol=tol, has_hand=False)
    hand = np.asarray(hand_fn(params, x, tr.dy.astype(np.asarray(x).dtype)))
    if hand.shape[-1:] != auto.shape[-1:]:
        raise InvalidArgument(
            f"{model.name}: the hand deltas have shape {hand.shape}, the state {auto.shape}; a model "
            "whose deltas cover only the leading state columns says how many (observed_width(params) "
            "of a RecurrentLayer, Cell.observed)."
        )
    return _StepNorms(
        hand=np.asarray([_norm(d) for d in hand]),
        autodiff=auto_norms,
        rel_err=np.asarray([_rel(h, a) for h, a in zip(hand, auto, strict=True)]),
        rtol=float(rtol) if rtol is not None else tolerance(hand.dtype),
        has_hand=True,
    )


def _step_jacobians(model: _Model, params: Any, x: Any, tr: _Trace) -> tuple[F64, str]:
    """``J_t = ∂h_t/∂h_{t-1}`` (T, B, S, S) from the model's own Jacobian, else ``jax.jacfwd``."""
    if model.hand_jacobian is None:
        return tr.jacobians, "jax.jacfwd of the step"
    jac = np.stack([model.hand_jacobian(params, tr.states[t], np.asarray(x)[t]) for t in range(len(x))])
    return jac, f"{model.name}.recurrent_jacobian"


def _cell_eta(cell: Cell, params: Any) -> tuple[float, float, float]:
    """Pascanu's ``(σ_max(U), γ, η)`` of a cell that names its ``U`` and activation, else NaN."""
    if cell.recurrent is not None and cell.activation is not None:
        return pascanu_eta(params[cell.recurrent], cell.activation)
    return math.nan, math.nan, math.nan


def _mean_log(local: F64) -> float:
    """The mean of ``log σ_max(J_t)`` (−inf for a zero gain, NaN without steps)."""
    with np.errstate(divide="ignore"):
        return float(np.mean(np.log(local))) if local.size else math.nan


def _time_flow(model: _Model, params: Any, x: Any, *, dy: Any, loss: Fn | None, seed: int,
               clip: float | None, rtol: float | None, name: str | None) -> FlowResult:
    """The flow through time of a model reduced to a cell (see the module docstring)."""
    cell = model.cell
    tr = _run_trace(model, params, x, dy=dy, loss=loss, seed=seed)
    per_step = _step_norms(model, params, x, tr, rtol)
    jac, jac_source = _step_jacobians(model, params, x, tr)
    local = np.max(np.linalg.norm(jac, ord=2, axis=(2, 3)), axis=1)
    sigma, gamma, eta = _cell_eta(cell, params)
    slope, se, n = log_slope(per_step.fitted)
    sat = _saturation(tr.states[1:, :, slice(0, cell.observed)], cell.activation)
    regime, reasons = _classify(eta, slope, se, n, _mean_log(local), sat)
    terr, tsource = _truncation(tr, model, params, x)
    return FlowResult(
        name=name or model.name,
        axis="time",
        hand_norms=per_step.hand,
        autodiff_norms=per_step.autodiff,
        rel_err=per_step.rel_err,
        rtol=per_step.rtol,
        local_sigma=local,
        spans=_spans(jac),
        slope=slope,
        slope_stderr=se,
        sigma_max=sigma,
        gamma=gamma,
        eta=eta,
        saturation=sat,
        input_scale=_input_scale(x),
        regime=regime,
        reasons=reasons,
        truncation_errors=terr,
        min_truncation=_min_truncation(terr),
        clip=None if clip is None else _clip(clip, tr.grad, tr.steps),
        truncation_source=tsource,
        jacobian_source=jac_source,
        notes=() if per_step.has_hand else ("no hand BPTT: only the autodiff per-step norms",),
    )


# ----------------------------------------------------------------------------- through depth


def _autodiff_grads(stack: DepthStack, params: Any, x: F64, dy: Any) -> dict[str, F64]:
    """JAX's float64 parameter gradient of ``Σ dy ⊙ forward(params, x)``."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        p64 = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
        auto = jax.grad(lambda p: jnp.sum(stack.forward(p, jnp.asarray(x, jnp.float64)) * dy))(p64)
        return {k: np.asarray(v) for k, v in auto.items()}


def _autodiff_deltas(stack: DepthStack, params: Any, x: Any, y: Any, dy: Any, L: int) -> list[F64]:
    """JAX's ``∂L/∂net_i`` per sample, for layers ``i < L``: the gradient with respect to each
    bias ``b_i`` broadcast to one copy per sample (``x W + b`` then gives every sample its own
    bias, whose gradient is that sample's δ).  Empty when the stack's forward does not take such
    biases with the same output (it reshapes the bias, or is not JAX-traceable)."""
    import jax
    import jax.numpy as jnp

    try:
        with jax.enable_x64(True):
            B = x.shape[0]
            p64 = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
            wide = {f"b{i}": jnp.broadcast_to(p64[f"b{i}"], (B, *p64[f"b{i}"].shape)) for i in range(L)}
            x64, dy64 = jnp.asarray(x, jnp.float64), jnp.asarray(dy, jnp.float64)
            y_wide = np.asarray(stack.forward({**p64, **wide}, x64))
            if y_wide.shape != np.shape(y) or not np.allclose(y_wide, y, rtol=1e-6, atol=1e-12):
                return []
            grads = jax.grad(lambda w: jnp.sum(stack.forward({**p64, **w}, x64) * dy64))(wide)
            return [np.asarray(grads[f"b{i}"], dtype=np.float64) for i in range(L)]
    except Exception:  # not traceable, or no bias per layer: the hand norms stand alone
        return []


def _layer_rel_err(dparams: Any, deltas: Sequence[Any], auto: dict[str, F64], auto_deltas: list[F64]) -> F64:
    """Per layer, the worst relative error of its weight, bias and (when JAX has them) delta."""
    return np.asarray([max(_rel(dparams[f"W{i}"], auto[f"W{i}"]), _rel(dparams[f"b{i}"], auto[f"b{i}"]),
                           _rel(deltas[i], auto_deltas[i]) if auto_deltas else 0.0)
                       for i in range(len(deltas))])


def _depth_clip(threshold: float, dparams: Any, grad: F64, L: int) -> ClipReport:
    """Clipping of a deep stack: the norm of JAX's gradient, the hand ``[b_i, W_i]`` per layer.

    Unlike :func:`_clip` (through time), the threshold is not validated and an infinite norm is
    clipped; kept as it has always been.  (The layers' gradients have their own sizes, so they
    are a list: stacking them failed for every stack of unequal widths.)
    """
    steps = [np.concatenate([np.ravel(dparams[f"b{i}"]), np.ravel(dparams[f"W{i}"])]).astype(np.float64)
             for i in range(L)]
    before = _norm(grad)
    return ClipReport(
        threshold=float(threshold),
        norm_before=before,
        norm_after=float(threshold) if before > threshold else before,
        step_norms=np.asarray([_norm(s) for s in steps]),
        clipped_steps=tuple(int(i) for i in range(L) if _norm(steps[i]) > threshold),
    )


def _depth_flow(stack: DepthStack, params: Any, x: Any, *, dy: Any, seed: int, clip: float | None,
                rtol: float | None, name: str | None) -> FlowResult:
    """Per-layer norms of a deep stack (layer 0 at the input) from ``backward_with_deltas``."""
    from gradcheck.tolerance import tolerance

    x = np.asarray(x)
    y = np.asarray(stack.forward(params, x))
    if dy is None:
        dy = np.random.default_rng(seed).standard_normal(y.shape)
    dy = np.asarray(dy, dtype=x.dtype)
    dparams, _dx, deltas = stack.backward_with_deltas(params, x, dy)
    L = len(deltas)
    auto = _autodiff_grads(stack, params, x, dy)
    auto_deltas = _autodiff_deltas(stack, params, x, y, dy, L)
    bias = np.asarray([_norm(dparams[f"b{i}"]) for i in range(L)])
    slope, se, n = log_slope(bias)
    regime, reasons = _classify(math.nan, slope, se, n, math.nan, math.nan)
    return FlowResult(
        name=name or type(stack).__name__,  # the class name is only a label
        axis="depth",
        hand_norms=np.asarray([_norm(d) for d in deltas]),
        autodiff_norms=np.asarray([_norm(d) for d in auto_deltas]) if auto_deltas else _empty(),
        rel_err=_layer_rel_err(dparams, deltas, auto, auto_deltas),
        rtol=float(rtol) if rtol is not None else tolerance(dparams["W0"].dtype),
        local_sigma=_empty(),
        spans=np.zeros((0, 0)),
        slope=slope,
        slope_stderr=se,
        sigma_max=math.nan,
        gamma=math.nan,
        eta=math.nan,
        saturation=math.nan,
        input_scale=_input_scale(x),
        regime=regime,
        reasons=("speed of learning ‖∂L/∂b_i‖ per layer back from the output", *reasons),
        truncation_errors=_empty(),
        min_truncation=None,
        clip=None if clip is None else _depth_clip(clip, dparams, _flat(auto), L),
        weight_norms=np.asarray([_norm(dparams[f"W{i}"]) for i in range(L)]),
        bias_norms=bias,
        jacobian_source="",
        notes=(),
    )


# ----------------------------------------------------------------------------- public entry


def gradient_flow(
    model: Any,
    params: Any,
    x: Any,
    *,
    dy: Any = None,
    loss: Fn | None = None,
    seed: int = 0,
    clip: float | None = None,
    rtol: float | None = None,
    name: str | None = None,
) -> FlowResult:
    """Measure how gradients flow through time (a cell or recurrent layer) or depth (a stack).

    See the module docstring for the equations, the classification rules and the conventions.

    Args:
        model: a :class:`Cell`; a :class:`RecurrentLayer` (``bptt``, ``initial_state``,
            ``state_step``, ``readout``; e.g. a reference ``ElmanRNN``, ``LSTM`` or ``GRU``); or a
            :class:`DepthStack` (``forward(params, x)`` and ``backward_with_deltas(params, x,
            dy)`` with params ``W0, b0, ..., W{L-1}, b{L-1}``; e.g. ``reference.mlp.MLP``).
            Which one is decided by what the object can do, never by its class name; a model
            that is both a stack and a recurrent layer is analysed as a stack.
        params: the parameter pytree.
        x: inputs, (T, B, D) for recurrent models, (B, D_0) for stacks.
        dy: ``∂L/∂y`` (T, B, K) / (B, D_L); default: N(0, 1) from ``seed`` on the last output
            only (recurrent) or on every output (stacks).
        loss: ``loss(y) -> scalar`` (JAX-traceable); ``dy = ∂loss/∂y`` at the forward's ``y``.
            Recurrent models only; ignored when ``dy`` is given.
        seed: seeds ``np.random.default_rng`` for the default ``dy``.
        clip: a global-norm clipping threshold to report on (see :class:`ClipReport`).
        rtol: the tolerance of the hand/autodiff agreement (default: by the hand dtype).
        name: a label for the result (default: the model's class name).

    Returns:
        A :class:`FlowResult`.

    Raises:
        InvalidArgument: an unsupported model, a wrong ``x`` rank or ``dy`` shape, a bad ``clip``.

    Examples:
        >>> import numpy as np, reference.mlp
        >>> stack, params, x = reference.mlp.make_case(np.random.default_rng(0), sizes=(3, 4, 4, 2))
        >>> flow = gradient_flow(stack, params, x)
        >>> flow.axis, flow.bias_norms.shape, flow.agree
        ('depth', (3,), True)
    """
    if isinstance(model, Cell):
        m = _Model(cell=model, name="Cell")
    elif not _missing(model, DepthStack):
        return _depth_flow(model, params, x, dy=dy, seed=seed, clip=clip, rtol=rtol, name=name)
    elif not _missing(model, RecurrentLayer):
        m = _layer_model(model, params)
    else:
        raise _unsupported(model)
    return _time_flow(m, params, x, dy=dy, loss=loss, seed=seed, clip=clip, rtol=rtol, name=name)
