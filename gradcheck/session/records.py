"""What one test recorded, and the report rows it becomes.

The ``gradcheck`` fixture appends an :class:`Entry` per check to the running test's
:class:`TestRecord`; at teardown :func:`build_rows` turns the record into the rows that travel
on the test report (one per check, or one per check name across hypothesis examples).  Rows are
plain JSON dicts of the ``gradcheck.result`` schema, so the report renders them like any other
result, and each carries the test's pytest outcome (``test_outcome``; see :meth:`TestRecord.note`)
so that a check that passed in a test that failed does not look green.  Nothing here imports
JAX or a template engine; hypothesis is looked up in ``sys.modules`` only while a check runs.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradcheck.result import SCHEMA_VERSION

__all__ = ["Entry", "TestRecord", "as_float", "base_row", "build_rows", "no_result_row", "row_worst"]


@dataclass(slots=True)
class Entry:
    """One recorded outcome: a check result row, an error row or a flow row."""

    row: dict[str, Any]
    example: int | None = None


@dataclass(slots=True)
class TestRecord:
    """What one test recorded; ``example`` counts hypothesis examples seen so far.

    ``outcome`` / ``error`` say whether setup or call failed (a test that failed before any check
    gets an error row); ``test_outcome`` / ``test_failure`` are the test's pytest outcome over all
    its phases and why it failed, for every row.
    """

    __test__ = False  # not a pytest test class

    nodeid: str
    options: dict[str, Any] = field(default_factory=dict)
    hypothesis: bool = False
    entries: list[Entry] = field(default_factory=list)
    example: int = 0
    last_context: Any = None
    outcome: str = "passed"
    error: str | None = None
    falsifying: str | None = None
    test_outcome: str = "passed"
    test_failure: str | None = None

    def note(self, when: str, outcome: str, *, xfail: bool = False, failure: str | None = None) -> None:
        """Take the pytest outcome of one phase (``"passed"``, ``"failed"`` or ``"skipped"``).

        A failure wins over anything else (``"failed"`` in the call, ``"error"`` in setup or
        teardown, as pytest counts them); otherwise the first of ``"skipped"``, ``"xfailed"``
        (an expected failure) and ``"xpassed"`` (an unexpected pass) stays.
        """
        if outcome == "failed":
            if self.test_outcome not in ("failed", "error"):
                self.test_outcome = "failed" if when == "call" else "error"
                self.test_failure = failure
        elif self.test_outcome == "passed":
            if outcome == "skipped":
                self.test_outcome = "xfailed" if xfail else "skipped"
            elif xfail and when == "call":
                self.test_outcome = "xpassed"

    def current_example(self) -> int | None:
        """The index of the running hypothesis example (``None`` outside ``@given``)."""
        hyp = sys.modules.get("hypothesis")
        if hyp is None or not hyp.currently_in_test_context():
            return None
        from hypothesis.control import current_build_context

        ctx = current_build_context()
        if ctx is not self.last_context:
            self.last_context = ctx
            self.example += 1
        return self.example


def base_row(name: str, kind: str, verdict: str) -> dict[str, Any]:
    """A row with every field a check result row has, for outcomes that are not check results."""
    return {"schema": SCHEMA_VERSION, "name": name, "kind": kind, "verdict": verdict,
            "passed": verdict == "pass", "mode": None, "seed": None, "references": [],
            "notes": [], "options": {}, "leaves": []}


def _plain(value: Any) -> Any:
    """The JSON form of option values (tuples, dtype-keyed tolerance tables)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def as_float(value: Any) -> float:
    """A JSON number or a NaN/Inf written as text; anything else is NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def row_worst(row: Mapping[str, Any]) -> float:
    """The worst ``max_rel_err`` over a row's leaves (NaN counts as the worst; -1 for none)."""
    worst = -1.0
    for leaf in row.get("leaves") or ():
        err = as_float(leaf.get("max_rel_err"))
        err = math.inf if math.isnan(err) and leaf.get("verdict") != "pass" else err
        if not math.isnan(err):
            worst = max(worst, err)
    return worst


def _aggregate(entries: Sequence[Entry]) -> dict[str, Any]:
    """One row for the entries of one check name across hypothesis examples."""
    bad = [e for e in entries if e.row["verdict"] != "pass"]
    chosen = bad[-1] if bad else max(entries, key=lambda e: row_worst(e.row))
    row = dict(chosen.row)
    row["examples"] = len({e.example for e in entries})
    row["examples_failed"] = len({e.example for e in bad})
    row["checks"] = len(entries)
    row["seconds"] = round(sum(float(e.row.get("seconds", 0.0)) for e in entries), 4)
    return row


def _grouped(record: TestRecord) -> list[dict[str, Any]]:
    """One row per check call, or one per check name when hypothesis examples were noted."""
    if not (record.hypothesis and any(e.example is not None for e in record.entries)):
        return [dict(e.row) for e in record.entries]
    groups: dict[str, list[Entry]] = {}
    for entry in record.entries:
        groups.setdefault(str(entry.row["name"]), []).append(entry)
    return [_aggregate(group) for group in groups.values()]


def build_rows(record: TestRecord) -> list[dict[str, Any]]:
    """The rows of one test: one per check call, or one per check name for hypothesis tests
    (the failing minimal example when the test failed, else the worst example).

    A test that recorded nothing and did not pass gets one ``"error"`` row saying why.
    """
    nodeid = record.nodeid
    rows = _grouped(record)
    if not rows and record.outcome == "failed":
        row = base_row(nodeid.rpartition("::")[2], "test", "error")
        row["error"] = record.error or "the test failed before any check ran"
        rows = [row]
    if record.falsifying:
        targets = [r for r in rows if r["verdict"] != "pass"] or rows
        for r in targets:
            r["falsifying"] = record.falsifying
    for r in rows:
        r["test"] = nodeid
        r["options"] = _plain(r.get("options", {}))
        r["test_outcome"] = record.test_outcome
        if r["verdict"] == "pass" and record.test_outcome in ("failed", "error") and record.test_failure:
            r["test_failure"] = record.test_failure
    return rows


def no_result_row(nodeid: str, why: str | None) -> dict[str, Any]:
    """The row of a test that was expected to report but never did: its worker crashed (``why``
    says how; ``test_outcome`` ``"crashed"``) or the run stopped first (``"unfinished"``)."""
    row = base_row(nodeid.rpartition("::")[2], "test", "no result")
    row["error"] = why or "the test started but no result came back (crashed worker?)"
    row["test"] = nodeid
    row["test_outcome"] = "crashed" if why else "unfinished"
    return row
