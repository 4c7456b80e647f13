"""Evidence at every entry of a leaf (``mode="full"``).

Small tensors get a finite difference at every entry.  With a JAX reference, a tensor of more
than ``full_max`` entries (``auto`` mode) or in a problem of more than :data:`FULL_NUMERIC_MAX`
entries (``full`` mode) is *autodiff-led*: every entry is compared
with autodiff, and finite differences validate autodiff along ``probes`` seeded directions and
at the entries where they can change the verdict (where hand and autodiff differ) plus a seeded
sample (:data:`FULL_SAMPLE` entries in ``full`` mode, :data:`AUTO_SAMPLE` in ``auto``) and the
largest entries.  A probe that disagrees with autodiff (a
wrong twin, a ``stop_gradient`` twin sharing the hand's bug) or crosses a kink sends the leaf
back to a finite difference at every entry.
"""

from __future__ import annotations

import numpy as np

from gradcheck.measure import (
    SALT_LED_PROBE,
    SALT_LED_SAMPLE,
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
from gradcheck.tolerance import close, tolerance

__all__ = ["AUTO_SAMPLE", "FULL_NUMERIC_MAX", "FULL_SAMPLE", "gather", "led"]

FULL_NUMERIC_MAX = 4096
FULL_SAMPLE = 64
#: The seeded sample of an autodiff-led tensor in ``auto`` mode (the four largest entries are
#: measured besides).  The verdict rests on hand vs autodiff at every entry and on finite
#: differences wherever they differ; the probes and the sample only validate autodiff.  Each
#: sampled entry costs a forward call (complex step) or four (central differences), per tensor:
#: a GRU's 13 tensors measured 190 entries at 16, 99 at 4.  A larger sample buys little: an error
#: of autodiff at a few entries escapes 16 random entries as it escapes 4, and one spread over the
#: tensor is caught by either (and by the probes).
AUTO_SAMPLE = 4


def _autodiff_confirmed(run: Run, leaf: Leaf) -> bool:
    """Whether finite differences along ``probes`` seeded directions confirm autodiff."""
    assert leaf.ad is not None
    tol = leaf.tolerance(run, leaf.ad_scale())
    ad = leaf.ad.reshape(leaf.x.shape)
    for p in range(run.opts.probes):
        seed = probe_seed(run.opts.seed, leaf.k, SALT_LED_PROBE + p)
        u = np.random.default_rng(seed).standard_normal(leaf.x.shape) * np.maximum(1.0, np.abs(leaf.x))
        d = directional(run, leaf, u, float(np.sum(ad * u)), tol)
        m = Measured(0, d.direction, d)
        pa = float(np.sum(ad * m.u))
        if d.kink or not abs(pa - d.value) <= probe_tol(ad, m, tol, run.refs.regime.err_scale):
            return False
    return True


def _led_sample(run: Run, leaf: Leaf) -> np.ndarray:
    """The seeded sample and the four largest entries an autodiff-led check measures."""
    assert leaf.ad is not None
    rng = np.random.default_rng(probe_seed(run.opts.seed, leaf.k, SALT_LED_SAMPLE))
    n = AUTO_SAMPLE if run.opts.mode == "auto" else FULL_SAMPLE
    sample = rng.choice(leaf.size, size=min(n, leaf.size), replace=False)
    largest = np.argpartition(np.abs(leaf.ad), -4)[-4:] if leaf.size > 4 else np.arange(leaf.size)
    return np.unique(np.concatenate([sample, largest]))


def _led(run: Run, leaf: Leaf, rtol: float) -> Evidence | None:
    """The evidence of an autodiff-led check, or ``None`` when the probes do not confirm
    autodiff (then every entry is measured)."""
    if not _autodiff_confirmed(run, leaf):
        return None
    assert leaf.ad is not None
    tol = leaf.tolerance(run, leaf.ad_scale())
    differ = np.flatnonzero(~close(leaf.hand, leaf.ad, rtol=tol.rtol, atol=tol.atol))
    parts = Partials.empty(leaf.size).with_(run, leaf, _led_sample(run, leaf), rtol)
    parts = suspects(run, leaf, parts, differ, tol)
    measured = int(np.count_nonzero(~np.isnan(parts.num)))
    note = (f"every entry compared with autodiff; autodiff validated by finite differences along "
            f"{run.opts.probes} seeded directions and at {measured} of {leaf.size} entries (a seeded "
            "sample, and where hand and autodiff differ: every such entry, or a seeded sample of "
            "them that confirmed autodiff); references=('numeric',) measures every entry by finite "
            "differences")
    return Evidence("full", parts, parts.method, led=(measured, run.opts.probes), notes=(note,))


def led(run: Run, has_ad: bool, size: int, total: int) -> bool:
    """Whether a full check of a leaf of ``size`` entries in a problem of ``total`` is
    autodiff-led: with autodiff, in ``auto`` mode above ``full_max`` entries, in ``full`` mode in
    problems of more than :data:`FULL_NUMERIC_MAX` entries; never for leaves of at most as many
    entries as the mode's sample (:data:`AUTO_SAMPLE`, :data:`FULL_SAMPLE`: the sample would be
    every entry)."""
    if run.opts.mode == "auto":
        return has_ad and size > run.opts.full_max and size > AUTO_SAMPLE
    return has_ad and total > FULL_NUMERIC_MAX and size > FULL_SAMPLE


def gather(run: Run, leaf: Leaf, total: int) -> Evidence | None:
    """The evidence of a full check of ``leaf`` in a problem of ``total`` checked entries;
    ``None`` in ``auto`` mode when the probes do not confirm autodiff on a leaf of more than
    :data:`FULL_SAMPLE` entries that would be autodiff-led (it is screened instead: measuring
    every entry is what ``auto`` avoids); a smaller one is then measured at every entry."""
    if not run.refs.numeric:
        return Evidence("full", None)
    rtol = tolerance(leaf.judged, run.opts.rtol)
    if led(run, leaf.ad is not None, leaf.size, total):
        by_autodiff = _led(run, leaf, rtol)
        if by_autodiff is not None:
            return by_autodiff
        if run.opts.mode == "auto" and leaf.size > FULL_SAMPLE:
            return None  # screened instead; a small leaf is measured at every entry
    parts = Partials.empty(leaf.size).with_(run, leaf, np.arange(leaf.size), rtol)
    return Evidence("full", parts, parts.method)
