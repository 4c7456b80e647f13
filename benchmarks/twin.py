"""The automatic JAX twin on the mutation suite: numpy-only forwards with and without it.

Every case of :mod:`benchmarks.mutants` (the planted bugs and the correct cases, float64, float32
and kink-heavy) is checked by ``gc.check_layer(..., mode="auto", seed=0)`` three ways:

* **array-API** — the zoo layer as it is: its forward runs on JAX arrays, so JAX differentiates
  the forward itself (the reference the twin should match);
* **numpy-only, no twin** — the same layer behind :class:`benchmarks.speed.NumpyOnly` (its
  forward calls ``np.asarray`` on everything first, as plain numpy code does) with
  ``jax_twin=False``: hand vs finite differences only;
* **numpy-only, twin** — the same numpy-only layer with the default ``jax_twin="auto"``:
  gradcheck builds a JAX twin of the numpy code and, once its loss and a spot check agree with
  the numpy forward, uses it as the third source;
* **float32 storage, no twin / twin** — the layer behind :class:`Float32Storage` (its forward
  computes in float32 whatever it is given, as code with float32 buffers does; the hand
  backward is unchanged), without and with the twin: the case where finite differences are the
  weak side and the twin (which computes in float64) the exact arbiter.

The cases are the detection benchmark's, plus float32 copies of every suite mutant and of the
single-entry errors of 1e-2 and 1e-3 (:func:`float32_mutants`).  Reported per configuration:
recall (all mutants, float32 mutants), false alarms (float64 smooth, float32 smooth,
kink-heavy), how many checks had an autodiff reference and from which source, and the wall
time.  Runnable alone: ``python -m benchmarks.twin [--quick]``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from benchmarks.adapters import Case, gradcheck_outcome
from benchmarks.mutants import correct_cases, mutant_cases, single_entry_cases, suite_cases
from benchmarks.speed import NumpyOnly

__all__ = ["CONFIGS", "TwinResult", "TwinRow", "float32_mutants", "render", "run_twin"]

@dataclass(frozen=True)
class Float32Storage:
    """A numpy-only forward that stores everything in float32, as code with
    ``np.zeros(..., dtype=np.float32)`` buffers does: whatever precision the checker passes
    in, the forward computes in float32 (the backward is the inner layer's, in the inputs'
    dtype).  Finite differences of it are float32-noisy; the twin promotes float32 to float64."""

    inner: Any

    def forward(self, params: dict[str, Any], x: Any) -> Any:
        p = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
        return np.asarray(self.inner.forward(p, np.asarray(x, dtype=np.float32)), dtype=np.float32)

    def backward(self, params: dict[str, Any], x: Any, dy: Any) -> Any:
        return self.inner.backward(params, x, dy)


#: The ways a case is checked: (label, wrapper of the layer or None, gradcheck options).
CONFIGS: tuple[tuple[str, Callable[[Any], Any] | None, dict[str, Any]], ...] = (
    ("array-API", None, {}),
    ("numpy-only, no twin", NumpyOnly, {"jax_twin": False}),
    ("numpy-only, twin", NumpyOnly, {}),
    ("float32 storage, no twin", Float32Storage, {"jax_twin": False}),
    ("float32 storage, twin", Float32Storage, {}),
)


@dataclass
class TwinRow:
    """One case under every configuration: outcome status, whether the hand was blamed, the
    JAX source used and the seconds taken."""

    case: Case
    status: dict[str, str] = field(default_factory=dict)
    caught: dict[str, bool] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)
    note: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.case.name, "kind": self.case.kind, "tags": list(self.case.tags),
                "status": self.status, "caught": self.caught, "source": self.source,
                "wall": self.wall, "note": self.note}


@dataclass
class TwinResult:
    rows: list[TwinRow]
    wall_s: float

    def _rows(self, kind: str, tag: str | None = None, *, smooth: bool = False) -> list[TwinRow]:
        return [r for r in self.rows if r.case.kind == kind and (tag is None or tag in r.case.tags)
                and not (smooth and "kinks" in r.case.tags)]

    def recall(self, config: str, tag: str | None = None) -> tuple[int, int]:
        rows = self._rows("mutant", tag)
        return sum(r.caught[config] for r in rows), len(rows)

    def false_alarms(self, config: str, tag: str | None = None, *, smooth: bool = False
                     ) -> tuple[int, int]:
        rows = self._rows("correct", tag, smooth=smooth)
        return sum(r.status[config] != "pass" for r in rows), len(rows)

    def sources(self, config: str) -> Counter[str]:
        return Counter(r.source[config] for r in self.rows)

    def seconds(self, config: str) -> float:
        return sum(r.wall[config] for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"wall_s": self.wall_s, "configs": [c[0] for c in CONFIGS],
                "rows": [r.to_dict() for r in self.rows]}


def float32_mutants() -> list[Case]:
    """Float32 copies of every suite mutant and of the single-entry errors of 1e-2 and 1e-3 (the
    float32 tolerance is 2e-3): where finite differences are weakest."""
    out = []
    for case in suite_cases() + single_entry_cases((1e-2, 1e-3)):
        if "float32" in case.tags:
            continue
        out.append(replace(case, name=f"{case.name} [float32]",
                           params={k: np.asarray(v, np.float32) for k, v in case.params.items()},
                           x=np.asarray(case.x, np.float32), tags=(*case.tags, "float32")))
    return out


def _variant(case: Case, wrap: Callable[[Any], Any] | None) -> Case:
    return replace(case, layer=wrap(case.layer)) if wrap is not None else case


def run_twin(*, quick: bool = False, budget_s: float = 60.0,
             log: Callable[[str], None] = print, cases: Sequence[Case] | None = None) -> TwinResult:
    """Check every case of the mutation suite in each of :data:`CONFIGS`."""
    t0 = time.perf_counter()
    if cases is None:
        cases = (mutant_cases(quick=quick) + ([] if quick else float32_mutants())
                 + correct_cases(quick=quick))
    rows = []
    for i, case in enumerate(cases, 1):
        row = TwinRow(case)
        for label, wrap, opts in CONFIGS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outcome, res = gradcheck_outcome(_variant(case, wrap), "gc auto",
                                                 budget_s=budget_s, **opts)
            row.status[label] = outcome.status
            row.caught[label] = bool(outcome.caught)
            row.source[label] = res.jax_source if res is not None else "error"
            row.wall[label] = outcome.wall_s
            row.note[label] = (next((n for n in res.notes if "JAX" in n), outcome.detail)
                               if res is not None else outcome.detail)
        rows.append(row)
        log(f"  [{i}/{len(cases)}] {case.name}: " + "; ".join(
            f"{label} {row.status[label]}{' (caught)' if row.caught[label] else ''} "
            f"[{row.source[label]}] {row.wall[label]:.2f}s" for label, _, _ in CONFIGS))
    return TwinResult(rows, time.perf_counter() - t0)


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100.0 * k / n:.0f} %)" if n else "—"


def render(res: TwinResult) -> str:
    """The twin section of RESULTS.md (markdown)."""
    labels = [c[0] for c in CONFIGS]
    n_mut = sum(r.case.kind == "mutant" for r in res.rows)
    n_cor = len(res.rows) - n_mut
    out = [f"{n_mut} mutants and {n_cor} correct cases of the mutation suite, each checked by "
           "`gc.check_layer(..., mode='auto', seed=0)` with the zoo's array-API forward, with the "
           "same forward made numpy-only (`benchmarks.speed.NumpyOnly`: `np.asarray` on every input) "
           "and `jax_twin=False`, numpy-only with the automatic JAX twin (the default), and with "
           "float32 storage (`benchmarks.twin.Float32Storage`: the forward computes in float32 "
           "whatever it is given) without and with the twin; "
           f"{res.wall_s:.0f} s in all.\n",
           "| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]

    def line(label: str, cells: list[str]) -> None:
        out.append(f"| {label} | " + " | ".join(cells) + " |")

    line("recall, all mutants", [_pct(*res.recall(c)) for c in labels])
    line("recall, float32 mutants", [_pct(*res.recall(c, "float32")) for c in labels])
    line("false alarms, float64 smooth", [_pct(*res.false_alarms(c, "float64", smooth=True))
                                          for c in labels])
    line("false alarms, float32 smooth", [_pct(*res.false_alarms(c, "float32", smooth=True))
                                          for c in labels])
    line("false alarms, kink-heavy", [_pct(*res.false_alarms(c, "kinks")) for c in labels])
    line("JAX source (checks)", [", ".join(f"{k} {v}" for k, v in sorted(res.sources(c).items()))
                                 for c in labels])
    line("wall time, all checks", [f"{res.seconds(c):.1f} s" for c in labels])
    out.append("")
    differ = [r for r in res.rows if len({(r.status[c], r.caught[c]) for c in labels}) > 1]
    if differ:
        out.append("Cases whose outcome differs between the configurations:\n")
        out.append("| case | " + " | ".join(labels) + " |")
        out.append("|---|" + "---|" * len(labels))
        for r in differ:
            cells = [f"{r.status[c]}{' (caught)' if r.caught[c] else ''} [{r.source[c]}]"
                     for c in labels]
            out.append(f"| {r.case.name} | " + " | ".join(cells) + " |")
        out.append("")
    refused = [(f"{r.case.name} ({c})", r.note[c]) for r in res.rows
               for c in ("numpy-only, twin", "float32 storage, twin") if r.source[c] != "twin"]
    if refused:
        out.append("Checks where the twin was not used (the check's first note):\n")
        out.extend(f"- {name}: {note or '(no note)'}" for name, note in refused)
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.twin", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a handful of cases")
    args = ap.parse_args(argv)
    res = run_twin(quick=args.quick, log=lambda s: print(s, flush=True))
    print(render(res))


if __name__ == "__main__":
    main()
