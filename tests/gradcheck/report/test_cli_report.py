"""``gradcheck report results.json -o report.html`` and the page ``gradcheck audit`` writes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gradcheck import cli, report
from tests.gradcheck.report.conftest import N_TABLE_ROWS
from tests.gradcheck.report.test_html import Page

MODULE = textwrap.dedent('''
    import numpy as np

    def sse(p, x):
        return 0.5 * np.sum((x @ p["W"]) ** 2)

    rng = np.random.default_rng(0)
    P, X = {"W": rng.normal(size=(3, 2))}, rng.normal(size=(4, 3))
    GRADCHECK_CASES = [
        {"name": "sse/ok", "fun": sse, "grad": lambda p, x: {"W": x.T @ (x @ p["W"])},
         "params": P, "args": (X,), "options": {"references": ("numeric",)}},
        {"name": "sse/half", "fun": sse, "grad": lambda p, x: {"W": 0.5 * x.T @ (x @ p["W"])},
         "params": P, "args": (X,), "options": {"references": ("numeric",)}},
        {"name": "sse/<b>raises</b>", "fun": sse, "grad": lambda p, x: 1 / 0, "params": P,
         "args": (X,)},
    ]
''')


def test_report_command_renders_a_session_file(rows: list[dict[str, Any]], tmp_path: Path) -> None:
    source = report.write_json(report.session_document(rows), tmp_path / "results.json")
    out = io.StringIO()
    assert cli.report(source, tmp_path / "page" / "report.html", stream=out) == 0
    page = Page((tmp_path / "page" / "report.html").read_text())
    assert len(page.rows) == N_TABLE_ROWS
    assert "4 checks (1 error, 1 fail, 2 pass)" in out.getvalue()
    assert cli.main(["report", str(source)]) == 0  # default: next to the JSON
    assert (tmp_path / "results.html").exists()


def test_report_command_explains_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"schema": "nope"}')
    out = io.StringIO()
    assert cli.report(tmp_path / "x.json", stream=out) == 2
    assert "gradcheck report:" in out.getvalue() and "schema 'nope'" in out.getvalue()
    assert cli.report(tmp_path / "missing.json", stream=out) == 2
    assert not list(tmp_path.glob("*.html"))


def test_console_script_report(failing: dict[str, Any], tmp_path: Path) -> None:
    source = report.write_json(failing, tmp_path / "one.json")
    done = subprocess.run([sys.executable, "-m", "gradcheck.cli", "report", str(source), "-o",
                           str(tmp_path / "one.html")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(Page((tmp_path / "one.html").read_text()).rows) == len(failing["leaves"])


def test_audit_writes_the_html_report_next_to_the_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "audited.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = io.StringIO()
    assert cli.audit(["audited"], tmp_path / "reports", stream=out) == 1
    doc = json.loads((tmp_path / "reports" / "gradcheck.json").read_text())
    assert doc["schema"] == cli.AUDIT_SCHEMA and "python" in doc["environment"]
    assert [r["verdict"] for r in doc["results"]] == ["pass", "fail", "error"]
    html = (tmp_path / "reports" / "gradcheck.html").read_text()
    page = Page(html)
    # failures first, then the passes (one group: the family "sse")
    assert [cells[1] for cells in page.rows] == ["sse/half", "sse/<b>raises</b>", "sse/ok"]
    assert "<b>raises" not in html and "scale" in html  # escaped; diagnosis of the ½ bug
    assert "gradcheck.html" in out.getvalue()
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["gradcheck.html", "gradcheck.json"]
