"""Finite differences: step rules, central / Richardson / complex-step estimates with error bars.

Every estimator here works on an :class:`Objective` — the user's scalar loss as a function of a
list of float64 arrays (the flattened parameter pytree) — and returns values *with* an error
estimate (truncation + round-off), so that agreement can be judged against what finite
differences can actually resolve rather than against a guessed tolerance.

Notes:
    Central differences ``D(h) = (f(x+h) - f(x-h)) / 2h`` have truncation error ``h²f'''/6`` and
    round-off error ``≈ σ/h`` where ``σ`` is the noise of ``f``; the step ``h = ε^(1/3)·max(1, |x|)``
    balances the two (Numerical Recipes §5.7), with ``ε`` the *measured* relative noise of the
    forward (machine epsilon for a float64 forward, larger for one that computes in float32
    inside).  The step is realised exactly as ``(x + h) - x`` so the divisor is the displacement the
    forward actually saw.  Richardson extrapolation ``R = (4·D(h/2) − D(h)) / 3`` cancels the
    ``h²`` term; ``|R − D(h/2)|`` bounds what is left.  The four evaluations also give one-sided
    differences at two steps: at a kink (ReLU at 0, a max-pool tie) the gap between the right and
    left slopes stays put when the step halves, where a smooth function's gap halves with it.
    The complex step ``Im f(x + ih)/h`` has no subtractive cancellation and is exact to rounding
    for analytic forwards; it is used only after a probe shows the forward is complex-safe.

References:
    W. H. Press et al., *Numerical Recipes*, 3rd ed., §5.7 (numerical derivatives).
    L. F. Richardson (1911), the deferred approach to the limit.
    J. N. Lyness & C. B. Moler (1967); W. Squire & G. Trapp (1998), complex-step derivatives.
    J. J. Moré & S. M. Wild (2011), "Estimating computational noise" (ECnoise).
    scipy.optimize._numdiff (``_compute_absolute_step``); numdifftools (``make_exact``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ComplexProbe",
    "Directional",
    "Objective",
    "Partials",
    "central_partials",
    "complex_partials",
    "complex_safe",
    "directional_central",
    "directional_complex",
    "estimate_noise",
    "relative_step",
    "resolves_float64",
    "step_size",
]

EPS64 = float(np.finfo(np.float64).eps)
#: Complex-step size: a power of two so ``i·h·v`` is formed without rounding.
COMPLEX_STEP = 2.0**-66
#: Relative noise ``σ/|f|`` above which a forward whose precision probe was inconclusive is
#: taken to compute in lower precision than float64.
LOW_PRECISION_NOISE = 1e-10


@dataclass
class Objective:
    """The scalar loss as a function of flat float64 leaves, with a count of forward calls.

    ``evaluate(leaves)`` must return a Python/numpy scalar; with ``contextual=True`` it is called
    as ``evaluate(leaves, context)``, ``context`` saying what is being evaluated (which element is
    perturbed, by how much) so an exception inside user code can say where it happened.  ``base``
    holds the unperturbed leaves and ``f0`` the loss there.  Everything but the call counters is
    settled at construction: a later stage that knows more (the noise) builds a new objective
    with ``dataclasses.replace``, which carries the counters on.
    """

    evaluate: Callable[..., Any]
    base: list[np.ndarray]
    f0: float = 0.0
    calls: int = 0
    context: str = ""
    noise: float = field(default=0.0)
    #: Optional vectorised evaluation: ``batch(k, flat_indices, values) -> losses`` for many
    #: single-element moves of leaf ``k`` at once (``jit``+``vmap`` of the same forward on JAX
    #: arrays; see ``check._batch_evaluator``).  Set to ``None`` after its first failure.
    batch: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None = None
    #: How many of ``calls`` were evaluated in batches.
    batched_calls: int = 0
    contextual: bool = False

    def __call__(self, leaves: Sequence[np.ndarray], context: str = "") -> Any:
        self.calls += 1
        self.context = context
        return self.evaluate(leaves, context) if self.contextual else self.evaluate(leaves)

    def at(self, k: int, flat_index: int, value: Any, context: str = "") -> Any:
        """Evaluate with element ``flat_index`` of leaf ``k`` replaced by ``value``."""
        leaf = self.base[k]
        dtype = np.result_type(leaf.dtype, type(value)) if isinstance(value, complex) else leaf.dtype
        # A C-ordered copy, so that the flat (C-order) index writes into the array the forward
        # sees: reshape(-1) of a Fortran-ordered or strided copy would be a temporary.
        moved = np.array(leaf, dtype=dtype, order="C")
        moved.reshape(-1)[flat_index] = value
        leaves = list(self.base)
        leaves[k] = moved
        return self(leaves, context)

    def at_many(self, k: int, flat_indices: np.ndarray, values: np.ndarray,
                context: Callable[[int], str]) -> np.ndarray:
        """The real part of the loss with element ``flat_indices[i]`` of leaf ``k`` set to
        ``values[i]``, for every ``i``: in batches where a batch evaluator is set (and at least
        :data:`BATCH_MIN` real moves are asked for), else one call at a time, each with its
        ``context(i)`` for error messages."""
        n = len(values)
        if self.batch is not None and n >= BATCH_MIN and not np.iscomplexobj(values):
            try:
                got = np.asarray(self.batch(k, flat_indices, values), dtype=np.float64)
            except Exception:  # the traced forward cannot be batched: loop over the user's forward
                self.batch = None
            else:
                if got.shape == (n,) and np.isfinite(got).all():
                    self.calls += n
                    self.batched_calls += n
                    return got
                self.batch = None
        out = np.empty(n)
        for i in range(n):
            out[i] = float(np.real(self.at(k, int(flat_indices[i]), values[i], context(i))))
        return out

    def along(self, k: int, displacement: np.ndarray, context: str = "") -> Any:
        """Evaluate with leaf ``k`` moved by ``displacement`` (real or complex)."""
        leaves = list(self.base)
        leaves[k] = self.base[k] + displacement
        return self(leaves, context)


#: The fewest single-element moves worth a batched (compiled) evaluation.
BATCH_MIN = 1024


def step_size(x: np.ndarray | float, eps: float = EPS64) -> np.ndarray:
    """Central-difference step ``h = eps^(1/3)·max(1, |x|)`` (not yet realised).

    Args:
        x: the point (any shape).
        eps: relative noise of the forward; machine epsilon for an exact float64 forward.

    Returns:
        Steps with the shape of ``x``.

    Examples:
        >>> float(step_size(0.0)) == EPS64 ** (1 / 3)
        True
    """
    return np.asarray(eps ** (1.0 / 3.0) * np.maximum(1.0, np.abs(x)), dtype=np.float64)


def estimate_noise(
    obj: Objective, rng: np.random.Generator, *, points: int = 9, directions: int = 3
) -> float:
    """Measure the absolute noise ``σ`` of the forward near the base point.

    Evaluates the loss at ``x + k·δ·u`` (``k = 0..points-1``, ``δ ≈ 7.6e-6`` relative, ``u`` a
    Gaussian direction scaled by ``max(1, |x|)``) along several directions, and reads ``σ`` from
    the fourth differences, where the smooth part is negligible: ``σ² ≈ mean(Δ⁴f)² · (4!)²/8!``
    (Moré & Wild's ECnoise with a fixed order).  The points sit on one side of ``x``, so a kink
    exactly at ``x`` does not pollute the estimate.  The median over the directions is kept: one
    direction that crosses a kink cannot inflate it, and one whose float32 rounding happens to
    form a perfectly regular staircase (zero fourth differences) cannot hide the noise.

    Returns:
        ``σ``, at least ``2·eps·|f0|``.
    """
    gamma = math.factorial(4) ** 2 / math.factorial(8)
    units = [[rng.standard_normal(b.shape) * np.maximum(1.0, np.abs(b)) for b in obj.base]
             for _ in range(directions)]
    lines = [_noise_line(obj, unit, points, 2.0**-17) for unit in units]
    floor = 2.0 * EPS64 * max(abs(obj.f0), 1e-300)
    # A line that crosses a kink (a ReLU pre-activation or a max tie a few spacings away) reads
    # the kink, not the noise: its spacing shrinks until it stays clear of it (or it is dropped).
    lines = [v if not _crosses_kink(v, floor) else _clear_of_kinks(obj, unit, points, floor)
             for v, unit in zip(lines, units, strict=True)]
    if not all(np.isfinite(v).all() for v in lines):
        # Near a domain boundary (a log or sqrt of a parameter near 0) some points are outside,
        # and inside the curvature is steep: every direction shrinks its spacing until it stays
        # inside and its fourth differences change sign (noise, not the smooth part).
        lines = [_near_boundary(obj, unit, points) for unit in units]
    estimates = [math.sqrt(gamma * float(np.mean(np.diff(v, n=4) ** 2)))
                 for v in lines if np.isfinite(v).all()]
    return max(float(np.median(estimates)), floor) if estimates else floor


def _crosses_kink(values: np.ndarray, floor: float) -> bool:
    """Whether a line of equally spaced values bends at one point: a piecewise-linear crossing
    puts its whole second difference at one index, noise spreads it over all of them."""
    if not np.isfinite(values).all():
        return False
    d2 = np.abs(np.diff(values, n=2))
    big = float(np.max(d2))
    return big > 1e3 * floor and big > 20.0 * float(np.median(d2))


def _clear_of_kinks(obj: Objective, unit: list[np.ndarray], points: int, floor: float
                    ) -> np.ndarray:
    """A noise line shrunk until it no longer crosses a kink; all-NaN (dropped) when it always
    does (a kink at the point itself along this direction)."""
    delta = 2.0**-17
    for _ in range(DOMAIN_TRIES):
        delta *= DOMAIN_SHRINK
        values = _noise_line(obj, unit, points, delta)
        if np.isfinite(values).all() and not _crosses_kink(values, floor):
            return values
    return np.full(points, np.nan)


#: How much a step shrinks each time a move leaves the forward's domain (NaN or ±Inf there: the
#: log or sqrt of a parameter near 0), and how many times it may.
DOMAIN_SHRINK, DOMAIN_TRIES = 2.0**-6, 8


def _noise_line(obj: Objective, unit: list[np.ndarray], points: int, delta: float) -> np.ndarray:
    """The loss at ``x + k·δ·u`` for ``k < points``."""
    return np.array([
        float(np.real(obj([b + k * delta * d for b, d in zip(obj.base, unit, strict=True)],
                          "measuring the forward's noise floor")))
        for k in range(points)
    ])


def _near_boundary(obj: Objective, unit: list[np.ndarray], points: int) -> np.ndarray:
    """A noise line whose spacing shrinks until it lies in the domain and reads noise (fourth
    differences of both signs, or all zero); the last one tried when none does."""
    delta = 2.0**-17 * DOMAIN_SHRINK
    values = _noise_line(obj, unit, points, delta)
    for _ in range(DOMAIN_TRIES):
        diffs = np.diff(values, n=4)
        if np.isfinite(values).all() and (np.all(diffs == 0) or (diffs.min() < 0 < diffs.max())):
            break
        delta *= DOMAIN_SHRINK
        values = _noise_line(obj, unit, points, delta)
    return values


def resolves_float64(
    obj: Objective, rng: np.random.Generator, *, directions: int = 2
) -> bool | None:
    """Whether the forward resolves perturbations far below float32's resolution.

    Along a direction ``u``, a forward that computes in float64 changes linearly under moves of
    ``2^-26`` and ``2^-27`` (relative, below float32's half-ulp ``2^-25``), by what a coarse move
    of ``2^-12`` predicts, and the second change is half the first.  A forward that casts to
    float32 inside cannot see such moves (its input rounds back to the same float32): it moves by
    0 or by a quantum instead.  Scale-free, unlike
    ``σ/|f|``: a float64 loss that is near zero by cancellation is not mistaken for a
    low-precision one.  A direction along which the change is lost in the rounding of ``f`` itself
    (zero gradient, a huge ``|f|``, or a quantised forward at ``x = 0``) is inconclusive.

    Returns:
        ``False`` when some direction responds non-linearly, ``True`` when one responds linearly
        and none non-linearly, ``None`` when no direction could tell.
    """
    s, coarse = 2.0**-26, 2.0**-12
    resolution = 1e3 * EPS64 * max(abs(obj.f0), 1e-300)
    seen_linear = False
    for _ in range(directions):
        u = [rng.standard_normal(b.shape) * np.maximum(1.0, np.abs(b)) for b in obj.base]
        moved = []  # symmetric moves: the curvature of f cancels out of each
        for step in (coarse, coarse / 2, s, s / 2):
            ends = [
                float(np.real(obj([b + sign * step * d for b, d in zip(obj.base, u, strict=True)],
                                  "probing the forward's precision")))
                for sign in (1.0, -1.0)
            ]
            moved.append((ends[0] - ends[1]) / 2)
        if not np.isfinite(moved).all():
            continue  # the moves leave the forward's domain: this direction cannot tell
        visible, half, big, small = moved
        predicted = visible * (s / coarse)  # what a float64 forward moves by at the fine step
        if abs(predicted) <= 10 * resolution:
            continue  # flat along u, or f too large to see the move: this direction cannot tell
        if abs(half / visible - 0.5) > 0.01:
            # Not linear at the coarse step: f' = 0 with a cubic term (the halved move is then
            # an eighth), or a coarse move of a few float32 quanta (about a half, off by the
            # rounding).  In the second case the fine moves are exactly 0 where a float64
            # forward's would be the predicted, resolvable, first-order change.
            if big == 0.0 and small == 0.0 and abs(half / visible - 0.5) <= 0.2:
                return False
            continue  # this direction cannot tell
        # Fine moves that halve twice, as only an exact forward's do, mean the coarse prediction
        # was bent by a kink between the fine and the coarse step (a ReLU pre-activation near
        # 0), not by rounding.
        off = abs(big - predicted) > 0.2 * abs(predicted) or abs(small / big - 0.5) > 0.05
        if off and not _fine_linear(obj, u, s, big, small):
            return False  # the fine moves were rounded away or quantised: float32 inside
        seen_linear = True
    return True if seen_linear else None


def _fine_linear(obj: Objective, u: list[np.ndarray], s: float, big: float, small: float) -> bool:
    """Whether the symmetric moves at ``s``, ``s/2`` and ``s/4`` along ``u`` halve each time."""
    if big == 0.0 or abs(small / big - 0.5) > 0.05:
        return False
    ends = [float(np.real(obj([b + sign * s / 4 * d for b, d in zip(obj.base, u, strict=True)],
                              "probing the forward's precision"))) for sign in (1.0, -1.0)]
    tiny = (ends[0] - ends[1]) / 2
    return bool(small != 0.0 and abs(tiny / small - 0.5) <= 0.05)


def relative_step(noise: float, f0: float, *, float64: bool = True) -> float:
    """The forward's relative noise ``ε = σ/|f|`` that sets the step, clamped to ``[EPS64, 1e-2]``.

    For a forward known to compute in float64 (:func:`resolves_float64`) ``ε`` is also capped at
    ``1e-9``: a large ``σ/|f|`` there means a loss near zero by cancellation, not low precision,
    and the step must stay small.
    """
    scale = abs(f0) if f0 != 0.0 else 1.0
    cap = 1e-9 if float64 else 1e-2
    return float(min(max(noise / scale, EPS64), cap))


@dataclass(frozen=True, slots=True)
class Partials:
    """Finite-difference partial derivatives of one leaf at selected flat indices.

    ``value`` is the best estimate, ``error`` its error bound, ``left``/``right`` the one-sided
    slopes (NaN where not computed) and ``kink`` marks elements where the forward is not
    differentiable within the step.  ``method`` is ``"central"`` or ``"complex"``.
    ``side_error`` bounds the truncation error of the one-sided slopes (first-order accurate:
    ``|slope(h) − slope(h/2)|``), 0 where none were computed.
    """

    indices: np.ndarray
    value: np.ndarray
    error: np.ndarray
    left: np.ndarray
    right: np.ndarray
    kink: np.ndarray
    method: str
    side_error: np.ndarray | None = None


def _real(v: Any) -> float:
    return float(np.real(v))


def central_partials(
    obj: Objective, k: int, indices: Sequence[int] | np.ndarray, *, eps: float, kink_rtol: float,
    name: str, kink_floor: float = 0.0,
) -> Partials:
    """Central differences with Richardson extrapolation and kink detection, element by element.

    Args:
        obj: the objective; ``obj.noise`` must hold the measured noise ``σ``.
        k: which leaf.
        indices: flat indices into the leaf.
        eps: relative noise of the forward, which sets the step.
        kink_rtol: relative size below which a slope jump is ignored (the comparison tolerance).
        name: the leaf's name, for messages.
        kink_floor: absolute size below which a slope jump is ignored (the comparison's atol).

    Returns:
        :class:`Partials` with ``method="central"``.
    """
    idx = np.asarray(indices, dtype=np.int64)
    x = obj.base[k].reshape(-1)[idx].astype(np.float64)
    sigma, f0 = obj.noise, obj.f0
    n = len(idx)
    h = step_size(x, eps)
    f, moves = _four_moves(obj, k, idx, x, h, name)
    for _ in range(DOMAIN_TRIES):
        # A move that leaves the forward's domain (log or sqrt near 0) is retried with a smaller
        # step, entry by entry, until all four stay inside: such a point is no kink.
        out = ~np.isfinite(f).all(axis=1)
        if not out.any():
            break
        h = np.where(out, h * DOMAIN_SHRINK, h)
        f[out], moves[out] = _four_moves(obj, k, idx[out], x[out], h[out], name)
    p1, m1, p2, m2 = f[:, 0], f[:, 1], f[:, 2], f[:, 3]
    # Realised steps: the displacement the forward actually saw.
    hp1, hm1, hp2, hm2 = moves[:, 0] - x, x - moves[:, 1], moves[:, 2] - x, x - moves[:, 3]
    d1 = (p1 - m1) / (hp1 + hm1)
    d2 = (p2 - m2) / (hp2 + hm2)
    rich = (4.0 * d2 - d1) / 3.0
    r1, l1 = (p1 - f0) / hp1, (f0 - m1) / hm1
    r2, l2 = (p2 - f0) / hp2, (f0 - m2) / hm2
    error = np.where(np.isfinite(rich), np.abs(rich - d2) + 3.0 * sigma / h, np.inf)
    kink = np.array([
        _is_kink((float(r1[i]), float(r2[i])), (float(l1[i]), float(l2[i])), float(sigma / h[i]),
                 kink_rtol, kink_floor)
        for i in range(n)
    ], dtype=bool).reshape(n)
    side = np.maximum(np.abs(r1 - r2), np.abs(l1 - l2)) + 3.0 * sigma / h
    # A kink between h/2 and h (a ReLU pre-activation a few steps from 0) bends the h-step's
    # slopes but not the h/2-step's: their gap all but vanishes at h/2.  Richardson would carry
    # the bent difference in with weight 1/3; the h/2 difference is the estimate there, with the
    # whole disagreement of the two steps as its error bar.
    g1, g2 = np.abs(r1 - l1), np.abs(r2 - l2)
    crossed = ~kink & (g2 < 0.1 * g1) & (g1 > np.maximum(20.0 * sigma / h, kink_rtol * np.abs(d2)))
    value = np.where(crossed, d2, rich)
    error = np.where(crossed, np.maximum(error, np.abs(d1 - d2) + 3.0 * sigma / h), error)
    return Partials(idx, value, error, l2.copy(), r2.copy(), kink, "central", side)


def _four_moves(obj: Objective, k: int, idx: np.ndarray, x: np.ndarray, h: np.ndarray, name: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """The loss at ``x + h, x − h, x + h/2, x − h/2`` for every entry (or all at once in a
    batch), and those moves."""
    shape = obj.base[k].shape
    moves = np.stack([x + h, x - h, x + 0.5 * h, x - 0.5 * h], axis=1)
    signs = ("+", "-", "+", "-")

    def context(i: int) -> str:
        j, q = divmod(i, 4)
        return (f"{_where(name, shape, int(idx[j]))} moved by "
                f"{signs[q]}{abs(moves[j, q] - x[j]):.3g}")

    f = obj.at_many(k, np.repeat(idx, 4), moves.reshape(-1), context).reshape(len(idx), 4)
    return f, moves


def _where(name: str, shape: tuple[int, ...], flat_index: int) -> str:
    return f"{name}{[int(i) for i in np.unravel_index(flat_index, shape)]}"


def _is_kink(
    right: tuple[float, float], left: tuple[float, float], noise: float, rtol: float, floor: float
) -> bool:
    """Slope jumps inconsistent with a smooth function.

    ``right``/``left`` are the one-sided slopes at steps ``h`` and ``h/2``.  For smooth ``f`` the
    gap between them is ``≈ h·f''`` and halves with the step (or shrinks faster where
    ``f'' = 0``); at a kink it stays.  A kink between ``h/2`` and ``h`` shows as a gap at ``h``
    that vanishes at ``h/2`` while being as large as the slopes themselves.  Gaps below the
    noise, ``rtol`` of the slopes or the absolute ``floor`` (the comparison's atol) are ignored.
    """
    if not all(math.isfinite(v) for v in (*right, *left)):
        return False  # a move left the domain (NaN/Inf): not a kink; the caller shrinks the step
    g1, g2 = abs(right[0] - left[0]), abs(right[1] - left[1])
    slopes = max(abs(right[0]), abs(left[0]), abs(right[1]), abs(left[1]))
    if max(g1, g2) <= max(20.0 * noise, rtol * slopes, floor):
        return False
    ratio = g2 / g1 if g1 > 0 else math.inf
    if ratio >= 0.75:  # the jump does not shrink with the step: a kink at x
        return True
    return ratio < 0.3 and g1 >= 0.5 * slopes  # a jump inside (h/2, h], as large as the slopes


def complex_partials(
    obj: Objective, k: int, indices: Sequence[int] | np.ndarray, *, name: str
) -> Partials:
    """Complex-step partials ``Im f(x + i·h·e_j)/h`` with ``h = 2^-66`` (no cancellation).

    The error bound is a few ulps of the value and of the leaf's largest derivative; elements that
    disagree with the hand gradient are re-measured with :func:`central_partials` by the caller,
    so a forward that is complex-safe only in part cannot blame a correct gradient.
    """
    idx = np.asarray(indices, dtype=np.int64)
    flat = obj.base[k].reshape(-1)
    value = np.empty(len(idx))
    for out, j in enumerate(idx):
        where = _where(name, obj.base[k].shape, int(j)) + " (complex step)"
        fz = obj.at(k, int(j), complex(flat[j], COMPLEX_STEP), where)
        value[out] = float(np.imag(fz)) / COMPLEX_STEP
    # Rounding in the imaginary part is relative to the derivative's own terms, whose size the
    # leaf's largest derivative stands in for: an entry that is 0 up to rounding gets a bar too.
    scale = float(np.max(np.abs(value))) if value.size else 0.0
    error = 64.0 * EPS64 * (np.abs(value) + scale)
    nan = np.full(len(idx), np.nan)
    return Partials(idx, value, error, nan, nan.copy(), np.zeros(len(idx), bool), "complex")


@dataclass(frozen=True, slots=True)
class Directional:
    """A finite-difference directional derivative ``⟨∇f, u⟩`` along ``u`` with its error bound.

    ``direction`` is the direction actually measured (the Gaussian probe scaled by
    ``max(1, |x|)``, as realised after rounding), ``kink``
    whether the one-sided slopes along it disagree (non-differentiable along this probe).
    """

    direction: np.ndarray
    value: float
    error: float
    left: float
    right: float
    kink: bool
    method: str


def directional_central(
    obj: Objective, k: int, u: np.ndarray, *, eps: float, kink_rtol: float, name: str,
    kink_floor: float = 0.0,
) -> Directional:
    """Central Richardson estimate of ``⟨∇_k f, u⟩`` with kink detection along ``u``.

    ``x ± s·t·u`` is rounded, so the forward sees displacements slightly off ``s·t·u``; the
    returned ``direction`` is the one the estimate really measures — the Richardson combination
    of the realised displacements — and the caller projects the hand gradient on it.
    """
    t = eps ** (1.0 / 3.0)
    got = _probe_moves(obj, k, u, t, name)
    for _ in range(DOMAIN_TRIES):
        if all(math.isfinite(v) and math.isfinite(w) for v, w, _ in got.values()):
            break
        t *= DOMAIN_SHRINK  # the probe leaves the forward's domain: a smaller step stays inside
        got = _probe_moves(obj, k, u, t, name)
    (p1, m1, e1), (p2, m2, e2) = got[1.0], got[0.5]
    d1, d2 = (p1 - m1) / (2 * t), (p2 - m2) / t
    rich = (4.0 * d2 - d1) / 3.0
    realised = (4.0 * e2 / t - e1 / (2 * t)) / 3.0
    r1, l1 = (p1 - obj.f0) / t, (obj.f0 - m1) / t
    r2, l2 = (p2 - obj.f0) / (t / 2), (obj.f0 - m2) / (t / 2)
    error = abs(rich - d2) + 3.0 * obj.noise / t
    kink = _is_kink((r1, r2), (l1, l2), obj.noise / t, kink_rtol, kink_floor)
    return Directional(realised, rich, error, l2, r2, kink, "central")


def _probe_moves(obj: Objective, k: int, u: np.ndarray, t: float, name: str
                 ) -> dict[float, tuple[float, float, np.ndarray]]:
    """``f(x ± s·t·u)`` for ``s = 1, ½`` and the realised displacement ``2·s·t·u`` of each."""
    base = obj.base[k]
    got = {}
    for s in (1.0, 0.5):
        up, down = base + s * t * u, base - s * t * u
        got[s] = (
            _real(obj(_replace(obj.base, k, up), f"{name} moved along a probe by +{s * t:.3g}")),
            _real(obj(_replace(obj.base, k, down), f"{name} moved along a probe by -{s * t:.3g}")),
            (up - base) + (base - down),  # realised 2·s·t·u
        )
    return got


def directional_complex(obj: Objective, k: int, u: np.ndarray, *, name: str) -> Directional:
    """Complex-step estimate of ``⟨∇_k f, u⟩``: ``Im f(x + i·h·u)/h``."""
    fz = obj.along(k, 1j * COMPLEX_STEP * u, f"{name} along a probe (complex step)")
    value = float(np.imag(fz)) / COMPLEX_STEP
    return Directional(u, value, 64.0 * EPS64 * abs(value), math.nan, math.nan, False, "complex")


def _replace(leaves: Sequence[np.ndarray], k: int, new: np.ndarray) -> list[np.ndarray]:
    out = list(leaves)
    out[k] = new
    return out


@dataclass(frozen=True, slots=True)
class ComplexProbe:
    """Whether the complex step can be trusted on this forward, and why not when it cannot."""

    safe: bool
    reason: str


def complex_safe(
    obj: Objective, rng: np.random.Generator, *, eps: float, tol: float,
    autodiff: Sequence[np.ndarray] | None = None,
) -> ComplexProbe:
    """Probe whether the forward propagates complex perturbations analytically.

    Along one random direction per leaf (at most three leaves), the complex-step derivative must
    come back without exception or ``ComplexWarning``, as a complex number, and agree with the
    central Richardson estimate within its error bound plus ``tol`` (relative).  With an
    ``autodiff`` gradient (one array per leaf), a complex-step derivative that agrees with
    autodiff's along the direction within ``tol`` needs no central estimate (four forward calls
    a leaf): a complex step that is wrong (code that is not analytic) and an autodiff reference
    that is wrong would have to be wrong by the same amount.  One that disagrees is judged
    against the central estimate as without autodiff.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        for k in range(min(3, len(obj.base))):
            u = rng.standard_normal(obj.base[k].shape)
            try:
                fz = obj.along(k, 1j * COMPLEX_STEP * u, "probing the complex step")
            except Exception as exc:  # any failure only means: no complex step
                return ComplexProbe(False, f"the forward rejects complex input ({type(exc).__name__})")
            if not np.iscomplexobj(np.asarray(fz)):
                return ComplexProbe(False, "the forward drops the imaginary part")
            cs = float(np.imag(fz)) / COMPLEX_STEP
            if autodiff is not None:
                terms = np.asarray(autodiff[k], dtype=np.float64).reshape(u.shape) * u
                pa = float(np.sum(terms))
                # The complex step's own error is O(h²) (h = COMPLEX_STEP): far below h·‖u‖₁,
                # and a zero gradient along u must not send the probe to central differences.
                rounding = (1e3 * EPS64 * float(np.sum(np.abs(terms)))
                            + COMPLEX_STEP * float(np.sum(np.abs(u))))
                if abs(cs - pa) <= tol * max(abs(cs), abs(pa)) + rounding:
                    continue
            ref = directional_central(obj, k, u, eps=eps, kink_rtol=tol, name="probe")
            if ref.kink or abs(cs - ref.value) > ref.error + tol * max(abs(cs), abs(ref.value)):
                return ComplexProbe(False, "complex-step and central differences disagree")
    return ComplexProbe(True, "")
