"""``gradcheck audit -n N``: cases on spawned worker processes, results in the declared order,
lines as cases finish, and an exception or a dead worker as an error row of its case."""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gradcheck import cli
from tests.gradcheck.test_cli import CASE_LINE

#: A runner the workers import by name: ``wait`` cases wait until the ``flag`` file exists,
#: the others create it, ``raise`` cases raise, ``die`` cases end their worker process.
RUNNER = textwrap.dedent('''
    import os
    import time
    from pathlib import Path

    def run(case):
        flag = Path(case["flag"])
        if case.get("die"):
            os._exit(3)
        if case.get("raise"):
            raise_from_the_runner(case)
        if case.get("wait"):
            deadline = time.monotonic() + 60
            while not flag.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.5)  # the flagging case has returned by now: completion order is fixed
        else:
            flag.write_text("done")
        return {"name": case["name"], "verdict": "pass", "passed": True, "leaves": [],
                "family": "f", "pid": os.getpid(), "options": dict(case.get("options", {}))}

    def raise_from_the_runner(case):
        raise RuntimeError(f"the runner broke on {case['name']}")
''')


def _declare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str,
             cases: list[dict[str, Any]]) -> None:
    (tmp_path / "runner_mod.py").write_text(RUNNER)
    declared = [{"fun": None, "grad": None, "params": {}, "flag": str(tmp_path / "flag"), **case}
                for case in cases]
    (tmp_path / f"{module}.py").write_text(f"GRADCHECK_CASES = {declared!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the workers get the audit's import path


def _runner() -> Any:
    import runner_mod  # type: ignore[import-not-found]

    return runner_mod.run


def test_rows_keep_the_declared_order_and_lines_print_as_cases_finish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _declare(tmp_path, monkeypatch, "two_workers", [
        {"name": "first/waits", "wait": True},       # finishes only after the second one
        {"name": "second/flags", "options": {"seed": 7}},
        {"name": "third/raises", "raise": True},
    ])
    out = io.StringIO()
    code = cli.audit(["two_workers"], tmp_path / "o", stream=out, runner=_runner(), workers=2,
                     options={"seed": 3})
    assert code == 1
    doc = json.loads((tmp_path / "o" / "gradcheck.json").read_text())
    rows = doc["results"]
    assert [r["name"] for r in rows] == ["first/waits", "second/flags", "third/raises"]  # declared
    assert doc["workers"] == 2
    printed = [m["name"] for m in map(CASE_LINE.match, out.getvalue().splitlines()) if m]
    assert printed.index("second/flags") < printed.index("first/waits")  # completion order
    assert "on 2 worker processes" in out.getvalue().splitlines()[0]
    assert rows[0]["options"] == {"seed": 3} and rows[1]["options"] == {"seed": 7}
    assert rows[0]["pid"] != rows[1]["pid"]  # really on two processes
    # an exception in a worker is the error row of its case, with the worker's traceback
    assert rows[2]["verdict"] == "error"
    assert rows[2]["error"] == "RuntimeError: the runner broke on third/raises"
    assert 'runner_mod.py", line 23, in raise_from_the_runner' in rows[2]["traceback"]
    assert "third/raises: error\n  Traceback (most recent call last):" in out.getvalue()


def test_real_cases_run_on_workers_that_reimport_the_module(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.gradcheck.test_cli_audit import TINY

    (tmp_path / "tiny_workers.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = io.StringIO()
    assert cli.audit(["tiny_workers"], tmp_path / "o", stream=out, workers=2, options={"mode": "full"}) == 1
    rows = json.loads((tmp_path / "o" / "gradcheck.json").read_text())["results"]
    assert [(r["name"], r["verdict"]) for r in rows] == [
        ("tanh/ok", "pass"), ("tanh/sign-flip", "fail"), ("sum/raises", "error")]
    assert [r["mode"] for r in rows[:2]] == ["full", "full"] and rows[1]["seed"] == 7
    assert "ZeroDivisionError" in rows[2]["traceback"] and "helper_that_divides" in rows[2]["traceback"]


def test_a_worker_that_dies_costs_error_rows_not_the_audit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _declare(tmp_path, monkeypatch, "dying", [{"name": "dies", "die": True}, {"name": "fine/too"}])
    out = io.StringIO()
    assert cli.audit(["dying"], tmp_path / "o", stream=out, runner=_runner(), workers=2) == 1
    rows = json.loads((tmp_path / "o" / "gradcheck.json").read_text())["results"]
    assert [r["name"] for r in rows] == ["dies", "fine/too"]
    assert rows[0]["verdict"] == "error" and "BrokenProcessPool" in rows[0]["error"]
    assert "rerun with -n 1" in rows[0]["error"]
    assert rows[1]["verdict"] in ("pass", "error")  # it may have been lost with the pool
    assert "2 checks:" in out.getvalue()


def test_workers_need_a_runner_they_can_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _declare(tmp_path, monkeypatch, "closures", [{"name": "a"}, {"name": "b"}])
    with pytest.raises(TypeError, match="cannot be sent to worker processes"):
        cli.audit(["closures"], tmp_path / "o", stream=io.StringIO(), workers=2,
                  runner=lambda case: {"name": case["name"]})
    assert not (tmp_path / "o").exists()


def test_one_worker_or_none_runs_in_this_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _declare(tmp_path, monkeypatch, "inproc", [{"name": "a"}, {"name": "b"}])
    ran: list[str] = []

    def runner(case: Mapping[str, Any]) -> dict[str, Any]:  # a closure: only possible in-process
        ran.append(case["name"])
        return {"name": case["name"], "verdict": "pass", "passed": True, "leaves": []}

    for workers in (0, 1):
        assert cli.audit(["inproc"], tmp_path / "o", stream=io.StringIO(), workers=workers, runner=runner) == 0
    assert ran == ["a", "b", "a", "b"]


def test_a_worker_refuses_a_module_that_declares_other_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_WORKER_CASES", {"m": [{"name": "other", "module": "m"}]})
    row = cli._work("m", 0, "expected", {}, cli.run_case)
    assert row["verdict"] == "error" and row["name"] == "expected"
    assert "declares 'other' at index 0 in a worker process, not 'expected'" in row["error"]
    assert "make them deterministic, or run with -n 1" in row["error"]
    row = cli._work("no_such_module_for_workers", 0, "x", {}, cli.run_case)
    assert row["verdict"] == "error" and "cannot import 'no_such_module_for_workers'" in row["error"]
