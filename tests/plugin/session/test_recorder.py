"""The fixture's checks: option precedence, and what each outcome records into the running test.

Checks use ``references=("numeric",)`` so that no test here needs JAX.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradcheck as gc
from gradcheck.session.merge import GradcheckSession
from gradcheck.session.recorder import Recorder, _flow_options
from gradcheck.session.settings import Settings

NUMERIC = {"references": ("numeric",)}


def f(p: dict[str, np.ndarray], x: np.ndarray) -> float:
    return float(np.sum(np.tanh(x @ p["W"]) ** 2))


def g(p: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    t = np.tanh(x @ p["W"])
    return {"W": x.T @ (2 * t * (1 - t**2))}


def g_wrong(p: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    return {"W": 2 * g(p, x)["W"]}


@pytest.fixture
def case() -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    return {"W": rng.normal(size=(3, 2))}, rng.normal(size=(4, 3))


def _recorder(settings: Settings | None = None, /, **marker: Any) -> tuple[Recorder, GradcheckSession]:
    session = GradcheckSession(settings or Settings())
    session.open("t.py::test_x", hypothesis=False).options = marker
    return Recorder(session), session


def test_call_beats_marker_beats_run_settings() -> None:
    recorder, session = _recorder(Settings(mode="full", seed=1), seed=2, rtol=1e-3)
    assert recorder.options(rtol=1e-6) == {"mode": "full", "seed": 2, "rtol": 1e-6}
    session.close()
    assert recorder.options() == {"mode": "full", "seed": 1}  # between tests: the settings only


def test_run_wide_tolerances_are_below_the_marker_and_the_call(case: Any) -> None:
    recorder, _ = _recorder(Settings(rtol=1e-4, atol=1e-9), rtol=1e-3, **NUMERIC)
    assert recorder.options() == {"rtol": 1e-3, "atol": 1e-9, **NUMERIC}
    leaf = recorder.check_grad(f, g, *case).leaf("W")
    assert (leaf.rtol, leaf.atol) == (1e-3, 1e-9)  # what the leaf was judged with
    leaf = recorder.check_grad(f, g, *case, atol=1e-7).leaf("W")
    assert (leaf.rtol, leaf.atol) == (1e-3, 1e-7)


def test_a_passing_check_is_recorded_and_returned(case: Any) -> None:
    recorder, session = _recorder(**NUMERIC)
    res = recorder.check_grad(f, g, *case, name="tanh")
    assert res.verdict == "pass"
    assert session.current is not None
    (entry,) = session.current.entries
    assert (entry.row["name"], entry.row["verdict"], entry.example) == ("tanh", "pass", None)
    assert entry.row["seconds"] >= 0


def test_a_mismatch_is_recorded_then_raised(case: Any) -> None:
    recorder, session = _recorder(**NUMERIC)
    with pytest.raises(gc.GradientMismatch):
        recorder.check_grad(f, g_wrong, *case)
    assert session.current is not None
    assert [(e.row["name"], e.row["verdict"]) for e in session.current.entries] == [("f", "fail")]


def test_a_check_that_raises_is_an_error_row(case: Any) -> None:
    recorder, session = _recorder(**NUMERIC)
    with pytest.raises(gc.InvalidArgument):
        recorder.check_grad(f, g, *case, mode="fast")
    assert session.current is not None
    (entry,) = session.current.entries
    assert (entry.row["kind"], entry.row["verdict"]) == ("check_grad", "error")
    assert entry.row["error"].startswith("InvalidArgument: mode='fast'")


def test_record_keeps_a_failure_without_raising(case: Any) -> None:
    recorder, session = _recorder()
    res = gc.check_grad(f, g_wrong, *case, **NUMERIC)
    assert recorder.record(res) is res
    assert session.current is not None and session.current.entries[0].row["verdict"] == "fail"


def test_outside_a_test_checks_run_and_record_nothing(case: Any) -> None:
    recorder, session = _recorder()
    session.close()
    assert recorder.check_grad(f, g, *case, **NUMERIC).passed
    assert repr(recorder) == "<gradcheck fixture>"


def test_a_flow_inherits_only_the_seed_and_a_number_rtol() -> None:
    assert _flow_options({"seed": 3, "rtol": 1, "mode": "full", "references": ("numeric",)}) == {
        "seed": 3, "rtol": 1.0}
    assert _flow_options({"rtol": {"float32": 1e-3}, "atol": 1e-9}) == {}
