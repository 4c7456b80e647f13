"""A report says which run wrote it and whether it is complete, and a passing check in a failed
test never looks green (issue item 14)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gradcheck import report
from tests.gradcheck.report.test_html import Page

RUN = {"id": "0123456789abcdef0123456789abcdef", "status": "complete", "complete": True, "reason": None,
       "collected": 4, "n_missing": 0, "missing": []}


def _banner(page: Page) -> list[dict[str, str | None]]:
    return [a for t, a in page.tags if t == "div" and a.get("id") == "run-status"]


def test_the_run_record_travels_in_the_json_and_the_page(rows: list[dict[str, Any]], tmp_path: Path) -> None:
    doc = report.session_document(rows, run=RUN)
    assert doc["run"] == RUN and doc["schema"] == "gradcheck.session/1"
    path = report.write_json(doc, tmp_path / "r.json")
    assert json.loads(path.read_text())["run"]["id"] == RUN["id"]
    assert report.load(path)["run"] == RUN
    page = Page(report.render_html(doc))
    metas = {a.get("name"): a.get("content") for t, a in page.tags if t == "meta"}
    assert metas["gradcheck-run"] == RUN["id"] and metas["gradcheck-status"] == "complete"
    assert _banner(page) == []  # a complete run has no banner
    with pytest.raises(report.ReportFormatError, match="a run record must be a dict with a text 'id'"):
        report.session_document(rows, run={"status": "complete"})


@pytest.mark.parametrize(("run", "words"), [
    ({"status": "interrupted", "reason": "stopping after 1 failures", "n_missing": 2,
      "missing": ["t.py::test_c", "t.py::test_d"]},
     ["Interrupted run (stopping after 1 failures)", "2 of 4 collected tests did not report",
      "t.py::test_c, t.py::test_d"]),
    ({"status": "incomplete", "reason": "1 of 4 collected tests never reported", "n_missing": 1,
      "missing": ["t.py::test_x"]},
     ["Incomplete run (1 of 4 collected tests never reported)", "t.py::test_x"]),
], ids=["interrupted", "incomplete"])
def test_a_run_that_is_not_complete_gets_a_visible_banner(
        rows: list[dict[str, Any]], run: dict[str, Any], words: list[str]) -> None:
    html = report.render_html(report.session_document(rows, run={**RUN, **run, "complete": False}))
    page = Page(html)
    (banner,) = _banner(page)
    assert banner["role"] == "alert"
    text = " ".join(" ".join(page.text).split())
    assert "this report is not a complete record of the test session" in text
    for word in words:
        assert word in text
    assert html.index('id="run-status"') < html.index('id="agreement"')  # at the top of the page


def test_a_passing_check_in_a_failed_test_is_marked_in_the_table_and_drilled_down(
        rows: list[dict[str, Any]]) -> None:
    rows = copy.deepcopy(rows)
    rows[0].update(test_outcome="failed", test_failure="AssertionError: the layer's output is wrong")
    rows[1]["test_outcome"] = "failed"  # a failing check in a failed test: no news, no marker
    html = report.render_html(report.session_document(rows))
    page = Page(html)
    marked = [cells for cells in page.rows if cells[1] == "tanh/ok"]
    assert marked and all(cells[10] == "pass ✗ test failed" for cells in marked)
    assert all(cells[10] in ("fail", "pass", "error") for cells in page.rows if cells[1] == "tanh/sign-bug")
    trs = [a for t, a in page.tags if t == "tr" and a.get("data-verdict")]
    assert sum(1 for a in trs if "test-failed" in (a.get("class") or "")) == len(marked)
    assert [a["id"] for t, a in page.tags if t == "details" and "drill" in (a.get("class") or "")] == [
        "tanh-ok", "tanh-sign-bug", "raises"]
    text = " ".join(page.text)
    assert "The check passed, but the test failed" in text and "the layer's output is wrong" in text
    assert "1 passing check in failed tests" in text
    assert '<option value="test-failed">' in html
    assert "No gradient result was recorded" not in text
