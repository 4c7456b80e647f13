"""The terminal summary ranks leaves failures first and counts verdicts in a fixed order."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import gradcheck as gc
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
    assert lines[2] == "  FAIL  t::b c U  max rel err not measured (sign)"  # ranks as the worst
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


# ----------------------------------------------------------------------------- screened tensors


def _f(p: dict[str, np.ndarray], x: np.ndarray) -> float:
    return float(np.sum(np.tanh(x @ p["W"]) ** 2))


def _g(p: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    t = np.tanh(x @ p["W"])
    return {"W": x.T @ (2 * t * (1 - t**2))}


def _checked(shape: tuple[int, int], *, flip: float = 1.0, **options: Any) -> dict[str, Any]:
    """A real check's row (``to_dict``), as the fixture records it."""
    rng = np.random.default_rng(0)
    p, x = {"W": rng.normal(size=shape)}, rng.normal(size=(4, shape[0]))
    res = gc.check_grad(_f, lambda p, x: {"W": flip * _g(p, x)["W"]}, p, x,
                        references=("numeric",), **options)
    return {**res.to_dict(), "test": "t::s"}


@pytest.mark.parametrize(("shape", "options"), [((3, 2), {"mode": "directional", "probes": 4}),
                                                ((30, 20), {})],
                         ids=["directional", "auto-large"])
def test_a_screened_tensor_says_probes_and_power_not_inf(shape: tuple[int, int], options: dict[str, Any]) -> None:
    row = _checked(shape, **options)
    (leaf,) = row["leaves"]
    assert leaf["mode"] == "directional" and leaf["max_rel_err"] == "nan"  # nothing compared
    power = float(leaf["detection_power"])
    n = options.get("probes", 3)
    lines = summary_lines([row])
    shown = re.fullmatch(rf"  PASS  t::s _f W  screened: {n} probes, power ([1-9]e-[1-9]\d*)", lines[2])
    assert shown, lines[2]  # like 1e-6: one digit, no padded exponent
    assert float(shown.group(1)) == float(f"{power:.0e}")
    assert properties([row]) == [("gradcheck[_f].verdict", "pass")]  # no max_rel_err to claim


def test_a_failing_screened_tensor_has_no_power_and_no_made_up_error() -> None:
    row = _checked((3, 2), flip=-1.0, mode="directional")
    lines = summary_lines([row])
    assert lines[2] == "  FAIL  t::s _f W  screened: 3 probes  blame hand (sign_flip)"
    localised = _checked((30, 20), flip=-1.0)  # auto mode measures a sample: a real error
    assert localised["leaves"][0]["mode"] == "localised"
    assert summary_lines([localised])[2].startswith("  FAIL  t::s _f W  max rel err 2.00e+00  blame hand")
    assert properties([localised])[1] == ("gradcheck[_f].max_rel_err", "2.000e+00")


def test_a_measured_nan_is_said_and_ranks_worst() -> None:
    nan_leaf = _leaf("U", "fail", "nan", hand_vs_numeric={"n_compared": 6, "max_rel_err": "nan"})
    rows = [_row("t::a", "fail", _leaf("W", "fail", 2.0), nan_leaf)]
    assert summary_lines(rows)[2:] == ["  FAIL  t::a c U  max rel err nan", "  FAIL  t::a c W  max rel err 2.00e+00"]
    assert properties(rows)[1] == ("gradcheck[c].max_rel_err", "nan")
    screened = _leaf("S", "pass", "nan", n_probes=1, detection_power=0.00123)
    assert summary_lines([_row("t::b", "pass", screened)])[2] == "  PASS  t::b c S  screened: 1 probe, power 1e-3"
