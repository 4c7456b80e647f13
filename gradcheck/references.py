"""``Problem`` → frozen :class:`References`: what the evidence stages measure against.

This stage evaluates the forward in float64, checks that it is deterministic, measures its noise
floor and the precision it really computes in, decides whether the complex step is safe, gets
JAX's gradient (the autodiff reference) when the forward or a twin runs on JAX, sets up compiled
batches of finite differences (``batch=True``) and detects the exploding regime of a sequence.
Each fact is settled once, here, into the objective and the record; no later stage changes them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradcheck import _hygiene as hy
from gradcheck import autodiff, numeric
from gradcheck.dynamics import log_slope
from gradcheck.errors import InvalidArgument
from gradcheck.options import CheckOptions
from gradcheck.problem import Problem

__all__ = ["EXPLODING_GROWTH", "MAX_ERR_SCALE", "References", "Regime", "build", "regime"]

#: Growth of ‖∂L/∂x_t‖ from the last time step back to the first (a sequence leaf's reference
#: gradient, fitted log-linearly) from which a check is in the *exploding regime*: finite
#: differences there sit on a steep, strongly curved loss, their error bars are widened by
#: √growth (at most ``MAX_ERR_SCALE``) and autodiff, where present, is the reference.
EXPLODING_GROWTH = 1e3
MAX_ERR_SCALE = 1e3


@dataclass(frozen=True)
class Regime:
    """How the gradient of the sequence leaves grows back in time."""

    #: ``"exploding"`` or ``None``.
    name: str | None
    #: ``exp(slope·(T−1))`` of the steepest sequence leaf (1 without sequences).
    growth: float
    #: The factor on every finite-difference error bar (√growth when exploding, else 1).
    err_scale: float
    note: str


@dataclass(frozen=True)
class References:
    """The settled references of a problem.

    ``obj`` evaluates the loss over float64 leaves (and counts the calls); ``eps`` is the
    relative noise that sets finite-difference steps, ``precision`` the dtype the forward
    really computes in, ``complex_ok`` whether the complex step may be used, ``ad`` JAX's
    gradient per leaf (``None`` without a JAX path), ``global_scale`` the largest reference
    entry over all leaves.
    """

    obj: numeric.Objective
    eps: float
    precision: np.dtype[Any]
    complex_ok: bool
    ad: tuple[np.ndarray, ...] | None
    global_scale: float
    regime: Regime
    available: tuple[str, ...]
    notes: tuple[str, ...]
    #: Wall-clock seconds of one forward call, measured at the point.
    seconds_per_call: float = 0.0
    #: ``time.monotonic()`` after which no more entries are measured (``budget=`` seconds after
    #: the references were settled), or ``None``.
    deadline: float | None = None
    #: Where the autodiff reference came from: ``"array-api"`` (the forward itself on JAX
    #: arrays), ``"jax_fun"``, ``"twin"`` (the automatic JAX twin) or ``"none"``.
    jax_source: str = "none"

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    @property
    def exploding(self) -> bool:
        return self.regime.name == "exploding"

    @property
    def numeric(self) -> bool:
        return "numeric" in self.available


def _forward(problem: Problem) -> Callable[[Sequence[np.ndarray], str], Any]:
    """The user's forward over flat leaves (cast to float64, complex kept), every error naming
    what was being evaluated."""
    what = f"{problem.name}'s forward"

    def evaluate(leaves: Sequence[np.ndarray], context: str) -> Any:
        cast = [leaf if np.iscomplexobj(leaf) else leaf.astype(np.float64, copy=False)
                for leaf in leaves]
        value = hy.call_user(problem.loss, what, problem.rebuild(cast), where=context)
        return hy.scalar_loss(value, what)

    return evaluate


def _precision_class(eps: float) -> np.dtype[Any]:
    """The dtype of a forward that does not resolve float64 perturbations: float16 when its
    measured relative noise says so, float32 otherwise."""
    return np.dtype(np.float16) if eps > 1e-4 else np.dtype(np.float32)


def _measure_forward(obj: numeric.Objective, rng: np.random.Generator
                     ) -> tuple[float, float, np.dtype[Any]]:
    """The forward's noise, the relative noise ``ε`` that sets the steps, and its precision.

    The precision probe decides; when it cannot tell, the measured relative noise does.  A
    low-precision forward's noise is never taken below its dtype's rounding of the loss.
    """
    noise = numeric.estimate_noise(obj, rng)
    probe = numeric.resolves_float64(obj, rng)
    exact = probe if probe is not None else (
        numeric.relative_step(noise, obj.f0, float64=False) <= numeric.LOW_PRECISION_NOISE)
    if exact:
        return noise, numeric.relative_step(noise, obj.f0), np.dtype(np.float64)
    precision = _precision_class(numeric.relative_step(noise, obj.f0, float64=False))
    noise = max(noise, float(np.finfo(precision).eps) * abs(obj.f0))
    return noise, numeric.relative_step(noise, obj.f0, float64=False), precision


def _jax(problem: Problem, obj: numeric.Objective) -> autodiff.AutodiffResult:
    # The values agree within the forward's measured noise (a thousand times it, or of float64's
    # rounding of the loss where the noise is below that or was not measured).
    noise = obj.noise if math.isfinite(obj.noise) else 0.0
    tol = 1e3 * max(noise, numeric.EPS64 * abs(obj.f0)) + 1e-300
    return autodiff.gradient(problem.jax_candidates(), obj.base, expected=obj.f0, tol=tol,
                             twin=problem.twin)


#: Seeds the spot-check directions of an automatic JAX twin.
SALT_TWIN = 0x7417
#: Directions tried before a twin whose every spot check crosses a kink is refused.
TWIN_SPOT_TRIES = 3


def _spot_check(obj: numeric.Objective, grads: Sequence[np.ndarray], seed: int, eps: float
                ) -> str:
    """Whether an automatic twin's gradient agrees with central differences of the user's own
    forward along a seeded direction through every leaf at once: ``""`` when it does, else why
    not.  Along a direction that crosses a kink the twin's value must lie between the one-sided
    slopes (a valid subgradient does); another direction is tried when it does not."""
    rng = np.random.default_rng([seed, SALT_TWIN])
    t = eps ** (1.0 / 3.0)
    why = ""
    for _ in range(TWIN_SPOT_TRIES):
        us = [rng.standard_normal(b.shape) * np.maximum(1.0, np.abs(b)) for b in obj.base]
        f: dict[float, float] = {}
        moved: dict[float, list[np.ndarray]] = {}
        for s in (1.0, -1.0, 0.5, -0.5):
            leaves = [b + s * t * u for b, u in zip(obj.base, us, strict=True)]
            f[s] = float(np.real(obj(leaves, f"checking the automatic JAX twin along a random "
                                               f"direction (step {s * t:.3g})")))
            moved[s] = [x - b for x, b in zip(leaves, obj.base, strict=True)]
        if not all(math.isfinite(v) for v in f.values()):
            return "the forward is not finite along the spot-check direction"
        d1, d2 = (f[1.0] - f[-1.0]) / (2 * t), (f[0.5] - f[-0.5]) / t
        rich = (4.0 * d2 - d1) / 3.0
        pred = sum(float(np.sum(g * (4.0 * (m2 - n2) / t - (m1 - n1) / (2 * t)) / 3.0))
                   for g, m1, n1, m2, n2 in zip(grads, moved[1.0], moved[-1.0], moved[0.5],
                                                moved[-0.5], strict=True))
        error = abs(rich - d2) + 3.0 * obj.noise / t
        slack = 3.0 * error + 1e-6 * (abs(pred) + abs(rich)) + 1e-12 * abs(obj.f0)
        if abs(pred - rich) <= slack:
            return ""
        right = ((f[1.0] - obj.f0) / t, (f[0.5] - obj.f0) / (t / 2))
        left = ((obj.f0 - f[-1.0]) / t, (obj.f0 - f[-0.5]) / (t / 2))
        kink = numeric._is_kink(right, left, obj.noise / t, 1e-6, 0.0)
        low, high = min(*left, *right), max(*left, *right)
        if kink and low - slack <= pred <= high + slack:
            return ""
        why = (f"along a random direction its gradient gives {pred:.6g}, finite differences of "
               f"the forward {rich:.6g} ± {error:.2g}")
        if not kink:
            return why
    return why


def _autodiff(problem: Problem, opts: CheckOptions, obj: numeric.Objective, eps: float,
              notes: list[str]) -> autodiff.AutodiffResult | None:
    """JAX's gradient of the forward (or twin) at the point; ``grads`` is ``None`` with a note
    saying why when there is no JAX path.  An automatic twin is used only when a
    finite-difference spot check of the user's forward agrees with it (:func:`_spot_check`)."""
    if "autodiff" not in opts.references:
        return None
    got = _jax(problem, obj)
    if got.grads is not None and got.kind == "twin":
        why = _spot_check(obj, got.grads, opts.seed, eps)
        if why:
            got = autodiff.AutodiffResult(
                None, "", "no JAX reference: the forward is not JAX-traceable, and its automatic "
                f"JAX twin is not used: {why}; pass jax_fun= for a third source")
        else:
            # Finite differences keep calling the user's own forward (in its own precision).
            got = replace(got, loss=None)
    if got.grads is None:
        fallback = "hand vs finite differences only" if "numeric" in opts.references else "no reference"
        notes.append(f"{got.note}; the verdict uses {fallback}")
    elif got.note:
        notes.append(f"the JAX twin does not compute the forward's loss ({got.note})")
    return got


def _batch(problem: Problem, opts: CheckOptions, obj: numeric.Objective,
           got: autodiff.AutodiffResult | None, notes: list[str]) -> Any:
    """The batched evaluator of ``batch=True``: it needs the forward to run on JAX arrays with
    the numpy forward's value (settled by the autodiff reference when there is one)."""
    if not (opts.batch and "numeric" in opts.references):
        return None
    if got is None:
        got = _jax(problem, obj)
    if got.loss is None or got.kind == "twin":  # an automatic twin is not the user's forward
        notes.append("batch=True, but the forward does not run on JAX arrays with the same value: "
                     "finite differences call the numpy forward one move at a time")
        return None
    return autodiff.batched_moves(got.loss, obj.base)


def _objective(problem: Problem) -> tuple[numeric.Objective, float]:
    """The float64 objective at the point, its ``f0`` from a first evaluation, checked to give
    the same value twice; and the seconds the second call took."""
    # C-ordered, writable float64 copies whatever the user's layout (transposes, slices,
    # broadcast or read-only views): every flat index below is a C-order index into these.
    base = [np.array(v, dtype=np.float64, order="C") for v in problem.values]
    probe = numeric.Objective(_forward(problem), base, f0=problem.f0, contextual=True)
    first = probe(base, "evaluating the loss in float64")
    started = time.perf_counter()
    again = probe(base, "re-evaluating the loss in float64")
    seconds = time.perf_counter() - started
    hy.check_deterministic([float(np.real(first)), float(np.real(again))],
                           f"{problem.name}'s forward")
    return replace(probe, f0=float(np.real(first))), seconds


def build(problem: Problem, opts: CheckOptions) -> References:
    """Settle every reference of ``problem`` (see the module docstring)."""
    notes = list(problem.notes)
    obj, seconds = _objective(problem)
    rng = np.random.default_rng(opts.seed)
    use_numeric = "numeric" in opts.references
    eps, precision = numeric.EPS64, np.dtype(np.float64)
    if use_numeric:
        noise, eps, precision = _measure_forward(obj, rng)
        obj = replace(obj, noise=noise)
    if precision != np.dtype(np.float64):
        notes.append(f"the forward computes in lower precision than float64 (relative noise "
                     f"{eps:.1g}, about {precision}): finite-difference steps and tolerances "
                     f"follow {precision}")
    got = _autodiff(problem, opts, obj, eps, notes)
    ad = got.grads if got is not None else None
    obj = replace(obj, batch=_batch(problem, opts, obj, got, notes))
    available = tuple(r for r, there in (("numeric", use_numeric), ("autodiff", ad is not None))
                      if there)
    if not available:
        raise InvalidArgument("no reference is available: enable 'numeric' in references, or "
                              "make the forward JAX-traceable / pass jax_fun.")
    complex_ok = (use_numeric and opts.complex_step is not False
                  and numeric.complex_safe(obj, rng, eps=eps, tol=1e-6, autodiff=ad).safe)
    found = regime(problem, ad, problem.time_axis.axis, "autodiff" in available, use_numeric)
    if found.name:
        notes.append(found.note)
    return References(
        obj=obj, eps=eps, precision=precision, complex_ok=bool(complex_ok), ad=ad,
        global_scale=_global_scale(problem, ad), regime=found, available=available,
        notes=tuple(notes), seconds_per_call=seconds,
        jax_source=got.kind if got is not None else "none",
        # The budget is for measuring: it starts once the references are settled (JAX's import
        # and tracing are paid once per process, not per check).
        deadline=None if opts.budget is None else time.monotonic() + opts.budget)


def _global_scale(problem: Problem, ad: tuple[np.ndarray, ...] | None) -> float:
    refs = ad or [h for h in problem.hand if h is not None]
    return max((float(np.max(np.abs(r))) for r in refs if r.size), default=0.0)


def regime(problem: Problem, ad: tuple[np.ndarray, ...] | None, time_axis: int | None,
           has_autodiff: bool, has_numeric: bool) -> Regime:
    """Measure how the gradient grows back in time, from the sequence leaves (3 or more axes,
    at least 3 steps along ``time_axis``): the log-linear fit of ``‖∂L/∂x_t‖`` against the steps
    back from the end (:func:`gradcheck.dynamics.log_slope`), ``growth = exp(slope·(T−1))``.
    The reference is autodiff's gradient when there is one, else the hand gradient (whose growth
    only widens the error bars: a wrong hand gradient is still compared with every reference).
    """
    if time_axis is None:
        return Regime(None, 1.0, 1.0, "")
    best: tuple[float, str, float, float, int] = (1.0, "", math.nan, math.nan, 0)
    refs = ad if ad is not None else problem.hand
    for name, ref in zip(problem.names, refs, strict=True):
        if ref is None or ref.ndim < 3 or not -ref.ndim <= time_axis < ref.ndim:
            continue
        steps = np.moveaxis(ref.astype(np.float64), time_axis, 0)
        T = steps.shape[0]
        if T < 3:
            continue
        norms = np.sqrt(np.sum(steps.reshape(T, -1) ** 2, axis=1))
        slope, stderr, n = log_slope(norms)
        if n < 3 or not math.isfinite(slope) or slope <= 2 * (stderr if math.isfinite(stderr) else 0):
            continue
        growth = math.exp(min(slope * (T - 1), 700.0))
        if growth > best[0]:
            best = (growth, name, slope, stderr, T)
    growth, name, slope, stderr, T = best
    if growth < EXPLODING_GROWTH:
        return Regime(None, growth, 1.0, "")
    widen = min(math.sqrt(growth), MAX_ERR_SCALE)
    lean = ("autodiff is the reference where finite differences disagree with it"
            if has_autodiff else "no autodiff reference: finite differences alone, with the widened "
            "error bars" if has_numeric else "autodiff alone")
    note = (f"exploding regime: numeric reference unreliable — ‖∂L/∂{name}_t‖ grows ×{growth:.3g} "
            f"over {T - 1} steps back in time (log-slope {slope:.3g} ± {stderr:.2g} per step along "
            f"axis {time_axis}); finite-difference error bars widened ×{widen:.3g} (√growth) and "
            f"{lean}")
    return Regime("exploding", growth, widen, note)
