"""The scaling plot: forward calls and wall time against N (dense layers) and T (LSTM), log-log.

One line per checker; a check that ran out of its time budget is drawn as a hollow marker at the
time (and calls) it had reached — a lower bound, never an extrapolation.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.cost import CostResult, Measurement

__all__ = ["plot_scaling"]

_MARKERS = "osD^v<>ph*"


def _series(res: CostResult, family: str, checker: str) -> list[Measurement]:
    ms = [m for m in res.rows if m.family == family and m.checker == checker
          and (m.first.completed or m.cut_off)]
    return sorted(ms, key=lambda m: m.n if family == "dense" else (m.t or 0))


def plot_scaling(res: CostResult, path: str | Path) -> Path:
    """Write the 2×2 log-log figure (calls and time vs N, calls and time vs T) to ``path``."""
    path = Path(path)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    panels = (
        (axes[0][0], "dense", "calls", "N (checked scalars), dense tanh layers", "forward calls"),
        (axes[0][1], "dense", "time", "N (checked scalars), dense tanh layers", "wall time [s]"),
        (axes[1][0], "lstm", "calls", "T (sequence length), LSTM H=8", "forward calls"),
        (axes[1][1], "lstm", "time", "T (sequence length), LSTM H=8", "wall time [s]"),
    )
    for ax, family, what, xlabel, ylabel in panels:
        for k, checker in enumerate(res.checkers):
            ms = _series(res, family, checker)
            if not ms:
                continue
            xs = [m.n if family == "dense" else m.t for m in ms]
            ys = [m.first.forward_calls if what == "calls" else m.warm_s for m in ms]
            marker = _MARKERS[k % len(_MARKERS)]
            line, = ax.plot(xs, ys, marker=marker, label=checker, linewidth=1.2, markersize=5)
            cut = [(x, y) for x, y, m in zip(xs, ys, ms, strict=True) if m.cut_off]
            if cut:
                ax.plot(*zip(*cut, strict=True), linestyle="none", marker=marker, markersize=9,
                        markerfacecolor="none", markeredgecolor=line.get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.suptitle("Cost of checking a correct hand-written backward (hollow = cut off at the "
                 "time budget: a lower bound)", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
