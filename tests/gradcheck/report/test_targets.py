"""Where a report may be written: only over a gradcheck report of its own kind (issue items 12, 14)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from gradcheck import report
from gradcheck.report.targets import HTML_MARKER, aside, destination, existing, refusal

RUN = "0123456789abcdef0123456789abcdef"


def _session_json(path: Path, run_id: str | None = None) -> Path:
    doc: dict[str, Any] = {"schema": "gradcheck.session/1", "rows": []}
    if run_id is not None:
        doc["run"] = {"id": run_id}
    path.write_text(json.dumps(doc))
    return path


def _page(path: Path, run_id: str | None = None) -> Path:
    run = {"id": run_id, "status": "complete"} if run_id is not None else None
    return report.write_html(report.session_document([], run=run), path)


@pytest.mark.parametrize(("name", "kind", "why"), [
    ("test_rnn.py", "html", "is a Python file (.py), not a gradcheck HTML report"),
    ("conftest.py", "json", "is a Python file (.py), not a gradcheck JSON report"),
    ("test_rnn.py::test_x", "html", "looks like a pytest node id (a test to run), not a report file"),
    ("report.json", "html", "ends in .json, not the name of a gradcheck HTML report"),
    ("report.html", "json", "ends in .html, not the name of a gradcheck JSON report"),
], ids=["py-html", "py-json", "node-id", "json-for-html", "html-for-json"])
def test_python_files_node_ids_and_swapped_names_are_refused_even_when_new(
        tmp_path: Path, name: str, kind: str, why: str) -> None:
    assert refusal(tmp_path / name, kind) == why


def test_collected_file_names_folders_and_special_files_are_refused(tmp_path: Path) -> None:
    assert refusal(tmp_path / "test_notes.txt", "json", collected=["test*.txt"]) == (
        "matches 'test*.txt', a file name pytest collects")
    (tmp_path / "dir.json").mkdir()
    assert refusal(tmp_path / "dir.json", "json") == "is a folder"
    os.mkfifo(tmp_path / "pipe.json")
    assert refusal(tmp_path / "pipe.json", "json") == "exists and is not a regular file"


@pytest.mark.parametrize("text", ['{"a": 1}', '{"schema": "other/1"}', "[1, 2]", "not json", "\xff\xfe"],
                         ids=["no-schema", "other-schema", "list", "not-json", "binary"])
def test_an_existing_json_file_that_is_not_a_gradcheck_document_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "data.json"
    path.write_text(text, encoding="latin-1")
    why = refusal(path, "json")
    assert why == 'exists and is not a gradcheck JSON report (no "schema" starting with "gradcheck.")'


def test_existing_gradcheck_reports_of_the_same_kind_may_be_replaced(tmp_path: Path) -> None:
    assert refusal(tmp_path / "new.json", "json") is None and refusal(tmp_path / "new.html", "html") is None
    assert refusal(_session_json(tmp_path / "old.json"), "json") is None
    audit = tmp_path / "audit.json"
    audit.write_text('{"schema": "gradcheck.audit/1", "results": []}')
    assert refusal(audit, "json") is None
    assert refusal(_page(tmp_path / "old.html"), "html") is None
    (tmp_path / "notes.html").write_text("<!DOCTYPE html><html><head><title>my notes</title></head></html>")
    assert refusal(tmp_path / "notes.html", "html") == (
        f"exists and is not a gradcheck HTML report (no {HTML_MARKER} …> tag)")
    assert refusal(_session_json(tmp_path / "json.htm"), "html") is not None  # a JSON report is not a page


def test_the_html_marker_and_the_run_id_are_in_every_page(tmp_path: Path) -> None:
    html = report.render_html(report.session_document([]))
    assert HTML_MARKER in html and 'name="gradcheck-run"' not in html  # no run record, no run id
    found = existing(_page(tmp_path / "r.html", RUN), "html")
    assert found is not None and (found.report, found.run_id) == (True, RUN)
    found = existing(_session_json(tmp_path / "r.json", RUN), "json")
    assert found is not None and (found.report, found.run_id) == (True, RUN)
    assert existing(tmp_path / "nothing.json", "json") is None


def test_destination_replaces_an_older_report_but_not_a_newer_one_of_another_run(tmp_path: Path) -> None:
    started = time.time()
    new = tmp_path / "gradcheck.json"
    assert destination(new, "json", run_id=RUN, started=started) == (new, None)
    old = _session_json(tmp_path / "gradcheck.json", "ffff" * 8)
    os.utime(old, (started - 60, started - 60))  # written before this run started
    assert destination(old, "json", run_id=RUN, started=started) == (old, None)
    os.utime(old, (started + 1, started + 1))  # another run wrote it meanwhile
    target, note = destination(old, "json", run_id=RUN, started=started)
    assert target == tmp_path / "gradcheck-01234567.json" == aside(old, RUN)
    assert note == f"{old} was written by another run (run ffffffff) after this one started: left alone"
    page = _page(tmp_path / "gradcheck.html", "eeee" * 8)
    os.utime(page, (started + 1, started + 1))
    assert destination(page, "html", run_id=RUN, started=started)[0] == tmp_path / "gradcheck-01234567.html"


def test_destination_leaves_alone_what_stopped_being_a_report(tmp_path: Path) -> None:
    path = tmp_path / "gradcheck.json"
    path.write_text("precious")
    target, note = destination(path, "json", run_id=RUN, started=time.time() + 60)
    assert target == tmp_path / "gradcheck-01234567.json"
    assert note is not None and "is not a gradcheck JSON report" in note and "left alone" in note
