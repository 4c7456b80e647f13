"""Side by side with the practice tools: AUTOTRAINER's and DeepDiagnosis's gradient rules, and Nielsen.

Issue 16, parts 5 and 6.  Two tools that practitioners run on a training job say "vanishing" or
"exploding" from the gradients alone, with fixed absolute thresholds:

* **AUTOTRAINER** (X. Zhang, J. Zhai, S. Ma, C. Shen, "AUTOTRAINER: An Automatic DNN Training
  Problem Detection and Repair System", ICSE 2021), ``AutoTrainer/utils/monitor.py``,
  ``gradient_issue`` with its default parameters ``beta_1 = 1e-3``, ``beta_2 = 1e-4``,
  ``beta_3 = 70``, ``gamma = 0.7``.  From ``gradient_list = [kernel_0, bias_0, kernel_1, bias_1,
  ...]`` (input layer first), ``norm_kernel[i] = ‖kernel_i‖`` (Frobenius) and ``ratio =
  norm_kernel[0] / norm_kernel[-1]``:

  - *vanishing gradient*: ``ratio < 1e-3`` **and** ``norm_kernel[0] < 1e-4``;
  - *exploding gradient*: ``ratio > 70``;
  - *dying ReLU*: at least 70 % of all gradient entries (kernels and biases) are exactly 0;
  - a NaN/inf gradient is ``nan_gradient``, which ``IssueMonitor.determine`` reports as
    ``explode``; otherwise the issue reported is, in its order of priority, ``relu`` > ``explode``
    > ``vanish``.  (:func:`autotrainer_gradient_issue`)

* **DeepDiagnosis** (M. Wardat, B. D. Cruz, W. Le, H. Rajan, "DeepDiagnosis: Automatically
  Diagnosing Faults and Recommending Actionable Fixes in Deep Learning Programs", ICSE 2022),
  ``callback/callbacks.py``, ``mapFaluireToFix.on_epoch_end``: walking the weight (kernel)
  gradients from the last layer to the first, the first layer where ``mean(g)`` is NaN, inf or
  exactly 0 is a *numerical error* (``identifyNumerical``) and the first where
  ``mean|g| < 1e-7`` is a *vanishing gradient* (``identifyVanishingGradient``,
  ``threshold_VG``).  DeepDiagnosis has no exploding-gradient rule on the gradients (a
  non-finite one is its numerical error).  (:func:`deepdiagnosis_gradient`)

Both rules are ported literally (numpy, thresholds as module constants) and applied to the
**same hand gradients** that gradcheck checks: the reference zoo's backward (or a planted bug's).
Which gradient is "the first and last layer's":

* **MLP** (``reference.mlp.MLP``): the layers' own weight gradients ``∂L/∂W_i`` (kernels) and
  ``∂L/∂b_i`` (biases), input layer first — exactly what the tools read from a Keras model.
* **Elman RNN** (``reference.rnn.ElmanRNN``): the network unrolled over its T steps is a T-layer
  network with tied weights, and "layer t" is time step t: its kernel gradient is the step-t
  contribution ``x_tᵀ e_t`` to ``∂L/∂V`` (the input kernel, Keras' ``kernel``) and its bias
  gradient ``Σ_batch e_t``, with ``e_t = ∂L/∂a_t`` taken from the hand BPTT's ``deltas`` through
  the layer's own ``cell_backward``.  So ``g_first`` is step 0's and ``g_last`` step T−1's.
  (Applied literally to a Keras ``SimpleRNN`` + ``Dense``, AUTOTRAINER's ``gradient_norm``
  asserts an even number of arrays and fails, and DeepDiagnosis checks only ``dense`` layers:
  the unrolled reading is the one under which the rules can say anything about the recurrence.)

gradcheck's verdict is :func:`gradcheck.gradient_flow`'s ``regime`` with its ``cause``
(``"model"`` or ``"backward"``; read with ``getattr`` and, for a FlowResult without the field,
``"backward"`` exactly when the hand and JAX per-step gradients disagree).

**Ground truth** ("known regime"), computed without gradcheck's classifier, without its
per-step norms and without the hand backward, on fresh inputs of the model's distribution:

* Elman RNN: Pascanu's bound first — ``η = σ_max(U)·γ < 1`` (γ = sup|f'|: 1 for tanh and ReLU,
  ¼ for the sigmoid) makes every ``‖∂h_t/∂h_k‖ ≤ η^(t−k)``, so vanishing is guaranteed.
  Otherwise the exact Jacobians ``J_t = ∂h_t/∂h_{t−1}`` (``jax.jacfwd`` of the cell, float64) of
  :data:`TRUTH_HORIZON` steps on :data:`TRUTH_BATCH` fresh sequences are multiplied densely and
  the per-step rate is ``λ = mean_b log‖J_{T−1} ⋯ J_0‖₂ / T`` (the top Lyapunov exponent of the
  linearised recurrence, renormalised every step so it neither overflows nor underflows).
* MLP: the exact input-to-output Jacobian of the error path, ``A = ∂net_{L−1}/∂net_0``
  (``jax.jacfwd``, float64) at :data:`TRUTH_BATCH` fresh inputs; the per-layer gain is the
  root-mean-square gain of back-propagating an isotropic error through it,
  ``r = sqrt(mean_b ‖A_b‖_F² / D_L)``, and the rate ``λ = log r / (L−1)`` per layer crossed (the
  mean-field backward gain χ of Schoenholz et al., "Deep Information Propagation", ICLR 2017,
  measured instead of predicted).
* Then ``λ < −TRUTH_BAND`` is vanishing, ``λ > TRUTH_BAND`` exploding, otherwise stable.
  :data:`TRUTH_BAND` = 0.05 (5 % per step or layer) is deliberately the width of gradcheck's own
  borderline band, so that the two agree on what "stable" means and differ only in how it is
  measured: gradcheck fits a slope to the T = :data:`T` step, B = :data:`BATCH` sequence it is given
  (saturation and η deciding borderline cases), the truth multiplies exact Jacobians over a
  horizon ten times longer on other data.

**Grid** (each model drawn from its own seed, ``zlib.crc32`` of its label): Elman RNNs with
``σ_max(U)·γ = η`` ∈ :data:`ETAS` (T = 12, H = 8, D = 4, K = 2, B = 4), tanh / sigmoid / ReLU,
``U`` Gaussian (``reference.rnn.make_case``, rescaled to ``σ_max = η/γ``) or orthogonal (Haar, all
singular values ``η/γ``); MLPs of 2 and 8 hidden layers (:data:`MLP_DEPTHS`) of width 16 (input
and output 16, B = 16, identity output), tanh / sigmoid / ReLU, weights Gaussian
``N(0, (g·κ)²/D_in)`` or orthogonal ``g·κ·Q`` with κ = 1 (tanh), 4 (sigmoid), √2 (ReLU) and gain
g ∈ :data:`MLP_GAINS` (two per activation, one below and one at or above its critical gain, so
that the grid holds every regime).  The loss is
``L = c · ½ Σ (y − t)²`` on the last output ``y_{T−1}`` (RNN; Pascanu's ``E_T``) or on ``y`` (MLP)
with targets ``t ~ N(0, 1)``, for ``c`` ∈ :data:`SCALES` under the reduction ``sum``, and under
``mean`` (÷ the number of squared terms, B·K) at ``c = 1``: six variants per model, the base one
``c = 1, sum`` (each multiplies ``dy`` by a constant; the mean at other scales adds nothing a
scale does not).  A *flip* is a variant whose verdict differs from the same model's base verdict.

**Planted bugs** (:data:`BUGS`), each on hosts whose true regime is *not* the pathology the bug
imitates: the Elman BPTT without the recurrent carry ``e_{t+1}Uᵀ`` (looks vanishing), with the
carry ×3 (looks exploding), an MLP backward missing ``f'`` in the first hidden layer (a jump of
``1/f'`` ≥ 4 for the sigmoid at the input layer: looks exploding), and one applying ``f'`` twice in
every hidden layer (looks vanishing).  For each, the practice rules either name
a training problem — which blames the model, the only thing they can blame, since they never
see a reference — or say nothing; gradcheck blames the backward when it attributes the
disagreement to it.

**Nielsen** (part 6, :func:`run_nielsen`): his network2 at initialisation, ``[784, 30, 30, 30, 30,
10]`` sigmoid everywhere, ``default_weight_initializer`` (weights ``N(0, 1)/√n_in``, biases
``N(0, 1)``; chapter 5's ``fig/generate_gradient.py`` builds ``network2.Network(sizes)``, which
calls it) and the cross-entropy cost (``network2``'s default: output error ``δ^L = a − y``), the
bias gradient ``∂C/∂b^l`` averaged over 1000 images and its length per hidden layer.  Without
MNIST, the inputs are a stand-in: each of the 784 pixels is on with probability 0.19 and then
uniform in [0.37, 1] (MNIST: mean 0.13, 19 % of pixels non-zero), labels uniform over the ten
digits, one-hot targets.  The hand backward is ``reference.mlp.MLP`` (identity output, the
sigmoid inside the cost), checked against ``jax.grad`` of the same cost on every seed.

Runnable alone: ``python -m benchmarks.practice [--quick]``.

References:
    X. Zhang et al., ICSE 2021; M. Wardat et al., ICSE 2022 (above).
    R. Pascanu, T. Mikolov, Y. Bengio, "On the difficulty of training recurrent neural
    networks", ICML 2013, §3.1.
    S. S. Schoenholz, J. Gilmer, S. Ganguli, J. Sohl-Dickstein, "Deep Information Propagation",
    ICLR 2017.
    M. Nielsen, "Neural Networks and Deep Learning", ch. 5 (2015), and
    ``mnielsen/neural-networks-and-deep-learning``: ``src/network2.py``,
    ``fig/generate_gradient.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import math
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from gradcheck.dynamics import FlowResult, gradient_flow
from gradcheck.practice import (
    AT_DYING_ZEROS,
    AT_EXPLODE_RATIO,
    AT_VANISH_FIRST,
    AT_VANISH_RATIO,
    DD_VANISH_MEAN,
    AutoTrainerVerdict,
    DeepDiagnosisVerdict,
    autotrainer_gradient_issue,
    deepdiagnosis_gradient,
    hand_layer_gradients,
)
from reference.mlp import MLP
from reference.rnn import ElmanRNN

__all__ = [
    "AT_DYING_ZEROS",
    "AT_EXPLODE_RATIO",
    "AT_VANISH_FIRST",
    "AT_VANISH_RATIO",
    "BUGS",
    "DD_VANISH_MEAN",
    "ETAS",
    "MLP_GAINS",
    "NIELSEN_FIGURES",
    "NIELSEN_SIZES",
    "RULES",
    "SCALES",
    "TRUTH_BAND",
    "AutoTrainerVerdict",
    "CarryBugRNN",
    "DeepDiagnosisVerdict",
    "DerivativeBugMLP",
    "ModelSpec",
    "NielsenResult",
    "PracticeResult",
    "PracticeRow",
    "Truth",
    "Variant",
    "autotrainer_gradient_issue",
    "build",
    "deepdiagnosis_gradient",
    "mlp_truth",
    "mnist_standin",
    "nielsen_bias_gradients",
    "nielsen_params",
    "render",
    "rnn_truth",
    "run_nielsen",
    "run_practice",
]

Regime = Literal["vanishing", "stable", "exploding"]
F64 = npt.NDArray[np.float64]

#: The ground truth's band on the rate λ per step / layer (see the module docstring).
TRUTH_BAND = 0.05
#: Steps of the exact Jacobian product of the RNN ground truth.
TRUTH_HORIZON = 120
#: Fresh sequences (RNN) or inputs (MLP) of the ground truth.
TRUTH_BATCH = 16

#: Pascanu's η = σ_max(U)·γ of the Elman RNNs of the full grid.
ETAS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0)
#: Weight gains g of the MLPs per activation, in units of κ/√D_in (see the module docstring).
MLP_GAINS: dict[str, tuple[float, ...]] = {"tanh": (1.5, 4.0), "sigmoid": (1.0, 4.0), "relu": (0.5, 1.0)}
#: The loss scales c of the full run (under the sum; the mean is taken at c = 1).
SCALES: tuple[float, ...] = (1e-3, 1e-1, 1.0, 10.0, 1e3)
#: The depths (hidden layers) of the MLPs of the full grid.
MLP_DEPTHS: tuple[int, ...] = (2, 8)
#: The rules compared, in table order.
RULES: tuple[str, ...] = ("gradcheck", "AUTOTRAINER", "DeepDiagnosis")

T, BATCH, HIDDEN, INPUTS, OUTPUTS = 12, 4, 8, 4, 2  # the RNNs as checked
MLP_WIDTH, MLP_BATCH = 16, 16
_GAMMA = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0}
_KAPPA = {"tanh": 1.0, "sigmoid": 4.0, "relu": math.sqrt(2.0)}

#: Nielsen's network and his chapter-5 figures ‖∂C/∂b^l‖ for its four hidden layers.
NIELSEN_SIZES: tuple[int, ...] = (784, 30, 30, 30, 30, 10)
NIELSEN_FIGURES: tuple[float, ...] = (0.0030, 0.0171, 0.0695, 0.2851)
MNIST_ON_FRACTION = 0.19  # of MNIST's pixels are non-zero
MNIST_ON_LOW = 0.37  # on-pixels uniform in [0.37, 1]: mean pixel 0.19·0.685 = 0.13, MNIST's


# ----------------------------------------------------------------------------- models and bugs


@dataclass(frozen=True)
class CarryBugRNN(ElmanRNN):
    """An Elman RNN whose full BPTT scales the recurrent carry: ``ds_t = dy_t Wᵀ + carry·e_{t+1}Uᵀ``.

    ``carry = 0`` drops the term (the gradient reaches no earlier step: looks vanishing),
    ``carry = 3`` triples it (looks exploding).  Truncated BPTT is left correct.
    """

    carry: float = 0.0

    def bptt(self, params: dict[str, Any], x: Any, dy: Any) -> tuple[dict[str, Any], Any, Any]:
        if self.truncation is not None:
            return super().bptt(params, x, dy)
        p = {k: np.asarray(v) for k, v in params.items()}
        x, dy = np.asarray(x), np.asarray(dy)
        S = self.states(p, x)
        g = {k: np.zeros_like(v) for k, v in p.items()}
        dx, deltas = np.zeros_like(x), np.zeros_like(S[1:])
        carried = np.zeros_like(S[0])
        for t in reversed(range(x.shape[0])):
            g["W"] += S[t + 1].T @ dy[t]
            g["c"] += dy[t].sum(axis=0)
            ds = dy[t] @ p["W"].T + self.carry * carried  # the bug: carry ≠ 1
            deltas[t] = ds
            cell, carried, dx[t] = self.cell_backward(p, S[t], x[t], S[t + 1], ds)
            for key, v in cell.items():
                g[key] += v
        g["h0"] += carried.sum(axis=0)
        return g, dx, deltas


@dataclass(frozen=True, slots=True)
class DerivativeBugMLP:
    """An MLP whose backward raises ``f'`` of hidden layer(s) ``layers`` to ``power``.

    ``power = 0`` drops the activation derivative, ``power = 2`` applies it twice; the forward is
    the inner MLP's.  ``layers`` indexes the hidden layers' pre-activations ``net_i``, ``i < L−1``.
    """

    inner: MLP
    layers: tuple[int, ...]
    power: int

    def forward(self, params: dict[str, Any], x: Any) -> Any:
        return self.inner.forward(params, x)

    def backward_with_deltas(self, params: dict[str, Any], x: Any, dy: Any
                             ) -> tuple[dict[str, Any], Any, list[Any]]:
        fs = self.inner.activations(sum(k.startswith("W") for k in params))
        a, net = self.inner.forward_cache(params, x)
        W = [np.asarray(params[f"W{i}"]) for i in range(len(fs))]
        top = len(fs) - 1
        deltas: list[Any] = [None] * len(fs)
        deltas[top] = fs[top].backward(net[top], a[top + 1], np.asarray(dy))
        for i in range(top, 0, -1):
            fprime = fs[i - 1].derivative(net[i - 1], a[i])
            power = self.power if (i - 1) in self.layers else 1
            deltas[i - 1] = (deltas[i] @ W[i].T) * fprime ** power  # the bug: f'^power
        dparams = {}
        for i, delta in enumerate(deltas):
            dparams[f"W{i}"], dparams[f"b{i}"] = a[i].T @ delta, delta.sum(axis=0)
        return dparams, deltas[0] @ W[0].T, deltas


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model of the grid, or a planted bug's host.

    Attributes:
        kind: ``"rnn"`` or ``"mlp"``.
        activation: ``"tanh"``, ``"sigmoid"`` or ``"relu"``.
        init: ``"gaussian"`` or ``"orthogonal"``.
        scale: RNN: η = σ_max(U)·γ; MLP: the gain g.
        depth: MLP: the number of hidden layers.
        bug: ``""`` for the correct backward, else a key of :data:`BUGS`.
    """

    kind: Literal["rnn", "mlp"]
    activation: str
    init: str
    scale: float
    depth: int = 0
    bug: str = ""

    @property
    def label(self) -> str:
        what = f"η={self.scale:g}" if self.kind == "rnn" else f"depth {self.depth} g={self.scale:g}"
        return f"{self.kind}/{self.activation} {self.init} {what}" + (f" [{self.bug}]" if self.bug else "")

    @property
    def host(self) -> ModelSpec:
        """The same model with the correct backward."""
        return dataclasses.replace(self, bug="")

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, **{k: getattr(self, k) for k in self.__slots__}}


#: The planted bugs: name → (kind, what it imitates, description).
BUGS: dict[str, tuple[str, str, str]] = {
    "no recurrent carry": ("rnn", "vanishing", "Elman BPTT without e_{t+1}Uᵀ"),
    "carry ×3": ("rnn", "exploding", "Elman BPTT with 3·e_{t+1}Uᵀ"),
    "f' missing in one layer": ("mlp", "exploding", "MLP backward without f' in the first hidden layer"),
    "f' applied twice": ("mlp", "vanishing", "MLP backward with f'² in every hidden layer"),
}


@dataclass(frozen=True, slots=True)
class Variant:
    """The loss ``c · ½ Σ (y − t)²`` under the reduction ``sum`` or ``mean`` (÷ the number of terms)."""

    scale: float
    reduction: str

    @property
    def base(self) -> bool:
        return self.scale == 1.0 and self.reduction == "sum"

    @property
    def label(self) -> str:
        return f"c={self.scale:g} {self.reduction}"


def _seed(label: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(label.encode()))


def _orthogonal(rng: np.random.Generator, n: int) -> F64:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian with the signs of R's diagonal)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return np.asarray(q * np.sign(np.diag(r)), dtype=np.float64)


def _rnn_model(spec: ModelSpec, rng: np.random.Generator) -> tuple[Any, dict[str, F64], F64]:
    import reference.rnn

    sigma = spec.scale / _GAMMA[spec.activation]
    layer, params, x = reference.rnn.make_case(rng, T=T, B=BATCH, D=INPUTS, H=HIDDEN, K=OUTPUTS,
                                               activation=spec.activation,  # type: ignore[arg-type]
                                               spectral_scale=sigma)
    if spec.init == "orthogonal":
        params = {**params, "U": sigma * _orthogonal(rng, HIDDEN)}
    if spec.bug:
        layer = CarryBugRNN(activation=spec.activation,  # type: ignore[arg-type]
                            carry=0.0 if spec.bug == "no recurrent carry" else 3.0)
    return layer, params, x


def _mlp_model(spec: ModelSpec, rng: np.random.Generator) -> tuple[Any, dict[str, F64], F64]:
    sizes = (MLP_WIDTH,) * (spec.depth + 2)
    w = spec.scale * _KAPPA[spec.activation]
    params: dict[str, F64] = {}
    for i in range(len(sizes) - 1):
        n = sizes[i]
        base = rng.standard_normal((n, n)) / math.sqrt(n) if spec.init == "gaussian" else _orthogonal(rng, n)
        params[f"W{i}"], params[f"b{i}"] = w * base, 0.1 * rng.standard_normal(n)
    x = rng.standard_normal((MLP_BATCH, sizes[0]))
    stack: Any = MLP(spec.activation, "identity")
    if spec.bug == "f' missing in one layer":
        stack = DerivativeBugMLP(stack, (0,), 0)
    elif spec.bug == "f' applied twice":
        stack = DerivativeBugMLP(stack, tuple(range(spec.depth)), 2)
    return stack, params, x


def build(spec: ModelSpec) -> tuple[Any, dict[str, F64], F64, F64]:
    """``(model, params, x, target)`` of a spec, drawn from the seed of its host's label."""
    rng = _seed(spec.host.label)
    model, params, x = (_rnn_model if spec.kind == "rnn" else _mlp_model)(spec, rng)
    k = OUTPUTS if spec.kind == "rnn" else MLP_WIDTH
    target = rng.standard_normal((x.shape[1] if spec.kind == "rnn" else x.shape[0], k))
    return model, params, x, target


def _dy(spec: ModelSpec, model: Any, params: dict[str, F64], x: F64, target: F64, v: Variant) -> F64:
    """``∂L/∂y`` of ``L = c·½Σ(y − t)²`` (RNN: on the last output only), ÷ B·K for ``mean``."""
    y = np.asarray(model.forward(params, x))
    last = y[-1] if spec.kind == "rnn" else y
    d = v.scale * (last - target) / (last.size if v.reduction == "mean" else 1)
    if spec.kind == "mlp":
        return np.asarray(d)
    dy = np.zeros_like(y)
    dy[-1] = d
    return dy


# ----------------------------------------------------------------------------- ground truth


@dataclass(frozen=True, slots=True)
class Truth:
    """A model's known regime (see the module docstring).

    Attributes:
        regime: the true regime.
        rate: λ, the measured log-rate per step (RNN) or per layer crossed (MLP).
        eta: Pascanu's η (RNN), NaN for MLPs.
        reason: why.
    """

    regime: Regime
    rate: float
    eta: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"regime": self.regime, "rate": _json(self.rate), "eta": _json(self.eta),
                "reason": self.reason}


def _band(rate: float) -> Regime:
    if rate < -TRUTH_BAND:
        return "vanishing"
    return "exploding" if rate > TRUTH_BAND else "stable"


@functools.cache
def _cell_jacobian(activation: str) -> Callable[..., Any]:
    """``(params, h (N, H), x (N, D)) -> ∂h'/∂h (N, H, H)`` by ``jax.jacfwd``, jitted once."""
    import jax

    cell = ElmanRNN(activation=activation)  # type: ignore[arg-type]

    def one(p: Any, h: Any, xt: Any) -> Any:
        return cell.cell_forward(p, h[None], xt[None])[0]

    return jax.jit(jax.vmap(jax.jacfwd(one, argnums=1), in_axes=(None, 0, 0)))


def _log_product_norm(jac: F64) -> F64:
    """``log‖J_{T−1} ⋯ J_0‖₂`` per batch row of ``jac`` (T, B, H, H), renormalised each step."""
    steps, batch, n, _ = jac.shape
    P = np.broadcast_to(np.eye(n), (batch, n, n)).copy()
    logs = np.zeros(batch)
    for t in range(steps):
        P = jac[t] @ P
        f = np.linalg.norm(P, axis=(1, 2))
        with np.errstate(divide="ignore"):
            logs += np.log(f)
        P = P / np.where(f > 0, f, 1.0)[:, None, None]
    with np.errstate(divide="ignore"):
        return np.asarray(logs + np.log(np.linalg.norm(P, ord=2, axis=(1, 2))))


def rnn_truth(layer: ElmanRNN, params: dict[str, F64], rng: np.random.Generator, *,
              horizon: int = TRUTH_HORIZON, batch: int = TRUTH_BATCH) -> Truth:
    """The known regime of an Elman RNN: Pascanu's η < 1, else the exact long-horizon rate.

    Args:
        layer: the (correct) layer; only its forward is used.
        params: its parameters.
        rng: draws the fresh inputs, N(0, 1), (horizon, batch, D).
        horizon: the number of steps multiplied.
        batch: the number of fresh sequences.
    """
    import jax
    import jax.numpy as jnp

    eta = float(np.linalg.norm(params["U"], ord=2)) * _GAMMA[layer.activation]
    if eta < 1:
        return Truth("vanishing", math.nan, eta, f"η = {eta:.3g} < 1 (Pascanu's sufficient condition)")
    x = rng.standard_normal((horizon, batch, params["V"].shape[0]))
    S = layer.states(params, x)
    H = S.shape[-1]
    with jax.enable_x64(True):
        p64 = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        jac = np.asarray(_cell_jacobian(layer.activation)(
            p64, jnp.asarray(S[:-1].reshape(-1, H)), jnp.asarray(x.reshape(-1, x.shape[-1]))))
    logs = _log_product_norm(jac.reshape(horizon, batch, H, H))
    rate = float(np.mean(logs)) / horizon
    return Truth(_band(rate), rate, eta,
                 f"λ = {rate:+.3g}/step: log‖∂h_T/∂h_0‖₂ / T over T = {horizon} exact Jacobians")


def mlp_truth(stack: MLP, params: dict[str, F64], rng: np.random.Generator, *,
              batch: int = TRUTH_BATCH * 4) -> Truth:
    """The known regime of an MLP from the exact Jacobian ``∂net_{L−1}/∂net_0`` at fresh inputs.

    Args:
        stack: the (correct) MLP; only its activations and forward equations are used.
        params: ``W0, b0, ..., W{L-1}, b{L-1}``.
        rng: draws the fresh inputs, N(0, 1), (batch, D_0).
        batch: how many.
    """
    import jax
    import jax.numpy as jnp

    L = sum(k.startswith("W") for k in params)
    fs = stack.activations(L)
    x = rng.standard_normal((batch, params["W0"].shape[0]))
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}

        def tail(net0: Any) -> Any:
            net = net0
            for i in range(1, L):
                net = fs[i - 1].forward(net) @ p[f"W{i}"] + p[f"b{i}"]
            return net

        net0 = jnp.asarray(x) @ p["W0"] + p["b0"]
        A = np.asarray(jax.vmap(jax.jacfwd(tail))(net0))
    gain = math.sqrt(float(np.mean(np.sum(A * A, axis=(1, 2)))) / A.shape[1])
    with np.errstate(divide="ignore"):
        rate = math.log(gain) / (L - 1) if gain > 0 else -math.inf
    return Truth(_band(rate), rate, math.nan,
                 f"λ = {rate:+.3g}/layer: rms gain of ∂net_(L−1)/∂net_0 over {L - 1} layers")


def _truth(spec: ModelSpec) -> Truth:
    model, params, _, _ = build(spec.host)
    rng = np.random.default_rng(zlib.crc32(("truth " + spec.host.label).encode()))
    return rnn_truth(model, params, rng) if spec.kind == "rnn" else mlp_truth(model, params, rng)


# ----------------------------------------------------------------------------- one evaluation


@dataclass(frozen=True, slots=True)
class PracticeRow:
    """Every rule's verdict on one model under one loss variant.

    Attributes:
        spec, variant: the model and the loss.
        truth: the host's known regime.
        regime, cause, agree: gradcheck's ``FlowResult`` (``cause`` as read, see the module
            docstring).
        model_regime: the FlowResult's regime of JAX's own norms (``""`` where it has none).
        autotrainer, deepdiagnosis: the practice rules on the same hand gradients.
    """

    spec: ModelSpec
    variant: Variant
    truth: Truth
    regime: Regime
    cause: str
    agree: bool
    autotrainer: AutoTrainerVerdict
    deepdiagnosis: DeepDiagnosisVerdict
    model_regime: str = ""

    def verdict(self, rule: str) -> str:
        """The rule's full verdict (what a flip compares)."""
        if rule == "gradcheck":
            return f"{self.regime} ({self.cause})"
        if rule == "AUTOTRAINER":
            return self.autotrainer.issue or "none"
        return self.deepdiagnosis.symptom or "none"

    def regime_of(self, rule: str) -> Regime:
        """The regime the rule names (scored against the truth)."""
        if rule == "gradcheck":
            return self.regime
        return self.autotrainer.regime if rule == "AUTOTRAINER" else self.deepdiagnosis.regime

    def blames(self, rule: str) -> str:
        """``"backward"``, ``"model"`` (a pathology or training problem named) or ``"none"``."""
        if rule == "gradcheck":
            return "backward" if self.cause == "backward" else ("model" if self.regime != "stable"
                                                                else "none")
        if rule == "AUTOTRAINER":
            return "model" if self.autotrainer.issue else "none"
        return "model" if self.deepdiagnosis.symptom else "none"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.spec.to_dict(), "variant": self.variant.label,
                "truth": self.truth.regime, "gradcheck": {"regime": self.regime, "cause": self.cause,
                                                          "agree": self.agree,
                                                          "model_regime": self.model_regime},
                "autotrainer": self.autotrainer.to_dict(), "deepdiagnosis": self.deepdiagnosis.to_dict()}


def _cause(flow: FlowResult) -> str:
    """gradcheck's attribution: the FlowResult's ``cause`` when it has one, else from ``agree``."""
    cause = getattr(flow, "cause", None)
    if cause is None:
        return "model" if flow.agree else "backward"
    return str(cause) or "model"


def evaluate(spec: ModelSpec, variant: Variant, truth: Truth) -> PracticeRow:
    """Run gradcheck and both practice rules on one model and loss."""
    model, params, x, target = build(spec)
    dy = _dy(spec, model, params, x, target, variant)
    flow = gradient_flow(model, params, x, dy=dy, seed=0, name=spec.label)
    kernels, biases = hand_layer_gradients(model, params, x, dy)
    pairs = [a for kb in zip(kernels, biases, strict=True) for a in kb]
    return PracticeRow(spec=spec, variant=variant, truth=truth, regime=flow.regime, cause=_cause(flow),
                       agree=flow.agree, autotrainer=autotrainer_gradient_issue(pairs),
                       deepdiagnosis=deepdiagnosis_gradient(kernels),
                       model_regime=str(getattr(flow, "model_regime", "")))


# ----------------------------------------------------------------------------- Nielsen


@dataclass(frozen=True, slots=True)
class NielsenResult:
    """Nielsen's chapter-5 speeds of learning, reproduced on stand-in inputs.

    Attributes:
        norms: ``‖∂C/∂b^l‖`` per seed (rows) and hidden layer (columns, input side first).
        agree: whether the hand backward agreed with JAX for every seed.
        n_images: images averaged over per seed.
    """

    norms: F64
    agree: bool
    n_images: int

    @property
    def mean(self) -> F64:
        return np.asarray(np.mean(self.norms, axis=0))

    @property
    def std(self) -> F64:
        return np.asarray(np.std(self.norms, axis=0, ddof=1) if len(self.norms) > 1
                          else np.zeros(self.norms.shape[1]))

    @property
    def ratios(self) -> F64:
        """Consecutive-layer ratios of the mean norms (towards the output)."""
        m = self.mean
        return np.asarray(m[1:] / m[:-1])

    def to_dict(self) -> dict[str, Any]:
        return {"sizes": list(NIELSEN_SIZES), "n_images": self.n_images, "seeds": len(self.norms),
                "agree": self.agree, "norms": self.norms.tolist(), "mean": self.mean.tolist(),
                "std": self.std.tolist(), "ratios": self.ratios.tolist(),
                "nielsen": list(NIELSEN_FIGURES)}


def mnist_standin(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    """``(x (n, 784), one-hot targets (n, 10))``: MNIST's pixel statistics, no digits.

    Each pixel is on with probability 0.19 and then uniform in [0.37, 1] (mean pixel 0.13, as
    MNIST's); labels are uniform over the ten digits.
    """
    on = rng.random((n, NIELSEN_SIZES[0])) < MNIST_ON_FRACTION
    x = np.where(on, rng.uniform(MNIST_ON_LOW, 1.0, on.shape), 0.0)
    return x, np.eye(NIELSEN_SIZES[-1])[rng.integers(0, NIELSEN_SIZES[-1], n)]


def nielsen_params(rng: np.random.Generator, sizes: Sequence[int] = NIELSEN_SIZES) -> dict[str, F64]:
    """network2's ``default_weight_initializer`` in row form: ``W_i ~ N(0, 1)/√n_in``, ``b_i ~ N(0, 1)``."""
    params: dict[str, F64] = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        params[f"W{i}"] = rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)
        params[f"b{i}"] = rng.standard_normal(n_out)
    return params


def nielsen_bias_gradients(params: dict[str, F64], x: F64, y: F64) -> list[F64]:
    """The hand ``∂C/∂b^l`` of network2's cross-entropy cost ``C = (1/n) Σ_x C_x``, every layer.

    The sigmoid output is read as inside the cost (``reference.mlp.MLP("sigmoid", "identity")``
    gives the logits ``z^L``): ``∂C/∂z^L = (σ(z^L) − y)/n`` is ``CrossEntropyCost.delta`` averaged
    over the ``n`` images, back-propagated by the reference MLP's hand backward.

    Args:
        params: ``W0, b0, ..., W4, b4`` (row form, ``W_i`` is (n_in, n_out)).
        x: images, (n, 784).
        y: one-hot targets, (n, 10).
    """
    stack = MLP("sigmoid", "identity")
    logits = np.asarray(stack.forward(params, x))
    dy = (0.5 * (np.tanh(0.5 * logits) + 1.0) - y) / x.shape[0]
    dparams = stack.backward_with_deltas(params, x, dy)[0]
    return [np.asarray(dparams[f"b{i}"]) for i in range(len(params) // 2)]


def _jax_bias_gradients(params: dict[str, F64], x: F64, y: F64) -> list[F64]:
    """``jax.grad`` (float64) of ``C = (1/n) Σ_x Σ_j [softplus(z_j) − y_j z_j]`` in the biases."""
    import jax
    import jax.numpy as jnp

    stack = MLP("sigmoid", "identity")
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}

        def cost(p: Any) -> Any:
            z = stack.forward(p, jnp.asarray(x))
            return jnp.sum(jnp.logaddexp(0.0, z) - jnp.asarray(y) * z) / x.shape[0]

        g = jax.jit(jax.grad(cost))(p)
        return [np.asarray(g[f"b{i}"]) for i in range(len(params) // 2)]


def run_nielsen(*, seeds: int = 10, n_images: int = 1000) -> NielsenResult:
    """``‖∂C/∂b^l‖`` of Nielsen's sigmoid network at initialisation, per seed and hidden layer.

    The hand gradient (:func:`nielsen_bias_gradients`) is checked against ``jax.grad`` of the
    same cost on every seed (``agree``: relative error ≤ 1e-9 in every layer).
    """
    rows, agree = [], True
    for seed in range(seeds):
        rng = np.random.default_rng([16, seed])
        params = nielsen_params(rng)
        x, y = mnist_standin(rng, n_images)
        hand = nielsen_bias_gradients(params, x, y)
        auto = _jax_bias_gradients(params, x, y)
        agree = agree and all(float(np.linalg.norm(h - a)) <= 1e-9 * float(np.linalg.norm(a))
                              for h, a in zip(hand, auto, strict=True))
        rows.append([float(np.linalg.norm(g)) for g in hand[:-1]])  # the hidden layers, as Nielsen
    return NielsenResult(norms=np.asarray(rows), agree=agree, n_images=n_images)


# ----------------------------------------------------------------------------- the run


def grid(quick: bool) -> list[ModelSpec]:
    """The correct models: every combination of the module docstring (quick: a handful)."""
    if quick:
        return [ModelSpec("rnn", "tanh", "gaussian", 0.5), ModelSpec("rnn", "tanh", "orthogonal", 1.5),
                ModelSpec("mlp", "relu", "gaussian", 1.5, depth=4)]
    rnns = [ModelSpec("rnn", act, init, eta) for act in ("tanh", "sigmoid", "relu")
            for init in ("gaussian", "orthogonal") for eta in ETAS]
    mlps = [ModelSpec("mlp", act, init, g, depth=d) for act in ("tanh", "sigmoid", "relu")
            for init in ("gaussian", "orthogonal") for d in MLP_DEPTHS for g in MLP_GAINS[act]]
    return rnns + mlps


def bug_specs(quick: bool) -> list[ModelSpec]:
    """The planted bugs on hosts whose true regime is not the one the bug imitates (quick: the first)."""
    def rnn(act: str, init: str, eta: float) -> ModelSpec:
        return ModelSpec("rnn", act, init, eta)

    def mlp(act: str, init: str, gain: float) -> ModelSpec:
        return ModelSpec("mlp", act, init, gain, depth=4)

    hosts: dict[str, list[ModelSpec]] = {
        "no recurrent carry": [rnn("tanh", "orthogonal", 3.0), rnn("relu", "orthogonal", 2.0)],
        "carry ×3": [rnn("tanh", "orthogonal", 1.0), rnn("relu", "orthogonal", 1.0)],
        "f' missing in one layer": [mlp("sigmoid", "gaussian", 1.0), mlp("tanh", "orthogonal", 1.0)],
        "f' applied twice": [mlp("tanh", "gaussian", 1.5), mlp("sigmoid", "orthogonal", 4.0)],
    }
    if quick:  # the three bugs of the issue, one host each
        return [dataclasses.replace(hosts[bug][0], bug=bug) for bug in list(BUGS)[:3]]
    return [dataclasses.replace(h, bug=bug) for bug, hs in hosts.items() for h in hs]


def variants(quick: bool) -> list[Variant]:
    """The loss variants, the base ``c = 1, sum`` first: every scale under the sum, and the mean."""
    scales = (1.0, 1e3) if quick else SCALES
    out = [Variant(c, "sum") for c in scales] + [Variant(1.0, "mean")]
    return sorted(out, key=lambda v: not v.base)


@dataclass(frozen=True, slots=True)
class PracticeResult:
    """Every row of the comparison and the Nielsen reproduction.

    Attributes:
        rows: one per (model, variant), correct models first, then the planted bugs.
        nielsen: part 6.
        quick: whether the quick grid was run.
        wall_s: seconds for the whole section.
    """

    rows: tuple[PracticeRow, ...]
    nielsen: NielsenResult
    quick: bool
    wall_s: float

    def correct(self, *, base: bool | None = None) -> list[PracticeRow]:
        return [r for r in self.rows if not r.spec.bug and (base is None or r.variant.base == base)]

    def bugged(self) -> list[PracticeRow]:
        return [r for r in self.rows if r.spec.bug]

    def models(self) -> list[ModelSpec]:
        return list(dict.fromkeys(r.spec for r in self.correct()))

    def accuracy(self, rule: str, *, base_only: bool = True, kind: str | None = None) -> tuple[int, int]:
        """``(right, total)`` of the rule's regime against the truth on the correct models."""
        rows = [r for r in self.correct(base=True if base_only else None) if kind in (None, r.spec.kind)]
        return sum(r.regime_of(rule) == r.truth.regime for r in rows), len(rows)

    def flips(self, rule: str, kind: str | None = None) -> tuple[int, int, int, int]:
        """``(flipped variants, variants, models with a flip, models)`` under rescaling."""
        base = {r.spec: r.verdict(rule) for r in self.correct(base=True)}
        others = [r for r in self.correct(base=False) if kind in (None, r.spec.kind)]
        flipped = [r for r in others if r.verdict(rule) != base[r.spec]]
        models = [m for m in base if kind in (None, m.kind)]
        return len(flipped), len(others), len({r.spec for r in flipped}), len(models)

    def blames(self, rule: str) -> Counter[str]:
        """How the rule's verdicts on the planted bugs (every variant) split: backward / model / none."""
        return Counter(r.blames(rule) for r in self.bugged())

    def confusion(self, rule: str) -> Counter[tuple[str, str]]:
        """``(truth, verdict regime)`` counts on the correct models' base variants."""
        return Counter((r.truth.regime, r.regime_of(rule)) for r in self.correct(base=True))

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "gradcheck.practice/1", "quick": self.quick, "wall_s": self.wall_s,
                "truth_band": TRUTH_BAND, "rows": [r.to_dict() for r in self.rows],
                "truths": {m.label: r.truth.to_dict() for m, r in
                           {r.spec: r for r in self.correct(base=True)}.items()},
                "nielsen": self.nielsen.to_dict()}


def run_practice(*, quick: bool = False, log: Callable[[str], None] = print) -> PracticeResult:
    """Run every rule on the grid and the planted bugs under every loss variant, then Nielsen.

    Args:
        quick: three models and three planted bugs (base loss only), c ∈ {1, 1e3} and the mean,
            and Nielsen on three seeds of 200 images.
        log: one line per model.
    """
    t0 = time.perf_counter()
    rows: list[PracticeRow] = []
    vs = variants(quick)
    specs = grid(quick) + bug_specs(quick)
    for i, spec in enumerate(specs, 1):
        truth = _truth(spec)
        mine = [evaluate(spec, v, truth) for v in (vs[:1] if quick and spec.bug else vs)]
        rows.extend(mine)
        b = mine[0]
        log(f"  [{i}/{len(specs)}] {spec.label}: truth {truth.regime} ({truth.rate:+.3g}); "
            f"gradcheck {b.verdict('gradcheck')}, AUTOTRAINER {b.verdict('AUTOTRAINER')}, "
            f"DeepDiagnosis {b.verdict('DeepDiagnosis')}")
    nielsen = run_nielsen(seeds=3, n_images=200) if quick else run_nielsen()
    log(f"  Nielsen: {', '.join(f'{v:.4f}' for v in nielsen.mean)} (his {NIELSEN_FIGURES})")
    return PracticeResult(rows=tuple(rows), nielsen=nielsen, quick=quick, wall_s=time.perf_counter() - t0)


# ----------------------------------------------------------------------------- markdown


def _json(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _frac(k: int, n: int) -> str:
    return f"{k}/{n} ({100.0 * k / n:.0f} %)" if n else "—"


def render(res: PracticeResult) -> str:
    """The practice-tools section of RESULTS.md (markdown)."""
    models, vs = res.models(), list(dict.fromkeys(r.variant for r in res.correct()))
    n_rnn = sum(m.kind == "rnn" for m in models)
    scales = ", ".join(f"{v.scale:g}" for v in sorted(vs, key=lambda v: v.scale) if v.reduction == "sum")
    out = [
        f"{len(models)} models of known regime ({n_rnn} Elman RNNs, {len(models) - n_rnn} MLPs) and "
        f"{len({r.spec for r in res.bugged()})} planted backward bugs, each under {len(vs)} losses "
        f"(L = c·½Σ(y − t)² summed, c ∈ {{{scales}}}, "
        "and its mean at c = 1); "
        f"{res.wall_s:.0f} s in all. The practice rules are ported literally (`benchmarks/practice.py`) "
        "and read the same hand gradients gradcheck checks:\n",
        "- **AUTOTRAINER** (Zhang et al., ICSE 2021; `monitor.gradient_issue`): vanishing when "
        f"‖g_first‖/‖g_last‖ < {AT_VANISH_RATIO:g} and ‖g_first‖ < {AT_VANISH_FIRST:g}, exploding when "
        f"the ratio > {AT_EXPLODE_RATIO:g}, dying ReLU when ≥ {AT_DYING_ZEROS:.0%} of the gradient "
        "entries are exactly 0 (reported relu > explode > vanish);",
        "- **DeepDiagnosis** (Wardat et al., ICSE 2022; `callbacks.py`): from the last layer back, a "
        "numerical error when mean(∂L/∂W) is NaN, inf or 0, a vanishing gradient when "
        f"mean|∂L/∂W| < {DD_VANISH_MEAN:g}; no exploding rule;",
        "- g = the layers' weight gradients ∂L/∂W_i for MLPs; for RNNs the unrolled network's "
        "\"layers\" are the time steps, g_t = x_tᵀ e_t (step t's share of ∂L/∂V) from the hand BPTT;",
        "- **gradcheck**: `gradient_flow(...).regime` with its cause (model / backward).\n",
        "Known regime: Pascanu's η = σ_max(U)·γ < 1 (RNN), else the rate λ of exact Jacobian products "
        f"(JAX, float64) on fresh inputs — ‖∂h_T/∂h_0‖₂ over {TRUTH_HORIZON} steps for RNNs, the rms "
        f"gain of ∂net_(L−1)/∂net_0 per layer for MLPs — with |λ| ≤ {TRUTH_BAND:g} stable.\n",
        "| | " + " | ".join(RULES) + " |", "|---|" + "---|" * len(RULES)]

    def line(label: str, cells: list[str]) -> None:
        out.append(f"| {label} | " + " | ".join(cells) + " |")

    line("accuracy vs known regime (c = 1, sum)", [_frac(*res.accuracy(r)) for r in RULES])
    for k, name in (("rnn", "RNNs"), ("mlp", "MLPs")):
        line(f"… {name}", [_frac(*res.accuracy(r, kind=k)) for r in RULES])
    line("accuracy, all loss variants", [_frac(*res.accuracy(r, base_only=False)) for r in RULES])
    kinds: tuple[tuple[str | None, str], ...] = ((None, "all"), ("rnn", "RNNs"), ("mlp", "MLPs"))
    for kind, name in kinds:
        cells = []
        for r in RULES:
            f, n, fm, m = res.flips(r, kind)
            cells.append(f"{f}/{n} variants, {fm}/{m} models")
        line(f"verdict flips under rescaling ({name})", cells)
    nb = len(res.bugged())
    for what, key in (("blames the backward", "backward"), ("blames the model", "model"),
                      ("says nothing", "none")):
        line(f"planted bugs: {what}", [_frac(res.blames(r)[key], nb) for r in RULES])
    at_dying = [r for r in res.correct(base=True) if r.autotrainer.dying_relu]
    out.append("")
    out.append(f"AUTOTRAINER's dying-ReLU rule fires on {len(at_dying)} correct model(s) at c = 1"
               + (": " + ", ".join(f"{r.spec.label} (truth {r.truth.regime})" for r in at_dying)
                  if at_dying else "") + "; it is left out of its accuracy (not a regime).")
    out.append("")
    regimes = ("vanishing", "stable", "exploding")
    out.append("Verdicts against the known regime (correct models, c = 1, sum; rows: truth):\n")
    out.append("| truth | models | " + " | ".join(f"{r}: {g[:4]}." for r in RULES for g in regimes) + " |")
    out.append("|---|---|" + "---|" * (len(RULES) * len(regimes)))
    for t in regimes:
        n = sum(1 for r in res.correct(base=True) if r.truth.regime == t)
        cells = [str(res.confusion(rule)[(t, g)]) for rule in RULES for g in regimes]
        out.append(f"| {t} | {n} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("Planted bugs (verdicts at c = 1, sum; counts over all loss variants; gradcheck's regime is "
               "fitted to the hand norms, \"JAX's norms\" is its `model_regime`, the model's own):\n")
    out.append("| bug | host (truth) | gradcheck | AUTOTRAINER | DeepDiagnosis |")
    out.append("|---|---|---|---|---|")
    for spec in dict.fromkeys(r.spec for r in res.bugged()):
        mine = [r for r in res.bugged() if r.spec == spec]
        cells = []
        for rule in RULES:
            c = Counter(r.verdict(rule) for r in mine)
            cells.append(f"{mine[0].verdict(rule)} ({', '.join(f'{k} {v}' for k, v in c.most_common())})")
        if mine[0].model_regime:
            cells[0] += f"; JAX's norms: {mine[0].model_regime}"
        out.append(f"| {spec.bug} | {spec.host.label} ({mine[0].truth.regime}) | " + " | ".join(cells) + " |")
    out.append("")
    out.extend(_render_nielsen(res.nielsen))
    return "\n".join(out)


def _render_nielsen(n: NielsenResult) -> list[str]:
    ours, sd, theirs = n.mean, n.std, np.asarray(NIELSEN_FIGURES)
    out = [f"Nielsen, ch. 5 (speed of learning at initialisation): ‖∂C/∂b^l‖ of the sigmoid network "
           f"{list(NIELSEN_SIZES)}, network2's default initialiser (weights N(0, 1)/√n_in, biases "
           f"N(0, 1)) and cross-entropy cost, averaged over {n.n_images} images, mean ± sd over "
           f"{len(n.norms)} seeds; hand backward {'agrees' if n.agree else 'DISAGREES'} with JAX. "
           "**The inputs differ**: no MNIST here, a stand-in with MNIST's pixel density (19 % of "
           "pixels on, uniform in [0.37, 1]; uniform labels, one-hot targets).\n",
           "| hidden layer | this study | Nielsen | ratio to previous (study) | ratio (Nielsen) |",
           "|---|---|---|---|---|"]
    for i in range(len(ours)):
        r_us = f"{ours[i] / ours[i - 1]:.2f}×" if i else "—"
        r_him = f"{theirs[i] / theirs[i - 1]:.2f}×" if i else "—"
        out.append(f"| {i + 1} | {ours[i]:.4f} ± {sd[i]:.4f} | {theirs[i]:.4f} | {r_us} | {r_him} |")
    geo_us = float(np.exp(np.mean(np.log(n.ratios))))
    geo_him = float(np.exp(np.mean(np.log(theirs[1:] / theirs[:-1]))))
    within = np.abs(ours - theirs) <= 2 * np.maximum(sd, 1e-12)
    out.append("")
    times = ", ".join(f"{o / t:.2f}" for o, t in zip(ours, theirs, strict=True))
    out.append(f"Per-layer growth towards the output: {geo_us:.2f}× on average here, {geo_him:.2f}× in "
               f"Nielsen's figures; the norms themselves are {times} "
               f"times his, {int(within.sum())} of {len(ours)} within two seed standard deviations of "
               "his single-seed MNIST values.")
    out.append("")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.practice", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a handful of models")
    args = ap.parse_args(argv)
    res = run_practice(quick=args.quick, log=lambda s: print(s, flush=True))
    print(render(res))


if __name__ == "__main__":
    main()
