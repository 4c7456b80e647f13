"""What a run's rows say outside the report files: the terminal summary and junitxml properties.

A check that passed in a test that failed (the row's ``test_outcome``) is counted as
``pass (1 in a failed test)`` and listed with a ``TEST FAILED`` line, so it never reads as green.
Both read rows only (plain dicts, possibly merged from xdist workers), so they import no JAX,
hypothesis or template engine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gradcheck.session.records import as_float, row_worst

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


def _worst_key(leaf: Mapping[str, Any]) -> float:
    err = as_float(leaf.get("max_rel_err"))
    return math.inf if math.isnan(err) else err


def _worst_leaves(rows: Sequence[Mapping[str, Any]], worst: int) -> list[str]:
    """One line for each of the ``worst`` worst leaves, failures first."""
    leaves = []
    for row in rows:
        for leaf in row.get("leaves") or ():
            leaves.append((leaf.get("verdict") != "pass", _worst_key(leaf), row, leaf))
    leaves.sort(key=lambda t: (t[0], t[1]), reverse=True)
    lines = ["worst leaves:"] if leaves else []
    for _bad, err, row, leaf in leaves[:worst]:
        blame = f"  blame {leaf['blame']}" if leaf.get("blame") else ""
        diag = leaf.get("diagnosis") or {}
        kind = f" ({diag['kind']})" if diag.get("kind") else ""
        marker = "  [test failed]" if _test_failed(row) else ""
        lines.append(f"  {leaf['verdict'].upper():<5} {row.get('test')} {row['name']} {leaf['name']}"
                     f"  max rel err {err:.2e}{blame}{kind}{marker}")
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
    """junitxml properties of a test: verdict and worst relative error of each check."""
    props = []
    for row in rows:
        props.append((f"gradcheck[{row['name']}].verdict", str(row["verdict"])))
        worst = row_worst(row)
        if worst >= 0:
            props.append((f"gradcheck[{row['name']}].max_rel_err", f"{worst:.3e}"))
    return props
