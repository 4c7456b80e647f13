"""Cost: wall time and forward calls of every checker on the same correct layers, and on one wrong
entry in a large dense layer.

Problems (all correct, float64, forwards JAX-traceable):

* dense tanh layers ``y = tanh(x W + b)`` with ``W`` of 64², 128², 256², 512² (batch 8);
* a conv layer (2×3×16×16 input, 8 filters 3×3, stride 1, pad 1);
* an LSTM (B=2, D=4, H=8, K=2) with T = 10, 50, 100.

``N`` is the number of checked scalars: every parameter entry and every input entry (all
checkers check all of them).  For each problem and checker the benchmark records the verdict,
the forward calls counted at the layer, the wall time of the first call (*cold*: includes JAX
tracing/compilation for that shape) and, for checks that take under a second, the median of up to
five more calls (*warm*; a check of 1 to 15 s is run once more); ratios are taken on warm
times, within this one run.  A check that
runs past the time budget is stopped at its next forward call and shown as cut off with the calls
it made; for torch's slow mode, whose cost is exactly ``2N + 2`` forward calls, the full time is
also given *extrapolated from the calls made* (and labelled so).  A checker cut off on one problem
is not run on the larger problems of the same family (shown as "not run").

The one-wrong-entry experiment plants an error of 1e-3 × max|dW| in one entry of ``dW`` of a
256×256 dense layer and asks each checker to find it; gradcheck must also name its index.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import gradcheck as gc
from benchmarks.adapters import GC_CHECKERS, Case, Outcome, run_checker
from benchmarks.mutants import SingleEntryError
from reference import conv, dense, lstm

__all__ = [
    "COST_CHECKERS",
    "CostResult",
    "Measurement",
    "Problem",
    "fit_slope",
    "measure",
    "problems",
    "render",
    "run_cost",
    "wrong_entry_case",
]

#: gradcheck columns of the cost table and their options (besides ``seed``/``name``).
GC_COST: dict[str, dict[str, Any]] = {
    **GC_CHECKERS,
    "gc full (batch)": {"mode": "full", "batch": True},
    "gc auto (numeric only)": {"mode": "auto", "references": ("numeric",)},
}
COST_CHECKERS: tuple[str, ...] = (*GC_COST, "torch slow", "torch fast", "jax check_grads")
WRONG_ENTRY_CHECKERS: tuple[str, ...] = ("gc auto", "gc auto (numeric only)", "gc directional",
                                         "torch slow", "torch fast", "jax check_grads")
#: Relative size of the planted error of the one-wrong-entry experiment.
WRONG_ENTRY_REL = 1e-3


@dataclass(frozen=True)
class Problem:
    """A cost problem: a correct case with its size."""

    label: str
    family: str
    case: Case
    t: int | None = None

    @property
    def n(self) -> int:
        return self.case.n_entries


def problems(*, quick: bool = False) -> list[Problem]:
    """The dense, conv and LSTM problems (``quick``: small sizes)."""
    out = []
    layer: Any
    for d in (16, 32) if quick else (64, 128, 256, 512):
        layer, params, x = dense.make_case(np.random.default_rng(0), batch=8, d_in=d, d_out=d,
                                           activation="tanh")
        out.append(Problem(f"dense tanh {d}²", "dense", Case(f"dense tanh {d}x{d}", layer, params, x,
                                                            family="dense")))
    kw: dict[str, Any] = {} if quick else {"batch": 2, "channels": 3, "filters": 8, "height": 16, "width": 16}
    layer, params, x = conv.make_case(np.random.default_rng(0), **kw)
    label = "conv " + "×".join(map(str, x.shape)) + f", {params['w'].shape[0]} filters 3×3"
    out.append(Problem(label, "conv", Case(label, layer, params, x, family="conv")))
    for T in (4, 8) if quick else (10, 50, 100):
        layer, params, x = lstm.make_case(np.random.default_rng(0), T=T, B=2, D=4, H=8, K=2)
        out.append(Problem(f"LSTM T={T}", "lstm", Case(f"LSTM T={T}", layer, params, x,
                                                       family="lstm"), t=T))
    return out


def wrong_entry_case(*, quick: bool = False) -> tuple[Case, tuple[int, ...]]:
    """A 256×256 (quick: 32×32) dense tanh layer with one entry of dW off by 1e-3 relative."""
    d, index = (32, (3, 17)) if quick else (256, (37, 201))
    layer, params, x = dense.make_case(np.random.default_rng(1), batch=8, d_in=d, d_out=d,
                                       activation="tanh")
    bad = SingleEntryError(layer, "W", index, WRONG_ENTRY_REL)
    return Case(f"dense tanh {d}x{d}, dW{list(index)} off by {WRONG_ENTRY_REL:.0e}", bad, params,
                x, family="dense", kind="mutant", wrong_leaves=frozenset({"W"}),
                wrong_entry=("W", index), tags=("single-entry",)), index


# ----------------------------------------------------------------------------- measuring


@dataclass
class Measurement:
    """One checker on one problem: the first call's outcome and the warm time."""

    problem: str
    family: str
    n: int
    t: int | None
    checker: str
    first: Outcome
    warm_s: float
    runs: int
    extrapolated_s: float | None = None

    @property
    def cut_off(self) -> bool:
        return self.first.status == "cut off"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["first"] = self.first.to_dict()
        return d


def _one(case: Case, checker: str, budget_s: float) -> Outcome:
    return run_checker(case, checker, budget_s=budget_s, **GC_COST.get(checker, {}))


def measure(case: Case, checker: str, *, budget_s: float, problem: str = "", t: int | None = None,
            warm_under_s: float = 1.0, max_repeats: int = 5, repeat_budget_s: float = 3.0,
            once_more_under_s: float = 15.0) -> Measurement:
    """Run ``checker`` once (cold).  When that took under ``warm_under_s``, run it again up to
    ``max_repeats`` times (within ``repeat_budget_s``) and keep the median as the warm time; when
    it took under ``once_more_under_s``, run it once more and keep that; else the cold time is
    the warm time too (compilation is then a small part of it)."""
    first = _one(case, checker, budget_s)
    times: list[float] = []
    if first.completed and first.wall_s < once_more_under_s:
        spent = 0.0
        repeats = max_repeats if first.wall_s < warm_under_s else 1
        while len(times) < repeats and spent < repeat_budget_s:
            again = _one(case, checker, budget_s)
            times.append(again.wall_s)
            spent += again.wall_s
    warm = statistics.median(times) if times else first.wall_s
    extrapolated = None
    if first.status == "cut off" and checker == "torch slow" and first.forward_calls > 0:
        extrapolated = first.wall_s * (2 * case.n_entries + 2) / first.forward_calls
    return Measurement(problem or case.name, case.family, case.n_entries, t, checker, first, warm,
                       1 + len(times), extrapolated)


@dataclass
class CostResult:
    """Every measurement of one cost run."""

    rows: list[Measurement]
    wrong_entry: list[Measurement]
    wrong_entry_index: tuple[int, ...]
    checkers: tuple[str, ...]
    budget_s: float
    wall_s: float
    skipped: dict[str, str] = field(default_factory=dict)

    def get(self, problem: str, checker: str, rows: Sequence[Measurement] | None = None
            ) -> Measurement | None:
        for m in self.rows if rows is None else rows:
            if m.problem == problem and m.checker == checker:
                return m
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [m.to_dict() for m in self.rows],
                "wrong_entry": [m.to_dict() for m in self.wrong_entry],
                "wrong_entry_index": list(self.wrong_entry_index), "checkers": list(self.checkers),
                "budget_s": self.budget_s, "wall_s": self.wall_s, "skipped": self.skipped}


def _supported(checker: str) -> str | None:
    """Why a gradcheck column cannot run with this engine (an option it does not know), or None."""
    known = {f.name for f in dataclasses.fields(gc.CheckOptions)}
    missing = [k for k in GC_COST.get(checker, {}) if k not in known]
    return f"this gradcheck has no option {missing[0]!r}" if missing else None


def warm_up(log: Callable[[str], None] = print) -> None:
    """Import and first-compile every checker on a tiny case, so that no problem pays for it."""
    layer, params, x = dense.make_case(np.random.default_rng(0), batch=2, d_in=3, d_out=3)
    case = Case("warm-up", layer, params, x, family="dense")
    for checker in COST_CHECKERS:
        if _supported(checker) is None:
            _one(case, checker, math.inf)
    log("  warm-up done")


def run_cost(*, quick: bool = False, budget_s: float = 120.0,
             log: Callable[[str], None] = print) -> CostResult:
    """Measure every checker on every problem, then the one-wrong-entry experiment."""
    t0 = time.perf_counter()
    warm_up(log)
    skipped = {c: why for c in COST_CHECKERS if (why := _supported(c)) is not None}
    checkers = tuple(c for c in COST_CHECKERS if c not in skipped)
    rows = []
    cut_at: dict[tuple[str, str], str] = {}  # (family, checker) -> the problem it was cut off on
    for prob in problems(quick=quick):
        for checker in checkers:
            if (prob.family, checker) in cut_at:
                # A larger problem of the same family costs more: not run, and said so.
                out = Outcome(checker, "not run",
                              detail=f"cut off on the smaller {cut_at[prob.family, checker]}")
                rows.append(Measurement(prob.label, prob.family, prob.n, prob.t, checker, out,
                                        math.nan, 0))
                log(f"  {prob.label:28s} N={prob.n:7d} {checker:24s} not run (cut off before)")
                continue
            m = measure(prob.case, checker, budget_s=budget_s, problem=prob.label, t=prob.t)
            if m.cut_off:
                cut_at[prob.family, checker] = prob.label
            rows.append(m)
            log(f"  {prob.label:28s} N={prob.n:7d} {checker:24s} {m.first.status:9s} "
                f"calls={m.first.forward_calls:7d} cold={m.first.wall_s:8.3f}s warm={m.warm_s:8.3f}s")
    case, index = wrong_entry_case(quick=quick)
    wrong = []
    for checker in WRONG_ENTRY_CHECKERS:
        if checker in skipped:
            continue
        m = measure(case, checker, budget_s=budget_s, problem=case.name)
        wrong.append(m)
        log(f"  {case.name:28s} {checker:24s} {m.first.status:9s} caught={m.first.caught} "
            f"named={m.first.named} calls={m.first.forward_calls} warm={m.warm_s:.3f}s")
    return CostResult(rows, wrong, index, checkers, budget_s, time.perf_counter() - t0, skipped)


# ----------------------------------------------------------------------------- analysis


def fit_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of log y against log x (the exponent of a power law), or None."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    lx, ly = zip(*pts, strict=True)
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return None if den == 0 else sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / den


def scaling(res: CostResult, family: str, checker: str, by: str) -> tuple[float | None, float | None]:
    """Exponents of forward calls and warm time against ``N`` (``by="n"``) or ``T`` (``"t"``),
    fitted over the problems of ``family`` where the check completed."""
    ms = [m for m in res.rows if m.family == family and m.checker == checker and m.first.completed]
    xs = [float(m.n if by == "n" else (m.t or 0)) for m in ms]
    return (fit_slope(xs, [float(m.first.forward_calls) for m in ms]),
            fit_slope(xs, [m.warm_s for m in ms]))


def time_text(m: Measurement) -> str:
    """The time cell: warm seconds, or a lower bound when cut off."""
    if m.first.status in ("not installed", "not run"):
        return m.first.status
    if m.cut_off:
        return f"> {m.first.wall_s:.0f} (cut off)"
    if m.first.status == "error":
        return "error"
    return f"{m.warm_s:.3g}"


def speedup(num: Measurement | None, den: Measurement | None) -> str:
    """``num / den`` of warm times as text ("≥" when ``num`` was cut off, "≤" when ``den`` was)."""
    if num is None or den is None or (not num.first.completed and not num.cut_off):
        return "—"
    if not den.first.completed and not den.cut_off:
        return "—"
    if num.cut_off and den.cut_off:
        return "—"
    r = num.warm_s / den.warm_s if den.warm_s > 0 else math.inf
    prefix = "≥ " if num.cut_off else "≤ " if den.cut_off else ""
    return f"{prefix}{r:.3g}×"


def render(res: CostResult) -> str:
    """The cost section of RESULTS.md (markdown)."""
    out: list[str] = []
    out.append(f"Time budget per check: {res.budget_s:g} s. Times in seconds; *cold* = the first "
               "call on that shape (JAX tracing and compilation included); *warm* = the median of "
               "up to 5 more calls when one took under 1 s, a second call when it took 1-15 s, "
               "else the cold call. "
               "\"torch slow ÷\" is how many times faster than torch's slow mode a checker is; "
               "\"÷ jax\" how many times slower than `jax.test_util.check_grads` (both on warm "
               "times, same run).\n")
    if res.skipped:
        out.append("Not run: " + "; ".join(f"`{c}` ({why})" for c, why in res.skipped.items()) + "\n")
    problems_seen = list(dict.fromkeys(m.problem for m in res.rows))
    out.append("| problem | N | checker | verdict | forward calls | cold s | warm s | torch slow ÷ | ÷ jax |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for p in problems_seen:
        slow, jx = res.get(p, "torch slow"), res.get(p, "jax check_grads")
        for m in (m for m in res.rows if m.problem == p):
            status = m.first.status
            if m.extrapolated_s is not None:
                status += f" (≈ {m.extrapolated_s:.0f} s extrapolated from {m.first.forward_calls} calls)"
            if m.first.status in ("error", "not run"):
                status += f": {m.first.detail[:60]}"
            cold = "—" if not m.first.completed and not m.cut_off else f"{m.first.wall_s:.3g}"
            vs_slow = speedup(slow, m) if slow and slow.first.status != "not installed" else "—"
            vs_jax = speedup(m, jx) if jx else "—"
            out.append(f"| {p} | {m.n} | {m.checker} | {status} | {m.first.forward_calls} | {cold} | "
                       f"{time_text(m)} | {vs_slow} | {vs_jax} |")
    out.append("")
    out.append("### How cost grows\n")
    out.append("Exponents of least-squares fits, log cost against log N (dense layers, "
               "N = checked scalars) and against log T (LSTM); completed checks only.\n")
    out.append("| checker | calls ∝ N^a (dense) | time ∝ N^b (dense) | calls ∝ T^c (LSTM) "
               "| time ∝ T^d (LSTM) |")
    out.append("|---|---|---|---|---|")
    for c in res.checkers:
        a, b = scaling(res, "dense", c, "n")
        cc, d = scaling(res, "lstm", c, "t")
        out.append(f"| {c} | " + " | ".join("—" if v is None else f"{v:.2f}" for v in (a, b, cc, d)) + " |")
    out.append("")
    out.append("![cost against N and T](scaling.svg)\n")
    if res.wrong_entry:
        name = res.wrong_entry[0].problem
        out.append("### One wrong entry in a large dense layer\n")
        out.append(f"`{name}`: dW{list(res.wrong_entry_index)} moved by {WRONG_ENTRY_REL:g} × max|dW|. "
                   "*named* = the index is among the failing leaf's `worst` entries "
                   "(gradcheck only; torch prints the two Jacobians, jax names nothing).\n")
        slow = next((m for m in res.wrong_entry if m.checker == "torch slow"), None)
        out.append("| checker | verdict | caught | named | forward calls | cold s | warm s | torch slow ÷ |")
        out.append("|---|---|---|---|---|---|---|---|")
        for m in res.wrong_entry:
            named = "—" if m.first.named is None else ("yes" if m.first.named else "no")
            status = m.first.status + (f" (≈ {m.extrapolated_s:.0f} s extrapolated from "
                                       f"{m.first.forward_calls} calls)" if m.extrapolated_s else "")
            vs = speedup(slow, m) if slow and slow.first.status != "not installed" else "—"
            cold = "—" if not m.first.completed and not m.cut_off else f"{m.first.wall_s:.3g}"
            out.append(f"| {m.checker} | {status} | {'yes' if m.first.caught else 'no'} | {named} | "
                       f"{m.first.forward_calls} | {cold} | {time_text(m)} | {vs} |")
        out.append("")
    return "\n".join(out)
