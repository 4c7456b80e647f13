"""Evidence by directional screening (``mode="directional"``), and localisation of what it finds.

Screening compares ⟨hand, u⟩ with ∂L/∂u along ``probes`` seeded Gaussian directions (scaled by
``max(1, |x|)``).  With autodiff every entry is compared too, and a finite difference at each
entry where hand and autodiff differ (with one-sided slopes) decides who is wrong there and
finds the points where the forward is not differentiable (a max-pool tie broken differently by
the hand backward and by JAX is a kink, not the hand's bug).  Without autodiff a leaf that fails
screening is localised by group testing (:mod:`gradcheck.localise`): each block test is one
directional derivative along a seeded direction supported on the block, judged exactly like a
screening probe; the blocks the bisection isolates are then measured entry by entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from gradcheck import localise, numeric
from gradcheck.measure import (
    SALT_DENSE,
    Evidence,
    Leaf,
    Measured,
    Partials,
    Run,
    directional,
    probe_seed,
    probe_tol,
    suspects,
)
from gradcheck.result import Localisation
from gradcheck.tolerance import Tolerance, close

__all__ = ["DENSE_FRACTION", "DENSE_SAMPLE", "gather", "localise_leaf"]

#: Entries of a failing leaf measured one by one before group testing (a seeded sample).
DENSE_SAMPLE = 16
#: When at least this fraction of the sample's smooth entries is wrong, the leaf is wrong almost
#: everywhere: the sample names the bug's shape and the other entries are not measured one by
#: one (bisection would measure nearly all of them).
DENSE_FRACTION = 0.25


def _direction(leaf: Leaf, seed: int) -> np.ndarray:
    """A seeded Gaussian direction, scaled by ``max(1, |x|)`` entry by entry."""
    rng = np.random.default_rng(seed)
    return np.asarray(rng.standard_normal(leaf.x.shape) * np.maximum(1.0, np.abs(leaf.x)))


def _settle(run: Run, leaf: Leaf, tol: Tolerance) -> Partials | None:
    """Finite differences where hand and autodiff differ (``None``: nothing to settle, or no
    numeric reference)."""
    if leaf.ad is None or not run.refs.numeric:
        return None
    differ = np.flatnonzero(~close(leaf.hand, leaf.ad, rtol=tol.rtol, atol=tol.atol))
    if not differ.size:
        return None
    return suspects(run, leaf, Partials.empty(leaf.size), differ, tol, limit=run.opts.localise_max)


def gather(run: Run, leaf: Leaf) -> Evidence:
    """The screening evidence of ``leaf``: its probes, and the settled disagreements."""
    tol = leaf.tolerance(run, leaf.ad_scale())
    hand = leaf.hand.reshape(leaf.x.shape)
    measured: list[Measured] = []
    crossing: list[Measured] = []
    method = None
    for p in range(run.opts.probes):
        seed = probe_seed(run.opts.seed, leaf.k, p)
        u = _direction(leaf, seed)
        d = directional(run, leaf, u, float(np.sum(hand * u)), tol)
        method = d.method
        # d.direction is what the estimate measured, after rounding.
        (crossing if d.kink else measured).append(Measured(seed, d.direction, d))
    settled = _settle(run, leaf, tol)
    notes = ((f"{len(crossing)} of {run.opts.probes} probes cross a point where the forward is not "
              "differentiable"),) if crossing else ()
    return Evidence("directional", settled, settled.method if settled is not None else method,
                    probes=tuple(measured), crossing=tuple(crossing), notes=notes)


def _block_test(run: Run, leaf: Leaf, tol: Tolerance, counter: Iterator[int]
                ) -> Callable[[np.ndarray], bool]:
    """Whether a block of entries holds a wrong one: a directional derivative along a seeded
    Gaussian direction supported on the block, judged like a screening probe."""
    hand = leaf.hand.reshape(leaf.x.shape)
    scale = np.maximum(1.0, np.abs(leaf.x.ravel()))

    def is_wrong(idx: np.ndarray) -> bool:
        seed = probe_seed(run.opts.seed, leaf.k, run.opts.probes + next(counter))
        flat_u = np.zeros(leaf.x.size)
        flat_u[idx] = np.random.default_rng(seed).standard_normal(idx.size) * scale[idx]
        u = flat_u.reshape(leaf.x.shape)
        # The complex step alone decides a block where it is safe: a block it wrongly calls
        # wrong only costs a finer search, and every entry blamed in the end is measured by
        # complex step and central differences.
        d = (numeric.directional_complex(run.refs.obj, leaf.k, u, name=leaf.name)
             if run.refs.complex_ok else directional(run, leaf, u, float(np.sum(hand * u)), tol))
        if d.kink:  # a kink inside the block: descend, the entries will say where
            return True
        m = Measured(seed, d.direction, d)
        return abs(float(np.sum(hand * m.u)) - d.value) > probe_tol(hand, m, tol, run.refs.regime.err_scale)

    return is_wrong


def _dense(run: Run, leaf: Leaf, tol: Tolerance) -> tuple[Partials, bool]:
    """A seeded sample of the leaf's entries measured one by one, and whether it shows the leaf
    wrong almost everywhere (at least :data:`DENSE_FRACTION` of its smooth entries, and two)."""
    rng = np.random.default_rng(probe_seed(run.opts.seed, leaf.k, SALT_DENSE))
    idx = np.sort(rng.choice(leaf.size, size=min(DENSE_SAMPLE, leaf.size), replace=False))
    parts = Partials.empty(leaf.size).with_(run, leaf, idx, tol.rtol)
    smooth = np.intersect1d(parts.measured, idx[~parts.kink[idx]])
    wrong = ~close(leaf.hand[smooth], parts.num[smooth], rtol=tol.rtol, atol=tol.atol,
                   err=parts.err[smooth])
    n_wrong = int(np.count_nonzero(wrong))
    return parts, bool(smooth.size and n_wrong >= max(2.0, DENSE_FRACTION * smooth.size))


def localise_leaf(run: Run, leaf: Leaf, tol: Tolerance, screened: tuple[str, str | None, tuple[str, ...]]
                  ) -> Evidence:
    """Name the wrong entries of a leaf that failed screening (``screened``: its verdict, numeric
    method and notes), judged with the screening's tolerances ``tol``: a seeded sample first —
    when it is wrong almost everywhere the check stops there — then group testing."""
    verdict, method, notes = screened
    calls = run.refs.obj.calls
    sample, dense = _dense(run, leaf, tol)
    if dense:
        n = int(np.count_nonzero(sample.taken))
        note = (f"directional screening gave '{verdict}', and a seeded sample of {n} entries "
                "measured one by one is wrong almost everywhere: the sample shows the bug's shape, "
                f"and the other {leaf.size - n} entries were not measured one by one (a failing "
                "check stops early; mode='full' measures every entry)")
        return Evidence("localised", sample, sample.method or method,
                        localisation=Localisation(0, n, ()), unresolved=np.flatnonzero(~sample.taken),
                        sampled=True, notes=(note, *notes))
    found = localise.search(leaf.size, _block_test(run, leaf, tol, iter(range(1 << 30))),
                            max_entries=run.opts.localise_max)
    idx = np.concatenate(found.measure) if found.measure else np.zeros(0, np.int64)
    idx = np.setdiff1d(idx, np.flatnonzero(sample.taken))
    parts = sample.with_(run, leaf, idx, tol.rtol)
    unresolved = np.concatenate(found.unresolved) if found.unresolved else np.zeros(0, np.int64)
    unresolved = np.setdiff1d(unresolved, np.flatnonzero(sample.taken))
    blocks = tuple((int(b[0]), int(b[-1]) + 1) for b in found.unresolved)
    measured = int(np.count_nonzero(parts.taken))
    note = (f"directional screening gave '{verdict}'; group testing localised it with "
            f"{found.tests} block tests and {measured} single-entry partials, a seeded sample of "
            f"{int(np.count_nonzero(sample.taken))} of them first ({run.refs.obj.calls - calls} "
            f"forward calls for {leaf.size} entries)")
    if blocks:
        note += (f"; {unresolved.size} entries in {len(blocks)} blocks stayed unresolved within the "
                 f"budget (localise_max={run.opts.localise_max})")
    return Evidence("localised", parts, parts.method if measured else method,
                    localisation=Localisation(found.tests, measured, blocks),
                    unresolved=unresolved, notes=(note, *notes))
