"""What a run's rows say outside the report files: the terminal summary and junitxml properties.

A check that passed in a test that failed (the row's ``test_outcome``) is counted as
``pass (1 in a failed test)`` and listed with a ``TEST FAILED`` line, so it never reads as green.
A leaf line gives what was measured: ``max rel err 2.00e+00`` where entries were compared,
``screened: 3 probes, power 1e-6`` for a tensor only spot-checked along directional probes
(``power``: its ``detection_power``, the smallest single-entry error it would have caught), and
never an ``inf`` or ``nan`` for an error that was not measured.
Both read rows only (plain dicts, possibly merged from xdist workers), so they import no JAX,
hypothesis or template engine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gradcheck.session.records import as_float

__all__ = ["properties", "summary_lines"]

#: The order verdicts are counted in; any other verdict follows, alphabetically.
_VERDICTS = ("pass", "fail", "inconclusive", "error", "no result")
#: The pytest outcomes of a test that did not pass.
_FAILED = ("failed", "error")


def _test_failed(row: Mapping[str, Any]) -> bool:
    """A row whose check passed in a test that failed or errored."""
    return row.get("verdict") == "pass" and row.get("test_outcome") in _FAILED


def _counts(rows: Sequence[Mapping[str, Any]]) -> str:
    """``"2 pass, 1 fail"``: how many rows have each verdict, in :data:`_VERDICTS` order."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["verdict"])] = counts.get(str(row["verdict"]), 0) + 1
    order = sorted(counts, key=lambda k: (_VERDICTS.index(k) if k in _VERDICTS else len(_VERDICTS), k))
    parts = [f"{counts[k]} {k}" for k in order]
    n_test_failed = sum(map(_test_failed, rows))
    if n_test_failed:
        where = "a failed test" if n_test_failed == 1 else "failed tests"
        parts[order.index("pass")] += f" ({n_test_failed} in {where})"
    return ", ".join(parts)


def _measured(leaf: Mapping[str, Any]) -> bool:
    """Whether the leaf's ``max_rel_err`` was measured: a finite value, or a NaN that an
    agreement with compared entries produced (a NaN in the gradient)."""
    if math.isfinite(as_float(leaf.get("max_rel_err"))):
        return True
    return any(isinstance(a, Mapping) and int(a.get("n_compared") or 0) > 0
               for a in (leaf.get("hand_vs_numeric"), leaf.get("hand_vs_autodiff")))


def _screened(leaf: Mapping[str, Any]) -> bool:
    """A spot-checked tensor: directional probes only, no entry compared one by one."""
    return not _measured(leaf) and (leaf.get("mode") == "directional"
                                    or int(leaf.get("n_probes") or 0) > 0
                                    or bool(leaf.get("probes")))


def _short(x: float) -> str:
    """``1e-3`` style: one significant digit, no padded exponent."""
    mantissa, _, exponent = f"{x:.0e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


def _evidence(leaf: Mapping[str, Any]) -> str:
    """What was measured on a leaf: ``max rel err 2.00e+00``, ``screened: 3 probes, power
    1e-6`` for a spot-checked tensor, or ``max rel err not measured`` — never a made-up inf/NaN."""
    if _measured(leaf):
        return f"max rel err {as_float(leaf.get('max_rel_err')):.2e}"
    if _screened(leaf):
        n = int(leaf.get("n_probes") or len(leaf.get("probes") or ()))
        power = as_float(leaf.get("detection_power"))
        text = f"screened: {n} probe{'' if n == 1 else 's'}"
        return text + (f", power {_short(power)}" if math.isfinite(power) and power > 0 else "")
    return "max rel err not measured"


def _worst_key(leaf: Mapping[str, Any]) -> float:
    """How bad a leaf ranks: its measured error; unmeasured, the worst if it did not pass (a
    failing spot check), the best if it did."""
    err = as_float(leaf.get("max_rel_err"))
    if _measured(leaf) and not math.isnan(err):
        return err
    return math.inf if leaf.get("verdict") != "pass" else -1.0


def _worst_leaves(rows: Sequence[Mapping[str, Any]], worst: int) -> list[str]:
    """One line for each of the ``worst`` worst leaves, failures first."""
    leaves = []
    for row in rows:
        for leaf in row.get("leaves") or ():
            leaves.append((leaf.get("verdict") != "pass", _worst_key(leaf), row, leaf))
    leaves.sort(key=lambda t: (t[0], t[1]), reverse=True)
    lines = ["worst leaves:"] if leaves else []
    for _bad, _err, row, leaf in leaves[:worst]:
        blame = f"  blame {leaf['blame']}" if leaf.get("blame") else ""
        diag = leaf.get("diagnosis") or {}
        kind = f" ({diag['kind']})" if diag.get("kind") else ""
        marker = "  [test failed]" if _test_failed(row) else ""
        lines.append(f"  {leaf['verdict'].upper():<5} {row.get('test')} {row['name']} {leaf['name']}"
                     f"  {_evidence(leaf)}{blame}{kind}{marker}")
    return lines


def summary_lines(rows: Sequence[Mapping[str, Any]], *, worst: int = 5) -> list[str]:
    """The terminal summary: counts by verdict, then the worst leaves (failures first)."""
    tests = len({row.get("test") for row in rows})
    lines = [f"{len(rows)} checks in {tests} tests: {_counts(rows)}"]
    lines += _worst_leaves(rows, worst)
    for row in rows:
        if row["verdict"] in ("error", "no result"):
            error = str(row.get("error") or "").strip().splitlines() or [""]
            lines.append(f"  {row['verdict'].upper()} {row.get('test')}: {error[0]}")
        elif _test_failed(row):
            why = str(row.get("test_failure") or "").strip().splitlines() or [""]
            lines.append(f"  TEST {str(row['test_outcome']).upper()} {row.get('test')} {row['name']}: "
                         f"the check passed, the test did not: {why[0]}")
    return lines


def properties(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """junitxml properties of a test: verdict and worst measured relative error of each check
    (none for a check whose tensors were only screened)."""
    props = []
    for row in rows:
        props.append((f"gradcheck[{row['name']}].verdict", str(row["verdict"])))
        errs = [as_float(leaf.get("max_rel_err")) for leaf in row.get("leaves") or ()
                if _measured(leaf)]
        if errs:  # a NaN that was measured (a NaN in the gradient) is the worst
            worst = math.nan if any(map(math.isnan, errs)) else max(errs)
            props.append((f"gradcheck[{row['name']}].max_rel_err", f"{worst:.3e}"))
    return props
