"""The plugin's per-run state without a pytest subprocess: markers, rows, hypothesis notes."""

from __future__ import annotations

import pytest

from gradcheck.session.falsifying import falsifying_text
from gradcheck.session.markers import MarkerError, marker_options
from gradcheck.session.records import Entry, TestRecord, build_rows, row_worst
from gradcheck.session.summary import properties, summary_lines


def _row(name: str, verdict: str, err: float | str) -> dict[str, object]:
    return {"name": name, "verdict": verdict, "passed": verdict == "pass", "options": {},
            "leaves": [{"name": "W", "verdict": verdict, "max_rel_err": err, "blame": None}]}


def test_closest_marker_wins_and_values_are_normalised() -> None:
    module = pytest.mark.gradcheck(seed=1, mode="full", references="numeric").mark
    function = pytest.mark.gradcheck(seed=2, rtol={"float32": 1e-3}).mark
    got = marker_options([function, module])  # closest first, as item.iter_markers gives them
    assert got == {"seed": 2, "mode": "full", "references": ("numeric",), "rtol": {"float32": 1e-3}}


def test_marker_rejects_a_bad_value() -> None:
    with pytest.raises(MarkerError, match=r"rtol=nan: expected a non-negative float"):
        marker_options([pytest.mark.gradcheck(rtol=float("nan")).mark])


def test_hypothesis_rows_aggregate_per_check_name() -> None:
    record = TestRecord("t.py::test_h", hypothesis=True)
    record.entries = [Entry(_row("a", "pass", 1e-9), 1), Entry(_row("a", "pass", 3e-9), 2),
                      Entry(_row("b", "pass", 1e-12), 2), Entry(_row("a", "fail", 2.0), 3),
                      Entry(_row("a", "fail", 1.5), 4)]
    record.outcome, record.falsifying = "failed", "Falsifying example: test_h(x=1)"
    a, b = build_rows(record)
    assert (a["name"], a["verdict"], a["examples"], a["examples_failed"], a["checks"]) == ("a", "fail", 4, 2, 4)
    assert a["leaves"][0]["max_rel_err"] == 1.5  # the last failure: hypothesis replays the minimal one last
    assert a["falsifying"].startswith("Falsifying example")
    assert (b["verdict"], b["examples"]) == ("pass", 1) and "falsifying" not in b
    assert {a["test"], b["test"]} == {"t.py::test_h"}


def test_passing_hypothesis_row_is_the_worst_example() -> None:
    record = TestRecord("t.py::test_h", hypothesis=True)
    record.entries = [Entry(_row("a", "pass", 1e-9), 1), Entry(_row("a", "pass", 3e-9), 2)]
    (row,) = build_rows(record)
    assert row["leaves"][0]["max_rel_err"] == 3e-9 and row["examples"] == 2


def test_a_failed_test_without_results_is_an_error_row() -> None:
    record = TestRecord("t.py::test_e", outcome="failed", error="ValueError: no")
    (row,) = build_rows(record)
    assert (row["verdict"], row["error"], row["test"]) == ("error", "ValueError: no", "t.py::test_e")
    assert build_rows(TestRecord("t.py::test_skipped")) == []


def test_falsifying_text_drops_the_fixture_and_says_how_to_reproduce() -> None:
    notes = ["Failing test case: test_h(\n    gradcheck=<gradcheck fixture>,\n    scale=2.0,\n)",
             "You can reproduce this example by temporarily adding @reproduce_failure('6', b'AA') "
             "as a decorator on your test case"]
    text = falsifying_text("t.py::test_h", notes)
    assert text is not None
    assert "gradcheck=" not in text
    assert "@example(\n    scale=2.0,\n)" in text
    assert "python -m pytest 't.py::test_h'" in text and "@reproduce_failure('6', b'AA')" in text
    assert falsifying_text("t.py::test_h", ["an unrelated note"]) is None


def test_summary_and_junit_properties() -> None:
    rows = [{**_row("a", "fail", 2.0), "test": "t::x"}, {**_row("b", "pass", "nan"), "test": "t::y"},
            {"name": "c", "verdict": "no result", "leaves": [], "test": "t::z", "error": "crashed\nmore"}]
    lines = summary_lines(rows)
    assert lines[0] == "3 checks in 3 tests: 1 pass, 1 fail, 1 no result"
    assert lines[2].startswith("  FAIL  t::x a W  max rel err 2.00e+00")
    assert lines[-1] == "  NO RESULT t::z: crashed"
    assert properties(rows[:1]) == [("gradcheck[a].verdict", "fail"), ("gradcheck[a].max_rel_err", "2.000e+00")]
    assert row_worst(rows[2]) == -1.0
