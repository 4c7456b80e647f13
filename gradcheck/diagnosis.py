"""The shape of a bug: from a hand gradient, a trusted reference and the wrong entries.

A failing leaf carries a diagnosis when one fits: an all-zero gradient, a sign flip, a constant
scale factor (a missing ½ of SSE, a 1/batch of a mean), a transpose, a shift by one step in
time, value clipping, or errors confined to some rows, columns, time steps or entries.  Without
an elementwise reference, a constant ratio over the directional probes still names a sign flip,
a scale factor or an all-zero gradient.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcheck.result import Diagnosis, Probe
from gradcheck.tolerance import close

__all__ = ["diagnose", "probe_diagnosis"]


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
    entries; many wrong entries with none of these patterns are ``scattered``.  A one-entry
    tensor shows no pattern beyond a zero or a flipped sign: otherwise its diagnosis is
    ``single`` (what the entry is and its ratio to the reference, never "a constant factor").
    Returns ``None`` when nothing is wrong.

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
    tests = (_zero, _sign, _scale, _transpose, _shift, _clipped) if hand.size > 1 else (_zero, _sign)
    for test in tests:
        found = test(hand, ref, fits, refnz, time_axis)
        if found is not None:
            return found
    if hand.size == 1:
        return _single(float(hand.ravel()[0]), float(ref.ravel()[0]))
    return _confined(hand, ref, bad, time_axis)


_Fits = Any
#: A confined error counts as "a few entries" up to this many wrong entries, or this fraction of
#: the tensor; more are "scattered": many wrong entries with no row, column or step pattern.
FEW_ENTRIES, FEW_FRACTION = 3, 0.1


def _single(h: float, r: float) -> Diagnosis:
    """A one-entry tensor: one number shows no pattern (a constant factor needs two), so the
    diagnosis says what the entry is and how it compares."""
    if r == 0.0:
        how = "the reference is 0"
    elif h == 0.0:
        how = "the hand value is 0 (a gradient never written, or a dropped term?)"
    else:
        how = f"{h / r:.6g} × the reference"
    return Diagnosis("single", f"its only entry is wrong: hand {h:.6g}, reference {r:.6g} ({how})",
                     factor=h / r if r != 0.0 else None, indices=((0,),))


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
    if nice is not None and nice[0] == 1.0:
        return None  # a factor of 1 is agreement, not the shape of a bug
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
    if n_bad <= FEW_ENTRIES and n > n_bad:
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
    if n_bad <= FEW_FRACTION * n:
        return Diagnosis("entries", f"{n_bad} of {n} entries wrong{zero_note}",
                         indices=tuple(where[:20]))
    if n_bad < n:
        return Diagnosis("scattered", f"{n_bad} of {n} entries wrong, with no row, column or "
                         f"time-step pattern{zero_note}", indices=tuple(where[:20]))
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


def probe_diagnosis(probes: tuple[Probe, ...], rtol: float) -> Diagnosis | None:
    """Without an elementwise reference, a constant ratio ⟨hand,u⟩/⟨ref,u⟩ over all probes still
    names a sign flip, a scale factor or an all-zero gradient."""
    usable = [p for p in probes if p.numeric is not None and p.status != "kink"]
    if len(usable) < 2:
        return None
    hand = np.array([p.hand for p in usable])
    ref = np.array([p.numeric for p in usable])
    err = np.array([p.numeric_error or 0.0 for p in usable])
    found = diagnose(hand, ref, np.ones(hand.size, bool), rtol=rtol, atol=0.0, err=err, time_axis=None)
    if found is not None and found.kind in ("zero", "sign_flip", "scale"):
        return found
    return None
