"""The gradient rules of two practice tools, ported, to show how they would judge the same gradients.

Tools that flag vanishing and exploding gradients in practice decide with absolute thresholds on
gradient magnitudes.  Two of them, ported literally (names and defaults as in their code):

* **AUTOTRAINER** (Zhang et al., ICSE 2021; ``AutoTrainer/utils/monitor.py``, ``gradient_issue``):
  vanishing when ``‖g_first‖/‖g_last‖ < 1e-3`` and ``‖g_first‖ < 1e-4`` (kernel gradients, input
  layer first), exploding when the ratio is above 70, dying ReLU when at least 70 % of all
  gradient entries are exactly 0;
* **DeepDiagnosis** (Wardat et al., ICSE 2022; ``callback/callbacks.py``): from the last layer
  back, a numerical error when ``mean(∂L/∂W)`` is NaN, inf or 0, a vanishing gradient when
  ``mean|∂L/∂W| < 1e-7``; no exploding rule.

Such rules change their verdict when the loss is rescaled or a sum becomes a mean (the gradient
scales by the same factor), have no per-time-step quantity for BPTT (the unrolled network's
"layers" stand in for the steps), and never ask whether the gradient is right.  gradcheck's own
verdicts (:mod:`gradcheck.dynamics`) use only scale-free quantities; the study
(:mod:`gradcheck.study`) and ``benchmarks/practice.py`` put the two side by side.

References:
    X. Zhang, J. Zhai, S. Ma, C. Shen, "AUTOTRAINER: An Automatic DNN Training Problem Detection
    and Repair System", ICSE 2021.
    M. Wardat, B. D. Cruz, W. Le, H. Rajan, "DeepDiagnosis: Automatically Diagnosing Faults and
    Recommending Actionable Fixes in Deep Learning Programs", ICSE 2022.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck.dynamics import Regime
from gradcheck.result import json_number

__all__ = [
    "AT_DYING_ZEROS",
    "AT_EXPLODE_RATIO",
    "AT_VANISH_FIRST",
    "AT_VANISH_RATIO",
    "DD_VANISH_MEAN",
    "LOSS_SCALES",
    "AutoTrainerVerdict",
    "DeepDiagnosisVerdict",
    "PracticeVerdicts",
    "autotrainer_gradient_issue",
    "deepdiagnosis_gradient",
    "hand_layer_gradients",
    "practice_verdicts",
]

#: AUTOTRAINER ``beta_1``: ``‖g_first‖ / ‖g_last‖`` below it (with ``beta_2``) is vanishing.
AT_VANISH_RATIO = 1e-3
#: AUTOTRAINER ``beta_2``: ``‖g_first‖`` below it (with ``beta_1``) is vanishing.
AT_VANISH_FIRST = 1e-4
#: AUTOTRAINER ``beta_3``: ``‖g_first‖ / ‖g_last‖`` above it is exploding.
AT_EXPLODE_RATIO = 70.0
#: AUTOTRAINER ``gamma``: the fraction of gradient entries exactly 0 from which ReLUs are dying.
AT_DYING_ZEROS = 0.7
#: DeepDiagnosis ``threshold_VG``: ``mean|∂L/∂W|`` below it is a vanishing gradient.
DD_VANISH_MEAN = 1e-7



def _json(v: Any) -> Any:
    return json_number(v) if isinstance(v, float) else v



def _literal_norm(a: Any) -> float:
    """``np.linalg.norm(np.array(a))`` as AUTOTRAINER's ``gradient_norm`` takes it (Frobenius)."""
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64)))


@dataclass(frozen=True, slots=True)
class AutoTrainerVerdict:
    """AUTOTRAINER's gradient symptoms of one gradient list.

    Attributes:
        ratio: ``‖kernel_0‖ / ‖kernel_last‖`` (``gra_rate``).
        first_norm: ``‖kernel_0‖``.
        zero_fraction: the fraction of all gradient entries exactly 0 (``total_ratio``).
        vanish, explode, dying_relu, nan: the four symptoms.
    """

    ratio: float
    first_norm: float
    zero_fraction: float
    vanish: bool
    explode: bool
    dying_relu: bool
    nan: bool

    @property
    def issue(self) -> str:
        """The issue ``IssueMonitor.determine`` reports: ``relu`` > ``explode`` > ``vanish``, NaN
        gradients as ``explode``; ``""`` for none."""
        if self.nan:
            return "explode"
        if self.dying_relu:
            return "relu"
        return "explode" if self.explode else ("vanish" if self.vanish else "")

    @property
    def regime(self) -> Regime:
        """The regime its two gradient-flow rules name (dying ReLU aside): explode > vanish."""
        if self.nan or self.explode:
            return "exploding"
        return "vanishing" if self.vanish else "stable"

    def to_dict(self) -> dict[str, Any]:
        return {**{k: _json(getattr(self, k)) for k in self.__slots__}, "issue": self.issue,
                "regime": self.regime}


def autotrainer_gradient_issue(
    gradient_list: Sequence[Any],
    *,
    threshold_low: float = AT_VANISH_RATIO,
    threshold_low_1: float = AT_VANISH_FIRST,
    threshold_high: float = AT_EXPLODE_RATIO,
    threshold_die_1: float = AT_DYING_ZEROS,
) -> AutoTrainerVerdict:
    """AUTOTRAINER's ``gradient_issue`` (``AutoTrainer/utils/monitor.py``), ported literally.

    Args:
        gradient_list: ``[kernel_0, bias_0, kernel_1, bias_1, ...]``, input layer first (Keras'
            ``get_weights`` order); an even number of arrays.
        threshold_low: ``beta_1``; ``threshold_low_1``: ``beta_2``; ``threshold_high``:
            ``beta_3``; ``threshold_die_1``: ``gamma`` (AUTOTRAINER's defaults).

    Returns:
        The symptoms; ``.issue`` is what AUTOTRAINER reports.

    References:
        X. Zhang, J. Zhai, S. Ma, C. Shen, "AUTOTRAINER: An Automatic DNN Training Problem
        Detection and Repair System", ICSE 2021 (§III, problem conditions).

    Examples:
        >>> v = autotrainer_gradient_issue([np.full(4, 1e-5), np.ones(2), np.ones(4), np.ones(2)])
        >>> v.vanish, v.issue
        (True, 'vanish')
    """
    if len(gradient_list) % 2:
        raise ValueError(f"{len(gradient_list)} arrays: AUTOTRAINER expects kernel/bias pairs.")
    arrays = [np.asarray(g, dtype=np.float64) for g in gradient_list]
    nan = any(bool(np.isnan(g).any() or np.isinf(g).any()) for g in arrays)
    zeros = sum(int(np.sum(g == 0)) for g in arrays)
    total = sum(g.size for g in arrays)
    kernels = [_literal_norm(g) for g in arrays[0::2]]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.float64(kernels[0]) / np.float64(kernels[-1]))
    return AutoTrainerVerdict(
        ratio=ratio, first_norm=kernels[0], zero_fraction=zeros / total,
        vanish=ratio < threshold_low and kernels[0] < threshold_low_1,
        explode=ratio > threshold_high, dying_relu=zeros / total >= threshold_die_1, nan=nan)


@dataclass(frozen=True, slots=True)
class DeepDiagnosisVerdict:
    """DeepDiagnosis' verdict on the weight gradients.

    Attributes:
        symptom: ``"numerical error"``, ``"vanishing gradient"`` or ``""``.
        layer: the layer (0 = input) where it was found, else ``None``.
        mean_abs: ``mean|∂L/∂W_i|`` per layer, input first.
        non_finite: whether the numerical error is a NaN / inf (not an exact-zero mean).
    """

    symptom: str
    layer: int | None
    mean_abs: tuple[float, ...]
    non_finite: bool = False

    @property
    def regime(self) -> Regime:
        """Vanishing for its vanishing gradient and for an exactly-zero mean gradient (the limit
        of vanishing), exploding for a non-finite one, otherwise stable."""
        if self.symptom == "numerical error":
            return "exploding" if self.non_finite else "vanishing"
        return "vanishing" if self.symptom else "stable"

    def to_dict(self) -> dict[str, Any]:
        return {"symptom": self.symptom, "layer": self.layer, "non_finite": self.non_finite,
                "mean_abs": [_json(v) for v in self.mean_abs], "regime": self.regime}


def deepdiagnosis_gradient(weight_grads: Sequence[Any], *, threshold_vg: float = DD_VANISH_MEAN
                           ) -> DeepDiagnosisVerdict:
    """DeepDiagnosis' checks of the weight gradients (``callback/callbacks.py``), ported literally.

    From the last layer to the first, the first layer whose ``mean(g)`` is NaN, inf or 0 is a
    numerical error (``identifyNumerical``) and the first with ``mean|g| < threshold_vg`` a
    vanishing gradient (``identifyVanishingGradient``); the walk stops at the first symptom.

    Args:
        weight_grads: the kernel gradients ``∂L/∂W_i``, input layer first.
        threshold_vg: ``threshold_VG`` (1e-7).

    References:
        M. Wardat, B. D. Cruz, W. Le, H. Rajan, "DeepDiagnosis: Automatically Diagnosing Faults
        and Recommending Actionable Fixes in Deep Learning Programs", ICSE 2022 (Table 1).

    Examples:
        >>> deepdiagnosis_gradient([np.full(3, 1e-8), np.ones(3)]).symptom
        'vanishing gradient'
    """
    arrays = [np.asarray(g, dtype=np.float64) for g in weight_grads]
    mean_abs = tuple(float(np.mean(np.abs(g))) for g in arrays)
    for i in reversed(range(len(arrays))):
        mean = float(np.mean(arrays[i]))
        if math.isnan(mean) or math.isinf(mean) or mean == 0:
            return DeepDiagnosisVerdict("numerical error", i, mean_abs, not math.isfinite(mean))
        if mean_abs[i] < threshold_vg:
            return DeepDiagnosisVerdict("vanishing gradient", i, mean_abs)
    return DeepDiagnosisVerdict("", None, mean_abs)




#: The loss factors of the rescaling comparison: ``L → c·L`` scales every gradient by ``c``.
LOSS_SCALES: tuple[float, ...] = (1e-3, 1e-1, 10.0, 1e3)


@dataclass(frozen=True, slots=True)
class PracticeVerdicts:
    """What both tools say of one model's gradients, and how often rescaling the loss changes it.

    Attributes:
        autotrainer: AUTOTRAINER's verdict on the gradients as given.
        deepdiagnosis: DeepDiagnosis' verdict on them.
        autotrainer_flips: of the ``variants`` rescaled losses (``c·L`` for ``c`` in
            :data:`LOSS_SCALES`, and the mean over the loss's terms instead of their sum), those
            whose AUTOTRAINER issue differs from the one of the loss as given.
        deepdiagnosis_flips: the same for DeepDiagnosis' symptom.
        variants: the number of rescaled losses tried.
    """

    autotrainer: AutoTrainerVerdict
    deepdiagnosis: DeepDiagnosisVerdict
    autotrainer_flips: int
    deepdiagnosis_flips: int
    variants: int

    def to_dict(self) -> dict[str, Any]:
        return {"autotrainer": self.autotrainer.to_dict(), "deepdiagnosis": self.deepdiagnosis.to_dict(),
                "autotrainer_flips": self.autotrainer_flips, "deepdiagnosis_flips": self.deepdiagnosis_flips,
                "variants": self.variants}


def practice_verdicts(kernels: Sequence[Any], biases: Sequence[Any], *, terms: int) -> PracticeVerdicts:
    """Both tools' verdicts on per-layer (or per-time-step) gradients, and their flips under rescaling.

    Args:
        kernels: ``∂L/∂W_i`` per layer, input layer (or time step 0) first.
        biases: ``∂L/∂b_i`` per layer, in the same order.
        terms: the number of terms the loss sums (the mean divides the gradient by it).

    Examples:
        >>> g = [np.full((3, 3), 1e-5), np.ones((3, 3))]
        >>> v = practice_verdicts(g, [np.ones(3), np.ones(3)], terms=4)
        >>> v.autotrainer.issue, v.autotrainer_flips, v.variants
        ('vanish', 2, 5)
    """
    if len(kernels) != len(biases) or not kernels:
        raise ValueError(f"{len(kernels)} kernels and {len(biases)} biases: expected one of each per layer.")
    if terms < 1:
        raise ValueError(f"terms={terms}: the loss sums at least one term.")

    def judged(c: float) -> tuple[AutoTrainerVerdict, DeepDiagnosisVerdict]:
        ks = [c * np.asarray(k, dtype=np.float64) for k in kernels]
        bs = [c * np.asarray(b, dtype=np.float64) for b in biases]
        return (autotrainer_gradient_issue([a for kb in zip(ks, bs, strict=True) for a in kb]),
                deepdiagnosis_gradient(ks))

    at, dd = judged(1.0)
    others = [judged(c) for c in (*LOSS_SCALES, 1.0 / terms)]
    return PracticeVerdicts(at, dd, sum(o[0].issue != at.issue for o in others),
                            sum(o[1].symptom != dd.symptom for o in others), len(others))


def hand_layer_gradients(model: Any, params: Any, x: Any, dy: Any) -> tuple[list[Any], list[Any]]:
    """The hand backward's ``(kernels, biases)`` per layer, as the practice tools read a network.

    A stack with ``backward_with_deltas`` (``reference.mlp.MLP``): ``∂L/∂W_i``, ``∂L/∂b_i``, input
    layer first.  An Elman RNN with ``bptt``, ``states`` and ``cell_backward``
    (``reference.rnn.ElmanRNN``): the unrolled network's layers are the time steps, so step t's
    shares of the input weights' and the bias' gradients, ``x_tᵀ e_t`` and ``Σ e_t``, step 0 first.
    """
    if hasattr(model, "bptt"):
        deltas = model.bptt(params, x, dy)[2]
        S = model.states(params, x)
        steps = [model.cell_backward(params, S[t], x[t], S[t + 1], deltas[t])[0] for t in range(len(x))]
        return [g["V"] for g in steps], [g["b"] for g in steps]
    grads = model.backward_with_deltas(params, x, dy)[0]
    n = len(grads) // 2
    return [grads[f"W{i}"] for i in range(n)], [grads[f"b{i}"] for i in range(n)]
