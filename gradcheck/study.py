"""The gradient-flow study: vanishing and exploding gradients, model by model, against Pascanu's bound.

:func:`flow_study` runs :func:`gradcheck.gradient_flow` on a fixed zoo of models (issue 5) and
collects one row per model:

=========================================  ================================================
tanh and sigmoid Elman RNNs                ``reference.rnn.make_case(spectral_scale=σ)``,
                                           σ = σ_max(U) ∈ {0.5, 0.9, 1.0, 1.5, 3.0}
identity-initialised ReLU Elman RNNs       ``U = s·I``, s ∈ {1.0, 1.1} (Le, Jaitly & Hinton
                                           2015), with non-negative drive (below)
an LSTM and a GRU                          ``reference.lstm.make_case`` / ``reference.gru``
sigmoid MLPs of depth 2, 3 and 4           ``depth`` sigmoid hidden layers of width 16 and
                                           an identity output layer: L = depth + 1 layers
tanh and ReLU MLPs of depth 4 and 8,       the same shape with every ``W_i`` drawn at the
Gaussian and orthogonal initialisation     critical scale κ (1 for tanh, √2 for ReLU, 1 into
                                           the output): ``N(0, κ²/D_in)`` or ``κ·Q`` with
                                           ``Q`` (semi-)orthogonal (Haar), biases 0
=========================================  ================================================

Every model is drawn from ``np.random.default_rng(seed)`` afresh, so the Elman RNNs of one
activation share the direction of ``U`` and differ only in its scale.

Conventions (those of :mod:`gradcheck.dynamics`).  Recurrent models run ``T`` steps on a batch of
``B`` sequences, ``h_t = f(x_t V + h_{t−1} U + b)`` for the Elman RNN; the loss is
``L = ⟨dy, y_{T−1}⟩`` with ``dy ~ N(0, 1)`` on the **last** output only (Pascanu et al.'s
``∂E_T/∂h_k``), so that::

    ∂L/∂h_t = J_{t+1}ᵀ ⋯ J_{T−1}ᵀ ∂L/∂h_{T−1}        J_t = ∂h_t/∂h_{t−1},  ‖J_t‖ ≤ σ_max(U)·γ = η
    ‖∂L/∂h_t‖ ≤ η^(T−1−t) ‖∂L/∂h_{T−1}‖               (γ = sup|f'|: 1 tanh / ReLU, ¼ sigmoid)

Per row:

* ``slope ± stderr``: the least-squares slope of ``log‖∂L/∂h_t‖`` per step **back** from the end
  (:func:`gradcheck.dynamics.log_slope`), fitted to the hand BPTT norms.  The bound above says
  the norms lie under a line of slope ``log η``; a fitted slope under ``log η`` is what it allows
  (it bounds every point, not the fit, so a slope a little above ``log η`` is not a contradiction
  on its own; ``bound_ratio`` is the pointwise check).
* ``bound_ratio``: ``max_{k<t} ‖∂h_t/∂h_k‖₂ / η^(t−k)`` over the measured spans (Elman RNNs;
  ≤ 1 up to rounding is Pascanu's bound).
* ``regime``: the classification of :mod:`gradcheck.dynamics` (η < 1 is vanishing, else the
  fitted rate against the band ±``max(SLOPE_THRESHOLD, 2·stderr)``, with saturated units cutting
  a borderline case to stable).
* ``agree``: the hand BPTT and the JAX float64 per-step gradients agree within the tolerance.
* ``min_truncation``: the smallest τ whose truncated BPTT(τ) gradient is within
  ``TRUNCATION_TOLERANCE`` (1 %) of the full one; ``truncation_errors`` of the flow is the
  truncation-bias curve ``‖g_τ − g‖ / ‖g‖`` for τ = 1..T.

MLPs (``axis="depth"``): one layer plays the part of one step; the slope is that of
``log‖∂L/∂b_i‖`` per layer back from the output (Nielsen's speed of learning), and η is the
geometric mean of ``σ_max(W_i)·γ`` over the layers ``i = 1 .. L−1`` that the error crosses
(``‖δ_{i−1}‖ ≤ σ_max(W_i)·γ‖δ_i‖``); ``sigma_max`` is the geometric mean of those ``σ_max(W_i)``.
Both come from the flow's own per-layer Jacobians (``flow.weight_sigma``, ``flow.layer_eta``, which
also hold every layer's value): the geometric mean is the per-layer rate that a fitted per-layer
slope is compared with, the product of the η_i bounds the whole stack.
LSTM and GRU have no such bound: σ_max, γ and η are NaN ("n/a").

Why Gaussian and orthogonal stacks: the whole singular-value spectrum of the input–output Jacobian
decides how a deep network trains, not only its norm (Saxe, McClelland & Ganguli 2014; Pennington,
Schoenholz & Ganguli 2017).  An orthogonal tanh stack near its critical scale keeps the singular
values of ``∂y/∂x`` together (towards dynamical isometry), a Gaussian one spreads them out with
depth, and a ReLU stack cannot have isometry with either initialisation (its derivative is 0 or
1: dead units project directions out).  ``spread`` = σ_max/σ_min of ``∂y/∂x`` shows it.

Why the ReLU RNNs are identity-initialised: a random ``U`` rescaled to ``σ_max(U) = σ`` has a
spectral radius near ``σ/2`` (a Gaussian matrix's largest singular value is about twice its
largest eigenvalue modulus), so even σ = 1.5 vanishes; with ``U = s·I``, ``V``, ``b``, ``h_{-1}``
and ``x`` non-negative (and ``b ≥ 0.1``) every unit stays active, ``J_t = U`` exactly and the
norms grow by exactly ``s`` per step back: slope ``log s``, on the bound's line.

JSON: :meth:`Study.to_dict` (schema :data:`STUDY_SCHEMA_VERSION`) is strict JSON — NaN and ±inf
are written as the strings ``"nan"``, ``"inf"``, ``"-inf"`` as in :meth:`FlowResult.to_dict`.

References:
    R. Pascanu, T. Mikolov, Y. Bengio, "On the difficulty of training recurrent neural
    networks", ICML 2013, §3.1.
    Q. V. Le, N. Jaitly, G. E. Hinton, "A simple way to initialize recurrent networks of
    rectified linear units", arXiv:1504.00941 (2015).
    M. Nielsen, "Neural Networks and Deep Learning", ch. 5 (2015).
    A. M. Saxe, J. L. McClelland, S. Ganguli, "Exact solutions to the nonlinear dynamics of
    learning in deep linear neural networks", ICLR 2014.
    J. Pennington, S. S. Schoenholz, S. Ganguli, "Resurrecting the sigmoid in deep learning
    through dynamical isometry", NeurIPS 2017.

Examples:
    >>> mlps = [c for c in STUDY_CONFIGS if c.kind == "mlp" and c.init is None]
    >>> study = flow_study(configs=mlps)
    >>> [(row.label, row.regime, row.agree) for row in study.rows]  # doctest: +NORMALIZE_WHITESPACE
    [('mlp/sigmoid depth 2', 'vanishing', True), ('mlp/sigmoid depth 3', 'vanishing', True),
     ('mlp/sigmoid depth 4', 'vanishing', True)]
    >>> all(row.slope < min(row.log_eta, 0) for row in study.rows)
    True
    >>> study.to_dict()["schema"]
    'gradcheck.study/1'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from gradcheck.dynamics import (
    GAMMA,
    SLOPE_THRESHOLD,
    TRUNCATION_TOLERANCE,
    FlowResult,
    Regime,
    gradient_flow,
    pascanu_eta,
)
from gradcheck.errors import InvalidArgument
from gradcheck.practice import PracticeVerdicts, hand_layer_gradients, practice_verdicts
from gradcheck.result import json_number

__all__ = [
    "STUDY_CONFIGS",
    "STUDY_SCHEMA_VERSION",
    "Study",
    "StudyConfig",
    "StudyRow",
    "flow_study",
]

#: Bumped whenever a field of :meth:`Study.to_dict` changes meaning or disappears.
STUDY_SCHEMA_VERSION = "gradcheck.study/1"

Kind = Literal["rnn", "lstm", "gru", "mlp"]
_KINDS = ("rnn", "lstm", "gru", "mlp")
_MLP_WIDTH = 16  # hidden width of the study's MLPs
_MLP_INPUTS = 8  # D_0
_MLP_OUTPUTS = 4  # D_L
_MLP_BATCH = 8
_INITS = ("gaussian", "orthogonal")
#: The critical weight scale κ of a layer into each activation (Var(W) = κ²/D_in; orthogonal: κ·Q).
_CRITICAL_GAIN = {"tanh": 1.0, "relu": math.sqrt(2.0), "sigmoid": 4.0, "identity": 1.0}
_RELU_INPUT_SCALE = 0.1  # |x| of the identity ReLU RNN: small inputs


@dataclass(frozen=True, slots=True)
class StudyConfig:
    """One model of the study.

    Attributes:
        kind: ``"rnn"`` (Elman), ``"lstm"``, ``"gru"`` or ``"mlp"``.
        activation: ``"tanh"``, ``"sigmoid"`` or ``"relu"`` (Elman RNN, MLP hidden layers);
            ``"gated"`` for the LSTM and GRU.
        scale: Elman RNN: ``σ_max(U)`` of a random ``U``, or ``s`` of ``U = s·I``.
        identity: Elman RNN: ``U = scale·I`` with non-negative drive (see the module docstring).
        depth: MLP: the number of hidden layers.
        init: MLP: ``None`` (``reference.mlp.make_case``'s draw), ``"gaussian"`` or
            ``"orthogonal"`` (every ``W_i`` at the critical scale, biases 0; module docstring).

    Examples:
        >>> StudyConfig("rnn", "tanh", 1.5).label, StudyConfig("rnn", "relu", 1.1, identity=True).label
        ('rnn/tanh σ=1.5', 'rnn/relu U=1.1·I')
        >>> StudyConfig("mlp", "tanh", depth=8, init="orthogonal").label
        'mlp/tanh depth 8 orthogonal'
    """

    kind: Kind
    activation: str
    scale: float | None = None
    identity: bool = False
    depth: int | None = None
    init: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InvalidArgument(f"kind={self.kind!r}: expected one of {_KINDS}.")
        if self.kind == "rnn" and (self.activation not in GAMMA or self.scale is None or self.scale <= 0):
            raise InvalidArgument(f"{self!r}: an Elman RNN needs an activation in {sorted(GAMMA)} "
                                  "and a positive scale.")
        if self.kind == "mlp" and (self.activation not in GAMMA or not self.depth or self.depth < 1):
            raise InvalidArgument(f"{self!r}: an MLP needs an activation in {sorted(GAMMA)} and depth >= 1.")
        if self.init is not None and (self.kind != "mlp" or self.init not in _INITS):
            raise InvalidArgument(f"{self!r}: init is for MLPs, one of {_INITS} (or None).")

    @property
    def label(self) -> str:
        """A short unique name: ``rnn/tanh σ=0.5``, ``rnn/relu U=1.1·I``, ``lstm``,
        ``mlp/sigmoid depth 3``."""
        if self.kind == "rnn":
            what = f"U={self.scale:g}·I" if self.identity else f"σ={self.scale:g}"
            return f"rnn/{self.activation} {what}"
        if self.kind == "mlp":
            return f"mlp/{self.activation} depth {self.depth}" + (f" {self.init}" if self.init else "")
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "activation": self.activation, "scale": self.scale,
                "identity": self.identity, "depth": self.depth, "init": self.init}


#: The models of issues 5 and 16, in the order of the table.
STUDY_CONFIGS: tuple[StudyConfig, ...] = (
    *(StudyConfig("rnn", act, s) for act in ("tanh", "sigmoid") for s in (0.5, 0.9, 1.0, 1.5, 3.0)),
    StudyConfig("rnn", "relu", 1.0, identity=True),
    StudyConfig("rnn", "relu", 1.1, identity=True),
    StudyConfig("lstm", "gated"),
    StudyConfig("gru", "gated"),
    *(StudyConfig("mlp", "sigmoid", depth=d) for d in (2, 3, 4)),
    *(StudyConfig("mlp", act, depth=d, init=init) for act in ("tanh", "relu") for d in (4, 8)
      for init in ("gaussian", "orthogonal")),
)


@dataclass(frozen=True, slots=True, eq=False)
class StudyRow:
    """One model's flow and the quantities the study tabulates (see the module docstring).

    Attributes:
        config: the model.
        flow: its :class:`gradcheck.FlowResult`.
        sigma_max: σ_max(U) (Elman RNN), the geometric mean of σ_max(W_i) (MLP), else NaN.
        gamma: sup|f'| of the activation, NaN for gated cells.
        eta: ``sigma_max · gamma``, NaN for gated cells.
        bound_ratio: ``max_{k<t} ‖∂h_t/∂h_k‖ / η^(t−k)`` (Elman RNN with T ≥ 2), else NaN.
        practice: what AUTOTRAINER and DeepDiagnosis say of the same hand gradients, and how
            often rescaling the loss changes it (:mod:`gradcheck.practice`; Elman RNNs and
            MLPs), else ``None``.
    """

    config: StudyConfig
    flow: FlowResult
    sigma_max: float
    gamma: float
    eta: float
    bound_ratio: float
    practice: PracticeVerdicts | None = None

    @property
    def label(self) -> str:
        return self.config.label

    @property
    def log_eta(self) -> float:
        return math.log(self.eta) if self.eta > 0 else math.nan

    @property
    def slope(self) -> float:
        return self.flow.slope

    @property
    def slope_stderr(self) -> float:
        return self.flow.slope_stderr

    @property
    def regime(self) -> Regime:
        return self.flow.regime

    @property
    def agree(self) -> bool:
        return self.flow.agree

    @property
    def min_truncation(self) -> int | None:
        return self.flow.min_truncation

    @property
    def spread(self) -> float:
        """``σ_max / σ_min`` of the end-to-end Jacobian (NaN without a spectrum)."""
        sp = self.flow.spectrum
        return float(sp.spread) if sp is not None else math.nan

    @property
    def top(self) -> float:
        """The end-to-end Jacobian's largest singular value (NaN without a spectrum)."""
        sp = self.flow.spectrum
        return float(sp.top[0]) if sp is not None and sp.top.size else math.nan

    @property
    def bottom(self) -> float:
        """The end-to-end Jacobian's smallest singular value (NaN without a spectrum)."""
        sp = self.flow.spectrum
        return float(sp.bottom[0]) if sp is not None and sp.bottom.size else math.nan

    def to_dict(self) -> dict[str, Any]:
        """The row as strict JSON (non-finite numbers as strings), with the flow's own record."""
        return {
            "label": self.label,
            "kind": self.config.kind,
            "activation": self.config.activation,
            "config": self.config.to_dict(),
            "sigma_max": json_number(self.sigma_max),
            "gamma": json_number(self.gamma),
            "eta": json_number(self.eta),
            "log_eta": json_number(self.log_eta),
            "slope": json_number(self.slope),
            "slope_stderr": json_number(self.slope_stderr),
            "regime": self.regime,
            "agree": self.agree,
            "min_truncation": self.min_truncation,
            "bound_ratio": json_number(self.bound_ratio),
            "spread": json_number(self.spread),
            "sigma_top": json_number(self.top),
            "sigma_bottom": json_number(self.bottom),
            "cause": self.flow.cause,
            "parted_at": self.flow.parted_at,
            "model_regime": self.flow.model_regime,
            "practice": self.practice.to_dict() if self.practice is not None else None,
            "flow": self.flow.to_dict(),
        }


@dataclass(frozen=True, slots=True, eq=False)
class Study:
    """The rows of :func:`flow_study` and the sizes they were measured at.

    Attributes:
        rows: one :class:`StudyRow` per model, in the order of the configs.
        seed: the seed every model and every ``dy`` was drawn from.
        T: the sequence length of the recurrent models.
        hidden: their hidden width ``H``.
        batch: their batch size ``B``.
    """

    rows: tuple[StudyRow, ...]
    seed: int
    T: int
    hidden: int
    batch: int

    @property
    def agree(self) -> bool:
        """Whether hand and JAX agree in every row."""
        return all(row.agree for row in self.rows)

    def row(self, label: str) -> StudyRow:
        """The row of the model labelled ``label`` (:attr:`StudyConfig.label`)."""
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(f"no study row {label!r}; the labels are {[r.label for r in self.rows]}")

    def table(self) -> str:
        """A plain-text table of the rows, for a terminal."""
        w = max([20, *(len(r.label) for r in self.rows)])
        head = (f"{'model':<{w}} {'σ_max':>6} {'η':>6} {'log η':>7} {'slope ± stderr':>17}  "
                f"{'regime':<9} {'hand=JAX':<8} {'τ(1%)':>5} {'spread':>8}  cause")
        lines = [f"gradient-flow study (T={self.T}, H={self.hidden}, B={self.batch}, seed={self.seed}): "
                 "log-slope of ‖∂L/∂h_t‖ per step back", head]
        for r in self.rows:
            tau = "-" if r.min_truncation is None else str(r.min_truncation)
            lines.append(f"{r.label:<{w}} {_short(r.sigma_max):>6} {_short(r.eta):>6} "
                         f"{_signed(r.log_eta):>7} {_signed(r.slope):>8} ± {_fixed(r.slope_stderr):<6}  "
                         f"{r.regime:<9} {'yes' if r.agree else 'NO':<8} {tau:>5} {_short(r.spread):>8}  "
                         f"{_cause(r)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The versioned, strict-JSON record (``schema`` = :data:`STUDY_SCHEMA_VERSION`)."""
        return {
            "schema": STUDY_SCHEMA_VERSION,
            "seed": self.seed,
            "T": self.T,
            "hidden": self.hidden,
            "batch": self.batch,
            "slope_threshold": SLOPE_THRESHOLD,
            "truncation_tolerance": TRUNCATION_TOLERANCE,
            "agree": self.agree,
            "rows": [row.to_dict() for row in self.rows],
        }


# ----------------------------------------------------------------------------- helpers


def _short(x: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}g}"


def _cause(row: StudyRow) -> str:
    """``model``, ``backward@k`` (the step the hand norms part from JAX's) or ``-``."""
    cause = row.flow.cause
    if cause == "backward" and row.flow.parted_at is not None:
        return f"backward@{row.flow.parted_at}"
    return cause or "-"


def _fixed(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.3f}"


def _signed(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.3f}"


def _identity_relu(rng: np.random.Generator, scale: float, *, T: int, H: int, B: int) -> tuple[Any, Any, Any]:
    """``U = scale·I`` and a non-negative drive, so every unit stays active (``J_t = U``)."""
    import reference.rnn

    _, params, x = reference.rnn.make_case(rng, T=T, B=B, H=H)
    params = {**params, "U": scale * np.eye(H), "V": np.abs(params["V"]),
              "b": np.abs(params["b"]) + 0.1, "h0": np.abs(params["h0"])}
    return reference.rnn.ElmanRNN(activation="relu"), params, _RELU_INPUT_SCALE * np.abs(x)


def _build(config: StudyConfig, rng: np.random.Generator, *, T: int, H: int, B: int) -> tuple[Any, Any, Any]:
    """``(model, params, x)`` of one config."""
    import reference.gru
    import reference.lstm
    import reference.mlp
    import reference.rnn

    if config.kind == "rnn" and config.identity:
        return _identity_relu(rng, float(config.scale or 1.0), T=T, H=H, B=B)
    if config.kind == "rnn":
        return reference.rnn.make_case(rng, T=T, B=B, H=H, activation=config.activation,  # type: ignore[arg-type]
                                       spectral_scale=config.scale)
    if config.kind == "lstm":
        return reference.lstm.make_case(rng, T=T, B=B, H=H)
    if config.kind == "gru":
        return reference.gru.make_case(rng, T=T, B=B, H=H)
    sizes = (_MLP_INPUTS, *(_MLP_WIDTH,) * int(config.depth or 1), _MLP_OUTPUTS)
    model, params, x = reference.mlp.make_case(rng, sizes=sizes, hidden_activation=config.activation,
                                               batch=_MLP_BATCH)
    if config.init is None:
        return model, params, x
    L = len(sizes) - 1
    for i in range(L):
        gain = _CRITICAL_GAIN[config.activation if i < L - 1 else "identity"]
        shape = (sizes[i], sizes[i + 1])
        if config.init == "gaussian":
            w = rng.standard_normal(shape) / math.sqrt(sizes[i])
        else:
            w = _semi_orthogonal(rng, *shape)
        params[f"W{i}"] = (gain * w).astype(params[f"W{i}"].dtype)
        params[f"b{i}"] = np.zeros_like(params[f"b{i}"])
    return model, params, x


def _semi_orthogonal(rng: np.random.Generator, m: int, n: int) -> npt.NDArray[np.float64]:
    """An ``(m, n)`` matrix with orthonormal rows or columns (whichever are fewer), Haar-distributed:
    the QR of a Gaussian with the signs of R's diagonal moved into Q."""
    q, r = np.linalg.qr(rng.standard_normal((max(m, n), min(m, n))))
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    return q if m >= n else q.T


def _cotangent(config: StudyConfig, model: Any, params: Any, x: Any, seed: int) -> npt.NDArray[np.float64]:
    """``dy`` as :func:`gradcheck.gradient_flow` draws it by default from ``seed``: N(0, 1) on the
    last output only (time), on every output (depth)."""
    y = np.asarray(model.forward(params, x))
    rng = np.random.default_rng(seed)
    if config.kind == "mlp":
        return rng.standard_normal(y.shape)
    dy = np.zeros(y.shape)
    dy[-1] = rng.standard_normal(y.shape[1:])
    return dy


def _practice(model: Any, params: Any, x: Any, dy: Any) -> PracticeVerdicts:
    """The practice tools on the hand gradients (:func:`gradcheck.practice.hand_layer_gradients`);
    the loss ``⟨dy, y⟩`` has as many terms as ``dy`` has non-zero entries."""
    kernels, biases = hand_layer_gradients(model, params, x, dy)
    return practice_verdicts(kernels, biases, terms=int(np.count_nonzero(dy)) or 1)


def _pascanu(config: StudyConfig, params: Any, flow: FlowResult) -> tuple[float, float, float]:
    """``(σ_max, γ, η)`` of the study's definition for this kind (NaN for gated cells).  For an MLP
    they come from the flow's own per-layer Jacobians: the geometric means of ``σ_max(W_i)``
    (``flow.weight_sigma``) and of ``η_i = σ_max(W_i)·γ`` (``flow.layer_eta``) over the layers
    ``i = 1 .. L−1`` the error crosses, the per-layer rate a fitted slope is compared with (the
    largest η_i, and every one, are in the flow's record)."""
    if config.kind == "rnn":
        return pascanu_eta(params["U"], config.activation)
    if config.kind != "mlp":
        return math.nan, math.nan, math.nan
    depth = int(config.depth or 1)
    gamma = GAMMA[config.activation]
    sigmas, etas = np.asarray(flow.weight_sigma)[1:], np.asarray(flow.layer_eta)[1:]
    if sigmas.size != depth or etas.size != depth or not (np.all(sigmas > 0) and np.all(etas > 0)):
        sigmas = np.asarray([pascanu_eta(params[f"W{i}"], config.activation)[0] for i in range(1, depth + 1)])
        etas = gamma * sigmas
    return (math.exp(float(np.mean(np.log(sigmas)))), gamma, math.exp(float(np.mean(np.log(etas)))))


def _bound_ratio(flow: FlowResult, eta: float) -> float:
    """``max_{k<t} ‖∂h_t/∂h_k‖ / η^(t−k)`` from the measured spans (NaN without a bound or a pair)."""
    spans = flow.spans
    if flow.axis != "time" or not (math.isfinite(eta) and eta > 0) or spans.shape[0] < 2:
        return math.nan
    k, t = np.triu_indices(spans.shape[0], 1)
    measured = spans[k, t]
    with np.errstate(divide="ignore"):
        logs = np.log(measured) - (t - k) * math.log(eta)
    return float(np.exp(np.max(logs)))


def _check_positive(value: Any, name: str, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise InvalidArgument(f"{name}={value!r}: expected an int >= {least}.")
    return int(value)


# ----------------------------------------------------------------------------- public entry


def flow_study(
    *,
    seed: int = 0,
    T: int = 24,
    hidden: int = 6,
    batch: int = 2,
    configs: Sequence[StudyConfig] = STUDY_CONFIGS,
) -> Study:
    """Run :func:`gradcheck.gradient_flow` on every config and tabulate the flows.

    See the module docstring for the models, the equations and the conventions.

    Args:
        seed: every model is drawn from ``np.random.default_rng(seed)``, and ``dy`` from it too.
        T: the sequence length of the recurrent models (at least 3, so the slope has a stderr).
        hidden: ``H``, their hidden width.
        batch: ``B``, their batch size.
        configs: the models (default :data:`STUDY_CONFIGS`, the zoo of issue 5).

    Returns:
        A :class:`Study`, one row per config.

    Raises:
        InvalidArgument: a size out of range, or a config that is not a :class:`StudyConfig`.

    Examples:
        >>> study = flow_study(T=8, hidden=5, batch=3, configs=[StudyConfig("rnn", "tanh", 0.5)])
        >>> row = study.row("rnn/tanh σ=0.5")
        >>> row.regime, row.agree, round(row.eta, 3), row.slope < row.log_eta, row.bound_ratio <= 1
        ('vanishing', True, 0.5, True, True)
    """
    seed = _check_positive(seed, "seed", 0)
    T = _check_positive(T, "T", 3)
    hidden = _check_positive(hidden, "hidden")
    batch = _check_positive(batch, "batch")
    rows = []
    for config in configs:
        if not isinstance(config, StudyConfig):
            raise InvalidArgument(f"configs contains {config!r}: expected StudyConfig records.")
        model, params, x = _build(config, np.random.default_rng(seed), T=T, H=hidden, B=batch)
        dy = _cotangent(config, model, params, x, seed) if config.kind in ("rnn", "mlp") else None
        flow = gradient_flow(model, params, x, dy=dy, seed=seed, name=config.label)
        sigma, gamma, eta = _pascanu(config, params, flow)
        rows.append(StudyRow(config=config, flow=flow, sigma_max=sigma, gamma=gamma, eta=eta,
                             bound_ratio=_bound_ratio(flow, eta),
                             practice=None if dy is None else _practice(model, params, x, dy)))
    return Study(rows=tuple(rows), seed=seed, T=T, hidden=hidden, batch=batch)
