"""The ``gradcheck`` command's conventions: plain ``--help``, ``--version``, ``python -m gradcheck``,
and modules of the current folder found without ``PYTHONPATH``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import gradcheck
from gradcheck import cli
from tests.gradcheck.test_cli import CASE_LINE
from tests.gradcheck.test_cli_audit import TINY


@pytest.mark.parametrize("argv", [["--help"], ["audit", "--help"], ["report", "--help"]])
def test_help_is_plain_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: gradcheck")
    assert "``" not in text and not re.search(r":[a-z]+:`", text)  # no reStructuredText
    assert re.search(r"^examples?:\n  (gradcheck|python) ", text, re.M)  # examples, line by line


def test_help_documents_precedence_selection_and_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["audit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "except where a case's own \"options\" set the same key: the case's value wins" in text
    assert 'combined with "and", "or", "not" and parentheses' in text
    assert "5 no case to run: none declared, or -k selected none" in text
    assert "-n N run the cases on N worker processes; auto: one per core" in text


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"gradcheck {metadata.version('gradcheck')}\n"


def test_version_falls_back_to_the_package_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    monkeypatch.setattr(gradcheck, "__version__", "9.8.7")
    assert cli._version() == "9.8.7"
    monkeypatch.delattr(gradcheck, "__version__")
    assert cli._version() == "unknown"


def test_python_dash_m_gradcheck_runs_the_command_with_its_exit_status(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "gradcheck", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, f"gradcheck {metadata.version('gradcheck')}\n")
    done = subprocess.run([sys.executable, "-m", "gradcheck", "report", str(tmp_path / "missing.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout.startswith("gradcheck report:")


def _console_script() -> Path:
    script = Path(sys.executable).parent / ("gradcheck.exe" if os.name == "nt" else "gradcheck")
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable} (install the package)")
    return script


@pytest.mark.parametrize("how", ["console script, 2 workers", "python -m gradcheck"])
def test_a_module_in_the_current_folder_is_audited_without_pythonpath(
        how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tiny_here.py").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ)
    kept = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
            if p and p != "." and Path(p).resolve() != tmp_path.resolve()]
    env["PYTHONPATH"] = os.pathsep.join(kept)
    if how.startswith("console"):
        command = [str(_console_script()), "audit", "tiny_here", "-n", "2"]
    else:
        command = [sys.executable, "-m", "gradcheck", "audit", "tiny_here"]
    done = subprocess.run([*command, "-o", "out", "--seed", "3", "-k", "not raises"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # the sign flip fails
    assert "cannot import" not in done.stdout + done.stderr
    lines = {m["name"]: m for m in map(CASE_LINE.match, done.stdout.splitlines()) if m}
    assert lines["tanh/ok"]["verdict"] == "pass" and lines["tanh/sign-flip"]["verdict"] == "fail"
    assert "blame: hand" in lines["tanh/sign-flip"]["why"]
    rows = json.loads((tmp_path / "out" / "gradcheck.json").read_text())["results"]
    assert [(r["name"], r["seed"]) for r in rows] == [("tanh/ok", 3), ("tanh/sign-flip", 7)]
