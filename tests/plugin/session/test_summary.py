"""The terminal summary ranks leaves failures first and counts verdicts in a fixed order."""

from __future__ import annotations

from typing import Any

from gradcheck.session.summary import properties, summary_lines


def _row(test: str, verdict: str, *leaves: dict[str, Any]) -> dict[str, Any]:
    return {"name": "c", "test": test, "verdict": verdict, "leaves": list(leaves)}


def _leaf(name: str, verdict: str, err: Any, **more: Any) -> dict[str, Any]:
    return {"name": name, "verdict": verdict, "max_rel_err": err, **more}


def test_verdicts_counted_in_order_with_unknown_ones_last() -> None:
    rows = [_row("t::a", "weird"), _row("t::a", "error"), _row("t::b", "pass"), _row("t::b", "inconclusive")]
    assert summary_lines(rows)[0] == "4 checks in 2 tests: 1 pass, 1 inconclusive, 1 error, 1 weird"


def test_worst_leaves_put_failures_first_and_stop_at_worst() -> None:
    rows = [_row("t::a", "fail", _leaf("W", "pass", 0.5), _leaf("b", "fail", 1e-2, blame="backward")),
            _row("t::b", "fail", _leaf("U", "fail", "nan", diagnosis={"kind": "sign"}))]
    lines = summary_lines(rows, worst=2)
    assert lines[1] == "worst leaves:"
    assert lines[2] == "  FAIL  t::b c U  max rel err inf (sign)"  # NaN ranks as the worst
    assert lines[3] == "  FAIL  t::a c b  max rel err 1.00e-02  blame backward"
    assert len(lines) == 4  # the passing leaf, the third worst, is left out


def test_no_leaves_no_worst_section() -> None:
    assert summary_lines([_row("t::a", "error")]) == ["1 checks in 1 tests: 1 error", "  ERROR t::a: "]


def test_properties_give_max_rel_err_only_for_rows_with_a_measured_leaf() -> None:
    rows = [_row("t::a", "error"), {**_row("t::a", "pass", _leaf("W", "pass", 3e-9)), "name": "d"}]
    assert properties(rows) == [("gradcheck[c].verdict", "error"), ("gradcheck[d].verdict", "pass"),
                                ("gradcheck[d].max_rel_err", "3.000e-09")]


def test_a_passing_check_in_a_failed_test_is_counted_and_listed_as_such() -> None:
    bad = {**_row("t::a", "pass", _leaf("W", "pass", 1e-9)), "test_outcome": "failed",
           "test_failure": "AssertionError: later bug\nassert 1 == 2"}
    errored = {**_row("t::b", "pass"), "test_outcome": "error"}
    fine = {**_row("t::c", "pass"), "test_outcome": "passed"}
    lines = summary_lines([bad, errored, fine, {**_row("t::d", "fail"), "test_outcome": "failed"}])
    assert lines[0] == "4 checks in 4 tests: 3 pass (2 in failed tests), 1 fail"
    assert lines[2] == "  PASS  t::a c W  max rel err 1.00e-09  [test failed]"
    assert lines[3:] == ["  TEST FAILED t::a c: the check passed, the test did not: AssertionError: later bug",
                         "  TEST ERROR t::b c: the check passed, the test did not: "]
    assert summary_lines([bad])[0] == "1 checks in 1 tests: 1 pass (1 in a failed test)"
