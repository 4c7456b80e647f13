"""Detection power: every checker on every mutant and every correct case of :mod:`benchmarks.mutants`.

For each case the benchmark records

* the case's *true* relative gradient error, ``max over leaves of max|hand − ∇L| / max|∇L|`` with
  ``∇L`` from ``jax.grad`` of the same forward in float64 (:func:`benchmarks.adapters.true_relative_error`;
  not meaningful on kink-heavy cases, where JAX picks its own subgradient);
* each checker's outcome (:class:`benchmarks.adapters.Outcome`): a mutant is *caught* when the
  checker reports the hand gradient wrong (gradcheck: verdict ``fail`` with blame ``hand``); a
  correct case raises a *false alarm* when the checker says anything but ``pass`` (for gradcheck
  ``inconclusive`` and errors count as false alarms too).

Summaries: recall per checker (all mutants; float64 mutants whose true error exceeds 1e-6 — the
target's set, with a 1 % margin so that the planted 1e-6 entry sits at, not above, the line),
false alarms per checker (float64, float32, kink-heavy), recall per family, and the smallest
single-entry error each checker caught.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.adapters import CHECKERS, Case, Outcome, run_checker, true_relative_error
from benchmarks.mutants import correct_cases, mutant_cases

__all__ = ["TARGET_THRESHOLD", "DetectionResult", "DetectionRow", "render", "run_detection"]

#: Mutants whose true relative error exceeds this (float64) are the recall target's set.
TARGET_THRESHOLD = 1e-6 * 1.01


@dataclass
class DetectionRow:
    """One case and what every checker said about it."""

    case: Case
    rel_error: float
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def caught(self, checker: str) -> bool | None:
        """Whether the checker flagged the hand gradient; None when it did not complete."""
        o = self.outcomes.get(checker)
        if o is None or o.status in ("not installed", "cut off"):
            return None
        return o.caught

    def false_alarm(self, checker: str) -> bool | None:
        """On a correct case: anything but ``pass``; None when not run / not installed."""
        o = self.outcomes.get(checker)
        if o is None or o.status == "not installed":
            return None
        return o.status != "pass"

    @property
    def in_target_set(self) -> bool:
        return (self.case.kind == "mutant" and self.case.dtype.name == "float64"
                and self.rel_error > TARGET_THRESHOLD)

    def to_dict(self) -> dict[str, Any]:
        c = self.case
        return {"name": c.name, "family": c.family, "kind": c.kind, "dtype": c.dtype.name,
                "tags": list(c.tags), "n_entries": c.n_entries, "rel_error": self.rel_error,
                "wrong_leaves": sorted(c.wrong_leaves),
                "wrong_entry": None if c.wrong_entry is None else [c.wrong_entry[0], list(c.wrong_entry[1])],
                "outcomes": {k: o.to_dict() for k, o in self.outcomes.items()}}


@dataclass
class DetectionResult:
    """All rows of one detection run."""

    mutants: list[DetectionRow]
    correct: list[DetectionRow]
    checkers: tuple[str, ...]
    wall_s: float

    def recall(self, checker: str, rows: Sequence[DetectionRow] | None = None) -> tuple[int, int]:
        """``(caught, judged)`` over the given mutant rows (default: all mutants)."""
        rows = self.mutants if rows is None else rows
        judged = [r.caught(checker) for r in rows if r.caught(checker) is not None]
        return sum(bool(j) for j in judged), len(judged)

    def target_rows(self) -> list[DetectionRow]:
        return [r for r in self.mutants if r.in_target_set]

    def false_alarms(self, checker: str, tag: str | None = None, *,
                     smooth: bool = False) -> tuple[int, int]:
        """``(false alarms, judged)`` over the correct cases (those tagged ``tag`` if given;
        ``smooth``: leaving the kink-heavy ones out)."""
        rows = [r for r in self.correct if (tag is None or tag in r.case.tags)
                and not (smooth and "kinks" in r.case.tags)]
        judged = [r.false_alarm(checker) for r in rows if r.false_alarm(checker) is not None]
        return sum(bool(j) for j in judged), len(judged)

    def smallest_single_entry(self, checker: str, family: str) -> float | None:
        """The smallest planted single-entry error in ``family`` such that it and every larger
        one planted there were caught (None when the largest was already missed)."""
        rows = sorted((r for r in self.mutants
                       if "single-entry" in r.case.tags and r.case.family == family),
                      key=lambda r: -r.case.layer.rel)
        smallest = None
        for r in rows:
            if not r.caught(checker):
                break
            smallest = r.case.layer.rel
        return smallest

    def single_entry_families(self) -> list[str]:
        return sorted({r.case.family for r in self.mutants if "single-entry" in r.case.tags})

    def to_dict(self) -> dict[str, Any]:
        return {"wall_s": self.wall_s, "checkers": list(self.checkers),
                "mutants": [r.to_dict() for r in self.mutants],
                "correct": [r.to_dict() for r in self.correct]}


def run_detection(*, quick: bool = False, checkers: Sequence[str] = CHECKERS,
                  budget_s: float = 60.0, log: Callable[[str], None] = print,
                  cases: Sequence[Case] | None = None) -> DetectionResult:
    """Run every checker on every mutant and correct case (``quick``: a handful of each;
    ``cases``: these instead)."""
    t0 = time.perf_counter()
    rows: dict[str, list[DetectionRow]] = {"mutant": [], "correct": []}
    if cases is None:
        cases = mutant_cases(quick=quick) + correct_cases(quick=quick)
    for i, case in enumerate(cases, 1):
        kinks = "kinks" in case.tags
        try:
            rel = math.nan if kinks else true_relative_error(case)
        except Exception:  # a forward JAX cannot trace: no true error, the checkers still run
            rel = math.nan
        row = DetectionRow(case, rel)
        for checker in checkers:
            row.outcomes[checker] = run_checker(case, checker, budget_s=budget_s)
        rows[case.kind].append(row)
        marks = " ".join(_mark(row, c) for c in checkers)
        log(f"  [{i}/{len(cases)}] {case.kind:7s} {marks}  {case.name}")
    return DetectionResult(rows["mutant"], rows["correct"], tuple(checkers),
                           time.perf_counter() - t0)


def _mark(row: DetectionRow, checker: str) -> str:
    """One cell: ✓ caught / ✗ missed on a mutant, ✓ pass / ✗ false alarm on a correct case."""
    o = row.outcomes.get(checker)
    if o is None or o.status == "not installed":
        return "n/i"
    if o.status == "cut off":
        return "cut"
    good = o.caught if row.case.kind == "mutant" else o.status == "pass"
    cell = "✓" if good else "✗"
    if o.status == "error":
        cell += " (error)"
    elif row.case.kind == "correct" and o.status not in ("pass", "fail"):
        cell += f" ({o.status})"
    return cell


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.0f} %)" if n else "n/a"


def _fmt_err(x: float) -> str:
    return "n/a (kinks)" if math.isnan(x) else f"{x:.1e}"


def render(res: DetectionResult) -> str:
    """The detection section of RESULTS.md (markdown)."""
    ch = res.checkers
    out: list[str] = []
    n_mut, n_cor = len(res.mutants), len(res.correct)
    target = res.target_rows()
    out.append(f"{n_mut} mutants ({sum('suite' in r.case.tags for r in res.mutants)} from "
               f"`tests/reference/mutants_*.py`, {sum('extra' in r.case.tags for r in res.mutants)} "
               f"added bugs, {sum('float32' in r.case.tags for r in res.mutants)} float32 copies, "
               f"{sum('single-entry' in r.case.tags for r in res.mutants)} single-entry errors) and "
               f"{n_cor} correct cases ({sum('float64' in r.case.tags for r in res.correct)} float64 and "
               f"{sum('float32' in r.case.tags for r in res.correct)} float32, of which "
               f"{sum('kinks' in r.case.tags for r in res.correct)} kink-heavy); "
               f"{res.wall_s:.0f} s in all.\n")
    out.append("### Summary per checker\n")
    out.append("| | " + " | ".join(ch) + " |")
    out.append("|---|" + "---|" * len(ch))

    def line(label: str, cells: list[str]) -> None:
        out.append(f"| {label} | " + " | ".join(cells) + " |")

    line("recall, all mutants", [_pct(*res.recall(c)) if _installed(res, c) else "not installed" for c in ch])
    line(f"recall, float64 mutants with true error > 1e-6 ({len(target)})",
         [_pct(*res.recall(c, target)) if _installed(res, c) else "not installed" for c in ch])
    line("false alarms, all correct cases",
         [_pct(*res.false_alarms(c)) if _installed(res, c) else "not installed" for c in ch])
    for tag, label, smooth in (("float64", "float64, smooth", True), ("float32", "float32, smooth", True),
                               ("kinks", "kink-heavy (float64 and float32)", False)):
        line(f"false alarms, {label}",
             [_pct(*res.false_alarms(c, tag, smooth=smooth)) if _installed(res, c) else "not installed"
              for c in ch])
    for fam in res.single_entry_families():
        planted = sorted({r.case.layer.rel for r in res.mutants
                          if "single-entry" in r.case.tags and r.case.family == fam}, reverse=True)
        line(f"smallest single-entry error caught, {fam} (planted: "
             + ", ".join(f"{p:.0e}" for p in planted) + ")",
             [_size(res.smallest_single_entry(c, fam)) if _installed(res, c) else "not installed"
              for c in ch])
    named = [r for r in res.mutants if r.case.wrong_entry is not None]
    line("single-entry errors named by index",
         [f"{sum(bool(r.outcomes[c].named) for r in named)}/{len(named)}" if c.startswith("gc") else
          "— (prints Jacobians)" if c.startswith("torch") else "— (no index)" for c in ch])
    out.append("")
    out.append("A *catch* is a failure blamed on the hand gradient (torch: `GradcheckError`; jax: "
               "`AssertionError`; gradcheck: verdict `fail` with blame `hand`). A *false alarm* is "
               "anything but a pass on a correct case. `cut` = time budget spent, `n/i` = not "
               "installed.\n")

    fams = sorted({r.case.family for r in res.mutants})
    out.append("### Recall per family\n")
    out.append("| family | mutants | " + " | ".join(ch) + " |")
    out.append("|---|---|" + "---|" * len(ch))
    for fam in fams:
        rows = [r for r in res.mutants if r.case.family == fam]
        cells = []
        for c in ch:
            k, n = res.recall(c, rows)
            cells.append(f"{k}/{n}" if _installed(res, c) else "n/i")
        out.append(f"| {fam} | {len(rows)} | " + " | ".join(cells) + " |")
    out.append("")

    out.append("### Every mutant\n")
    out.append("true err = max over leaves of max|hand − ∇L| / max|∇L| (JAX, float64). "
               "gc leaves: ✓ when gradcheck `auto` fails exactly the leaves the bug touches.\n")
    out.append("| mutant | dtype | true err | " + " | ".join(ch) + " | gc leaves |")
    out.append("|---|---|---|" + "---|" * len(ch) + "---|")
    for r in res.mutants:
        gc_auto = r.outcomes.get("gc auto")
        exact = ("✓" if gc_auto and r.case.wrong_leaves and set(gc_auto.failing) == set(r.case.wrong_leaves)
                 else f"{','.join(gc_auto.failing) or '—'}" if gc_auto else "")
        cells = [_mark(r, c) + (" named" if r.outcomes[c].named else "") for c in ch]
        out.append(f"| {_esc(r.case.name)} | {r.case.dtype.name} | {_fmt_err(r.rel_error)} | "
                   + " | ".join(cells) + f" | {exact} |")
    out.append("")

    out.append("### Correct cases\n")
    out.append("✓ = pass, ✗ = false alarm (the status in brackets when it is not `fail`).\n")
    out.append("| case | dtype | true err | " + " | ".join(ch) + " |")
    out.append("|---|---|---|" + "---|" * len(ch))
    for r in res.correct:
        out.append(f"| {_esc(r.case.name)} | {r.case.dtype.name} | {_fmt_err(r.rel_error)} | "
                   + " | ".join(_mark(r, c) for c in ch) + " |")
    out.append("")
    return "\n".join(out)


def _installed(res: DetectionResult, checker: str) -> bool:
    rows = res.mutants + res.correct
    return any(r.outcomes.get(checker) and r.outcomes[checker].status != "not installed" for r in rows)


def _size(x: float | None) -> str:
    return "none" if x is None else f"{x:.0e}"


def _esc(s: str) -> str:
    return s.replace("|", "\\|")
