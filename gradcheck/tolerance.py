"""Tolerances and agreement: the dtype table, the per-leaf floors, and when two numbers agree.

Two sources agree on an entry when ``|a − b| ≤ rtol·max(|a|, |b|) + atol + err`` where ``rtol``
comes from the dtype table for the dtype the hand gradient is judged in, ``atol`` is a floor
proportional to the leaf's reference scale (so a tiny, vanishing gradient is still judged
relative to itself, never passed by an absolute ``1e-5``) and ``err`` is the finite-difference
error estimate.  Every stage that compares numbers uses these; none keeps a table of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck.options import CheckOptions
from gradcheck.result import Agreement

__all__ = [
    "CONFIRM_RTOL",
    "GRAD_ATOL_FRACTION",
    "GRAD_RTOL",
    "Tolerance",
    "agreement",
    "close",
    "judged_dtype",
    "leaf_tolerance",
    "tolerance",
]

#: Relative tolerance by the dtype the hand gradient is judged in.  float64 is stricter than
#: JAX's 1e-5 because every reference here is float64 with an error bar: a 1e-6 relative error
#: in a float64 gradient is a bug worth naming.
GRAD_RTOL: Mapping[np.dtype[Any], float] = {
    np.dtype(np.float16): 1e-2,
    np.dtype(np.float32): 2e-3,
    np.dtype(np.float64): 5e-7,
}
#: ``atol = rtol · GRAD_ATOL_FRACTION · max|reference|`` over the leaf: entries far below the
#: leaf's own scale are judged against that scale (catastrophic cancellation in a sum of
#: products leaves a rounding error relative to the terms, not to the tiny result).
GRAD_ATOL_FRACTION = 1e-3

_REAL: dict[np.dtype[Any], np.dtype[Any]] = {
    np.dtype(np.complex64): np.dtype(np.float32),
    np.dtype(np.complex128): np.dtype(np.float64),
}


def tolerance(dtype: Any, override: float | Mapping[Any, float] | None = None) -> float:
    """The relative tolerance for gradients of ``dtype``, with a scalar or per-dtype override.

    Args:
        dtype: anything ``np.dtype`` accepts; complex dtypes use their real counterpart.
        override: a float used for every dtype, or a mapping ``{dtype: rtol}`` whose missing
            dtypes fall back to :data:`GRAD_RTOL`.

    Returns:
        The relative tolerance.

    Examples:
        >>> tolerance("float32")
        0.002
        >>> tolerance(np.float64, {np.float32: 1e-2})
        5e-07
    """
    dt: np.dtype[Any] = np.dtype(dtype)
    dt = _REAL.get(dt, dt)
    if isinstance(override, Mapping):
        table: dict[np.dtype[Any], float] = {np.dtype(k): float(v) for k, v in override.items()}
        if dt in table:
            return table[dt]
    elif override is not None:
        return float(override)
    return float(GRAD_RTOL.get(dt, GRAD_RTOL[np.dtype(np.float64)]))


def close(
    a: np.ndarray, b: np.ndarray, *, rtol: float, atol: float, err: np.ndarray | float = 0.0
) -> np.ndarray:
    """Elementwise agreement ``|a − b| ≤ rtol·max(|a|,|b|) + atol + err``; NaN never agrees,
    equal infinities do."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
        ok = np.isfinite(diff) & (diff <= rtol * np.maximum(np.abs(a), np.abs(b)) + atol + err)
    same_inf = np.isinf(a) & (a == b)
    return np.asarray(ok | same_inf)


def agreement(
    a: np.ndarray,
    b: np.ndarray,
    *,
    rtol: float,
    atol: float,
    err: np.ndarray | float = 0.0,
    mask: np.ndarray | None = None,
) -> tuple[Agreement, np.ndarray]:
    """Error statistics of ``a`` against ``b`` and the elementwise agreement mask.

    ``mask`` selects the entries that take part (kinks and unavailable entries are left out).
    """
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    err_arr = np.broadcast_to(np.asarray(err, np.float64), a.shape).ravel()
    ok = close(a, b, rtol=rtol, atol=atol, err=err_arr)
    sel = np.ones(a.shape, bool) if mask is None else np.asarray(mask, bool).ravel()
    a, b, okm = a[sel], b[sel], ok[sel]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.abs(a - b)
        denom = np.maximum(np.abs(a), np.abs(b))
        rel = np.where(diff == 0, 0.0, diff / np.where(denom == 0, 1.0, denom))
        rel = np.where(np.isnan(a) | np.isnan(b), np.nan, rel)
        # Norms of rescaled copies: squares of 1e-170 underflow, squares of 1e170 overflow.
        big = float(np.max(denom[np.isfinite(denom)])) if np.isfinite(denom).any() else 0.0
        sa, sb = (a / big, b / big) if big > 0 else (a, b)
        na, nb = float(np.linalg.norm(sa)), float(np.linalg.norm(sb))
        norm_rel = float(np.linalg.norm(sa - sb)) / max(na, nb) if max(na, nb) > 0 else 0.0
        cosine = float(sa @ sb) / (na * nb) if na > 0 and nb > 0 else (1.0 if na == nb else 0.0)
        cosine = min(1.0, max(-1.0, cosine)) if math.isfinite(cosine) else cosine
    return (
        Agreement(
            max_abs_err=_nanmax(diff),
            max_rel_err=_nanmax(rel),
            norm_rel_err=norm_rel,
            cosine=cosine,
            n_bad=int(np.count_nonzero(~okm)),
            n_compared=int(a.size),
        ),
        ok,
    )


def _nanmax(x: np.ndarray) -> float:
    if x.size == 0:
        return 0.0
    return math.nan if np.isnan(x).any() else float(np.max(x))


def lower(a: np.dtype[Any], b: np.dtype[Any]) -> np.dtype[Any]:
    """The less precise of two float dtypes."""
    return a if np.finfo(a).eps >= np.finfo(b).eps else b


def judged_dtype(hand: np.dtype[Any], precision: np.dtype[Any], param: np.dtype[Any], *,
                 own: bool = False) -> np.dtype[Any]:
    """The precision a hand gradient can claim: the lowest of its own dtype, its parameter's
    dtype (a float32 parameter's gradient computed through float32 activations is float32-accurate
    even when the backward upcasts it) and the forward's measured precision.  ``own=True`` (the
    precision ladder's recomputation in a wider dtype) leaves the parameter's dtype out."""
    judged = lower(np.dtype(hand), precision)
    return judged if own else lower(judged, np.dtype(param))


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How close a leaf's hand gradient must be: ``rtol``, ``atol`` and the dtype they are for."""

    rtol: float
    atol: float
    judged: np.dtype[Any]


#: The tolerance a float64 recomputation of a float16/float32 hand gradient is held to (see
#: :mod:`gradcheck.ladder`): the same backward run on float64 inputs is far more precise than its
#: low-precision run, but may keep float32 buffers inside, so float32's rounding is still allowed.
CONFIRM_RTOL: Mapping[np.dtype[Any], float] = {
    np.dtype(np.float16): 1e-3,
    np.dtype(np.float32): 5e-5,
}


def leaf_tolerance(judged: np.dtype[Any], opts: CheckOptions, ref_scale: float,
                   global_scale: float, loss_scale: float, x_scale: float, *,
                   confirm: bool = False) -> Tolerance:
    """rtol from the table for the judged dtype; atol a fraction of the leaf's reference scale
    (``ref_scale``, see :data:`GRAD_ATOL_FRACTION`) and of the problem's (``global_scale``),
    floored by the rounding of the loss's terms and the dtype's smallest normal number.
    ``confirm``: the tolerance of a float64 recomputation (:data:`CONFIRM_RTOL`, float32's
    rounding floor)."""
    if confirm and judged in CONFIRM_RTOL and opts.rtol is None and opts.atol is None:
        return _confirm_tolerance(judged, ref_scale, global_scale, loss_scale, x_scale)
    rtol = tolerance(judged, opts.rtol)
    if opts.atol is not None:
        return Tolerance(rtol, tolerance(judged, opts.atol), judged)
    # The smallest normal number of the judged dtype is the floor: below it a gradient of
    # that dtype underflows (a float32 gradient of 1e-52 is 0, correctly).
    atol = rtol * (GRAD_ATOL_FRACTION * ref_scale + 1e-6 * global_scale)
    # Rounding floor: a gradient is computed from the loss's terms, so its absolute error is
    # ~eps·(their size)/|x| however small the gradient (1 − y² of a saturated tanh keeps no
    # digits below it in any precision).  Entries under 16 such ulps are not judged smaller.
    rounding = 16 * float(np.finfo(judged).eps) * loss_scale / x_scale
    return Tolerance(rtol, max(atol, rounding, float(np.finfo(judged).tiny)), judged)


def _confirm_tolerance(judged: np.dtype[Any], ref_scale: float, global_scale: float,
                       loss_scale: float, x_scale: float) -> Tolerance:
    rtol = CONFIRM_RTOL[judged]
    f32 = np.finfo(np.float32)
    atol = rtol * (GRAD_ATOL_FRACTION * ref_scale + 1e-6 * global_scale)
    rounding = 16 * float(f32.eps) * loss_scale / x_scale
    return Tolerance(rtol, max(atol, rounding, float(f32.tiny)), judged)
