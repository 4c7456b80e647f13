"""The session document: building it, converting the other schemas, atomic JSON files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gradcheck import report
from gradcheck.report import ReportFormatError


def test_session_document_counts_and_fills_the_environment(rows: list[dict[str, Any]]) -> None:
    doc = report.session_document(rows, environment={"seed": 7, "python": "override"}, title="CI run")
    assert doc["schema"] == report.SESSION_SCHEMA == "gradcheck.session/1"
    assert doc["title"] == "CI run"
    assert doc["counts"] == {"pass": 2, "fail": 1, "error": 1}
    assert doc["rows"] is rows
    env = doc["environment"]
    assert env["python"] == "override" and env["seed"] == 7
    assert {"numpy", "jax", "platform", "time"} <= env.keys()
    assert env["numpy"][0].isdigit()


def test_session_document_rejects_what_is_not_a_list_of_dicts() -> None:
    with pytest.raises(ReportFormatError, match="list of result dicts"):
        report.session_document({"name": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="list of result dicts"):  # also a ValueError
        report.session_document([1])  # type: ignore[list-item]


def test_json_round_trip(rows: list[dict[str, Any]], tmp_path: Path) -> None:
    doc = report.session_document(rows)
    path = report.write_json(doc, tmp_path / "out" / "gradcheck.json")
    assert path == tmp_path / "out" / "gradcheck.json"
    assert report.load(path) == json.loads(json.dumps(doc))
    assert report.load(str(path))["rows"][1]["leaves"][0]["diagnosis"]["kind"] == "sign_flip"


def test_load_converts_an_audit_file(passing: dict[str, Any], tmp_path: Path) -> None:
    error = {"name": "m[1]", "verdict": "error", "passed": False, "leaves": [], "error": "boom",
             "module": "m", "family": "m[1]", "seconds": 0.1}
    audit = {"schema": "gradcheck.audit/1", "modules": ["m"], "seconds": 1.5,
             "counts": {"pass": 1, "error": 1},
             "results": [{**passing, "module": "m", "family": "tanh", "seconds": 0.2}, error]}
    (tmp_path / "a.json").write_text(json.dumps(audit))
    doc = report.load(tmp_path / "a.json")
    assert doc["schema"] == report.SESSION_SCHEMA and doc["title"] == "gradcheck audit"
    assert doc["counts"] == {"pass": 1, "error": 1}
    assert [r["name"] for r in doc["rows"]] == ["tanh/ok", "m[1]"]
    assert doc["environment"]["modules"] == "m" and doc["environment"]["seconds"] == 1.5


def test_load_wraps_a_single_result_or_flow(failing: dict[str, Any], flows: list[dict[str, Any]],
                                            tmp_path: Path) -> None:
    report.write_json(failing, tmp_path / "r.json")
    doc = report.load(tmp_path / "r.json")
    assert doc["rows"] == [failing] and doc["counts"] == {"fail": 1}
    report.write_json(flows[0], tmp_path / "f.json")
    doc = report.load(tmp_path / "f.json")
    (row,) = doc["rows"]
    assert row["kind"] == "gradient_flow" and row["flows"] == [flows[0]] and row["verdict"] == "pass"


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "is not JSON"),
    ("[1, 2]", "got a JSON list"),
    ('{"schema": "other/9"}', "got schema 'other/9'"),
    ('{"rows": []}', "got schema None"),
    ('{"schema": "gradcheck.session/1"}', "needs a 'rows' list"),
    ('{"schema": "gradcheck.audit/1", "results": 3}', "needs a 'results' list"),
], ids=["not-json", "list", "unknown-schema", "no-schema", "session-without-rows", "audit-without-results"])
def test_load_explains_what_it_cannot_read(text: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(ReportFormatError, match=message) as info:
        report.load(tmp_path / "bad.json")
    assert "bad.json" in str(info.value)


def test_load_of_a_missing_file_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        report.load(tmp_path / "missing.json")


def test_writes_are_atomic_and_leave_no_temporary_files(rows: list[dict[str, Any]], tmp_path: Path) -> None:
    doc = report.session_document(rows)
    target = tmp_path / "gradcheck.json"
    report.write_json(doc, target)
    report.write_html(doc, tmp_path / "gradcheck.html")
    before = target.read_text()
    with pytest.raises(ValueError, match="JSON compliant"):  # NaN is refused, the old file is kept
        report.write_json({**doc, "bad": float("nan")}, target)
    assert target.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gradcheck.html", "gradcheck.json"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600


def test_importing_the_report_package_is_light() -> None:
    code = ("import sys, gradcheck.report; "
            "print(sorted(m for m in ('jax', 'matplotlib', 'jinja2') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
