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

from gradcheck import localise
from gradcheck.measure import (
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

__all__ = ["gather", "localise_leaf"]


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
        d = directional(run, leaf, u, float(np.sum(hand * u)), tol)
        if d.kink:  # a kink inside the block: descend, the entries will say where
            return True
        m = Measured(seed, d.direction, d)
        return abs(float(np.sum(hand * m.u)) - d.value) > probe_tol(hand, m, tol, run.refs.regime.err_scale)

    return is_wrong


def localise_leaf(run: Run, leaf: Leaf, tol: Tolerance, screened: tuple[str, str | None, tuple[str, ...]]
                  ) -> Evidence:
    """Name the wrong entries of a leaf that failed screening (``screened``: its verdict, numeric
    method and notes), judged with the screening's tolerances ``tol``."""
    verdict, method, notes = screened
    calls = run.refs.obj.calls
    found = localise.search(leaf.size, _block_test(run, leaf, tol, iter(range(1 << 30))),
                            max_entries=run.opts.localise_max)
    idx = np.concatenate(found.measure) if found.measure else np.zeros(0, np.int64)
    parts = Partials.empty(leaf.size).with_(run, leaf, idx, tol.rtol)
    unresolved = np.concatenate(found.unresolved) if found.unresolved else np.zeros(0, np.int64)
    blocks = tuple((int(b[0]), int(b[-1]) + 1) for b in found.unresolved)
    note = (f"directional screening gave '{verdict}'; group testing localised it with "
            f"{found.tests} block tests and {idx.size} single-entry partials "
            f"({run.refs.obj.calls - calls} forward calls for {leaf.size} entries)")
    if blocks:
        note += (f"; {unresolved.size} entries in {len(blocks)} blocks stayed unresolved within the "
                 f"budget (localise_max={run.opts.localise_max})")
    return Evidence("localised", parts, parts.method if idx.size else method,
                    localisation=Localisation(found.tests, int(idx.size), blocks),
                    unresolved=unresolved, notes=(note, *notes))
