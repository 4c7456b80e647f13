"""Detection power and the negative control of a leaf that passed, run after its judgement.

The power is the smallest single-entry error, relative to the leaf's largest reference entry,
that the run would have caught; the control plants that error at one seeded entry of the hand
gradient and judges it again by the same rule (:mod:`gradcheck.judge`) — it must fail there with
blame on the hand, or the claim does not hold and the record says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from gradcheck import judge
from gradcheck.judge import Judgement
from gradcheck.measure import SALT_CONTROL, Evidence, Leaf, Run, probe_seed, probe_tol
from gradcheck.result import Control

__all__ = ["POWER_QUANTILE", "Power", "measure"]

#: Quantile of the entries at which a screening run's detection power is claimed.
POWER_QUANTILE = 0.9


@dataclass(frozen=True, slots=True)
class Power:
    """The detection power claimed for a leaf, and its negative control."""

    power: float
    control: Control


def _entry_thresholds(hand: np.ndarray, refs: list[tuple[np.ndarray, np.ndarray | float]],
                      rtol: float, atol: float) -> np.ndarray:
    """The smallest change of each hand entry that every reference would reject:
    ``(rtol·|r| + atol + e) / (1 − rtol) + |h − r|`` per reference, the largest over them."""
    out = np.zeros(hand.size)
    for ref, e in refs:
        out = np.maximum(out, (rtol * np.abs(ref) + atol + e) / (1.0 - rtol) + np.abs(hand - ref))
    return out


def _control_entry(run: Run, leaf: Leaf, candidates: np.ndarray) -> int | None:
    if not candidates.size:
        return None
    rng = np.random.default_rng(probe_seed(run.opts.seed, leaf.k, SALT_CONTROL))
    return int(candidates[rng.integers(candidates.size)])


def _power(delta: float, scale: float, j: int, leaf: Leaf, caught: bool) -> Power:
    return Power(delta / scale if scale > 0 else math.inf, Control(leaf.index(j), delta, caught))


def _full(run: Run, leaf: Leaf, ev: Evidence, found: Judgement) -> Power | None:
    """Full mode: the largest per-entry threshold; one seeded entry moved by that much."""
    hand, ad, tol = leaf.hand, leaf.ad, found.tol
    assert found.unreliable is not None
    refs: list[tuple[np.ndarray, np.ndarray | float]] = [] if ad is None else [(ad, 0.0)]
    usable = ~ev.kink(leaf.size)
    num = None
    if ev.parts is not None:
        # Where finite differences are unreliable, autodiff alone decides (see judge.full).
        num = np.where(np.isnan(ev.parts.num), hand, ev.parts.num)
        err = np.where(np.isnan(ev.parts.err), 0.0, ev.parts.err)
        if found.unexercised is not None:  # judged against atol alone (see judge.unexercised)
            err = np.where(found.unexercised, 0.0, err)
        refs.append((np.where(found.unreliable, hand, num), np.where(found.unreliable, 0.0, err)))
    thresholds = _entry_thresholds(hand, refs, tol.rtol, tol.atol)
    usable &= np.isfinite(thresholds)
    j = _control_entry(run, leaf, np.flatnonzero(usable))
    if j is None:
        return None
    delta = float(np.max(thresholds[usable])) * (1 + 1e-9)
    ref = ad if ad is not None else num
    assert ref is not None
    planted = hand.copy()
    planted[j] += delta if ref[j] <= hand[j] else -delta
    status, _ = judge.full_status(run, replace(leaf, hand=planted), ev, tol, found.unreliable)
    return _power(delta, found.scale, j, leaf, bool(status[j] == "hand"))


def _screened(run: Run, leaf: Leaf, ev: Evidence, found: Judgement) -> Power | None:
    """Screening.  With autodiff every entry is compared, as in full mode.  With probes alone a
    single-entry error ``δ`` at entry ``i`` moves probe ``p`` by ``δ·u_{p,i}``, so it is caught
    when ``|δ| > (tol_p + |⟨h,u_p⟩ − ∂L/∂u_p|) / |u_{p,i}|`` for some probe: the claimed power is
    the 90th percentile of that threshold over the entries (tiny ``u_{p,i}`` at a few entries
    would make any worst-case figure meaningless), and the control plants it at a seeded entry
    among the 90 % the claim covers."""
    flat, tol = leaf.hand, found.tol
    if leaf.ad is not None:
        thresholds = _entry_thresholds(flat, [(leaf.ad, 0.0)], tol.rtol, tol.atol)
        scale = leaf.ad_scale()
        delta = float(np.max(thresholds)) * (1 + 1e-9) if thresholds.size else math.nan
        covered = np.flatnonzero(thresholds <= delta)
    elif ev.probes:
        hand = flat.reshape(leaf.x.shape)
        per = np.full(flat.size, math.inf)
        for m in ev.probes:
            slack = probe_tol(hand, m, tol, run.refs.regime.err_scale) + abs(
                float(np.sum(hand * m.u)) - m.d.value)
            with np.errstate(divide="ignore"):
                per = np.minimum(per, slack / np.abs(m.u.ravel()))
        scale = float(np.max(np.abs(flat))) if flat.size else 0.0
        # The planted error also raises the tolerance (rtol of the sum's terms) a little.
        delta = float(np.quantile(per, POWER_QUANTILE)) * (1 + 1e-6) / (1 - tol.rtol)
        covered = np.flatnonzero(per <= delta)
    else:
        return None
    j = _control_entry(run, leaf, covered)
    if j is None or not math.isfinite(delta):
        return None
    planted = flat.copy()
    planted[j] += delta
    status, _, _ = judge.screen_status(run, replace(leaf, hand=planted), ev, tol)
    return _power(delta, scale, j, leaf, bool(status[j] == "hand"))


def measure(run: Run, leaf: Leaf, ev: Evidence, found: Judgement) -> Power | None:
    """The power and control of a leaf that passed (``None`` when there is nothing to plant)."""
    if found.verdict != "pass" or ev.mode == "localised":
        return None
    if ev.mode == "directional":
        return _screened(run, leaf, ev, found)
    return _full(run, leaf, ev, found)
