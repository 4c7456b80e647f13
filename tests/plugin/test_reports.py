"""The report files of a pytest run, end to end: never over a test file, never lost quietly, never
looking complete when they are not (issue "No wrong gradient passes, no correct one fails, no
report is lost", items 12 to 14).  Sample checks use ``references=("numeric",)`` so that no
subprocess imports JAX.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from gradcheck import report
from tests.gradcheck.report.test_html import Page

pytest_plugins = ("pytester",)

CHECKS = '''
import numpy as np
import pytest

pytestmark = pytest.mark.gradcheck(references=("numeric",))

def f(p):
    return float(np.sum(np.tanh(p["W"]) ** 2))

def g(p):
    t = np.tanh(p["W"])
    return {"W": 2 * t * (1 - t ** 2)}

W = {"W": np.linspace(-1.0, 1.0, 6).reshape(2, 3)}

def test_ok(gradcheck):
    gradcheck.check_grad(f, g, W, name="ok")
'''

LATER_BUG = '''
def test_later_bug(gradcheck):
    gradcheck.check_grad(f, g, W, name="fine")
    assert 1 == 2, "the layer's output is wrong"

def test_after():
    pass
'''


def _doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    assert doc["schema"] == "gradcheck.session/1"
    return doc


# ----------------------------------------------------------------------------- item 12


@pytest.mark.parametrize("key", ["html", "json"])
def test_a_test_file_after_the_option_is_refused_and_left_alone(pytester: pytest.Pytester, key: str) -> None:
    source = pytester.makepyfile(test_rnn=CHECKS + LATER_BUG).read_text()
    result = pytester.runpytest_inprocess(f"--gradcheck-{key}", "test_rnn.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"*--gradcheck-{key}='test_rnn.py': refusing to write the {key.upper()} report to *test_rnn.py, "
        f"which is a Python file (.py)*write --gradcheck-{key}=PATH (with '=')*a path ending in .{key}*"])
    assert (pytester.path / "test_rnn.py").read_text() == source


def test_an_ini_path_or_an_existing_file_that_is_not_a_report_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ok=CHECKS)
    pytester.makeini("[pytest]\ngradcheck_json = test_ok.py\n")
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*gradcheck_json (ini option in tox.ini)='test_ok.py': refusing*"])
    (pytester.path / "tox.ini").unlink()
    notes = pytester.makefile(".html", notes="<html><body>my notes</body></html>")
    result = pytester.runpytest_inprocess("--gradcheck-html=notes.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*notes.html, which exists and is not a gradcheck HTML report*"])
    assert notes.read_text() == "<html><body>my notes</body></html>"


# ----------------------------------------------------------------------------- item 13


def test_a_failed_json_write_fails_the_run_and_the_html_is_still_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ok=CHECKS)
    pytester.makefile(".txt", somefile="a regular file, not a folder")
    result = pytester.runpytest_inprocess("--gradcheck-json=somefile.txt/out.json", "--gradcheck-html=page.html")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines([
        "gradcheck HTML report: *page.html",
        "gradcheck could not write its JSON report to *somefile.txt*out.json: *Error: *somefile.txt*",
        "gradcheck: a report was not written, so the run fails (exit status 3)",
    ])
    assert "ok" in Page((pytester.path / "page.html").read_text()).rows[0]


def test_a_failed_html_write_keeps_the_json_and_a_failing_run_keeps_its_status(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bug=CHECKS + LATER_BUG)
    pytester.makefile(".txt", somefile="")
    result = pytester.runpytest_inprocess("--gradcheck-json=out.json", "--gradcheck-html=somefile.txt/page.html")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["gradcheck could not write its HTML report to *page.html: *",
                                 "gradcheck: a report was not written, so the run fails (exit status 1)"])
    assert len(_doc(pytester.path / "out.json")["rows"]) == 2


# ----------------------------------------------------------------------------- item 14


def test_reports_carry_the_run_id_and_status_and_mark_a_passing_check_in_a_failed_test(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bug=CHECKS + LATER_BUG)
    result = pytester.runpytest_inprocess("--gradcheck-json=r.json", "--gradcheck-html=r.html")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "2 checks in 2 tests: 2 pass (1 in a failed test)",
        "  PASS  test_bug.py::test_later_bug fine W  max rel err *  [[]test failed]",
        "  TEST FAILED test_bug.py::test_later_bug fine: the check passed, the test did not: "
        "AssertionError: the layer's output is wrong",
    ])
    doc = _doc(pytester.path / "r.json")
    run = doc["run"]
    assert (run["status"], run["complete"], run["collected"], run["missing"]) == ("complete", True, 3, [])
    assert len(run["id"]) == 32
    rows = {row["name"]: row for row in doc["rows"]}
    assert (rows["fine"]["verdict"], rows["fine"]["test_outcome"]) == ("pass", "failed")
    assert "the layer's output is wrong" in rows["fine"]["test_failure"]
    assert rows["ok"]["test_outcome"] == "passed"
    html = (pytester.path / "r.html").read_text()
    assert f'<meta name="gradcheck-run" content="{run["id"]}">' in html and 'id="run-status"' not in html
    by_check = {cells[1]: cells for cells in Page(html).rows}
    assert by_check["fine"][10] == "pass ✗ test failed" and by_check["ok"][10] == "pass"


def test_an_interrupted_run_says_so_in_both_reports(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bug=CHECKS + LATER_BUG)
    result = pytester.runpytest_inprocess("-x", "--gradcheck-json=r.json", "--gradcheck-html=r.html")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["gradcheck: this run is interrupted (stopping after 1 failures); "
                                 "1 of 3 collected tests did not report; its reports say so"])
    run = _doc(pytester.path / "r.json")["run"]
    assert (run["status"], run["complete"], run["missing"]) == ("interrupted", False, ["test_bug.py::test_after"])
    page = Page((pytester.path / "r.html").read_text())
    assert [a.get("role") for t, a in page.tags if a.get("id") == "run-status"] == ["alert"]
    assert "Interrupted run (stopping after 1 failures)" in " ".join(page.text)


def test_a_keyboard_interrupt_and_a_test_that_never_reports_are_not_complete(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ok=CHECKS, test_stop="def test_stop():\n    raise KeyboardInterrupt\n")
    pytester.runpytest_subprocess("--gradcheck-json=r.json")
    run = _doc(pytester.path / "r.json")["run"]
    assert (run["status"], run["reason"]) == ("interrupted", "KeyboardInterrupt or pytest.exit")
    pytester.makeconftest('''
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    return True if item.name == "test_stop" else None  # "runs" it without a report
''')
    result = pytester.runpytest_inprocess("--gradcheck-json=r.json", "--gradcheck-html=r.html")
    assert result.ret == pytest.ExitCode.OK
    run = _doc(pytester.path / "r.json")["run"]
    assert (run["status"], run["missing"]) == ("incomplete", ["test_stop.py::test_stop"])
    assert "Incomplete run (1 of 2 collected tests never reported)" in (pytester.path / "r.html").read_text()


def test_an_older_report_is_replaced_but_one_another_run_wrote_meanwhile_is_not(pytester: pytest.Pytester) -> None:
    old = report.write_json(report.session_document([], run={"id": "a" * 32}), pytester.path / "r.json")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    pytester.makepyfile(test_ok=CHECKS)
    pytester.runpytest_inprocess("--gradcheck-json=r.json").assert_outcomes(passed=1)
    first = _doc(old)["run"]["id"]
    assert first != "a" * 32 and len(_doc(old)["rows"]) == 1
    pytester.makepyfile(test_meanwhile='''
from gradcheck import report

def test_another_run_writes_its_reports(gradcheck):
    run = {"id": "b" * 32}
    report.write_json(report.session_document([], run=run), "r.json")
    report.write_html(report.session_document([], run=run), "r.html")
''')
    result = pytester.runpytest_inprocess("--gradcheck-json=r.json", "--gradcheck-html=r.html")
    result.assert_outcomes(passed=2)
    (mine,) = pytester.path.glob("r-*.json")
    run_id = _doc(mine)["run"]["id"]
    assert mine.name == f"r-{run_id[:8]}.json" and run_id != first
    assert _doc(pytester.path / "r.json")["run"]["id"] == "b" * 32  # the other run's report is intact
    assert (pytester.path / f"r-{run_id[:8]}.html").exists()
    result.stdout.fnmatch_lines([
        f"gradcheck JSON report: *r-{run_id[:8]}.json",
        "  not written to the asked-for path: *r.json was written by another run (run bbbbbbbb) after this "
        "one started: left alone",
    ])


def test_xdist_runs_know_their_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bug=CHECKS + LATER_BUG)
    result = pytester.runpytest_inprocess("-n", "2", "--gradcheck-json=r.json")
    result.assert_outcomes(passed=2, failed=1)
    doc = _doc(pytester.path / "r.json")
    assert (doc["run"]["status"], doc["run"]["collected"]) == ("complete", 3)
    assert {row["name"]: row["test_outcome"] for row in doc["rows"]} == {"ok": "passed", "fine": "failed"}


def test_a_run_that_dies_hard_leaves_a_report_saying_so_and_keeps_the_older_one(
    pytester: pytest.Pytester,
) -> None:
    """Before: a serial run killed mid-way (a crash, ``kill -9``) left the older report in place,
    looking current.  The start of a run now moves an older report aside (``*.previous.*``) and
    puts an ``incomplete`` placeholder in its place; the end replaces it with the real report."""
    pytester.makepyfile(test_checks=CHECKS)
    first = pytester.runpytest_subprocess("--gradcheck-json=out.json", "--gradcheck-html=out.html")
    assert first.ret == 0
    older = json.loads((pytester.path / "out.json").read_text())
    assert older["run"]["status"] == "complete" and older["rows"]

    pytester.makepyfile(test_crash="import os\n\ndef test_dies():\n    os._exit(1)\n")
    crashed = pytester.runpytest_subprocess("--gradcheck-json=out.json", "--gradcheck-html=out.html",
                                            "-p", "no:randomly")
    assert crashed.ret != 0
    placeholder = json.loads((pytester.path / "out.json").read_text())
    assert placeholder["run"]["status"] == "incomplete" and placeholder["run"]["id"] != older["run"]["id"]
    assert "never finished" in placeholder["run"]["reason"] and not placeholder["rows"]
    html = (pytester.path / "out.html").read_text()
    assert "never finished" in html
    kept = json.loads((pytester.path / "out.previous.json").read_text())
    assert kept["run"]["id"] == older["run"]["id"]
    assert (pytester.path / "out.previous.html").is_file()

    (pytester.path / "test_crash.py").unlink()
    again = pytester.runpytest_subprocess("--gradcheck-json=out.json")
    assert again.ret == 0
    assert json.loads((pytester.path / "out.json").read_text())["run"]["status"] == "complete"
