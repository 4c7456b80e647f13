"""``gradcheck audit``: declared cases, exit codes, the JSON it writes, the summary it prints."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gradcheck import cli

USER_MODULE = textwrap.dedent('''
    import numpy as np

    class Dense:
        def __init__(self, bug=False):
            self.bug = bug
        def forward(self, p, x):
            return x @ p["W"] + p["b"]
        def backward(self, p, x, dy):
            db = dy[0] if self.bug else dy.sum(0)
            return {"W": x.T @ dy, "b": db}, dy @ p["W"].T

    def sse(p, x, d):
        return 0.5 * np.sum((x @ p["W"] - d) ** 2)

    def sse_grad(p, x, d):
        return {"W": x.T @ (x @ p["W"] - d)}

    rng = np.random.default_rng(0)
    P = {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
    X, D = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    GRADCHECK_CASES = [
        {"name": "dense/ok", "layer": Dense(), "params": P, "x": X},
        {"name": "sse/ok", "fun": sse, "grad": sse_grad, "params": {"W": P["W"]}, "args": (X, D),
         "options": {"mode": "full"}},
        {"name": "dense/bias-bug", "layer": Dense(bug=True), "params": P, "x": X},
        {"name": "sse/raises", "fun": sse, "grad": lambda p, x, d: 1 / 0, "params": {"W": P["W"]},
         "args": (X, D)},
    ]
''')


#: One progress line of ``gradcheck audit``: ``[ 3/12] fail   name (0.12s): what failed``.
CASE_LINE = re.compile(r"^\[ *(?P<done>\d+)/(?P<total>\d+)\] (?P<verdict>\w+) +(?P<name>.+) "
                       r"\((?P<seconds>\d+\.\d\d)s\)(?:: (?P<why>.*))?$")


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "mylayers.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "mylayers"


def test_audit_of_a_user_module(user_module: str, tmp_path: Path) -> None:
    out = io.StringIO()
    code = cli.audit([user_module], tmp_path / "reports", stream=out)
    assert code == 1
    doc = json.loads((tmp_path / "reports" / "gradcheck.json").read_text())
    assert doc["schema"] == cli.AUDIT_SCHEMA
    assert [r["verdict"] for r in doc["results"]] == ["pass", "pass", "fail", "error"]
    assert doc["counts"] == {"pass": 2, "fail": 1, "error": 1}
    failing = doc["results"][2]
    assert failing["schema"] == "gradcheck.result/1"
    assert [leaf["name"] for leaf in failing["leaves"] if leaf["verdict"] == "fail"] == ["b"]
    assert "ZeroDivisionError" in doc["results"][3]["error"]
    text = out.getvalue()
    assert "dense" in text and "worst rel err" in text and "4 checks" in text
    assert "dense/bias-bug: fail" in text and "blame: hand" in text


def test_audit_passes_with_exit_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "okmod.py").write_text(USER_MODULE.replace(
        'GRADCHECK_CASES = [', 'GRADCHECK_CASES = lambda: [').split('    {"name": "dense/bias-bug"')[0] + "]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.audit(["okmod"], tmp_path, stream=io.StringIO()) == 0


@pytest.mark.parametrize(("module", "source", "message"), [
    ("bad_none", "X = 1\n", "declares no GRADCHECK_CASES"),
    ("bad_keys", "GRADCHECK_CASES = [{'name': 'x', 'layer': object()}]\n", "missing ['params', 'x']"),
    ("bad_item", "GRADCHECK_CASES = [3]\n", "is not a dict"),
])
def test_bad_declarations_are_explained(module: str, source: str, message: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit, match=re.escape(message)):
        cli.audit([module], tmp_path, stream=io.StringIO())


def test_missing_module_is_explained(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="cannot import 'no_such_module_here'"):
        cli.audit(["no_such_module_here"], tmp_path, stream=io.StringIO())


def test_console_script_audits_the_zoo_and_writes_the_report(tmp_path: Path) -> None:
    """The README's main job, end to end: every zoo case passes.  Without the study (``--no-study``):
    the real study is computed and checked in tests/gradcheck/test_study.py, and that the zoo's
    audit runs it by default is :func:`test_the_zoo_audit_runs_the_study_by_default`."""
    done = subprocess.run([sys.executable, "-m", "gradcheck", "audit", "--no-study", "-o", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads((tmp_path / "gradcheck.json").read_text())
    families = {r["family"] for r in doc["results"]}
    assert {"dense", "mlp", "conv", "pooling", "rnn", "lstm", "gru", "recursive"} <= families
    assert {"dense-jvp", "mlp-hvp", "mlp-batched"} <= families
    assert {r["kind"] for r in doc["results"]} == {"check_layer", "check_jvp", "check_hvp", "check_batched"}
    assert {leaf["dtype"] for r in doc["results"] for leaf in r["leaves"]} == {"float32", "float64"}
    assert all(r["verdict"] == "pass" for r in doc["results"])
    assert "study" not in doc and "gradient-flow study" not in done.stdout
    # one line per case as it finished, in the declared order (one process)
    lines = [m for m in map(CASE_LINE.match, done.stdout.splitlines()) if m]
    assert [(m["verdict"], m["name"]) for m in lines] == [("pass", r["name"]) for r in doc["results"]]


def test_the_zoo_audit_runs_the_study_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``gradcheck audit`` of the built-in zoo records the gradient-flow study in the JSON and the
    page (issue 5); a small study stands in for the default one (the same code path)."""
    from gradcheck.study import StudyConfig, flow_study

    ran: list[bool] = []

    def small() -> Any:
        ran.append(True)
        return flow_study(T=5, hidden=3, batch=1, configs=[StudyConfig("rnn", "tanh", 0.5),
                                                           StudyConfig("rnn", "tanh", 3.0)])

    monkeypatch.setattr(cli, "run_study", small)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    code = cli.main(["audit", "-k", "dense[activation=tanh]/float64/seed0", "-o", str(tmp_path)])
    assert code == 0 and ran == [True], out.getvalue()
    doc = json.loads((tmp_path / "gradcheck.json").read_text())
    assert [r["name"] for r in doc["results"]] == ["dense[activation=tanh]/float64/seed0"]
    study = doc["study"]
    assert study["schema"] == "gradcheck.study/1" and study["agree"] is True and len(study["rows"]) == 2
    page = (tmp_path / "gradcheck.html").read_text()
    assert 'id="study-table"' in page and 'id="study-slope"' in page and 'id="study-truncation"' in page
    assert "gradient-flow study (T=5" in out.getvalue()
    assert re.search(r"^gradient-flow study: finished in \d+\.\ds \(2 models\)$", out.getvalue(), re.M)


def _passing_row(case: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": case["name"], "verdict": "pass", "passed": True, "leaves": [], "family": "f"}


def test_report_never_overwrites_what_is_not_a_gradcheck_page(tmp_path: Path) -> None:
    from gradcheck import report as rep

    source = rep.write_json(rep.session_document([]), tmp_path / "results.json")
    test_file = tmp_path / "test_rnn.py"
    test_file.write_text("def test_x():\n    pass\n")
    notes = tmp_path / "notes.html"
    notes.write_text("<html>mine</html>")
    for target, why in ((test_file, "is a Python file (.py)"), (notes, "exists and is not a gradcheck HTML"),
                        (tmp_path / "results.json", "ends in .json")):
        out = io.StringIO()
        assert cli.report(source, target, stream=out) == 2
        assert out.getvalue().startswith(f"gradcheck report: refusing to write {target}, which {why}")
        assert "give -o a path ending in .html" in out.getvalue()
    assert test_file.read_text() == "def test_x():\n    pass\n" and notes.read_text() == "<html>mine</html>"
    assert cli.main(["report", str(source), "-o", str(tmp_path / "page.html")]) == 0
    assert cli.main(["report", str(source), "-o", str(tmp_path / "page.html")]) == 0  # its own page again


def test_audit_refuses_an_output_folder_it_must_not_write_into(user_module: str, tmp_path: Path) -> None:
    ran: list[object] = []

    def runner(case: Mapping[str, Any]) -> dict[str, Any]:
        ran.append(case)
        return _passing_row(case)

    test_file = tmp_path / "test_rnn.py"
    test_file.write_text("def test_x():\n    pass\n")
    out = io.StringIO()
    assert cli.audit([user_module], test_file, stream=out, runner=runner) == 2
    assert out.getvalue().startswith(f"gradcheck audit: -o {str(test_file)!r} is a file, not a folder")
    foreign = tmp_path / "out"
    foreign.mkdir()
    (foreign / "gradcheck.json").write_text('{"mine": true}')
    out = io.StringIO()
    assert cli.audit([user_module], foreign, stream=out, runner=runner) == 2
    assert "refusing to write" in out.getvalue() and "is not a gradcheck JSON report" in out.getvalue()
    assert ran == [] and (foreign / "gradcheck.json").read_text() == '{"mine": true}'
    assert not (foreign / "gradcheck.html").exists()


def test_audit_writes_each_report_on_its_own_and_a_lost_one_fails_it(
        user_module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradcheck import report as rep

    def broken(doc: object, path: object) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(rep, "write_html", broken)
    out = io.StringIO()
    code = cli.audit([user_module], tmp_path / "reports", stream=out, runner=_passing_row)
    assert code == cli.WRITE_FAILED == 3
    assert json.loads((tmp_path / "reports" / "gradcheck.json").read_text())["schema"] == cli.AUDIT_SCHEMA
    assert f"gradcheck audit: could not write {tmp_path / 'reports' / 'gradcheck.html'}: OSError: disk full" \
        in out.getvalue()
