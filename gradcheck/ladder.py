"""The precision ladder: separate a wrong formula from a lost precision.

A hand gradient that fails is computed again by the same backward on inputs of the next wider
precision (float32 → float64, float64 → long double where the platform has one).  When that one
passes the formula is right and the arithmetic is what lost the accuracy — ``1 − y²`` of a
saturated ``tanh`` cancels to a few digits even in float64 — so the leaf passes with a note
saying how far the gradient is off, instead of blaming a correct derivation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from gradcheck import numeric
from gradcheck.problem import HandAt, Problem
from gradcheck.result import LeafResult

__all__ = ["Recheck", "Rejudge", "climb", "confirm", "wider"]

#: ``recheck(k, hand)``: leaf ``k`` checked again, in the same mode, with the hand gradient
#: ``hand`` judged by its own dtype.
Recheck = Callable[[int, np.ndarray], LeafResult]


#: ``rejudge(k, hand)``: leaf ``k``'s evidence judged again for the float64 recomputation
#: ``hand`` at the confirmation tolerance; the failing record, or ``None`` when it confirms.
Rejudge = Callable[[int, np.ndarray], "LeafResult | None"]


def wider(judged: np.dtype[Any], precision: np.dtype[Any]) -> np.dtype[Any] | None:
    """The next precision to recompute a hand gradient judged in ``judged``: float64 for
    float16/32, the platform's long double for float64 when it is wider (x86: 64-bit mantissa),
    else none.  A forward that itself computes in lower precision (``precision``) gives no
    reason to climb."""
    if judged.itemsize < 8:
        return np.dtype(np.float64)
    longdouble = np.dtype(np.longdouble)
    if precision == np.dtype(np.float64) and np.finfo(longdouble).eps < numeric.EPS64:
        return longdouble
    return None


def _max_rel(low: np.ndarray | None, wide: np.ndarray) -> float:
    """max |low − wide| / max |wide|: how much precision the low-precision run lost."""
    if low is None:
        return math.nan
    wide64 = wide.astype(np.float64)
    scale = float(np.max(np.abs(wide64))) if wide64.size else 0.0
    diff = float(np.max(np.abs(low.astype(np.float64) - wide64))) if wide64.size else 0.0
    return diff / scale if scale > 0 else diff


def _passed(low: LeafResult, lost: float, target: np.dtype[Any]) -> LeafResult:
    note = (f"the hand gradient is off by up to {lost:.2g} (relative) in "
            f"{low.n_mismatched} entr{'y' if low.n_mismatched == 1 else 'ies'}, but the same "
            f"backward run in {target} is correct: {low.tolerance_dtype} arithmetic loses the "
            "precision here (cancellation, e.g. 1 − y² of a saturated unit), not the "
            "derivation")
    return replace(low, verdict="pass", blame=None, diagnosis=None, notes=(*low.notes, note))


def _wide_hands(hand_at: HandAt, values: Sequence[np.ndarray], target: np.dtype[Any]
                ) -> list[np.ndarray | None] | None:
    """The hand gradient recomputed with every input in ``target`` (``None``: the backward
    refuses that dtype)."""
    try:
        return hand_at([v.astype(target) for v in values], target)
    except Exception:  # the backward may only accept its own dtype: keep the verdict
        return None


def _cannot_clear(low: LeafResult, move: float) -> bool:
    """Whether a recomputation that moves no entry by more than ``move`` must fail where ``low``
    failed: its worst hand-blamed entry is off by more than its tolerance plus twice that move,
    so rechecking (a second measurement of the whole leaf) could not clear it."""
    worst = next((e for e in low.worst if e.status == "hand"), None)
    if worst is None or not math.isfinite(move):
        return False
    ref = worst.autodiff if worst.autodiff is not None else worst.numeric
    if ref is None or not math.isfinite(ref):
        return False
    err = 0.0 if worst.autodiff is not None else (worst.numeric_error or 0.0)
    allowed = low.rtol * max(abs(worst.hand), abs(ref)) + low.atol + err
    return math.isfinite(allowed) and abs(worst.hand - ref) > allowed + 2 * move


def climb(problem: Problem, precision: np.dtype[Any], results: Sequence[LeafResult],
          recheck: Recheck) -> list[LeafResult]:
    """``results`` with every hand-blamed failure that the wider backward clears passed; each
    leaf climbs one step from its own judged dtype, whatever the order of the leaves."""
    targets = {i: wider(np.dtype(r.tolerance_dtype), precision) for i, r in enumerate(results)
               if r.verdict == "fail" and r.blame == "hand"}
    suspects = {i: t for i, t in targets.items() if t is not None}
    hand_at = problem.hand_at
    if not suspects or hand_at is None:
        return list(results)
    by_name = {n: k for k, n in enumerate(problem.names)}
    out = list(results)
    for target in sorted(set(suspects.values()), key=lambda d: np.finfo(d).eps, reverse=True):
        hand_wide = _wide_hands(hand_at, problem.values, target)
        if hand_wide is None:
            continue
        for i in (i for i, t in suspects.items() if t == target):
            k = by_name[results[i].name]
            h = hand_wide[k]
            if h is None or h.dtype != target:
                continue
            # The same mode as the first judgement (a screened leaf is screened again, not
            # re-measured entry by entry) — unless the wider run is too close to this one to
            # clear its worst entry.
            low = problem.hand[k]
            if low is not None and low.size and _cannot_clear(
                    results[i], float(np.max(np.abs(low.astype(np.float64) - h.astype(np.float64))))):
                continue
            if recheck(k, h).verdict == "pass":
                out[i] = _passed(results[i], _max_rel(problem.hand[k], h), np.dtype(target))
    return out


def confirm(problem: Problem, results: Sequence[LeafResult], rejudge: Rejudge) -> list[LeafResult]:
    """The other half of the ladder: a float16/float32 hand gradient that passes its dtype's
    loose tolerance is recomputed by the same backward on float64 inputs and that recomputation
    judged on the same evidence at :data:`gradcheck.tolerance.CONFIRM_RTOL`.  A wrong formula
    is wrong in float64 too (a 5e-4 relative error hides under float32's 2e-3, not under 5e-5);
    lost precision is not.  A backward that cannot run in float64 keeps its verdict."""
    low = [i for i, r in enumerate(results)
           if r.verdict == "pass" and np.dtype(r.tolerance_dtype).itemsize < 8]
    if not low or problem.hand_at is None:
        return list(results)
    target = np.dtype(np.float64)
    wide = _wide_hands(problem.hand_at, problem.values, target)
    if wide is None:
        return list(results)
    by_name = {n: k for k, n in enumerate(problem.names)}
    out = list(results)
    for i in low:
        k = by_name[results[i].name]
        h = wide[k]
        if h is None or h.dtype != target:
            continue
        failed = rejudge(k, h)
        if failed is not None:
            lost = _max_rel(problem.hand[k], h)
            note = (f"the {results[i].tolerance_dtype} hand gradient is within {results[i].tolerance_dtype}"
                    f" tolerance (rtol={results[i].rtol:g}), but the same backward run in float64 "
                    f"is wrong at {failed.n_mismatched} entr{'y' if failed.n_mismatched == 1 else 'ies'} "
                    f"(rtol={failed.rtol:g}; the two runs differ by {lost:.2g} relative): the "
                    "derivation is wrong, not the rounding; the entries shown are the float64 run's")
            out[i] = replace(failed, notes=(*failed.notes, note))
    return out
