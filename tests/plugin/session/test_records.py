"""Rows from records: the worst error of a row, JSON-plain options, error and no-result rows."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gradcheck.result import SCHEMA_VERSION
from gradcheck.session.records import (
    Entry,
    TestRecord,
    as_float,
    base_row,
    build_rows,
    no_result_row,
    row_worst,
)


def _leaf(verdict: str, err: Any) -> dict[str, Any]:
    return {"name": "W", "verdict": verdict, "max_rel_err": err}


def test_text_numbers_are_read_and_anything_else_is_nan() -> None:
    assert as_float("inf") == math.inf and as_float(2) == 2.0
    assert math.isnan(as_float(None)) and math.isnan(as_float("n/a"))


def test_row_worst_counts_a_failing_nan_as_the_worst_and_skips_a_passing_one() -> None:
    assert row_worst({"leaves": [_leaf("pass", 1e-3), _leaf("fail", "nan")]}) == math.inf
    assert row_worst({"leaves": [_leaf("pass", 1e-3), _leaf("pass", "nan")]}) == 1e-3
    assert row_worst({"leaves": None}) == -1.0


def test_base_row_has_the_result_schema_fields() -> None:
    row = base_row("f", "gradient_flow", "fail")
    assert (row["schema"], row["kind"], row["passed"], row["leaves"]) == (SCHEMA_VERSION, "gradient_flow",
                                                                         False, [])
    assert base_row("f", "test", "pass")["passed"] is True


def test_rows_are_per_call_outside_hypothesis_with_plain_options() -> None:
    record = TestRecord("t.py::test_x")
    options = {"references": ("numeric",), "rtol": {"float32": 1e-3}}
    record.entries = [Entry({**base_row("a", "check_grad", "pass"), "options": options}),
                      Entry(base_row("a", "check_grad", "fail"))]
    first, second = build_rows(record)
    assert first["options"] == {"references": ["numeric"], "rtol": {"float32": 1e-3}}
    assert options["references"] == ("numeric",)  # the recorded entry is left as it was
    assert (second["verdict"], "examples" in second) == ("fail", False)
    assert {first["test"], second["test"]} == {"t.py::test_x"}


def test_the_falsifying_example_goes_on_every_row_when_none_failed() -> None:
    record = TestRecord("t.py::test_h", hypothesis=True, outcome="failed", falsifying="Falsifying example: x")
    record.entries = [Entry(base_row("a", "check_grad", "pass"), 1)]
    (row,) = build_rows(record)
    assert row["falsifying"] == "Falsifying example: x"


def test_a_failed_test_with_no_reason_says_it_failed_before_any_check() -> None:
    (row,) = build_rows(TestRecord("t.py::C::test_e", outcome="failed"))
    assert (row["name"], row["kind"], row["error"]) == ("test_e", "test", "the test failed before any check ran")


def test_no_result_row_names_the_test_and_why() -> None:
    row = no_result_row("t.py::test_c", "worker 'gw0' crashed")
    assert (row["name"], row["verdict"], row["error"], row["test"]) == (
        "test_c", "no result", "worker 'gw0' crashed", "t.py::test_c")
    assert "crashed worker?" in no_result_row("t.py::test_c", None)["error"]


def test_current_example_is_none_outside_a_hypothesis_test() -> None:
    record = TestRecord("t.py::test_x", hypothesis=True)
    assert record.current_example() is None and record.example == 0


@pytest.mark.parametrize(("phases", "outcome"), [
    ([("setup", "passed"), ("call", "passed"), ("teardown", "passed")], "passed"),
    ([("setup", "passed"), ("call", "failed"), ("teardown", "passed")], "failed"),
    ([("setup", "failed"), ("teardown", "passed")], "error"),
    ([("setup", "passed"), ("call", "passed"), ("teardown", "failed")], "error"),
    ([("setup", "passed"), ("call", "failed"), ("teardown", "failed")], "failed"),
    ([("setup", "skipped"), ("teardown", "passed")], "skipped"),
    ([("setup", "passed"), ("call", "skipped", True), ("teardown", "passed")], "xfailed"),
    ([("setup", "passed"), ("call", "passed", True), ("teardown", "passed")], "xpassed"),
    ([("setup", "passed"), ("call", "passed", True), ("teardown", "failed")], "error"),
], ids=["passed", "failed", "setup-error", "teardown-error", "failed-then-error", "skipped", "xfailed",
        "xpassed", "xpassed-then-error"])
def test_the_test_outcome_is_read_as_pytest_counts_it(phases: list[tuple[Any, ...]], outcome: str) -> None:
    record = TestRecord("t.py::test_x")
    for when, result, *xfail in phases:
        record.note(when, result, xfail=bool(xfail), failure=f"{when} broke" if result == "failed" else None)
    assert record.test_outcome == outcome
    assert record.test_failure == (None if outcome in ("passed", "skipped", "xfailed", "xpassed")
                                   else next(f"{w} broke" for w, r, *_ in phases if r == "failed"))


def test_every_row_carries_the_test_outcome_and_a_passing_one_says_why_its_test_failed() -> None:
    record = TestRecord("t.py::test_x")
    record.entries = [Entry(base_row("a", "check_grad", "pass")), Entry(base_row("b", "check_grad", "fail"))]
    record.note("call", "failed", failure="AssertionError: later bug")
    passed, failed = build_rows(record)
    assert (passed["test_outcome"], passed["test_failure"]) == ("failed", "AssertionError: later bug")
    assert failed["test_outcome"] == "failed" and "test_failure" not in failed  # its own verdict says it
    record = TestRecord("t.py::test_y")
    record.entries = [Entry(base_row("a", "check_grad", "pass"))]
    (row,) = build_rows(record)
    assert row["test_outcome"] == "passed" and "test_failure" not in row
    assert no_result_row("t.py::test_c", "worker 'gw0' crashed")["test_outcome"] == "crashed"
    assert no_result_row("t.py::test_c", None)["test_outcome"] == "unfinished"
