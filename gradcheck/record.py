"""Evidence and judgement → the frozen result records (:mod:`gradcheck.result`).

A leaf's record says how far apart the sources are (hand vs numeric, hand vs autodiff, numeric
vs autodiff, over the smooth entries), its worst entries and kinks, the bug's shape when it
failed, the detection power and negative control when it passed, and every note the stages
made — in the order: the record's own, the gathering's, the control's, the judgement's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gradcheck.diagnosis import diagnose, probe_diagnosis
from gradcheck.judge import Judgement
from gradcheck.measure import Evidence, Leaf, Run, numeric_rtol
from gradcheck.options import CheckOptions
from gradcheck.power import Power
from gradcheck.references import References
from gradcheck.result import Agreement, CheckResult, Diagnosis, Element, LeafResult, Verdict
from gradcheck.tolerance import agreement

__all__ = ["ERROR_MAP_MAX", "check_result", "leaf_result"]

#: A leaf that did not pass carries its whole error map (one number per entry) up to this size.
ERROR_MAP_MAX = 4096


@dataclass(frozen=True)
class _Shown:
    """The numbers a record shows per flat entry (``None``: that source is absent)."""

    hand: np.ndarray
    num: np.ndarray | None
    err: np.ndarray | None
    ad: np.ndarray | None
    smooth: np.ndarray


def _shown(leaf: Leaf, ev: Evidence) -> _Shown:
    """Localised by group testing, entries outside the measured blocks have no partial of their
    own (their blocks agreed as a whole): they count as agreeing, with no number to show."""
    kink = ev.kink(leaf.size)
    smooth = ~kink
    num = err = None
    if ev.parts is not None:
        num, err = ev.parts.num, ev.parts.err
        if not np.isfinite(num).all():
            measured = np.isfinite(num)
            smooth = smooth & measured
            num = np.where(measured, num, leaf.hand)
            err = np.where(measured, err, 0.0)
    return _Shown(leaf.hand, num, err, leaf.ad, smooth)


def _agreements(run: Run, s: _Shown, status: np.ndarray, rtol: float, atol: float
                ) -> tuple[Agreement | None, Agreement | None, Agreement | None]:
    hvn = hva = nva = None
    err = s.err if s.err is not None else 0.0
    if s.num is not None:
        hvn, _ = agreement(s.hand, s.num, rtol=rtol, atol=atol, err=err,
                           mask=s.smooth & (status != "unverified"))
    if s.ad is not None:
        hva, _ = agreement(s.hand, s.ad, rtol=rtol, atol=atol, mask=s.smooth)
    if s.num is not None and s.ad is not None:
        nva, _ = agreement(s.num, s.ad, rtol=numeric_rtol(run), atol=atol, err=err, mask=s.smooth)
    return hvn, hva, nva


def _element(s: _Shown, i: int, leaf: Leaf, status: str,
             left: np.ndarray | None = None, right: np.ndarray | None = None) -> Element:
    def at(a: np.ndarray | None) -> float | None:
        return None if a is None else float(a[i])

    return Element(leaf.index(i), float(s.hand[i]), at(s.num), at(s.err), at(s.ad), status,
                   at(left), at(right))


def _worst(s: _Shown, status: np.ndarray, leaf: Leaf, j: Judgement, ev: Evidence, k: int,
           shown: np.ndarray) -> tuple[Element, ...]:
    """The worst entries, the wrong ones first, by how many tolerances they are off (a wrong
    entry at a kink carries its one-sided slopes)."""
    kink = ev.kink(leaf.size)
    left = ev.parts.left if ev.parts is not None else None
    right = ev.parts.right if ev.parts is not None else None
    ref = s.ad if s.ad is not None else s.num
    if ref is None:
        return ()
    bad = np.isin(status, ("hand", "autodiff", "inconclusive"))
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.abs(s.hand - ref) / (j.tol.rtol * np.maximum(np.abs(s.hand), np.abs(ref)) + j.tol.atol)
    excess = np.where(status == "kink", -1.0, excess)
    excess = np.where(shown, excess, -2.0)
    order = np.argsort(-excess, kind="stable")
    if bad.any():
        order = np.concatenate([order[bad[order]], order[~bad[order]]])
    return tuple(_element(s, int(i), leaf, str(status[i]), *((left, right) if kink[i] else ()))
                 for i in order[:k] if status[i] != "kink" and shown[i])


def _sampled_diagnosis(leaf: Leaf, s: _Shown, status: np.ndarray, j: Judgement) -> Diagnosis | None:
    """The bug's shape read from a seeded sample alone: only the shapes a sample can show (an
    all-zero gradient, a sign flip, a constant factor), else that it is spread over the leaf."""
    assert s.num is not None
    at = np.flatnonzero(s.smooth)
    bad = status[at] == "hand"
    found = diagnose(leaf.hand[at], s.num[at], bad, rtol=j.tol.rtol, atol=j.tol.atol,
                     err=s.err[at] if s.err is not None else 0.0, time_axis=None)
    if found is not None and found.kind in ("zero", "sign_flip", "scale"):
        return found
    n_bad = int(bad.sum())
    if n_bad == at.size:
        return Diagnosis("widespread", f"wrong at every one of {at.size} entries of a seeded "
                         "sample: the error is spread over the tensor (a wrong formula rather "
                         "than a slip)")
    return Diagnosis("sampled", f"wrong at {n_bad} of {at.size} entries of a seeded sample; the "
                     "check stopped there, and a sample cannot show whether the errors are "
                     "confined to some rows, columns or time steps (mode='full' maps every entry)",
                     indices=tuple(leaf.index(int(at[i])) for i in np.flatnonzero(bad)[:20]))


def _diagnosis(run: Run, leaf: Leaf, s: _Shown, status: np.ndarray, j: Judgement,
               ev: Evidence) -> Diagnosis | None:
    # Where finite differences outvoted autodiff (the JAX path drops the same term as the hand
    # backward, so the two agree), the bug's shape is read against finite differences: against
    # autodiff the hand gradient would be "1 × the reference".
    use_ad = s.ad is not None and not (j.outvoted and s.num is not None)
    ref = s.ad if use_ad else s.num
    if j.verdict != "fail":
        return None
    if ev.sampled and j.blame == "hand" and s.ad is None and s.num is not None:
        return _sampled_diagnosis(leaf, s, status, j)
    if ref is not None and j.blame == "hand":
        # A wrong value at a kink has no derivative to compare with (the references' value there
        # is one convention or the midpoint): the bug's shape is read from the smooth entries —
        # with autodiff, every entry off a kink (finite differences measured only some of them).
        smooth = ~ev.kink(leaf.size) if use_ad else s.smooth
        bad = (status == "hand") & smooth
        if not bad.any():
            return None
        err = 0.0 if use_ad else s.err.reshape(leaf.shape) if s.err is not None else 0.0
        return diagnose(leaf.native.astype(np.float64), ref.reshape(leaf.shape),
                        bad.reshape(leaf.shape), rtol=j.tol.rtol, atol=j.tol.atol,
                        err=err, time_axis=run.problem.time_axis.axis)
    if j.probes and ref is None:
        return probe_diagnosis(j.probes, j.tol.rtol)
    return None


def _own_notes(run: Run, leaf: Leaf, ev: Evidence, status: np.ndarray, j: Judgement) -> list[str]:
    notes = []
    value = run.problem.values[leaf.k]
    if leaf.native.dtype != value.dtype:
        notes.append(f"the hand gradient is {leaf.native.dtype} for a {value.dtype} "
                     f"tensor: judged with {j.tol.judged} tolerances")
    unverified = status == "unverified"
    if ev.parts is not None and (ev.parts.stopped or ev.sampled):
        unverified &= ev.parts.taken  # the budget's or the sample's note counts the unmeasured
    n_unverified = int(np.count_nonzero(unverified))
    if n_unverified:
        notes.append(f"{n_unverified} entries could not be verified (finite differences too "
                     "inaccurate there and no autodiff reference)")
    zero = int(np.count_nonzero(j.unexercised)) if j.unexercised is not None else 0
    if zero:
        notes.append(f"{zero} of {leaf.size} entries are unexercised: their gradient is identically "
                     "zero at this point (the loss does not move with them: an unused parameter, a "
                     "dead unit, a pooling input no window takes, a zero state), so only a hand value "
                     "that is not zero there can be caught; to exercise them use T ≥ 2, h0 ≠ 0, "
                     "batch ≥ 2, inputs that reach every parameter, or another seed")
    if j.verdict == "pass" and j.blame == "autodiff":
        notes.append("JAX's gradient of the forward disagrees where finite differences confirm "
                     "the hand gradient (JAX flushes subnormals to zero and may differ from numpy "
                     "semantics): not held against the hand gradient")
    if j.verdict == "pass" and j.blame == "numeric":
        notes.append("finite differences disagree on some entries where autodiff confirms the "
                     "hand gradient (a step or round-off problem of the numeric reference)")
    return notes


def _control_note(p: Power | None) -> list[str]:
    if p is None or p.control.caught:
        return []
    return [f"negative control failed: a single-entry error of {p.control.size:.3g} "
            f"(relative {p.power:.2g}) planted at {list(p.control.index)} was not caught; the "
            "detection power claimed for this leaf does not hold — tighten rtol/atol or use "
            "mode='full'"]


def _fd_error(s: _Shown, j: Judgement) -> float:
    if s.err is not None and s.err.size:
        return float(np.max(s.err))
    return max((p.numeric_error or 0.0) for p in j.probes) if j.probes else math.nan


def _error_map(leaf: Leaf, s: _Shown, status: np.ndarray, ev: Evidence, verdict: str
               ) -> tuple[tuple[float, ...] | None, str | None]:
    """Every entry's ``|hand − reference| / max|reference|`` (NaN where nothing was measured),
    for a leaf that did not pass and has at most :data:`ERROR_MAP_MAX` entries."""
    ref, which = (s.ad, "autodiff") if s.ad is not None else (s.num, "numeric")
    if verdict == "pass" or ref is None or leaf.size > ERROR_MAP_MAX:
        return None, None
    measured = s.smooth & (status != "unverified") & (status != "kink")
    if ev.parts is not None and ev.sampled and s.ad is None:
        measured &= ev.parts.taken
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(s.hand - ref) / (scale if scale > 0 else 1.0)
    return tuple(float(v) for v in np.where(measured, rel, np.nan)), which


def leaf_result(run: Run, leaf: Leaf, ev: Evidence, j: Judgement, power: Power | None = None
                ) -> LeafResult:
    """The record of one leaf."""
    s = _shown(leaf, ev)
    status = np.asarray(j.status, dtype=object).ravel()
    kink = ev.kink(leaf.size)
    hvn, hva, nva = _agreements(run, s, status, j.tol.rtol, j.tol.atol)
    left = ev.parts.left if ev.parts is not None else None
    right = ev.parts.right if ev.parts is not None else None
    kinks = tuple(_element(s, int(i), leaf, "kink", left, right)
                  for i in np.flatnonzero(kink)[: run.opts.worst])
    notes = (*_own_notes(run, leaf, ev, status, j), *ev.notes, *_control_note(power), *j.notes)
    errors, against = _error_map(leaf, s, status, ev, j.verdict)
    time_axis = run.problem.time_axis.axis
    return LeafResult(
        name=leaf.name, shape=leaf.shape, dtype=str(leaf.native.dtype), verdict=j.verdict,
        blame=j.blame, mode=ev.mode, rtol=j.tol.rtol, atol=j.tol.atol,
        tolerance_dtype=str(j.tol.judged), fd_error_estimate=_fd_error(s, j),
        numeric_method=ev.method, hand_vs_numeric=hvn, hand_vs_autodiff=hva,
        numeric_vs_autodiff=nva, n_elements=leaf.size,
        n_checked=int(np.count_nonzero((status != "kink") & (status != "unverified"))),
        n_mismatched=int(np.count_nonzero(np.isin(status, ("hand", "autodiff", "inconclusive")))),
        n_kinks=int(kink.sum()), worst=_worst(s, status, leaf, j, ev, run.opts.worst, s.smooth | kink),
        kinks=kinks, diagnosis=_diagnosis(run, leaf, s, status, j, ev), probes=j.probes,
        notes=tuple(notes), detection_power=power.power if power else math.nan,
        control=power.control if power else None, localisation=ev.localisation,
        n_unexercised=int(np.count_nonzero(j.unexercised)) if j.unexercised is not None else 0,
        error_map=errors, error_reference=against,
        time_axis=time_axis if time_axis is not None and len(leaf.shape) >= 3
        and -len(leaf.shape) <= time_axis < len(leaf.shape) else None)


def _verdict(leaves: Sequence[LeafResult]) -> Verdict:
    verdicts = {r.verdict for r in leaves}
    return "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"


def check_result(run_name: str, kind: str, refs: References, opts: CheckOptions,
                 leaves: Sequence[LeafResult], extra: Sequence[str] = ()) -> CheckResult:
    """The record of a whole check, from its leaves' records, the references' notes and the
    ``extra`` notes of the check itself."""
    notes = [*refs.notes, *extra]
    n_kinks = sum(r.n_kinks for r in leaves)
    if n_kinks:
        notes.append(f"the forward is not differentiable at {n_kinks} checked entr"
                     f"{'y' if n_kinks == 1 else 'ies'} (one-sided slopes differ: ReLU at 0, a "
                     "max tie); there the hand value is judged against the interval of the "
                     "one-sided slopes")
    obj = refs.obj
    if refs.out_of_time():
        notes.append(f"the time budget of {opts.budget:g} s was spent after {obj.calls} forward "
                     f"calls ({1e3 * refs.seconds_per_call:.3g} ms each): see each tensor's note "
                     "for what was verified")
    if obj.batched_calls:
        notes.append(f"{obj.batched_calls} of {obj.calls} forward evaluations ran in compiled "
                     "batches (jax.jit of jax.vmap of the same forward on JAX arrays)")
    mode = opts.mode if opts.mode != "auto" else "auto:" + "+".join(sorted({r.mode for r in leaves}))
    return CheckResult(
        name=run_name, kind=kind, verdict=_verdict(leaves), mode=mode, seed=opts.seed,
        references=refs.available, leaves=tuple(leaves), notes=tuple(notes),
        forward_calls=obj.calls, loss=obj.f0, forward_noise=obj.noise, options=opts.summary(),
        regime=refs.regime.name, growth=refs.regime.growth, jax_source=refs.jax_source,
    )
