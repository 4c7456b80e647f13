"""The run state merges what test reports carry: rows, expected tests, crashes of xdist workers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gradcheck.session.merge import REPORT_ATTR, GradcheckSession
from gradcheck.session.settings import Settings


def _report(nodeid: str, when: Any, payload: str | None = None, *, longrepr: Any = None) -> pytest.TestReport:
    """A report as a worker sends it; ``when`` is not a test phase for xdist's crash reports."""
    outcome: Any = "failed" if longrepr is not None else "passed"
    report = pytest.TestReport(nodeid, ("t.py", 0, nodeid), {}, outcome, longrepr, when)
    if payload is not None:
        setattr(report, REPORT_ATTR, payload)
    return report


def test_open_and_close_track_the_running_test() -> None:
    session = GradcheckSession(Settings())
    record = session.open("t.py::test_a", hypothesis=True)
    assert session.current is record and record.hypothesis
    assert session.close() is record and session.current is None
    assert session.close() is None


def test_rows_in_node_order_with_no_result_for_expected_tests_that_never_reported() -> None:
    session = GradcheckSession(Settings())
    expected = session.payload(expected=True)
    for nodeid in ("t.py::test_b", "t.py::test_a", "t.py::test_crash"):
        session.merge(_report(nodeid, "setup", expected))
    session.merge(_report("t.py::test_b", "teardown", session.payload(rows=[{"name": "b1"}, {"name": "b2"}])))
    session.merge(_report("t.py::test_a", "teardown", session.payload(rows=[{"name": "a"}])))
    session.merge(_report("t.py::test_crash", "???", longrepr="worker 'gw1' crashed while running\nexit 3"))
    session.merge(_report("t.py::test_plain", "call"))  # a test without the fixture: nothing to take
    rows = session.rows()
    assert [r["name"] for r in rows] == ["a", "b1", "b2", "test_crash"]
    assert (rows[-1]["verdict"], rows[-1]["error"]) == ("no result", "exit 3")
    assert list(session.expected) == ["t.py::test_b", "t.py::test_a", "t.py::test_crash"]


def test_a_failing_phase_of_a_test_is_not_a_crash() -> None:
    session = GradcheckSession(Settings())
    session.merge(_report("t.py::test_a", "setup", session.payload(expected=True)))
    session.merge(_report("t.py::test_a", "call", longrepr="AssertionError"))
    assert session.crashes == {}
    assert "crashed worker?" in session.rows()[0]["error"]


def test_payload_is_strict_json() -> None:
    assert GradcheckSession.payload(rows=[{"path": Path("a")}]) == '{"rows": [{"path": "a"}]}'
    with pytest.raises(ValueError, match="JSON compliant"):
        GradcheckSession.payload(rows=[{"max_rel_err": math.nan}])


def test_environment_fills_the_defaults_of_unset_settings() -> None:
    config: Any = SimpleNamespace(option=SimpleNamespace(numprocesses=2), rootpath=Path("/r"))
    assert GradcheckSession(Settings()).environment(config) == {
        "mode": "auto", "seed": 0, "pytest": pytest.__version__, "workers": "2", "rootdir": str(Path("/r"))}
    set_env = GradcheckSession(Settings(mode="full", seed=4)).environment(config)
    assert (set_env["mode"], set_env["seed"]) == ("full", 4)


def test_run_record_says_complete_interrupted_or_incomplete() -> None:
    session = GradcheckSession(Settings())
    assert len(session.run_id) == 32 and int(session.run_id, 16) >= 0  # uuid4 hex
    assert GradcheckSession(Settings()).run_id != session.run_id
    session.collect(["t.py::test_a", "t.py::test_b"])
    session.collect(["t.py::test_a", "t.py::test_b"])  # a second xdist worker collects the same
    session.merge(_report("t.py::test_a", "teardown"))
    record = session.run_record(exitstatus=pytest.ExitCode.OK)
    assert (record["status"], record["complete"], record["collected"]) == ("incomplete", False, 2)
    assert (record["missing"], record["n_missing"]) == (["t.py::test_b"], 1)
    assert record["reason"] == "1 of 2 collected tests never reported" and record["id"] == session.run_id
    stopped = session.run_record(exitstatus=pytest.ExitCode.TESTS_FAILED, stopped="stopping after 1 failures")
    assert (stopped["status"], stopped["reason"]) == ("interrupted", "stopping after 1 failures")
    interrupted = session.run_record(exitstatus=pytest.ExitCode.INTERRUPTED)
    assert (interrupted["status"], interrupted["reason"]) == ("interrupted", "KeyboardInterrupt or pytest.exit")
    session.merge(_report("t.py::test_b", "???", longrepr="worker 'gw1' crashed"))  # a crash is an end
    done = session.run_record(exitstatus=pytest.ExitCode.TESTS_FAILED)
    assert (done["status"], done["complete"], done["reason"], done["missing"]) == ("complete", True, None, [])
    json.dumps(done, allow_nan=False)
