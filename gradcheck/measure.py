"""The evidence of a leaf: finite-difference partials, directional probes, and their seeds.

Both ways of gathering evidence (:mod:`gradcheck.full`, :mod:`gradcheck.screen`) measure with
the primitives here, against the settled :class:`~gradcheck.references.References`: complex-step
partials with central-difference re-measurement where they contradict the hand gradient,
directional derivatives along seeded directions, and finite differences at the entries where
hand and autodiff differ.  Every random choice is seeded from the check's seed, the leaf and a
named salt, so a run is reproduced exactly by its seed.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradcheck import numeric
from gradcheck.errors import UserCodeError
from gradcheck.options import CheckOptions
from gradcheck.problem import Problem
from gradcheck.references import References
from gradcheck.result import Localisation
from gradcheck.tolerance import (
    GRAD_ATOL_FRACTION,
    Tolerance,
    close,
    judged_dtype,
    leaf_tolerance,
    tolerance,
)

__all__ = [
    "SALT_CONTROL",
    "SALT_DENSE",
    "SALT_LED_PROBE",
    "SALT_LED_SAMPLE",
    "SALT_SUSPECTS",
    "SUSPECT_SAMPLE",
    "Evidence",
    "Leaf",
    "Measured",
    "Partials",
    "Run",
    "directional",
    "leaf",
    "numeric_rtol",
    "partials",
    "probe_seed",
    "probe_tol",
    "suspects",
]

# Salts of the seeded choices, after (seed, leaf index).  Screening probe p uses p itself, and
# the group tests of localisation continue from ``opts.probes``.
#: The probes that validate autodiff in an autodiff-led full check (``SALT_LED_PROBE + p``).
SALT_LED_PROBE = 0xAD00
#: The seeded sample of entries an autodiff-led full check measures.
SALT_LED_SAMPLE = 0x5A
#: The sample of many hand-vs-autodiff disagreements measured first.
SALT_SUSPECTS = 0x5B
#: The entry where the negative control plants its error.
SALT_CONTROL = 0xC0
#: The sample of a failing screened leaf measured before group testing.
SALT_DENSE = 0xDE

log = logging.getLogger("gradcheck")

#: Of more entries than this where hand and autodiff differ, a seeded sample is measured first.
#: When every sampled entry is a smooth point where the finite difference sides with autodiff
#: (a systematic bug: a sign, a transpose, a scale), the others keep autodiff's word; otherwise
#: every one of them is measured.
SUSPECT_SAMPLE = 128


def probe_seed(seed: int, k: int, salt: int) -> int:
    """The seed of one random choice for leaf ``k`` of a check seeded by ``seed``."""
    return int(np.random.SeedSequence([seed, k, salt]).generate_state(1)[0])


@dataclass(frozen=True)
class Run:
    """What every stage after the references reads: the problem, its references, the options."""

    problem: Problem
    refs: References
    opts: CheckOptions


@dataclass(frozen=True)
class Leaf:
    """One leaf under check: where it is, its point, and the hand gradient to judge.

    ``hand`` is the flat float64 hand gradient, ``native`` the one the backward returned,
    ``ad`` the flat autodiff reference (``None`` without one), ``judged`` the dtype the hand
    gradient is judged in.
    """

    k: int
    name: str
    x: np.ndarray
    native: np.ndarray
    hand: np.ndarray
    ad: np.ndarray | None
    judged: np.dtype[Any]
    x_scale: float
    #: A float64 recomputation of a low-precision hand gradient, held to the confirmation
    #: tolerance (:data:`gradcheck.tolerance.CONFIRM_RTOL`).
    confirming: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.native.shape)

    @property
    def size(self) -> int:
        return int(self.hand.size)

    def tolerance(self, run: Run, ref_scale: float) -> Tolerance:
        """The leaf's tolerances with ``ref_scale`` the largest reference entry."""
        return leaf_tolerance(self.judged, run.opts, ref_scale, run.refs.global_scale,
                              run.problem.loss_scale, self.x_scale, confirm=self.confirming)

    def recomputed(self, wide: np.ndarray) -> Leaf:
        """This leaf with its hand gradient recomputed in float64, to be confirmed."""
        return replace(self, native=wide, hand=wide.astype(np.float64).ravel(), confirming=True)

    def index(self, i: int) -> tuple[int, ...]:
        """The index in the leaf of its flat entry ``i``."""
        return tuple(int(j) for j in np.unravel_index(int(i), self.shape)) if self.shape else ()

    def ad_scale(self) -> float:
        return float(np.max(np.abs(self.ad))) if self.ad is not None and self.ad.size else 0.0


def leaf(run: Run, k: int, native: np.ndarray, *, own_dtype: bool = False) -> Leaf:
    """Leaf ``k`` of ``run`` with the hand gradient ``native`` (``own_dtype``: judged by its own
    dtype, not its parameter's — the precision ladder's recomputation)."""
    value = run.problem.values[k]
    ad = run.refs.ad[k].ravel() if run.refs.ad is not None else None
    return Leaf(
        k=k, name=run.problem.names[k], x=run.refs.obj.base[k], native=native,
        hand=native.astype(np.float64).ravel(), ad=ad,
        judged=judged_dtype(native.dtype, run.refs.precision, value.dtype, own=own_dtype),
        x_scale=max(1.0, float(np.max(np.abs(value)))) if native.size else 1.0)


@dataclass(frozen=True)
class Measured:
    """One probe's measurement: the direction the estimate saw and the directional derivative."""

    seed: int
    u: np.ndarray
    d: numeric.Directional


@dataclass(frozen=True)
class Partials:
    """Finite differences at some entries of a flat leaf (NaN where not measured)."""

    num: np.ndarray
    err: np.ndarray
    left: np.ndarray
    right: np.ndarray
    kink: np.ndarray
    #: The entries measured (a finite difference there may still be NaN: a domain boundary).
    taken: np.ndarray
    method: str | None = None
    #: The truncation error of the one-sided slopes ``left``/``right`` (0 where not measured).
    side: np.ndarray | None = None
    #: Whether the time budget ran out before every asked-for entry was measured.
    stopped: bool = False

    @classmethod
    def empty(cls, n: int) -> Partials:
        return cls(np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan),
                   np.zeros(n, bool), np.zeros(n, bool), None, np.zeros(n))

    def with_(self, run: Run, leaf: Leaf, idx: np.ndarray, rtol: float) -> Partials:
        """These partials and the ones at ``idx`` (error bars widened by the regime), measured in
        chunks when the check has a time budget or takes long (progress on the ``gradcheck``
        logger); entries left when the budget is spent stay unmeasured (``stopped``)."""
        out = self
        chunks = _chunks(run, idx)
        started = time.monotonic()
        for i, chunk in enumerate(chunks):
            if run.refs.out_of_time():
                return replace(out, stopped=True)
            out = out._merged(run, leaf, chunk, partials(run, leaf, chunk, rtol))
            if len(chunks) > 1:
                done = sum(c.size for c in chunks[: i + 1])
                elapsed = time.monotonic() - started
                log.info("%s: %d of %d entries measured, %.0f s elapsed, about %.0f s left",
                         leaf.name, done, idx.size, elapsed, elapsed * (idx.size - done) / done)
        return out

    def _merged(self, run: Run, leaf: Leaf, idx: np.ndarray, parts: numeric.Partials) -> Partials:
        if not idx.size:
            return self
        num, err = self.num.copy(), self.err.copy()
        left, right, kink, taken = self.left.copy(), self.right.copy(), self.kink.copy(), self.taken.copy()
        num[idx], err[idx] = parts.value, parts.error * run.refs.regime.err_scale
        left[idx], right[idx], kink[idx] = parts.left, parts.right, parts.kink
        taken[idx] = True
        side = np.zeros(self.num.size) if self.side is None else self.side.copy()
        side[idx] = 0.0 if parts.side_error is None else parts.side_error
        return Partials(num, err, left, right, kink, taken, parts.method, side, self.stopped)

    @property
    def measured(self) -> np.ndarray:
        """The entries with a finite difference that is a number."""
        return np.flatnonzero(~np.isnan(self.num))


@dataclass(frozen=True)
class Evidence:
    """What the references say about a leaf's entries, before any judgement.

    ``mode`` is how it was gathered (``"full"``, ``"directional"``, ``"localised"``); ``parts``
    the finite differences (``None`` without them); ``method`` the numeric method that measured;
    ``probes`` the screening probes at smooth points and ``crossing`` those that crossed a kink;
    ``led`` is ``(entries measured, probes)`` of an autodiff-led full check; ``unresolved`` the
    flat entries localisation could not resolve; ``notes`` what the gathering has to say.
    """

    mode: str
    parts: Partials | None
    method: str | None = None
    probes: tuple[Measured, ...] = ()
    crossing: tuple[Measured, ...] = ()
    led: tuple[int, int] | None = None
    localisation: Localisation | None = None
    unresolved: np.ndarray | None = None
    #: Localisation stopped at a seeded sample that is wrong almost everywhere: the entries
    #: outside it are ``unresolved`` because they were not measured, not for lack of accuracy.
    sampled: bool = False
    notes: tuple[str, ...] = ()

    def kink(self, n: int) -> np.ndarray:
        """Where the forward is not differentiable (from the partials; none without them)."""
        return self.parts.kink if self.parts is not None else np.zeros(n, bool)


#: Seconds of forward calls per chunk of a long measurement (progress and budget checkpoints).
CHUNK_SECONDS = 2.0
#: A measurement expected to take longer than this is done in chunks even without a budget.
LONG_SECONDS = 10.0


def _chunks(run: Run, idx: np.ndarray) -> list[np.ndarray]:
    """``idx`` whole, or in chunks of about :data:`CHUNK_SECONDS` of forward calls when the
    check has a budget or the measurement is long (a batched forward keeps its batch size)."""
    if not idx.size:
        return []
    per_entry = 4.0 * run.refs.seconds_per_call  # central differences: four calls an entry
    if run.opts.budget is None and per_entry * idx.size <= LONG_SECONDS:
        return [idx]
    size = max(1, int(CHUNK_SECONDS / per_entry) if per_entry > 0 else idx.size)
    if run.refs.obj.batch is not None:
        size = max(size, numeric.BATCH_MIN // 4)
    return [idx[i:i + size] for i in range(0, idx.size, size)]


def probe_tol(hand: np.ndarray, m: Measured, tol: Tolerance, err_scale: float) -> float:
    """The agreement tolerance of ⟨hand, u⟩ with a measured ∂L/∂u: rtol of the size of the sum's
    terms, atol per unit of ‖u‖, plus the (regime-widened) error bar — no other inflation."""
    size = max(float(np.linalg.norm(hand.reshape(m.u.shape) * m.u)), abs(m.d.value))
    return tol.rtol * size + tol.atol * float(np.linalg.norm(m.u)) + m.d.error * err_scale


def directional(run: Run, leaf: Leaf, u: np.ndarray, ph: float, tol: Tolerance) -> numeric.Directional:
    """∂L/∂u of leaf ``leaf`` along ``u``: the complex step where it is safe and agrees with
    ``ph`` within its bar, central differences (with a kink test) otherwise."""
    obj = run.refs.obj
    if run.refs.complex_ok:
        d = numeric.directional_complex(obj, leaf.k, u, name=leaf.name)
        if abs(ph - d.value) <= tol.rtol * max(abs(ph), abs(d.value)) + d.error:
            return d
    return numeric.directional_central(obj, leaf.k, u, eps=run.refs.eps, kink_rtol=tol.rtol,
                                       name=leaf.name, kink_floor=tol.atol * float(np.linalg.norm(u)))


def _central(run: Run, leaf: Leaf, idx: np.ndarray, rtol: float) -> numeric.Partials:
    scale = np.abs(leaf.ad if leaf.ad is not None else leaf.hand)
    floor = rtol * GRAD_ATOL_FRACTION * (float(np.max(scale)) if scale.size else 0.0)
    return numeric.central_partials(run.refs.obj, leaf.k, idx, eps=run.refs.eps, kink_rtol=rtol,
                                    name=leaf.name, kink_floor=floor)


def partials(run: Run, leaf: Leaf, idx: np.ndarray, rtol: float) -> numeric.Partials:
    """Complex step where the forward allows it, with central-difference re-measurement of every
    entry where the complex step disagrees with the hand gradient."""
    obj = run.refs.obj
    if not run.refs.complex_ok or (obj.batch is not None and 4 * idx.size >= numeric.BATCH_MIN):
        # Many entries through a batched forward: central differences in compiled batches beat
        # the complex step's one call per entry.
        return _central(run, leaf, idx, rtol)
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        try:
            cs = numeric.complex_partials(obj, leaf.k, idx, name=leaf.name)
        except UserCodeError:
            return _central(run, leaf, idx, rtol)
    floor = rtol * GRAD_ATOL_FRACTION * (float(np.max(np.abs(cs.value))) if cs.value.size else 0.0)
    # Only entries where the complex step contradicts the hand gradient are re-measured: that is
    # where a forward that is not quite analytic (abs, a comparison) could blame a correct hand
    # gradient.  Where the complex step confirms the hand, two independent sources agree, and
    # replacing its exact value by a coarser central difference would only lose information
    # (autodiff's own rounding at saturated units is then outvoted, as it should be).
    suspect = ~close(leaf.hand[idx], cs.value, rtol=rtol, atol=floor, err=cs.error)
    if not suspect.any():
        return cs
    re = _central(run, leaf, idx[suspect], rtol)
    value, error = cs.value.copy(), cs.error.copy()
    left, right, kink = cs.left.copy(), cs.right.copy(), cs.kink.copy()
    value[suspect], error[suspect] = re.value, re.error
    left[suspect], right[suspect], kink[suspect] = re.left, re.right, re.kink
    side = np.zeros(idx.size)
    side[suspect] = 0.0 if re.side_error is None else re.side_error
    return numeric.Partials(idx, value, error, left, right, kink, "complex+central", side)


def suspects(run: Run, leaf: Leaf, parts: Partials, which: np.ndarray, tol: Tolerance,
             limit: int | None = None) -> Partials:
    """``parts`` and finite differences at the entries ``which`` where hand and autodiff differ:
    all of them, or a seeded sample first when there are many (see :data:`SUSPECT_SAMPLE`);
    ``limit`` caps the rest."""
    assert leaf.ad is not None
    todo = which[np.isnan(parts.num[which])]
    if todo.size <= SUSPECT_SAMPLE:
        return parts.with_(run, leaf, todo, tol.rtol)
    rng = np.random.default_rng(probe_seed(run.opts.seed, leaf.k, SALT_SUSPECTS))
    first = np.sort(rng.choice(todo, SUSPECT_SAMPLE, replace=False))
    parts = parts.with_(run, leaf, first, tol.rtol)
    num, err = parts.num[first], parts.err[first]
    on_ad = close(num, leaf.ad[first], rtol=numeric_rtol(run), atol=tol.atol, err=err)
    off_hand = ~close(leaf.hand[first], num, rtol=tol.rtol, atol=tol.atol, err=err)
    if np.all(on_ad & off_hand & ~parts.kink[first]):
        return parts
    rest = np.setdiff1d(todo, first)
    if limit is None or rest.size <= limit:
        return parts.with_(run, leaf, rest, tol.rtol)
    return parts


def numeric_rtol(run: Run) -> float:
    """The rtol at which finite differences and autodiff must agree: the table's for the
    precision the forward really computes in."""
    return tolerance(run.refs.precision, run.opts.rtol)
