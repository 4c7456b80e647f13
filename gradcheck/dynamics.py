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

Through depth (``axis="depth"``) the stack is read layer by layer, ``net_{−1} = x``::

    net_i = a_i W_i + b_i          (B, D_{i+1})      a_0 = x,  a_{i+1} = f_i(net_i),  y = a_L
    J_i   = ∂net_i/∂net_{i−1}      per sample (J_0 = ∂net_0/∂x);  ‖J_i‖ ≤ σ_max(W_i)·γ_{i−1}
    η     = max_{i ≥ 1} σ_max(W_i)·γ_{i−1}   ⇒   ‖∂net_j/∂net_i‖ ≤ η^(j−i)

``local_sigma[i] = σ_max(J_i)`` and ``spans[i, j] = ‖∂net_j/∂net_i‖₂`` (largest over the batch),
as through time; ``sigma_max`` and ``gamma`` are those of the layer that attains η, the per-layer
``weight_sigma``, ``layer_gamma`` and ``layer_eta`` are all kept.  The layers come from the
stack's own :class:`LayerMaps` (``layer_forward`` and ``layer_activation``: any layer, e.g.
convolutions) or, for a stack with only ``forward``, from the dense structure above, each
``f_i'`` *read off JAX's per-sample deltas*: with one copy of each bias per sample, JAX gives
``δ_i = ∂⟨c, y⟩/∂net_i`` for a few fixed, generic cotangents ``c``, and ``δ_i = (δ_{i+1} W_{i+1}ᵀ)
⊙ f_i'(net_i)`` (``δ_{L−1} = c ⊙ g'``) gives ``f_i'`` by least squares over them — exactly for a stack
of such layers, which the residual checks (a unit that no cotangent reaches has no observable
``f'``: it is taken as 0, with a note); then ``J_i = W_iᵀ diag(f_{i−1}')``.  A stack that is not
read (not traceable, not ``a_i W_i + b_i``, its maps not reproducing ``forward``) gets no per-layer
Jacobians, and a note.  γ_i = sup|f_i'| is measured: the largest ``|f_i'(z)|`` over the grid
:data:`GAMMA_GRID` (with ``W_i = 0`` and ``b_i = z``, ``net_i = z`` whatever the input; exact for
tanh, the sigmoid, ReLU, leaky ReLU and the identity, whose sup lies at 0 or on z > 0); the
activations are taken to be elementwise.

Spectra (:mod:`gradcheck.spectra`): ``spectrum`` is that of the end-to-end Jacobian — ``∂y/∂x``
of a stack, ``∂h_{T−1}/∂h_{−1}`` through time — one block per sample (the union of the rows'
singular values), by Golub–Kahan–Lanczos on JAX JVP/VJP products, never a dense Jacobian above
:data:`gradcheck.spectra.AUTO_DENSE_ENTRIES` entries per block.  ``span_min[k, t]`` is the smallest
singular value of the span (smallest over the batch) beside ``spans``' largest, and
``span_spectra[k]`` the spectrum of the span ``∂h_{n−1}/∂h_k`` that ends at the last step (layer).
Spreads ``σ_max/σ_min`` and the moments ``mean_sq``/``var_sq`` of Pennington et al. (2017) say how
far from isometric the map is.  Through depth the spans are formed from dense per-sample local
Jacobians up to :data:`DENSE_JACOBIAN_ENTRIES` entries, and matrix-free beyond.

Per step (layer), beside the scalar ``saturation``: ``saturation_per_step`` (the fraction of
entries with ``|f'| < 0.1·γ``) and ``dead_per_step`` (the fraction of units with ``f' = 0`` on every
sample of the batch: dead ReLUs, or units saturated to round-off).

Classification (thresholds are module constants; only scale-free quantities enter — η, the
log-slope and its standard error, ``log σ_max(J_t)``, fractions — so rescaling ``dy``, or a mean
over the batch instead of a sum, never changes a regime):

1. η < 1: ``"vanishing"`` — the sufficient condition holds.
2. A norm that is exactly 0 at a step behind one that is not (the gradient did not get through):
   ``"vanishing"``.
3. Otherwise the measured rate decides, from the fitted slope when at least three steps have a
   positive norm, else from the mean of ``log σ_max(J_t)``: a rate above
   ``max(SLOPE_THRESHOLD, 2·stderr)`` is ``"exploding"``, one below minus that is
   ``"vanishing"``.
4. A rate inside the band is borderline: with η ≥ 1 and at least ``SATURATION_THRESHOLD`` of
   the units saturated (``f' < 0.1·γ``; large input scale) the saturation cuts the gain and it is
   ``"stable"``; with unsaturated units (small inputs) and a mean ``log σ_max(J_t)`` above the
   band it is ``"exploding"``; otherwise ``"stable"``.  σγ ≥ 1 alone never makes a case exploding.

Bug or model?  ``regime`` is fitted to the hand norms (when there are); ``model_regime`` (and
``model_slope``) to JAX's float64 norms, the model's own.  ``cause`` is ``"model"`` when the two
agree step by step within ``rtol`` (or there is no hand backward: the norms are JAX's), and
``"backward"`` when they part: ``parted_at`` is the first step (layer) where ``rel_err > rtol``,
counting in the direction the gradient flows (from the last step, or the output layer, back), and
the reasons say that the hand backward is wrong, not the model — a decay or growth that JAX's norms
do not show is the backward's, never the model's regime.  ``cause`` is ``""`` without an autodiff
reference.

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
    J. Pennington, S. Schoenholz, S. Ganguli, "Resurrecting the sigmoid in deep learning through
    dynamical isometry", NeurIPS 2017 (the spectrum of the input-output Jacobian).
    G. Golub, W. Kahan, J. SIAM Numer. Anal. B 2(2), 1965 (bidiagonalisation).

Examples:
    >>> import numpy as np, reference.rnn
    >>> layer, params, x = reference.rnn.make_case(np.random.default_rng(0), T=8, spectral_scale=0.5)
    >>> flow = gradient_flow(layer, params, x, clip=1.0)
    >>> flow.regime, flow.agree, round(flow.eta, 3), flow.cause, flow.model_regime
    ('vanishing', True, 0.5, 'model', 'vanishing')
    >>> bool(flow.spectrum.sigma_max <= 0.5 ** 8), flow.spectrum.method
    (True, 'dense')
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

from gradcheck.autodiff import jit
from gradcheck.errors import InvalidArgument
from gradcheck.result import json_number
from gradcheck.spectra import LinearMap, Spectrum, dense_spectrum, jax_linear_map, spectrum

__all__ = [
    "DENSE_JACOBIAN_ENTRIES",
    "FLOW_SCHEMA_VERSION",
    "GAMMA",
    "GAMMA_GRID",
    "SATURATION_THRESHOLD",
    "SLOPE_THRESHOLD",
    "SPECTRUM_K",
    "TRUNCATION_TOLERANCE",
    "Cell",
    "ClipReport",
    "DepthStack",
    "FlowResult",
    "LayerMaps",
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

#: Bumped whenever a field of :meth:`FlowResult.to_dict` changes meaning or disappears (keys are
#: only ever added under one version: the spectra, per-step fractions and cause of issue 16 are).
FLOW_SCHEMA_VERSION = "gradcheck.flow/1"
#: |log-slope| per step (≈ 5 % growth or decay per step) inside which the flow is borderline.
SLOPE_THRESHOLD = 0.05
#: The fraction of saturated units (f' < 0.1·γ) from which a borderline case is not exploding.
SATURATION_THRESHOLD = 0.5
#: The relative error of the truncated gradient that the smallest acceptable τ keeps under.
TRUNCATION_TOLERANCE = 0.01
#: γ = sup |f'| per activation (Pascanu et al. 2013, §3.1).
GAMMA: dict[str, float] = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0}
#: The pre-activations at which a stack's γ_i = sup|f_i'| is measured (step 0.1, 0 included);
#: a sup off this grid (softplus approaches 1 only as z → ∞) is underestimated.
GAMMA_GRID = np.linspace(-6.0, 6.0, 121)
#: How many of the largest and smallest singular values a :class:`~gradcheck.spectra.Spectrum` keeps.
SPECTRUM_K = 3
#: Through depth, the spans come from dense per-sample local Jacobians while each has at most this
#: many entries, and from matrix-free products beyond.
DENSE_JACOBIAN_ENTRIES = 1 << 16

Regime = Literal["vanishing", "stable", "exploding"]
Cause = Literal["model", "backward", ""]
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


@runtime_checkable
class LayerMaps(Protocol):
    """A deep stack that shows its layers: ``net_i = layer_forward(params, i, a_i)`` (the linear
    part and the bias: a dense or a convolutional layer), ``a_{i+1} = layer_activation(params, i,
    net_i)`` (elementwise), ``a_0 = x`` and ``y = a_L``; both JAX-traceable, batch first.

    Optional for a :class:`DepthStack`: without it the layers are read as ``a_i W_i + b_i`` with
    the activations' slopes read off JAX's per-sample deltas (the module docstring).
    """

    def layer_forward(self, params: Any, i: int, a: Any) -> Any:
        """``net_i`` (B, ...) from ``a_i`` (B, ...)."""
        ...

    def layer_activation(self, params: Any, i: int, net: Any) -> Any:
        """``a_{i+1} = f_i(net_i)``, the shape of ``net``."""
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
        autodiff_norms: the same from JAX in float64 (depth: by one bias per sample, see
            ``_autodiff_deltas``, or through the :class:`LayerMaps`; empty when neither works).
        rel_err: per step ``‖hand − autodiff‖ / max(‖hand‖, ‖autodiff‖)`` (depth: of the layer's
            weight and bias gradients); ``agree`` is ``max(rel_err) <= rtol``.
        rtol: the tolerance used (by the dtype of the hand gradient).
        local_sigma: σ_max(∂h_t/∂h_{t-1}), largest over the batch (T,); through depth
            σ_max(∂net_i/∂net_{i−1}) (L,), ``net_{−1} = x`` (empty when the layers are not read).
        spans: ``spans[k, t] = ‖∂h_t/∂h_k‖₂`` (largest over the batch) for k ≤ t, NaN below (T, T).
        slope, slope_stderr: fitted d log‖∂L/∂h_t‖ per step back (see the module docstring).
        sigma_max, gamma, eta: σ_max(U), sup|f'| and η = σ_max(U)·γ (NaN when unknown); through
            depth those of the layer attaining ``η = max_i σ_max(W_i)·γ_{i−1}``.
        saturation: the fraction of state entries with f' < 0.1·γ (NaN when unknown); through
            depth, of the hidden layers' entries.
        input_scale: the root mean square of the inputs.
        regime: ``"vanishing"``, ``"stable"`` or ``"exploding"``; ``reasons`` say why.
        truncation_errors: ‖g_τ − g‖/‖g‖ for τ = 1..T; ``min_truncation`` the least τ under 1 %.
        clip: the clipping report when a threshold was given.
        weight_norms, bias_norms: per layer ‖∂L/∂W_i‖, ‖∂L/∂b_i‖ (hand; depth only).
        notes: what else was noticed.
        spectrum: the end-to-end Jacobian's (``∂y/∂x``, or ``∂h_{T−1}/∂h_{−1}``), or ``None``.
        span_min: ``σ_min(∂h_t/∂h_k)`` (smallest over the batch) for k ≤ t, NaN below (n, n).
        span_spectra: the spectra of the spans ``∂h_{n−1}/∂h_k`` ending at the last step, k = 0..n−1.
        weight_sigma, layer_gamma, layer_eta: per layer σ_max(W_i) (of the linear part), the
            measured γ_i of f_i and ``σ_max(W_i)·γ_{i−1}`` (NaN at layer 0); depth only.
        dead_per_step: per step (layer) the fraction of units with f' = 0 on every sample.
        saturation_per_step: per step (layer) the fraction of entries with |f'| < 0.1·γ.
        cause: ``"model"``, ``"backward"`` (the hand norms part from JAX's) or ``""``.
        parted_at: the first step (layer) with ``rel_err > rtol``, going the way the gradient
            flows (from the end back), or ``None``.
        model_regime, model_slope, model_slope_stderr: the regime and slope of JAX's norms (the
            model's own), ``""`` / NaN without them.
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
    spectrum: Spectrum | None = None
    span_min: F64 = field(default_factory=lambda: np.zeros((0, 0)))
    span_spectra: tuple[Spectrum, ...] = ()
    weight_sigma: F64 = field(default_factory=lambda: _empty())
    layer_gamma: F64 = field(default_factory=lambda: _empty())
    layer_eta: F64 = field(default_factory=lambda: _empty())
    dead_per_step: F64 = field(default_factory=lambda: _empty())
    saturation_per_step: F64 = field(default_factory=lambda: _empty())
    cause: Cause = ""
    parted_at: int | None = None
    model_regime: Regime | Literal[""] = ""
    model_slope: float = math.nan
    model_slope_stderr: float = math.nan

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
            "spectrum": self.spectrum.to_dict() if self.spectrum is not None else None,
            "span_min": [_list(row) for row in self.span_min],
            "span_spectra": [sp.to_dict() for sp in self.span_spectra],
            "weight_sigma": _list(self.weight_sigma),
            "layer_gamma": _list(self.layer_gamma),
            "layer_eta": _list(self.layer_eta),
            "dead_per_step": _list(self.dead_per_step),
            "saturation_per_step": _list(self.saturation_per_step),
            "cause": self.cause,
            "parted_at": self.parted_at,
            "model_regime": self.model_regime,
            "model_slope": json_number(self.model_slope),
            "model_slope_stderr": json_number(self.model_slope_stderr),
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


def _flat_rows(tree: Any, n: int) -> F64:
    """:func:`_flat` of each of the ``n`` rows of a pytree batched on its leading axis, (n, P)."""
    import jax

    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return np.zeros((n, 0))
    return np.concatenate([np.asarray(leaf, dtype=np.float64).reshape(n, -1) for leaf in leaves], axis=1)


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


def _fprime_from_states(states: F64, activation: str | None) -> F64 | None:
    """``f'(a)`` read from ``h = f(a)``, relative to γ (1 at the steepest point); None if unknown."""
    if activation is None or states.size == 0:
        return None
    if activation == "tanh":
        return 1.0 - states**2
    if activation == "sigmoid":
        return 4.0 * states * (1.0 - states)
    return (states > 0).astype(np.float64)


def _saturation(states: F64, activation: str | None) -> float:
    """The fraction of ``h = f(a)`` entries with ``f'(a) < 0.1·γ`` (f' read from h)."""
    fp = _fprime_from_states(states, activation)
    return math.nan if fp is None else float(np.mean(fp < 0.1))


def _fractions(fprime: Sequence[F64], gamma: Sequence[float]) -> tuple[F64, F64]:
    """Per step (layer): the fraction of entries with |f'| < 0.1·γ, and of units with f' = 0 on
    every sample; ``fprime[i]`` is (B, units)."""
    sat = [float(np.mean(np.abs(fp) < 0.1 * g)) if math.isfinite(g) and fp.size else math.nan
           for fp, g in zip(fprime, gamma, strict=True)]
    dead = [float(np.mean(np.all(fp == 0, axis=0))) if fp.size else math.nan for fp in fprime]
    return np.asarray(sat, dtype=np.float64), np.asarray(dead, dtype=np.float64)


# ----------------------------------------------------------------------------- classification


def _vanished_at(norms: F64) -> int | None:
    """The last step whose norm is exactly 0 while a later one is not (the gradient stopped), if any."""
    v = np.asarray(norms, dtype=np.float64)
    alive = (np.isfinite(v) & (v > 0)).astype(np.int64)
    later = np.flip(np.cumsum(np.flip(alive))) - alive  # how many later steps carry gradient
    stopped = np.flatnonzero((v == 0) & (later > 0))
    return int(stopped[-1]) if stopped.size else None


@dataclass(frozen=True, slots=True)
class _Regime:
    """A classification: the regime, why, and the fit it came from."""

    regime: Regime
    reasons: tuple[str, ...]
    slope: float
    stderr: float


def _classify(norms: F64, eta: float, log_local: float, saturation: float, axis: Axis) -> _Regime:
    """The regime of the per-step norms by the rules of the module docstring.

    Only scale-free quantities decide: the log-slope (a factor on ``dy`` shifts every log-norm
    alike), its standard error, η, ``log σ_max(J_t)`` and fractions; never a norm's size.
    """
    slope, stderr, n = log_slope(norms)
    regime, reasons = _rule(eta, slope, stderr, n, log_local, saturation, _vanished_at(norms), axis)
    return _Regime(regime, reasons, slope, stderr)


def _rule(eta: float, slope: float, stderr: float, n: int, log_local: float, saturation: float,
          stopped: int | None, axis: Axis) -> tuple[Regime, tuple[str, ...]]:
    if eta < 1:
        return "vanishing", (f"η = {eta:.3g} < 1: Pascanu's sufficient condition for vanishing "
                             "holds, ‖∂h_t/∂h_k‖ ≤ η^(t−k)",)
    bound = f"η = {eta:.3g} ≥ 1 is only necessary for exploding" if math.isfinite(eta) else "no bound"
    if stopped is not None:
        where = f"step t={stopped}" if axis == "time" else f"layer i={stopped}"
        return "vanishing", (f"the gradient stops at {where}: its norm is exactly 0 there while later "
                             "ones are not", bound)
    reliable = n >= 3 and math.isfinite(slope)
    band = max(SLOPE_THRESHOLD, 2 * stderr) if reliable and math.isfinite(stderr) else SLOPE_THRESHOLD
    rate, what = (slope, "fitted log-slope") if reliable else (log_local, "mean log σ_max(J_t)")
    why = f"{what} {rate:+.3g} per step (band ±{band:.3g})"
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


@dataclass(frozen=True, slots=True)
class _Cause:
    """Bug or model: whom the per-step norms speak for (the module docstring)."""

    cause: Cause
    parted_at: int | None
    model: _Regime | None
    reasons: tuple[str, ...]


def _bug_or_model(rel_err: F64, rtol: float, has_hand: bool, hand: _Regime, model: _Regime | None,
                  axis: Axis) -> _Cause:
    """``cause``/``parted_at`` from the per-step rel_err, walked the way the gradient flows."""
    if model is None:
        return _Cause("", None, None, ())
    if not has_hand:
        return _Cause("model", None, model, ())
    unit, sym = ("step", "t") if axis == "time" else ("layer", "i")
    parted = np.flatnonzero(~(np.asarray(rel_err) <= rtol))  # NaN parts too
    if parted.size == 0:
        worst = float(np.max(rel_err)) if rel_err.size else 0.0
        return _Cause("model", None, model, (f"hand and JAX per-{unit} norms agree (max rel_err "
                                             f"{worst:.2g} ≤ rtol {rtol:.2g}): the regime is the model's",))
    at = int(parted[-1])  # the gradient flows from the last step (the output layer) back
    said = (f"the hand backward is wrong, not the model: its per-{unit} norms part from JAX's at "
            f"{unit} {sym}={at} (rel_err {float(rel_err[at]):.2g} > rtol {rtol:.2g}; the first {unit} "
            f"back from the {'end' if axis == 'time' else 'output'})")
    if hand.regime != model.regime:
        said += (f"; the hand norms look {_looks(hand)} but JAX's are {_looks(model)}: the model's "
                 f"regime is {model.regime}")
    else:
        said += f"; JAX's norms are {_looks(model)} too, and that is the model's regime"
    return _Cause("backward", at, model, (said,))


def _looks(fit: _Regime) -> str:
    """``"vanishing (slope −0.69 per step back)"``, the slope left out when there is none."""
    if not math.isfinite(fit.slope):
        return fit.regime
    return f"{fit.regime} (slope {fit.slope:+.3g} per step back)"


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
    """Run the cell in float64 under JAX and measure everything autodiff can give.

    The two JAX passes (the unrolled forward, then every gradient of it) are traced and run with
    numpy (:func:`_jax_run`), so a new model or shape compiles nothing."""
    import jax

    with jax.enable_x64(True):
        p = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float64), params)
        xs = np.asarray(x, dtype=np.float64)
        read = cell.readout or (lambda _p, h: h)
        hs, ys = _jax_run(lambda q, v: _unroll(cell, read, q, v, None), p, xs)
        cot = np.asarray(_cotangent(ys, dy, loss, rng), dtype=np.float64)
        out = _jax_run(lambda q, v, c: _gradients(cell, read, q, v, c, jacobian), p, xs, cot)
    T, B = xs.shape[0], xs.shape[1]
    jac = out["jacobians"] if jacobian else np.zeros((T * B, 0, 0))  # else the layer's own is used
    return _Trace(
        states=hs,
        dy=cot,
        deltas=out["deltas"],
        jacobians=jac.reshape(T, B, *jac.shape[1:]),
        grad=out["grad"],
        depth=out["depth"],
        readout_grad=out["readout"],
        steps=out["steps"],
    )


def _jax_run(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` (JAX code) traced once and run with numpy, or eagerly when it does not trace
    as a whole (:func:`gradcheck.interpret.function`); numpy leaves."""
    from gradcheck import interpret

    return interpret.function(fn)(*args)


def _unroll(cell: Cell, read: Fn, p: Any, xs: Any, eps: Any) -> tuple[Any, Any]:
    """The states ``h_{-1} .. h_{T-1}`` and the outputs ``y_0 .. y_{T-1}`` (``eps[t]`` added to
    ``h_t`` when given: the handle of ``∂L/∂h_t``)."""
    import jax.numpy as jnp

    h = _init_state(cell, p, xs.shape[1])
    hs, ys = [h], []
    for t in range(xs.shape[0]):
        h = cell.step(p, h, xs[t])
        if eps is not None:
            h = h + eps[t]
        hs.append(h)
        ys.append(read(p, h))
    return jnp.stack(hs), jnp.stack(ys)


def _gradients(cell: Cell, read: Fn, p: Any, xs: Any, cot: Any, jacobian: bool) -> dict[str, Any]:
    """Everything the flow reads from autodiff at the cotangent ``cot`` of the outputs."""
    import jax
    import jax.numpy as jnp

    T, B = xs.shape[0], xs.shape[1]
    hs, _ = _unroll(cell, read, p, xs, None)
    zeros = jnp.zeros((T, *hs.shape[1:]), dtype=jnp.float64)

    def lin(q: Any, eps: Any) -> Any:
        return jnp.sum(_unroll(cell, read, q, xs, eps)[1] * cot)

    g_p, g_eps = jax.grad(lin, argnums=(0, 1))(p, zeros)
    out = {"deltas": g_eps, "grad": _flat_jax(g_p)}
    if jacobian:
        def step_jacobian(h: Any, xt: Any) -> Any:
            return jax.jacfwd(lambda hh: cell.step(p, hh[None], xt[None])[0])(h)

        out["jacobians"] = jax.vmap(step_jacobian)(hs[:-1].reshape(T * B, -1), xs.reshape(T * B, -1))
    out["depth"], out["readout"], out["steps"] = _contributions(cell, p, xs, hs, cot, read)
    return out


def _flat_jax(tree: Any) -> Any:
    """:func:`_flat` in JAX (traceable): every leaf, in JAX's leaf order, as one vector."""
    import jax
    import jax.numpy as jnp

    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.zeros(0)
    return jnp.concatenate([jnp.ravel(leaf).astype(jnp.float64) for leaf in leaves])


def _flat_rows_jax(tree: Any, n: int) -> Any:
    """:func:`_flat_rows` in JAX (traceable), (n, P)."""
    import jax
    import jax.numpy as jnp

    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.zeros((n, 0))
    return jnp.concatenate([leaf.reshape(n, -1).astype(jnp.float64) for leaf in leaves], axis=1)


def _cotangent(ys: Any, dy: Any, loss: Fn | None, rng: np.random.Generator) -> Any:
    """``dy`` as given, ``∂loss/∂y`` by JAX, or by default N(0, 1) on the last output only."""
    import jax
    import jax.numpy as jnp

    if dy is not None:
        if np.shape(dy) != ys.shape:
            raise InvalidArgument(f"dy has shape {np.shape(dy)}, the outputs {tuple(ys.shape)}; pass ∂L/∂y.")
        return jnp.asarray(dy, dtype=jnp.float64)
    if loss is not None:
        return jax.grad(lambda y: jnp.real(jnp.asarray(loss(y))).reshape(()))(jnp.asarray(ys))
    last = np.zeros(ys.shape)
    last[-1] = rng.standard_normal(ys.shape[1:])
    return jnp.asarray(last)


def _contributions(cell: Cell, p: Any, xs: Any, hs: Any, cot: Any, read: Fn) -> tuple[Any, Any, Any]:
    """Per-depth (``G_j``), read-out (``G_y``) and per-step parameter gradients by chained VJPs
    (JAX arrays; traceable)."""
    import jax
    import jax.numpy as jnp

    T = xs.shape[0]
    init_vjp = jax.vjp(lambda q: _init_state(cell, q, hs.shape[1]), p)[1]
    cells = [jax.vjp(lambda q, h, t=t: cell.step(q, h, xs[t]), p, hs[t])[1] for t in range(T)]
    reads = [jax.vjp(read, p, hs[t + 1])[1](cot[t]) for t in range(T)]
    steps = [_flat_jax(r[0]) for r in reads]
    g_y = sum(steps[1:], steps[0])
    # The error of y_t walked down j = 0 .. t cell steps: at step k the errors of the outputs
    # t = k .. T-1 arrive together, at depths j = t - k, so one VJP of step k batched over them
    # (jax.vmap; the VJP is linear in its cotangent) replaces T - k single ones: T calls, not T².
    # Row t of the stack is source t; rows t < k have not started and stay 0 (the VJP is linear),
    # so row k is 0 until its error is added, and every call has one shape.
    first = jnp.asarray(reads[0][1])
    stack = jnp.zeros((T, *first.shape), dtype=first.dtype)
    rows = jnp.arange(T).reshape((T,) + (1,) * first.ndim)
    depth = jnp.zeros((T, g_y.size), dtype=jnp.float64)
    for k in reversed(range(T)):
        stack = stack + jnp.where(rows == k, 1.0, 0.0) * reads[k][1]
        gp, stack = jax.vmap(cells[k])(stack)
        depth = depth + jnp.pad(_flat_rows_jax(gp, T)[k:], ((0, k), (0, 0)))  # source k + j at depth j
    depth = depth + _flat_rows_jax(jax.vmap(init_vjp)(stack)[0], T)  # source t reaches the init at depth t
    carry = reads[T - 1][1] * 0.0
    for t in reversed(range(T)):  # full BPTT: δ_t = read-out part + carry from step t+1
        gp, carry = cells[t](reads[t][1] + carry)
        steps[t] = steps[t] + _flat_jax(gp)
    return depth, g_y, jnp.stack(steps)


# ----------------------------------------------------------------------------- analyses


@dataclass(frozen=True, slots=True, eq=False)
class _Spans:
    """The spans of a chain of per-sample local Jacobians (see :func:`_span_table`)."""

    sigma: F64  # (n, n): max over the batch of σ_max, NaN below the diagonal
    minimum: F64  # (n, n): min over the batch of σ_min
    ending: tuple[Spectrum, ...]  # the spectra of the spans k -> n-1


def _span_table(jacs: Sequence[F64]) -> _Spans:
    """``spans[k, t] = max_b σ_max(J_t ⋯ J_{k+1})`` and ``min_b σ_min`` of it for k ≤ t (1 on the
    diagonal, NaN below), from ``jacs[t]`` (B, m_t, m_{t−1}), the local Jacobian into step t."""
    n = len(jacs)
    top, low = np.full((n, n), np.nan), np.full((n, n), np.nan)
    ending: list[Spectrum] = []
    for k in range(n):
        B, width = jacs[k].shape[0], jacs[k].shape[1]
        prod: F64 = np.broadcast_to(np.eye(width), (B, width, width))
        top[k, k] = low[k, k] = 1.0
        for t in range(k + 1, n):
            prod = jacs[t] @ prod
            sv = np.linalg.svd(prod, compute_uv=False)  # (B, q), descending
            top[k, t], low[k, t] = float(np.max(sv[:, 0])), float(np.min(sv[:, -1]))
        ending.append(dense_spectrum(prod, k=SPECTRUM_K))
    return _Spans(top, low, tuple(ending))


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


def _time_fractions(states: F64, activation: str | None) -> tuple[F64, F64]:
    """Per step: the saturated fraction of ``h_t``'s entries and the fraction of dead units."""
    fp = _fprime_from_states(states, activation)
    if fp is None:
        return _empty(), _empty()
    return _fractions(list(fp), [1.0] * len(fp))  # f' is read relative to γ


def _time_spectrum(cell: Cell, params: Any, x: Any, h_init: F64, seed: int) -> Spectrum:
    """The spectrum of ``∂h_{T−1}/∂h_{−1}`` (one block per batch row) from JAX's JVP/VJP."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.float64), params)
        xs = jnp.asarray(x, dtype=jnp.float64)

        def unroll(h: Any) -> Any:
            for t in range(xs.shape[0]):
                h = cell.step(p, h, xs[t])
            return h

        op = jax_linear_map(unroll, h_init, batched=True)
    return spectrum(op, k=SPECTRUM_K, seed=seed)


def _time_flow(model: _Model, params: Any, x: Any, *, dy: Any, loss: Fn | None, seed: int,
               clip: float | None, rtol: float | None, name: str | None) -> FlowResult:
    """The flow through time of a model reduced to a cell (see the module docstring)."""
    cell = model.cell
    tr = _run_trace(model, params, x, dy=dy, loss=loss, seed=seed)
    per_step = _step_norms(model, params, x, tr, rtol)
    jac, jac_source = _step_jacobians(model, params, x, tr)
    local = np.max(np.linalg.norm(jac, ord=2, axis=(2, 3)), axis=1)
    sigma, gamma, eta = _cell_eta(cell, params)
    observed = tr.states[1:, :, slice(0, cell.observed)]
    sat = _saturation(observed, cell.activation)
    sat_steps, dead_steps = _time_fractions(observed, cell.activation)
    log_local = _mean_log(local)
    fit = _classify(per_step.fitted, eta, log_local, sat, "time")
    model_fit = _classify(per_step.autodiff, eta, log_local, sat, "time")
    verdict = _bug_or_model(per_step.rel_err, per_step.rtol, per_step.has_hand, fit, model_fit, "time")
    spans = _span_table(list(jac))
    terr, tsource = _truncation(tr, model, params, x)
    no_hand = () if per_step.has_hand else ("no hand BPTT: only the autodiff per-step norms",)
    return FlowResult(
        name=name or model.name,
        axis="time",
        hand_norms=per_step.hand,
        autodiff_norms=per_step.autodiff,
        rel_err=per_step.rel_err,
        rtol=per_step.rtol,
        local_sigma=local,
        spans=spans.sigma,
        slope=fit.slope,
        slope_stderr=fit.stderr,
        sigma_max=sigma,
        gamma=gamma,
        eta=eta,
        saturation=sat,
        input_scale=_input_scale(x),
        regime=fit.regime,
        reasons=fit.reasons + verdict.reasons,
        truncation_errors=terr,
        min_truncation=_min_truncation(terr),
        clip=None if clip is None else _clip(clip, tr.grad, tr.steps),
        truncation_source=tsource,
        jacobian_source=jac_source,
        notes=no_hand + (verdict.reasons if verdict.cause == "backward" else ()),
        spectrum=_time_spectrum(cell, params, x, tr.states[0], seed),
        span_min=spans.minimum,
        span_spectra=spans.ending,
        dead_per_step=dead_steps,
        saturation_per_step=sat_steps,
        **_verdict_fields(verdict),
    )


def _verdict_fields(verdict: _Cause) -> dict[str, Any]:
    """The FlowResult fields of a bug-or-model verdict."""
    model = verdict.model
    return {
        "cause": verdict.cause,
        "parted_at": verdict.parted_at,
        "model_regime": model.regime if model is not None else "",
        "model_slope": model.slope if model is not None else math.nan,
        "model_slope_stderr": model.stderr if model is not None else math.nan,
    }



# ----------------------------------------------------------------------------- through depth


def _autodiff_grads(stack: DepthStack, params: Any, x: F64, dy: Any) -> dict[str, F64]:
    """JAX's float64 parameter gradient of ``Σ dy ⊙ forward(params, x)``."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        p64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        auto = _jax_run(lambda p, xx, d: jax.grad(lambda q: jnp.sum(stack.forward(q, xx) * d))(p),
                        p64, np.asarray(x, dtype=np.float64), np.asarray(dy, dtype=np.float64))
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
            p64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
            wide = {f"b{i}": np.broadcast_to(p64[f"b{i}"], (B, *p64[f"b{i}"].shape)) for i in range(L)}
            x64, dy64 = np.asarray(x, np.float64), np.asarray(dy, np.float64)
            y_wide = _jax_run(lambda p, w, xx: stack.forward({**p, **w}, xx), p64, wide, x64)
            if y_wide.shape != np.shape(y) or not np.allclose(y_wide, y, rtol=1e-6, atol=1e-12):
                return []
            grads = _jax_run(lambda p, w, xx, d: jax.grad(
                lambda v: jnp.sum(stack.forward({**p, **v}, xx) * d))(w), p64, wide, x64, dy64)
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


@dataclass(frozen=True, slots=True, eq=False)
class _Layers:
    """A stack read layer by layer (the module docstring), per sample, in float64 numpy."""

    batch: int
    fprime: tuple[F64, ...]  # f_i'(net_i), (B, units)
    gammas: tuple[float, ...]  # γ_i measured on GAMMA_GRID
    locals: tuple[LinearMap, ...]  # J_i = ∂net_i/∂net_{i−1} (J_0 = ∂net_0/∂x), one block per sample
    weight_sigma: F64  # σ_max of each layer's linear part
    source: str
    deltas: Fn | None = None  # dy -> JAX's ∂L/∂net_i through the maps (LayerMaps only)


def _grid_rows(shape: tuple[int, ...]) -> F64:
    """:data:`GAMMA_GRID` as rows of one sample's ``shape``: row g is ``z_g`` everywhere."""
    return np.asarray(GAMMA_GRID).reshape(-1, *([1] * len(shape))) * np.ones((1, *shape))


def _gamma(slopes: Any) -> float:
    a = np.abs(np.asarray(slopes, dtype=np.float64))
    return float(np.nanmax(a)) if np.isfinite(a).any() else math.nan


def _reproduces(a: Any, y: Any) -> bool:
    """Whether ``a`` is ``y`` to round-off (same shape, 1e-9 relative to the largest |y|)."""
    a, y = np.asarray(a, dtype=np.float64), np.asarray(y, dtype=np.float64)
    scale = float(np.max(np.abs(y))) if y.size else 0.0
    return a.shape == y.shape and bool(np.allclose(a, y, rtol=1e-9, atol=1e-12 * scale))


def _dense_local(W: F64, fp: F64 | None, B: int) -> LinearMap:
    """``J = Wᵀ diag(f')`` per sample (row form: ``v ↦ (f' ⊙ v) W``); ``fp`` None for J_0 (= Wᵀ)."""

    def matvec(v: F64) -> F64:
        return np.asarray((v if fp is None else fp * v) @ W, dtype=np.float64)

    def rmatvec(u: F64) -> F64:
        back = u @ W.T
        return np.asarray(back if fp is None else fp * back, dtype=np.float64)

    return LinearMap((W.shape[1], W.shape[0]), matvec, rmatvec, B)


#: Fixed cotangents the activations' slopes of a dense stack are read with (least squares over them).
_PROBES = 4


def _wide_deltas(stack: DepthStack, L: int) -> Fn:
    """``(params, wide biases, x, C) -> {b_i: (K, N, D_{i+1})}``, traced per shape and run with
    numpy: JAX's per-sample ``δ_i = ∂⟨C_k, y⟩/∂net_i`` for K cotangents, each bias given one copy
    per row."""
    import jax
    import jax.numpy as jnp

    from gradcheck import interpret

    def deltas(p: Any, wide: dict[str, Any], x: Any, C: Any) -> Any:
        def one(c: Any) -> Any:
            return jax.grad(lambda w: jnp.sum(stack.forward({**p, **w}, x) * c))(wide)

        return jax.vmap(one)(C)

    return interpret.function(deltas)


def _slopes_from_deltas(D: dict[str, F64], C: F64, W: list[F64], L: int) -> tuple[list[F64], float]:
    """``f_i'`` per row by least squares over the cotangents of ``δ_i = g_i ⊙ f_i'``, with
    ``g_i = δ_{i+1} W_{i+1}ᵀ`` (``g_{L−1} = C``); NaN where no cotangent reaches the unit; and the
    worst relative residual (0 for a stack of ``a W + b`` layers with elementwise activations)."""
    fps, worst = [], 0.0
    for i in range(L):
        d = np.asarray(D[f"b{i}"], dtype=np.float64)  # (K, N, D_{i+1})
        g = C.reshape(d.shape) if i == L - 1 else np.asarray(D[f"b{i + 1}"]) @ W[i + 1].T
        den = np.sum(g * g, axis=0)
        fp = np.where(den > 0, np.sum(d * g, axis=0) / np.where(den > 0, den, 1.0), np.nan)
        resid = d - g * np.nan_to_num(fp)
        scale = float(np.sqrt(np.sum(d * d)))
        worst = max(worst, float(np.sqrt(np.sum(resid * resid))) / scale if scale > 0 else 0.0)
        fps.append(fp)
    return fps, worst


def _read_dense(stack: DepthStack, params: Any, x: F64, L: int) -> tuple[_Layers, tuple[str, ...]]:
    """The layers of a stack with only ``forward``, ``net_i = a_i W_i + b_i``: each ``f_i'`` read off
    JAX's per-sample deltas (at the data, and on :data:`GAMMA_GRID` with ``W_i = 0, b_i = z``)."""
    import jax

    rng = np.random.default_rng(0)  # fixed: what is read never depends on dy or the seed
    W = [np.asarray(params[f"W{i}"], dtype=np.float64) for i in range(L)]
    with jax.enable_x64(True):
        p64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        deltas = _wide_deltas(stack, L)

        def read(p: dict[str, Any], biases: list[Any], xx: Any) -> tuple[list[F64], float]:
            wide = {f"b{i}": np.asarray(b, dtype=np.float64) for i, b in enumerate(biases)}
            xx = np.asarray(xx, dtype=np.float64)
            shape = jax.eval_shape(lambda q, w, v: stack.forward({**q, **w}, v), p, wide, xx).shape
            C = rng.standard_normal((_PROBES, *shape))
            return _slopes_from_deltas(deltas(p, wide, xx, C), C, W, L)

        B, G = x.shape[0], GAMMA_GRID.size
        b = [np.asarray(params[f"b{i}"], dtype=np.float64) for i in range(L)]
        wide = {f"b{i}": np.broadcast_to(b[i], (B, *b[i].shape)) for i in range(L)}
        y_wide = _jax_run(lambda p, w, xx: stack.forward({**p, **w}, xx), p64, wide,
                          np.asarray(x, dtype=np.float64))
        y = np.asarray(stack.forward(params, x))
        if not _reproduces(y_wide, y):
            raise ValueError("its forward does not take one bias per sample (x W + b)")
        fps, worst = read(p64, [np.broadcast_to(bi, (B, *bi.shape)) for bi in b], x)
        gammas = []
        for i in range(L):  # W_i = 0 and b_i = z: net_i = z on every row of the grid
            grid = [_grid_rows(b[j].shape) if j == i else np.broadcast_to(b[j], (G, *b[j].shape))
                    for j in range(L)]
            q = {**p64, f"W{i}": np.zeros_like(p64[f"W{i}"])}
            gammas.append(_gamma(read(q, grid, np.zeros((G, *x.shape[1:])))[0][i]))
    if worst > 1e-8:
        raise ValueError(f"its layers are not a_i W_i + b_i with elementwise activations "
                         f"(residual {worst:.2g})")
    unseen = [(i, int(np.sum(np.isnan(fp)))) for i, fp in enumerate(fps) if np.isnan(fp).any()]
    notes = tuple(f"layer i={i}: {n} unit values pass no gradient to the output, so f' there cannot be read "
                  "from the forward; taken as 0" for i, n in unseen)
    fps = [np.nan_to_num(fp).reshape(B, -1) for fp in fps]
    locals_ = (_dense_local(W[0], None, B), *(_dense_local(W[i], fps[i - 1], B) for i in range(1, L)))
    layers = _Layers(batch=B, fprime=tuple(fps), gammas=tuple(gammas), locals=locals_,
                     weight_sigma=np.asarray([np.linalg.norm(w, ord=2) for w in W], dtype=np.float64),
                     source="a_i W_i + b_i per layer, f_i' read off JAX's per-sample deltas")
    return layers, notes


def _read_maps(stack: Any, params: Any, x: F64, L: int, seed: int) -> tuple[_Layers, tuple[str, ...]]:
    """The layers of a stack with :class:`LayerMaps`, by JAX on its own maps."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        p64 = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
        x64 = jnp.asarray(x, dtype=jnp.float64)

        def chain(eps: list[Any]) -> tuple[list[Any], Any]:
            nets, a = [], x64
            for i in range(L):
                nets.append(stack.layer_forward(p64, i, a) + eps[i])
                a = stack.layer_activation(p64, i, nets[-1])
            return nets, a

        nets, y_maps = jit(chain)([0.0] * L)
        y = stack.forward(p64, x64)
        if not _reproduces(y_maps, y):
            raise ValueError("layer_forward and layer_activation do not reproduce forward(params, x)")

        def slopes(ns: list[Any]) -> list[Any]:
            return [jax.jvp(lambda n, i=i: stack.layer_activation(p64, i, n), (v,), (jnp.ones_like(v),))[1]
                    for i, v in enumerate(ns)]

        compiled = jit(slopes)
        fps = tuple(np.asarray(f, dtype=np.float64).reshape(x.shape[0], -1) for f in compiled(nets))
        gammas = tuple(_gamma(s) for s in compiled([jnp.asarray(_grid_rows(n.shape[1:])) for n in nets]))
        ins = [x64, *(stack.layer_activation(p64, i, n) for i, n in enumerate(nets[:-1]))]
        into = [(lambda a, i=i: stack.layer_forward(p64, i, a)) if i == 0 else
                (lambda n, i=i: stack.layer_forward(p64, i, stack.layer_activation(p64, i - 1, n)))
                for i in range(L)]
        locals_ = tuple(jax_linear_map(into[i], ins[0] if i == 0 else nets[i - 1], batched=True)
                        for i in range(L))
        sigmas = np.asarray([_linear_sigma(stack, p64, i, ins[i][:1], seed) for i in range(L)],
                            dtype=np.float64)

    def deltas(dy: Any) -> list[F64]:
        with jax.enable_x64(True):
            dy64 = jnp.asarray(dy, dtype=jnp.float64)
            g = jax.grad(lambda e: jnp.sum(chain(e)[1] * dy64))([jnp.zeros_like(n) for n in nets])
            return [np.asarray(v, dtype=np.float64) for v in g]

    layers = _Layers(batch=int(x.shape[0]), fprime=fps, gammas=gammas, locals=locals_, weight_sigma=sigmas,
                     source="layer_forward ∘ layer_activation by JAX JVP/VJP", deltas=deltas)
    return layers, ()


def _linear_sigma(stack: Any, p64: dict[str, Any], i: int, a: Any, seed: int) -> float:
    """σ_max of layer i's linear part: ``layer_forward`` is affine, its Jacobian anywhere is that part."""
    def f(v: Any) -> Any:
        return stack.layer_forward(p64, i, v)

    return spectrum(jax_linear_map(f, a, batched=True), k=1, seed=seed).sigma_max


def _read_layers(stack: DepthStack, params: Any, x: F64, L: int,
                 seed: int) -> tuple[_Layers | None, tuple[str, ...]]:
    """The stack's layers and notes, or ``(None, (why,))`` when they cannot be read."""
    try:
        if isinstance(stack, LayerMaps):
            return _read_maps(stack, params, x, L, seed)
        return _read_dense(stack, params, x, L)
    except Exception as exc:  # not traceable, params not W{i}/b{i}, not a_i W_i + b_i, ...
        said = str(exc).splitlines()[0] if str(exc) else ""
        return None, (f"the stack could not be read layer by layer ({type(exc).__name__}: {said}): no "
                      "per-layer Jacobians; a stack of other layers can give layer_forward and "
                      "layer_activation (the LayerMaps protocol)",)


def _materialise(op: LinearMap) -> F64:
    """The blocks (B, m, n) of a small map, from ``n`` products."""
    m, n = op.shape
    cols = [np.asarray(op.matvec(np.tile(e, (op.batch, 1))), dtype=np.float64) for e in np.eye(n)]
    return np.stack(cols, axis=-1).reshape(op.batch, m, n)


def _compose(ops: Sequence[LinearMap]) -> LinearMap:
    """``ops[-1] ∘ … ∘ ops[0]`` (matrix-free)."""
    def matvec(v: F64) -> F64:
        for op in ops:
            v = np.asarray(op.matvec(v), dtype=np.float64)
        return v

    def rmatvec(u: F64) -> F64:
        for op in reversed(ops):
            u = np.asarray(op.rmatvec(u), dtype=np.float64)
        return u

    return LinearMap((ops[-1].shape[0], ops[0].shape[1]), matvec, rmatvec, max(op.batch for op in ops))


def _matrix_free_spans(layers: _Layers, seed: int) -> tuple[F64, _Spans]:
    """``local_sigma`` and the spans by Golub–Kahan on the composed local maps."""
    ops = layers.locals
    L = len(ops)
    top, low = np.full((L, L), np.nan), np.full((L, L), np.nan)
    ending: list[Spectrum] = []
    local = [spectrum(ops[0], k=1, seed=seed).sigma_max]
    for k in range(L):
        top[k, k] = low[k, k] = 1.0
        for t in range(k + 1, L):
            sp = spectrum(_compose(ops[k + 1 : t + 1]), k=SPECTRUM_K if t == L - 1 else 1, seed=seed)
            top[k, t], low[k, t] = sp.sigma_max, sp.sigma_min
            ending += [sp] if t == L - 1 else []
            local += [sp.sigma_max] if t == k + 1 else []
    width, B = ops[-1].shape[0], layers.batch
    ones = np.ones(min(SPECTRUM_K, width * B))
    ending.append(Spectrum(top=ones, bottom=ones.copy(), spread=1.0, mean_sq=1.0, var_sq=0.0, method="dense",
                           n_products=0, shape=(width, width), batch=B))
    return np.asarray(local, dtype=np.float64), _Spans(top, low, tuple(ending))


@dataclass(frozen=True, slots=True, eq=False)
class _Geometry:
    """What the layers say about a stack: local Jacobians, spans, bounds, fractions."""

    local_sigma: F64
    spans: _Spans | None
    weight_sigma: F64
    layer_gamma: F64
    layer_eta: F64
    sigma_max: float
    gamma: float
    eta: float
    saturation: float
    sat_layers: F64
    dead_layers: F64
    source: str
    layers: _Layers | None
    notes: tuple[str, ...]

    @property
    def log_local(self) -> float:
        return _mean_log(self.local_sigma[1:])


def _no_geometry(notes: tuple[str, ...]) -> _Geometry:
    nan = math.nan
    return _Geometry(local_sigma=_empty(), spans=None, weight_sigma=_empty(), layer_gamma=_empty(),
                     layer_eta=_empty(), sigma_max=nan, gamma=nan, eta=nan, saturation=nan,
                     sat_layers=_empty(), dead_layers=_empty(), source="", layers=None, notes=notes)


def _depth_geometry(stack: DepthStack, params: Any, x: F64, L: int, seed: int) -> _Geometry:
    """Local Jacobians, spans, σ_max(W_i), γ_i, η, saturation and dead units of a stack."""
    layers, notes = _read_layers(stack, params, x, L, seed)
    if layers is None:
        return _no_geometry(notes)
    if all(op.shape[0] * op.shape[1] <= DENSE_JACOBIAN_ENTRIES for op in layers.locals):
        jacs = [_materialise(op) for op in layers.locals]
        local = np.asarray([float(np.max(np.linalg.norm(j, ord=2, axis=(1, 2)))) for j in jacs])
        spans, source = _span_table(jacs), "dense " + layers.source
    else:
        local, spans = _matrix_free_spans(layers, seed)
        source = "matrix-free " + layers.source
    gamma = np.asarray(layers.gammas, dtype=np.float64)
    layer_eta = np.concatenate([[math.nan], layers.weight_sigma[1:] * gamma[:-1]])
    sat_layers, dead_layers = _fractions(layers.fprime, layers.gammas)
    hidden = [np.abs(fp) < 0.1 * g for fp, g in zip(layers.fprime[:-1], layers.gammas[:-1], strict=True)
              if math.isfinite(g)]
    saturation = float(np.mean(np.concatenate([h.ravel() for h in hidden]))) if hidden else math.nan
    best = int(np.nanargmax(layer_eta)) if np.isfinite(layer_eta).any() else 0
    return _Geometry(
        local_sigma=local, spans=spans, weight_sigma=layers.weight_sigma, layer_gamma=gamma,
        layer_eta=layer_eta,
        sigma_max=float(layers.weight_sigma[best]) if best else math.nan,
        gamma=float(gamma[best - 1]) if best else math.nan,
        eta=float(layer_eta[best]) if best else math.nan,
        saturation=saturation, sat_layers=sat_layers, dead_layers=dead_layers, source=source,
        layers=layers, notes=notes,
    )


def _stack_spectrum(stack: DepthStack, params: Any, x: F64, seed: int) -> Spectrum | None:
    """The spectrum of ``∂y/∂x`` (one block per sample) from JAX's JVP/VJP of the forward."""
    import jax
    import jax.numpy as jnp

    try:
        with jax.enable_x64(True):
            p64 = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
            x64 = jnp.asarray(x, dtype=jnp.float64)
            op = jax_linear_map(lambda xx: stack.forward(p64, xx), x64, batched=True)
        return spectrum(op, k=SPECTRUM_K, seed=seed)
    except Exception:  # not traceable: the rest of the flow stands without it
        return None


def _depth_flow(stack: DepthStack, params: Any, x: Any, *, dy: Any, seed: int, clip: float | None,
                rtol: float | None, name: str | None) -> FlowResult:
    """Per-layer norms, Jacobians and spectra of a deep stack (layer 0 at the input)."""
    from gradcheck.tolerance import tolerance

    x = np.asarray(x)
    y = np.asarray(stack.forward(params, x))
    if dy is None:
        dy = np.random.default_rng(seed).standard_normal(y.shape)
    dy = np.asarray(dy, dtype=x.dtype)
    dparams, _dx, deltas = stack.backward_with_deltas(params, x, dy)
    L = len(deltas)
    auto = _autodiff_grads(stack, params, x, dy)
    geo = _depth_geometry(stack, params, x, L, seed)
    auto_deltas = _autodiff_deltas(stack, params, x, y, dy, L)
    if not auto_deltas and geo.layers is not None and geo.layers.deltas is not None:
        auto_deltas = geo.layers.deltas(dy)
    bias = np.asarray([_norm(dparams[f"b{i}"]) for i in range(L)])
    rel_err = _layer_rel_err(dparams, deltas, auto, auto_deltas)
    tol = float(rtol) if rtol is not None else tolerance(dparams["W0"].dtype)
    fit = _classify(bias, geo.eta, geo.log_local, geo.saturation, "depth")
    model_fit = _classify(np.asarray([_norm(auto[f"b{i}"]) for i in range(L)]), geo.eta, geo.log_local,
                          geo.saturation, "depth")
    verdict = _bug_or_model(rel_err, tol, True, fit, model_fit, "depth")
    spans = geo.spans
    return FlowResult(
        name=name or type(stack).__name__,  # the class name is only a label
        axis="depth",
        hand_norms=np.asarray([_norm(d) for d in deltas]),
        autodiff_norms=np.asarray([_norm(d) for d in auto_deltas]) if auto_deltas else _empty(),
        rel_err=rel_err,
        rtol=tol,
        local_sigma=geo.local_sigma,
        spans=spans.sigma if spans is not None else np.zeros((0, 0)),
        slope=fit.slope,
        slope_stderr=fit.stderr,
        sigma_max=geo.sigma_max,
        gamma=geo.gamma,
        eta=geo.eta,
        saturation=geo.saturation,
        input_scale=_input_scale(x),
        regime=fit.regime,
        reasons=("speed of learning ‖∂L/∂b_i‖ per layer back from the output", *fit.reasons,
                 *verdict.reasons),
        truncation_errors=_empty(),
        min_truncation=None,
        clip=None if clip is None else _depth_clip(clip, dparams, _flat(auto), L),
        weight_norms=np.asarray([_norm(dparams[f"W{i}"]) for i in range(L)]),
        bias_norms=bias,
        jacobian_source=geo.source,
        notes=geo.notes + (verdict.reasons if verdict.cause == "backward" else ()),
        spectrum=_stack_spectrum(stack, params, x, seed),
        span_min=spans.minimum if spans is not None else np.zeros((0, 0)),
        span_spectra=spans.ending if spans is not None else (),
        weight_sigma=geo.weight_sigma,
        layer_gamma=geo.layer_gamma,
        layer_eta=geo.layer_eta,
        dead_per_step=geo.dead_layers,
        saturation_per_step=geo.sat_layers,
        **_verdict_fields(verdict),
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
            dy)`` with params ``W0, b0, ..., W{L-1}, b{L-1}``; e.g. ``reference.mlp.MLP``), whose
            layers are read as ``a_i W_i + b_i`` unless it has :class:`LayerMaps` (any layers, e.g.
            convolutions).
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
