"""The run's end: each report written on its own, a lost one named and failing the run (items 13, 14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradcheck.session.merge import GradcheckSession
from gradcheck.session.output import WRITE_FAILED, failed_exitstatus, report_lines, write_reports
from gradcheck.session.settings import Settings


def _write(state: GradcheckSession) -> dict[str, object]:
    run = state.run_record(exitstatus=pytest.ExitCode.OK)
    write_reports(state, environment={"mode": "auto"}, title="t", run=run)
    return run


def test_a_failed_json_write_does_not_cost_the_html_and_is_named_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "somefile.txt").write_text("a regular file")
    bad = tmp_path / "somefile.txt" / "out.json"
    state = GradcheckSession(Settings(json=bad, html=tmp_path / "page.html"))
    run = _write(state)
    assert [(kind, path) for kind, path, _ in state.written] == [("HTML", tmp_path / "page.html")]
    ((kind, path, why),) = state.write_errors
    assert (kind, path) == ("JSON", bad) and why.startswith(("FileExistsError", "NotADirectoryError"))
    assert state.run_id in (tmp_path / "page.html").read_text()
    lines = [text for text, red in report_lines(state, run, 3) if red]
    assert lines == [f"gradcheck could not write its JSON report to {bad}: {why}",
                     "gradcheck: a report was not written, so the run fails (exit status 3)"]


def test_a_failed_html_write_does_not_cost_the_json(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    state = GradcheckSession(Settings(json=tmp_path / "r.json", html=tmp_path / "f" / "r.html"))
    _write(state)
    assert [kind for kind, _, _ in state.written] == ["JSON"] and [k for k, _, _ in state.write_errors] == ["HTML"]
    assert json.loads((tmp_path / "r.json").read_text())["run"]["id"] == state.run_id


def test_a_document_that_cannot_be_built_loses_every_report_and_says_so(tmp_path: Path) -> None:
    state = GradcheckSession(Settings(json=tmp_path / "r.json", html=tmp_path / "r.html"))
    state.rows_by_test["t.py::test_x"] = ["not a row"]  # type: ignore[list-item]
    _write(state)
    assert [k for k, _, _ in state.write_errors] == ["JSON", "HTML"] and state.written == []
    assert all("ReportFormatError" in why for _, _, why in state.write_errors)


def test_a_lost_report_fails_a_run_that_would_pass_and_keeps_a_failing_status() -> None:
    assert WRITE_FAILED == pytest.ExitCode.INTERNAL_ERROR
    assert failed_exitstatus(pytest.ExitCode.OK) == failed_exitstatus(pytest.ExitCode.NO_TESTS_COLLECTED) == 3
    assert failed_exitstatus(pytest.ExitCode.TESTS_FAILED) == pytest.ExitCode.TESTS_FAILED
    assert failed_exitstatus(pytest.ExitCode.INTERRUPTED) == pytest.ExitCode.INTERRUPTED


def test_reports_are_written_with_the_run_record_and_nothing_without_settings(tmp_path: Path) -> None:
    state = GradcheckSession(Settings())
    _write(state)
    assert state.written == state.write_errors == []
    state = GradcheckSession(Settings(json=tmp_path / "r.json"))
    run = _write(state)
    assert json.loads((tmp_path / "r.json").read_text())["run"] == run
    assert report_lines(state, run) == [(f"gradcheck JSON report: {tmp_path / 'r.json'}", False)]
