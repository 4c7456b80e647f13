"""Agreement between gradient sources: tolerance tables, error statistics, triangulation, diagnosis.

Three sources give each entry of a gradient: the hand-derived backward (*hand*), finite
differences with an error bar (*numeric*) and JAX (*autodiff*).  Two sources agree on an entry
when ``|a − b| ≤ rtol·max(|a|, |b|) + atol + err`` where ``rtol`` comes from the dtype table,
``atol`` is a floor proportional to the leaf's reference scale (so a tiny, vanishing gradient is
still judged relative to itself, never passed by an absolute ``1e-5``) and ``err`` is the finite
difference error estimate.  The three pairwise answers are then read with the triangulation table
of DESIGN.md to say who is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradcheck.result import Agreement, CheckResult, Diagnosis, LeafResult

__all__ = [
    "GRAD_ATOL_FRACTION",
    "GRAD_RTOL",
    "agreement",
    "close",
    "diagnose",
    "format_mismatch",
    "tolerance",
    "triangulate",
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


# Element status from (hand≈numeric, hand≈autodiff, numeric≈autodiff): DESIGN.md's table plus the
# three combinations it leaves out, each resolved by trusting the two sources that agree.
_TABLE: Mapping[tuple[bool, bool, bool], str] = {
    (True, True, True): "ok",
    (False, True, False): "numeric",
    (False, False, True): "hand",
    (True, False, False): "autodiff",
    (False, False, False): "inconclusive",
    (True, True, False): "ok",  # hand sits between two references a tolerance apart
    (True, False, True): "hand",  # numeric too coarse to tell; the exact references disagree
    (False, True, True): "numeric",  # numeric's error bar was optimistic on this entry
}


def triangulate(hn: np.ndarray | None, ha: np.ndarray | None, na: np.ndarray | None) -> np.ndarray:
    """Per-entry status from the pairwise agreement masks (``None`` = source unavailable).

    With three sources DESIGN.md's table decides; with two the table collapses to hand against
    the one reference; with none the entry is ``"unverified"``.

    Examples:
        >>> triangulate(np.array([True, False]), np.array([True, False]), np.array([True, True])).tolist()
        ['ok', 'hand']
    """
    masks = [m for m in (hn, ha, na) if m is not None]
    if not masks:
        raise ValueError("triangulate needs at least one comparison")
    shape = masks[0].shape
    out = np.empty(shape, dtype=object)
    if hn is not None and ha is not None and na is not None:
        for key, status in _TABLE.items():
            out[(hn == key[0]) & (ha == key[1]) & (na == key[2])] = status
        return out
    single = hn if hn is not None else ha
    if single is None:
        out[...] = "unverified"
        return out
    out[...] = np.where(single, "ok", "hand")
    return out


# ----------------------------------------------------------------------------- diagnosis


def diagnose(
    hand: np.ndarray,
    ref: np.ndarray,
    bad: np.ndarray,
    *,
    rtol: float,
    atol: float,
    err: np.ndarray | float = 0.0,
    time_axis: int | None = 0,
) -> Diagnosis | None:
    """Name the shape of a bug from the hand gradient, a trusted reference and the wrong entries.

    Tried in order: all-zero, sign flip, constant scale factor, transpose, shift by one step along
    the time axis, value clipping, and errors confined to rows, columns, time steps or a few
    entries.  Returns ``None`` when nothing is wrong.

    Examples:
        >>> r = np.arange(1.0, 5.0)
        >>> found = diagnose(0.5 * r, r, np.ones(4, bool), rtol=1e-7, atol=0)
        >>> found.kind, found.factor
        ('scale', 0.5)
    """
    hand, ref = np.asarray(hand, np.float64), np.asarray(ref, np.float64)
    bad = np.asarray(bad, bool).reshape(hand.shape)
    if not bad.any():
        return None

    def fits(a: np.ndarray, b: np.ndarray, e: Any = err) -> bool:
        return bool(close(a, b, rtol=rtol, atol=atol, err=e).all())

    fits.err = err  # type: ignore[attr-defined]

    refnz = bool(np.any(np.abs(ref) > atol))
    for test in (_zero, _sign, _scale, _transpose, _shift, _clipped):
        found = test(hand, ref, fits, refnz, time_axis)
        if found is not None:
            return found
    return _confined(hand, ref, bad, time_axis)


_Fits = Any


def _zero(h: np.ndarray, r: np.ndarray, fits: _Fits, refnz: bool, _t: Any) -> Diagnosis | None:
    if refnz and not np.any(h):
        return Diagnosis("zero", "the hand gradient is identically zero (a gradient never written, "
                         "or a dropped term)")
    return None


def _sign(h: np.ndarray, r: np.ndarray, fits: _Fits, refnz: bool, _t: Any) -> Diagnosis | None:
    if refnz and fits(h, -r):
        return Diagnosis("sign_flip", "sign flip: the hand gradient is −1 × the reference",
                         factor=-1.0)
    return None


def _scale(h: np.ndarray, r: np.ndarray, fits: _Fits, refnz: bool, _t: Any) -> Diagnosis | None:
    rr = float(np.sum(r * r))
    if not refnz or rr == 0.0:
        return None
    c = float(np.sum(h * r)) / rr
    if c == 0.0 or not math.isfinite(c) or not fits(h, c * r):
        return None
    nice = _nice(c)
    shown = nice[1] if nice else f"{c:.6g}"
    return Diagnosis(
        "scale",
        f"the hand gradient is {shown} × the reference (a constant factor: a missing ½, a batch "
        "mean, a doubled term)",
        factor=nice[0] if nice else c,
    )


def _nice(c: float) -> tuple[float, str] | None:
    """Snap a factor to a simple fraction p/q (q ≤ 16) when it is one to 1e-6."""
    for q in range(1, 17):
        p = round(c * q)
        if p != 0 and abs(c - p / q) <= 1e-6 * abs(c):
            return p / q, (f"{p / q:g}" if q in (1, 2, 4, 8, 16) or p % q == 0 else f"{p}/{q}")
    return None


def _transpose(h: np.ndarray, r: np.ndarray, fits: _Fits, refnz: bool, _t: Any) -> Diagnosis | None:
    if h.ndim < 2 or h.shape[-1] != h.shape[-2] or h.shape[-1] < 2:
        return None
    rt = np.swapaxes(r, -1, -2)
    et = np.swapaxes(fits.err, -1, -2) if np.ndim(fits.err) >= 2 else fits.err
    if refnz and not np.allclose(r, rt) and fits(h, rt, et):
        return Diagnosis("transpose", "transpose: the hand gradient is the reference transposed "
                         "(an outer product in the wrong order, x·δᵀ for δ·xᵀ)")
    return None


def _shift(h: np.ndarray, r: np.ndarray, fits: _Fits, refnz: bool, t: Any) -> Diagnosis | None:
    if t is None or h.ndim < 2 or h.shape[t] < 2 or not refnz:
        return None
    hh, rr = np.moveaxis(h, t, 0), np.moveaxis(r, t, 0)
    ee = np.moveaxis(fits.err, t, 0) if np.ndim(fits.err) else fits.err
    late = (hh[1:], rr[:-1], ee[:-1] if np.ndim(ee) else ee)
    early = (hh[:-1], rr[1:], ee[1:] if np.ndim(ee) else ee)
    for by, (a, b, e) in {1: late, -1: early}.items():
        if np.any(np.abs(b) > 0) and fits(a, b, e) and not fits(hh, rr, ee):
            how = "one step late: hand[t+1] holds the reference's step t" if by == 1 else (
                "one step early: hand[t] holds the reference's step t+1")
            return Diagnosis("shift", f"shifted by one step along axis {t} ({how}; an off-by-one "
                             "time index)", factor=float(by), axis=t)
    return None


def _clipped(h: np.ndarray, r: np.ndarray, fits: _Fits, refnz: bool, _t: Any) -> Diagnosis | None:
    mags = np.abs(h)
    c = float(mags.max()) if mags.size else 0.0
    if c == 0.0:
        return None
    at_c = np.isclose(mags, c, rtol=1e-12, atol=0.0)
    clipped = at_c & (np.abs(r) > c) & (np.sign(h) == np.sign(r))
    if clipped.any() and fits(h, np.clip(r, -c, c)):
        return Diagnosis("clipped", f"value clipping: the hand gradient is the reference clipped "
                         f"to ±{c:.6g} ({int(clipped.sum())} entries clipped)", factor=c)
    return None


def _confined(h: np.ndarray, r: np.ndarray, bad: np.ndarray, t: Any) -> Diagnosis:
    n_bad, n = int(bad.sum()), bad.size
    where = [tuple(int(i) for i in ix) for ix in np.argwhere(bad)]
    zero_note = " (the hand gradient is 0 there: a dropped term?)" if np.all(h[bad] == 0) else ""
    if n_bad <= 3 and n > n_bad:
        shown = ", ".join(str(list(w)) for w in where)
        return Diagnosis("entries", f"{n_bad} wrong entr{'y' if n_bad == 1 else 'ies'} at "
                         f"{shown}{zero_note}", indices=tuple(where))
    if h.ndim >= 2:
        axes = [(t, "time step")] if (t is not None and h.ndim >= 3) else []
        axes += [(0, "row"), (h.ndim - 1, "column")]
        for axis, word in axes:
            other = tuple(a for a in range(h.ndim) if a != axis)
            hit = np.flatnonzero(bad.any(axis=other))
            if len(hit) <= max(1, h.shape[axis] // 2) and len(hit) < h.shape[axis]:
                kind = {"time step": "time_steps", "row": "rows", "column": "columns"}[word]
                return Diagnosis(kind, f"errors confined to {word}{'s' if len(hit) > 1 else ''} "
                                 f"{_ranges(hit)} along axis {axis}{zero_note}", axis=axis,
                                 indices=tuple(int(i) for i in hit))
    if n_bad < n:
        return Diagnosis("entries", f"{n_bad} of {n} entries wrong{zero_note}",
                         indices=tuple(where[:20]))
    return Diagnosis("widespread", f"every entry is wrong, with no simple pattern{zero_note} "
                     "(a wrong formula rather than a slip)")


def _ranges(idx: np.ndarray) -> str:
    parts, start = [], None
    for i, v in enumerate(idx):
        if start is None:
            start = v
        if i == len(idx) - 1 or idx[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}–{v}")
            start = None
    return "[" + ", ".join(parts) + "]"


# ----------------------------------------------------------------------------- messages

_BLAME_TEXT = {
    "hand": "the hand-derived backward (the references agree with each other)",
    "numeric": "finite differences (a kink, the step, or round-off), not the hand gradient",
    "autodiff": "the autodiff reference: the JAX twin computes a different function than the "
    "forward (hand and finite differences agree)",
    "all": "undecided: hand, finite differences and autodiff all disagree",
}
_ADVICE = {
    "zero": "Check that {leaf}'s gradient is written (not left at zeros) and every term reaches it.",
    "sign_flip": "Check the sign of the {leaf} term in the backward (δ = y − d, not d − y).",
    "scale": "Look for a constant factor in {leaf}'s backward: a ½ of SSE, a 1/batch of a mean, "
    "a term counted twice.",
    "transpose": "{leaf}'s gradient has its axes swapped: compare the order of the outer product "
    "with the forward's matmul.",
    "shift": "Check the time index in the BPTT loop for {leaf} (t vs t−1 / t+1).",
    "clipped": "The backward clips {leaf}'s gradient: check unclipped gradients, then clip.",
    "time_steps": "Check the first/last step of the BPTT loop for {leaf}: the other steps agree.",
    "rows": "Only some rows of {leaf} are wrong: check the loop or slice that fills them.",
    "columns": "Only some columns of {leaf} are wrong: check the loop or slice that fills them.",
    "entries": "Only a few entries of {leaf} are wrong: check indexing and boundary cases.",
    "widespread": "Re-derive {leaf}'s backward term by term against the forward.",
}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.6g}"


def format_leaf(leaf: LeafResult, seed: int, references: tuple[str, ...]) -> str:
    """The message for one leaf that did not pass: what, where, how far off, who, what to do."""
    if leaf.mode == "directional" and not leaf.worst:
        bad = sum(p.status != "ok" for p in leaf.probes)
        head = (f"dL/d{leaf.name} ({leaf.dtype}, shape {leaf.shape}): {bad} of "
                f"{len(leaf.probes)} directional probes disagree (rtol={leaf.rtol:g})")
        lines = [head] + [
            f"  probe seed {p.seed}: ⟨hand,u⟩={_fmt(p.hand)}  numeric={_fmt(p.numeric)}±"
            f"{_fmt(p.numeric_error)}  autodiff={_fmt(p.autodiff)}  [{p.status}]"
            for p in leaf.probes[:5]
        ]
    else:
        head = (f"dL/d{leaf.name} ({leaf.dtype}, shape {leaf.shape}): {leaf.n_mismatched} of "
                f"{leaf.n_checked} elements outside rtol={leaf.rtol:g}, atol={leaf.atol:.3g}")
        lines = [head] + [
            f"  worst at {list(e.index)}: hand={_fmt(e.hand)}  numeric={_fmt(e.numeric)}±"
            f"{_fmt(e.numeric_error)}  autodiff={_fmt(e.autodiff)}  [{e.status}]"
            for e in leaf.worst
        ]
    if leaf.diagnosis is not None:
        lines.append(f"  diagnosis: {leaf.diagnosis.summary}")
    lines.append(f"  verdict: {leaf.verdict}; blame: {_BLAME_TEXT.get(leaf.blame or '', 'none')}")
    if len(references) < 2:
        lines.append("  (two sources only: hand against " + ", ".join(references) + ")")
    lines.extend(f"  note: {n}" for n in leaf.notes)
    if leaf.blame == "hand" and leaf.diagnosis is not None:
        lines.append("  " + _ADVICE.get(leaf.diagnosis.kind, "").format(leaf=leaf.name))
    elif leaf.verdict == "inconclusive":
        lines.append("  Make the forward smooth at this point (move off kinks), or pass a JAX "
                     "twin with jax_fun= for a third source.")
    lines.append(f"  reproduce with seed={seed}")
    return "\n".join(lines)


def format_mismatch(result: CheckResult) -> str:
    """The text of :class:`~gradcheck.GradientMismatch` for ``result``: one block per leaf that
    did not pass, the worst entries only (never a whole Jacobian), then the check's notes."""
    blocks = [
        format_leaf(leaf, result.seed, result.references)
        for leaf in result.leaves
        if leaf.verdict != "pass"
    ]
    head = f"{result.kind} {result.name!r}: {result.verdict}"
    tail = [f"note: {n}" for n in result.notes]
    return "\n".join([head, *blocks, *tail])
