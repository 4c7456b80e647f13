"""Judgement: entry statuses, the leaf's verdict and who is to blame — in one place.

Each entry's status comes from the pairwise agreement of the three sources (hand, numeric,
autodiff), read with DESIGN.md's triangulation table; the leaf's verdict and blame follow from
its entries' statuses.  There is one judgement per way of gathering evidence (every entry,
screening, localisation); each reads the evidence and the tolerances and changes neither, so the
negative control (:mod:`gradcheck.power`) can judge a planted error by the very same rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from gradcheck.measure import Evidence, Leaf, Partials, Run, numeric_rtol, probe_tol
from gradcheck.result import Blame, Probe, Verdict
from gradcheck.tolerance import Tolerance, close

__all__ = ["OUTVOTE_MARGIN", "Judgement", "full", "full_status", "localised", "screen",
           "screen_status", "triangulate", "verdict"]

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


#: The table by ``4·hn + 2·ha + na`` (a lookup is far faster than masks over object arrays).
_BY_CODE = np.array([_TABLE[(bool(c & 4), bool(c & 2), bool(c & 1))] for c in range(8)], dtype=object)
_PAIR = np.array(["hand", "ok"], dtype=object)


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
    shape = np.shape(masks[0])
    if hn is not None and ha is not None and na is not None:
        code = 4 * np.asarray(hn, np.intp) + 2 * np.asarray(ha, np.intp) + np.asarray(na, np.intp)
        return np.asarray(_BY_CODE[code].reshape(shape))
    single = hn if hn is not None else ha
    if single is None:
        return np.full(shape, "unverified", dtype=object)
    return np.asarray(_PAIR[np.asarray(single, np.intp)].reshape(shape))


@dataclass(frozen=True)
class Judgement:
    """A leaf's entry statuses (flat) and what follows from them.

    ``outvoted`` counts the entries the numeric outvote moved to the hand's side;
    ``unreliable`` marks the entries whose finite difference cannot vouch for them (full mode);
    ``scale`` is the leaf's largest reference entry; ``probes`` the screening probe records;
    ``notes`` what the judgement has to say.
    """

    status: np.ndarray
    tol: Tolerance
    verdict: Verdict
    blame: Blame | None
    scale: float = 0.0
    outvoted: int = 0
    unreliable: np.ndarray | None = None
    probes: tuple[Probe, ...] = ()
    notes: tuple[str, ...] = field(default=())
    #: Entries whose gradient every reference finds identically zero at this point (an unused
    #: parameter, recurrent weights at T = 1 with h0 = 0, a dead unit): a bug there cannot be seen.
    unexercised: np.ndarray | None = None


#: The statuses of entries whose hand value some reference confirmed.
_VERIFIED = frozenset({"ok", "numeric", "autodiff"})


def verdict(status: np.ndarray, *, twin: bool) -> tuple[Verdict, Blame | None]:
    """Leaf verdict from entry statuses.  Autodiff alone disagreeing fails the check only when
    it differentiates a user-supplied twin (the twin is wrong: worth a failure); when JAX traced
    the user's own forward, the disagreement is JAX's (flushed subnormals, different numpy
    semantics) and the hand gradient, confirmed by finite differences, passes with a warning."""
    present = set(np.asarray(status).ravel().tolist())
    if "hand" in present:
        return "fail", "hand"
    if "autodiff" in present:
        return ("fail", "autodiff") if twin else ("pass", "autodiff")
    if "inconclusive" in present:
        return "inconclusive", "all"
    if "unverified" in present:
        return "inconclusive", None
    if present and not present & _VERIFIED:
        return "inconclusive", None  # abstention is never a pass: no entry could be verified
    if "numeric" in present:
        return "pass", "numeric"
    return "pass", None


def outside_kinks(leaf: Leaf, p: Partials, idx: np.ndarray, tol: Tolerance) -> np.ndarray:
    """Which kink entries ``idx`` have a hand value outside the interval of the one-sided
    derivatives (the subdifferential of a convex kink such as ReLU or |x| at 0), beyond the
    error bars and twice the slopes' own truncation error (they are first-order accurate)."""
    left, right = p.left[idx], p.right[idx]
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    err = np.where(np.isfinite(p.err[idx]), p.err[idx], 0.0)
    side = 2.0 * p.side[idx] if p.side is not None else np.zeros(idx.size)
    side = np.where(np.isfinite(side), side, 0.0)
    slack = tol.rtol * np.maximum(np.abs(lo), np.abs(hi)) + tol.atol + err + side
    h = leaf.hand[idx]
    return np.asarray(~((h >= lo - slack) & (h <= hi + slack)))


def _mark_kinks(status: np.ndarray, leaf: Leaf, p: Partials | None, tol: Tolerance) -> np.ndarray:
    """Kink entries are ``"kink"``, except where the leaf has no verified entry to go on and the
    hand value lies outside the one-sided slopes: then it is the hand's failure (5 or −3 for a
    ReLU at 0).  Beside verified entries an outside value is only noted: where several pieces
    meet at once (tied maxima of overlapping pooling windows, each window's share free to go to
    either tied entry) valid values are sums of per-window choices that can lie beyond the
    interval, and one-sided slopes along one entry cannot tell the two cases apart."""
    if p is None or not p.kink.any():
        return status
    idx = np.flatnonzero(p.kink)
    smooth = np.ones(status.size, bool)
    smooth[idx] = False
    verified = bool(np.isin(status[smooth], tuple(_VERIFIED)).any())
    outside = outside_kinks(leaf, p, idx, tol) & (not verified)
    status[idx] = np.where(outside, "hand", "kink").astype(object)
    return status


def _kink_notes(status: np.ndarray, leaf: Leaf, p: Partials | None, tol: Tolerance) -> tuple[str, ...]:
    """What the kinks of a leaf mean for its verdict: hand values outside the one-sided slopes
    (blamed, or noted beside verified entries), or no entry left that a reference could verify."""
    if p is None or not p.kink.any():
        return ()
    status = np.asarray(status).ravel()
    idx = np.flatnonzero(p.kink)
    outside = int(np.count_nonzero(outside_kinks(leaf, p, idx, tol)))
    blamed = int(np.count_nonzero(status[idx] == "hand"))
    if blamed:
        return (f"{blamed} entr{'y' if blamed == 1 else 'ies'} at points where the forward is "
                "not differentiable have a hand value outside the interval of the one-sided "
                "derivatives (the subdifferential), and no other entry could be verified: no "
                "choice of derivative there gives that value",)
    notes: tuple[str, ...] = ()
    if outside:
        notes = (f"{outside} entr{'y' if outside == 1 else 'ies'} at points where the forward is not "
                 "differentiable have a hand value outside the interval of the one-sided slopes: "
                 "a valid choice where several pieces meet (tied maxima of overlapping windows), a "
                 "bug at a simple kink (ReLU or |x| at 0); not blamed, the other entries agree",)
    if not set(status.tolist()) & _VERIFIED:
        notes = (*notes, f"no entry could be verified: all {status.size} are at points where the "
                 "forward is not differentiable (ReLU or |x| at 0, a max tie); move the point off "
                 "the kinks (another seed or input) to check this tensor")
    return notes


# ----------------------------------------------------------------------------- every entry

#: How far beyond its own error bar a smooth-point finite difference must be before it is trusted
#: over hand and autodiff agreeing with each other.
OUTVOTE_MARGIN = 100.0


def _numeric_outvoted(status: np.ndarray, num: np.ndarray, err: np.ndarray, ad: np.ndarray,
                      atol: float) -> np.ndarray:
    """DESIGN's row "hand ≈ autodiff, both ≠ numeric → blame numeric" assumes the finite
    difference is the one off (a kink, the step, round-off).  Where it sits a hundred error bars
    away from autodiff at a smooth point, that cannot be: hand and autodiff share the error — a
    JAX forward or twin with ``stop_gradient`` or the same truncation as the hand BPTT — and the
    hand gradient is not the gradient of the forward.  Those entries are the hand's failure."""
    far = np.abs(num - ad) > OUTVOTE_MARGIN * (err + atol)
    out = status.copy()
    out[(status == "numeric") & far] = "hand"
    return out


def _unreliable(ev: Evidence, n: int, tol: Tolerance, scale: float, global_scale: float,
                zero: np.ndarray) -> np.ndarray:
    """Finite differences cannot vouch for an entry whose error bar is a tenth of the gradient's
    own size.  When every source says the whole gradient is exactly zero there is no size to be
    unreliable against: the bar itself is the resolution, and is reported.  Nor at an entry the
    loss does not move with (``zero``, see :func:`unexercised`)."""
    if ev.parts is None or max(scale, global_scale) == 0.0:
        return np.zeros(n, bool)
    p = ev.parts
    return np.asarray((p.err > 0.1 * np.maximum(np.abs(p.num), scale)) & (p.err > tol.atol) & ~p.kink
                      & ~zero)


def unexercised(leaf: Leaf, p: Partials | None) -> np.ndarray:
    """The entries at which every reference that measured says exactly 0: the loss does not
    move at all when they move (finite differences of exactly 0, autodiff exactly 0)."""
    zero = np.zeros(leaf.size, bool)
    if p is not None:
        measured = ~np.isnan(p.num)
        zero = measured & (p.num == 0.0) & ~p.kink
        if leaf.ad is not None:
            zero = (zero | ~measured) & (leaf.ad == 0.0)
    elif leaf.ad is not None:
        zero = leaf.ad == 0.0
    return np.asarray(zero)


def _judge_unexercised(leaf: Leaf, zero: np.ndarray, tol: Tolerance, status: np.ndarray) -> np.ndarray:
    """An identically-zero gradient is judged against the leaf's atol, which follows the
    problem's gradient scale where the leaf's own is 0 (no finite-difference error bar: every
    reference is exactly 0): a hand value of rounding size passes, anything larger is the hand's
    bug."""
    if zero.any():
        status[zero] = np.where(np.abs(leaf.hand[zero]) <= tol.atol, "ok", "hand")
    return status


def full_status(run: Run, leaf: Leaf, ev: Evidence, tol: Tolerance, unreliable: np.ndarray
                ) -> tuple[np.ndarray, int]:
    """Entry statuses of a full check (DESIGN.md's table), and how many entries the numeric
    outvote moved to the hand's side."""
    hand, ad, p = leaf.hand, leaf.ad, ev.parts
    rtol, atol = tol.rtol, tol.atol
    hn = None if p is None else close(hand, p.num, rtol=rtol, atol=atol, err=p.err)
    ha = None if ad is None else close(hand, ad, rtol=rtol, atol=atol)
    na = None if p is None or ad is None else close(p.num, ad, rtol=numeric_rtol(run), atol=atol,
                                                     err=p.err)
    status = triangulate(hn, ha, na)
    if unreliable.any() and hn is not None:
        status[unreliable] = (triangulate(None, ha[unreliable], None) if ha is not None
                              else "unverified")
    outvoted = 0
    # In the exploding regime the finite differences are leaned on less, not trusted over autodiff.
    if p is not None and ad is not None and not run.refs.exploding:
        before = status
        status = _numeric_outvoted(status, p.num, p.err, ad, atol)
        outvoted = int(np.count_nonzero((before == "numeric") & (status == "hand") & ~p.kink))
    status = _judge_unexercised(leaf, unexercised(leaf, p), tol, status)
    status = _mark_kinks(status, leaf, p, tol)
    if p is not None and (ev.led is not None or p.stopped):
        # Entries without a finite difference of their own (autodiff-led, or the time budget
        # ran out): hand against the autodiff reference (DESIGN's two-source table), or not
        # verified at all without one.
        alone = np.isnan(p.num) & ~p.taken if p.stopped else np.isnan(p.num)
        status[alone] = ("unverified" if ad is None else
                         triangulate(None, close(hand[alone], ad[alone], rtol=rtol, atol=atol), None))
    return status, outvoted


def full(run: Run, leaf: Leaf, ev: Evidence) -> Judgement:
    """The judgement of a full check: every entry against every reference it has."""
    kink = ev.kink(leaf.size)
    ref = leaf.ad if leaf.ad is not None else ev.parts.num if ev.parts is not None else None
    assert ref is not None
    known = ~kink & np.isfinite(ref)  # not a kink, and measured (a budget may stop it)
    scale = float(np.max(np.abs(ref[known]))) if known.any() else 0.0
    tol = leaf.tolerance(run, scale)
    zero = unexercised(leaf, ev.parts)
    unreliable = _unreliable(ev, leaf.size, tol, scale, run.refs.global_scale, zero)
    status, outvoted = full_status(run, leaf, ev, tol, unreliable)
    notes = _kink_notes(status, leaf, ev.parts, tol)
    if outvoted:
        notes = (*notes, f"autodiff agrees with the hand gradient on {outvoted} entr"
                 f"{'y' if outvoted == 1 else 'ies'} where finite differences, far outside their "
                 "error bar at a smooth point, do not: the JAX path drops the same term as the hand "
                 "backward (stop_gradient, truncated BPTT)")
    found, blame = verdict(status, twin=run.problem.twin)
    return Judgement(status, tol, found, blame, scale=scale, outvoted=outvoted,
                     unreliable=unreliable, notes=(*notes, *_budget_note(run, ev, status)),
                     unexercised=zero)


def _budget_note(run: Run, ev: Evidence, status: np.ndarray) -> tuple[str, ...]:
    """What a leaf whose measurement the time budget cut short could still verify."""
    p = ev.parts
    if p is None or not p.stopped:
        return ()
    verified = int(np.count_nonzero(np.isin(status, tuple(_VERIFIED))))
    wrong = int(np.count_nonzero(status == "hand"))
    return (f"time budget of {run.opts.budget:g} s spent: {int(p.taken.sum())} of {p.num.size} "
            f"entries measured by finite differences, {verified} verified"
            + (f", {wrong} found wrong" if wrong else "")
            + "; the others are not verified (raise budget=, or use mode='directional' for a "
            "cheaper screen)",)


# ----------------------------------------------------------------------------- screening


@dataclass(frozen=True)
class _ProbeWords:
    """What the screening probes say: their records, hand ≈ numeric and numeric ≈ autodiff per
    probe, and how many probes outvote hand and autodiff agreeing (see :func:`_far`)."""

    records: list[Probe]
    hn: list[bool]
    na: list[bool]
    outvoting: int


def _far(run: Run, pa: float, value: float, bound: float) -> bool:
    """Full mode's numeric outvote for a probe: a smooth-point directional derivative a hundred
    error bars from ⟨autodiff, u⟩ means hand and autodiff share an error (a twin with
    ``stop_gradient``), not that the finite difference is off.  Never in the exploding regime,
    where finite differences are leaned on less."""
    return not run.refs.exploding and abs(pa - value) > OUTVOTE_MARGIN * bound


def _probe_records(run: Run, leaf: Leaf, ev: Evidence, tol: Tolerance) -> _ProbeWords:
    hand = leaf.hand.reshape(leaf.x.shape)
    ad = leaf.ad.reshape(leaf.x.shape) if leaf.ad is not None else None
    probes, hn_all, na_all, outvoting = [], [], [], 0
    for m in ev.probes:
        ph = float(np.sum(hand * m.u))
        pa = float(np.sum(ad * m.u)) if ad is not None else None
        bound = probe_tol(hand, m, tol, run.refs.regime.err_scale)
        ok_hn = abs(ph - m.d.value) <= bound
        hn_all.append(ok_hn)
        ok_na = None if pa is None else abs(pa - m.d.value) <= bound
        if ok_na is not None:
            na_all.append(ok_na)
        said = "ok" if ok_hn and ok_na is not False else ("hand" if ok_na in (True, None) else "numeric")
        if said == "numeric" and pa is not None and _far(run, pa, m.d.value, bound):
            said, outvoting = "hand", outvoting + 1
        probes.append(Probe(m.seed, ph, m.d.value, m.d.error, pa, said))
    for m in ev.crossing:
        probes.append(Probe(m.seed, float(np.sum(hand * m.u)), m.d.value, m.d.error,
                            float(np.sum(ad * m.u)) if ad is not None else None, "kink"))
    return _ProbeWords(probes, hn_all, na_all, outvoting)


def screen_status(run: Run, leaf: Leaf, ev: Evidence, tol: Tolerance
                  ) -> tuple[np.ndarray, tuple[Probe, ...], int]:
    """Entry statuses from the screening probes (and autodiff at every entry, when there is
    one), before the settled disagreements are read; the probe records; and how many probes
    outvote hand and autodiff agreeing."""
    words = _probe_records(run, leaf, ev, tol)
    n = leaf.size
    hn = bool(all(words.hn)) if words.hn else None
    na = bool(all(words.na)) if words.na else None
    ha = close(leaf.hand, leaf.ad, rtol=tol.rtol, atol=tol.atol) if leaf.ad is not None else None
    if hn is None and ha is None:
        return np.full(n, "unverified", dtype=object), tuple(words.records), 0
    status = triangulate(None if hn is None else np.full(n, hn), ha,
                         None if na is None or ha is None else np.full(n, na))
    if ha is not None and hn is False and na:
        status = np.where(ha, "ok", "hand").astype(object)  # localised by autodiff
    if words.outvoting:
        status[status == "numeric"] = "hand"
    return status, tuple(words.records), words.outvoting


def screen(run: Run, leaf: Leaf, ev: Evidence) -> Judgement:
    """The judgement of screening: the probes, then a finite difference's word at every entry
    where hand and autodiff differ."""
    tol = leaf.tolerance(run, leaf.ad_scale())
    status, probes, outvoting = screen_status(run, leaf, ev, tol)
    p = ev.parts
    if p is not None and leaf.ad is not None:
        idx = p.measured
        hn = close(leaf.hand[idx], p.num[idx], rtol=tol.rtol, atol=tol.atol, err=p.err[idx])
        na = close(p.num[idx], leaf.ad[idx], rtol=numeric_rtol(run), atol=tol.atol, err=p.err[idx])
        status = np.asarray(status, dtype=object).ravel().copy()
        status[idx] = triangulate(hn, np.zeros(idx.size, bool), na)
        status = _mark_kinks(status, leaf, p, tol)
    zero = unexercised(leaf, p) if leaf.ad is not None else _still_along_probes(leaf, ev)
    status = _judge_unexercised(leaf, zero, tol, np.asarray(status, dtype=object).ravel().copy())
    found, blame = verdict(status, twin=run.problem.twin)
    notes = ((f"{outvoting} of {len(probes)} probes measure a directional derivative far outside "
              "its error bar from both the hand gradient and autodiff, which agree: the JAX path "
              "drops the same term as the hand backward (stop_gradient, truncated BPTT)"),
             ) if outvoting else ()
    return Judgement(status, tol, found, blame, scale=leaf.ad_scale(), probes=probes,
                     notes=(*notes, *_kink_notes(status, leaf, p, tol), *_budget_note(run, ev, status)),
                     unexercised=zero)


def _still_along_probes(leaf: Leaf, ev: Evidence) -> np.ndarray:
    """Without autodiff, a leaf whose loss does not move at all along any probe (each a random
    direction over every entry: exactly 0 however measured) has an identically zero gradient."""
    still = bool(ev.probes) and not ev.crossing and all(m.d.value == 0.0 for m in ev.probes)
    return np.full(leaf.size, still)


# ----------------------------------------------------------------------------- localisation


def _first_divergence(leaf: Leaf, status: np.ndarray, time_axis: int | None) -> str | None:
    """For a sequence leaf (3 or more axes), the first time step where hand and reference diverge."""
    shape = leaf.shape
    if time_axis is None or len(shape) < 3:
        return None
    bad = (np.asarray(status).reshape(shape) == "hand")
    steps = np.flatnonzero(np.moveaxis(bad, time_axis, 0).reshape(shape[time_axis], -1).any(axis=1))
    if not steps.size:
        return None
    return (f"hand and reference first diverge at time step {int(steps[0])} of {shape[time_axis]} "
            f"(axis {time_axis} of {leaf.name})")


def localised(run: Run, leaf: Leaf, ev: Evidence, tol: Tolerance,
              probes: tuple[Probe, ...] = ()) -> Judgement:
    """The judgement of a localised leaf: each measured entry against its finite difference,
    the entries of unresolved blocks unverified, the rest agreeing (their blocks did)."""
    assert ev.parts is not None
    p = ev.parts
    status = np.full(leaf.size, "ok", dtype=object)
    idx = np.flatnonzero(p.taken)
    if idx.size:
        agree = close(leaf.hand[idx], p.num[idx], rtol=tol.rtol, atol=tol.atol, err=p.err[idx])
        status[idx] = np.where(agree, "ok", "hand")
    status = _mark_kinks(status, leaf, p, tol)
    if ev.unresolved is not None:
        status[ev.unresolved] = "unverified"
    found, blame = verdict(status, twin=run.problem.twin)
    first = _first_divergence(leaf, status, run.problem.time_axis.axis) if found == "fail" else None
    return Judgement(status, tol, found, blame, probes=probes,
                     notes=_kink_notes(status, leaf, p, tol) + ((first,) if first else ()))
