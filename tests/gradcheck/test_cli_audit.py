"""``gradcheck audit`` in the audit's own process: a line per case as it finishes, the study's
lines, ``--mode``/``--seed`` against a case's own options, ``-k`` selection, error tracebacks."""

from __future__ import annotations

import io
import json
import re
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gradcheck import cli
from tests.gradcheck.test_cli import CASE_LINE

#: Tiny cases: a 3x2 tanh layer right and with a sign flip, and a hand gradient that raises.
TINY = textwrap.dedent('''
    import numpy as np

    class Tanh:
        def __init__(self, bug=False):
            self.bug = bug
        def forward(self, p, x):
            return np.tanh(x @ p["W"])
        def backward(self, p, x, dy):
            d = dy * (1 - np.tanh(x @ p["W"]) ** 2)
            return {"W": -(x.T @ d) if self.bug else x.T @ d}, d @ p["W"].T

    def total(p, x):
        return float(np.sum(p["W"]))

    def broken_grad(p, x):
        return helper_that_divides(p)

    def helper_that_divides(p):
        return 1 / 0

    rng = np.random.default_rng(0)
    P, X = {"W": rng.normal(size=(3, 2))}, rng.normal(size=(4, 3))
    GRADCHECK_CASES = [
        {"name": "tanh/ok", "layer": Tanh(), "params": P, "x": X},
        {"name": "tanh/sign-flip", "layer": Tanh(bug=True), "params": P, "x": X,
         "options": {"seed": 7}},
        {"name": "sum/raises", "fun": total, "grad": broken_grad, "params": P, "args": (X,)},
    ]
''')

#: Cases for fake runners: only the names and the options matter.
NAMES = textwrap.dedent('''
    GRADCHECK_CASES = [
        {"name": "Dense/tanh/float64", "fun": None, "grad": None, "params": {}},
        {"name": "dense/relu/float32", "fun": None, "grad": None, "params": {},
         "options": {"seed": 7, "rtol": 1e-3}},
        {"name": "rnn/tanh/float64", "fun": None, "grad": None, "params": {}},
        {"name": "lstm/float32", "fun": None, "grad": None, "params": {}, "options": {"mode": "auto"}},
    ]
''')


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> str:
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _row(case: Mapping[str, Any], verdict: str = "pass") -> dict[str, Any]:
    return {"name": case["name"], "verdict": verdict, "passed": verdict == "pass", "leaves": [],
            "family": "f", "options": dict(case.get("options", {}))}


class Recording(io.StringIO):
    """A stream remembering what had been flushed, and how often it was asked for a terminal."""

    def __init__(self, tty: bool = False) -> None:
        super().__init__()
        self.flushed = ""
        self.tty = tty

    def flush(self) -> None:
        self.flushed = self.getvalue()

    def isatty(self) -> bool:
        return self.tty


# ----------------------------------------------------------------------------- a line per case


def test_each_case_prints_a_flushed_line_with_verdict_blame_and_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, "tiny_lines", TINY)
    stream = Recording()
    seen_before: list[str] = []

    def runner(case: Mapping[str, Any]) -> dict[str, Any]:
        seen_before.append(stream.flushed)  # what the user had seen when this case started
        return cli.run_case(case)

    assert cli.audit([module], tmp_path / "out", stream=stream, runner=runner) == 1
    text = stream.getvalue()
    lines = [m for m in map(CASE_LINE.match, text.splitlines()) if m]
    assert [(m["done"], m["total"], m["verdict"], m["name"]) for m in lines] == [
        ("1", "3", "pass", "tanh/ok"), ("2", "3", "fail", "tanh/sign-flip"), ("3", "3", "error", "sum/raises")]
    assert lines[0]["why"] is None
    assert lines[1]["why"].startswith("W: sign flip") and lines[1]["why"].endswith("(blame: hand)")
    assert lines[2]["why"].startswith("UserCodeError: broken_grad(params, *args) raised ZeroDivisionError")
    # not on a terminal, and still each line reached the stream before the next case began
    assert "tanh/ok" not in seen_before[0]
    assert lines[0].group(0) in seen_before[1] and lines[1].group(0) in seen_before[2]
    assert "\r" not in text and "\x1b" not in text
    # the final summary stays, after the lines
    assert text.index("worst rel err") > text.index(lines[2].group(0))
    assert "3 checks: 1 error, 1 fail, 1 pass" in text


class _FakeStudy:
    class Row:
        agree = True

    rows = (Row(), Row())
    agree = True

    def to_dict(self) -> dict[str, Any]:
        return {}

    def table(self) -> str:
        return "the study's table"


def test_the_study_prints_when_it_starts_and_when_it_finishes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, "names_study", NAMES)
    monkeypatch.setattr(cli, "_write_audit", lambda document, out_dir: ([], []))
    stream = Recording()
    flushed_when_study_ran: list[str] = []

    def study() -> _FakeStudy:
        flushed_when_study_ran.append(stream.flushed)
        return _FakeStudy()

    assert cli.audit([module], tmp_path, stream=stream, runner=_row, study=study) == 0  # type: ignore[arg-type]
    assert flushed_when_study_ran[0].endswith("gradient-flow study: started\n")
    assert re.search(r"^gradient-flow study: finished in \d+\.\ds \(2 models\)$", stream.getvalue(), re.M)
    assert "the study's table" in stream.getvalue()


def test_on_a_terminal_the_progress_bar_never_garbles_the_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    short = [{"name": n, "fun": None, "grad": None, "params": {}} for n in ("a", "bb", "c", "dd")]
    module = _module(tmp_path, monkeypatch, "names_tty", f"GRADCHECK_CASES = {short!r}\n")
    stream = Recording(tty=True)
    assert cli.audit([module], tmp_path / "out", stream=stream, runner=_row) == 0
    raw = stream.getvalue()
    assert "[" + "#" * 7 + "." * 23 + "] 1/4" in raw  # the bar was drawn
    screen = _terminal(raw)
    names = [m["name"] for m in map(CASE_LINE.match, screen) if m]
    assert names == ["a", "bb", "c", "dd"]  # lines shorter than the bar they replace
    assert not any("#" in line or "] 1/4" in line for line in screen)  # no bar left over a line


def _terminal(raw: str) -> list[str]:
    """The lines a terminal shows for ``raw``: \r returns to the line's start, text overwrites
    what is there, \x1b[K clears the rest of the line."""
    lines: list[str] = []
    line: list[str] = []
    col = 0
    i = 0
    while i < len(raw):
        if raw.startswith("\x1b[K", i):
            del line[col:]
            i += 3
            continue
        ch = raw[i]
        if ch == "\n":
            lines.append("".join(line))
            line, col = [], 0
        elif ch == "\r":
            col = 0
        else:
            line[col:col + 1] = [ch]
            col += 1
        i += 1
    return [*lines, "".join(line)]


# ----------------------------------------------------------------------------- --mode and --seed


def test_command_line_options_apply_where_the_case_sets_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, "names_opts", NAMES)
    out = io.StringIO()
    assert cli.audit([module], tmp_path / "o", stream=out, runner=_row,
                     options={"mode": "full", "seed": 3}) == 0
    doc = json.loads((tmp_path / "o" / "gradcheck.json").read_text())
    assert [r["options"] for r in doc["results"]] == [
        {"mode": "full", "seed": 3},
        {"mode": "full", "seed": 7, "rtol": 1e-3},  # the case's own seed wins
        {"mode": "full", "seed": 3},
        {"mode": "auto", "seed": 3},  # the case's own mode wins
    ]
    assert doc["options"] == {"mode": "full", "seed": 3}
    text = out.getvalue()
    assert "note: 1 of 4 cases set their own mode, which wins over --mode full" in text
    assert "note: 1 of 4 cases set their own seed, which wins over --seed 3" in text


def test_mode_and_seed_reach_the_real_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, "tiny_opts", TINY)
    cli.audit([module], tmp_path / "o", stream=io.StringIO(), options={"mode": "directional", "seed": 3},
              select="tanh")
    results = json.loads((tmp_path / "o" / "gradcheck.json").read_text())["results"]
    assert [(r["options"]["mode"], r["seed"]) for r in results] == [("directional", 3), ("directional", 7)]


def test_main_passes_the_flags_to_the_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # main puts the current folder first
    calls: list[dict[str, Any]] = []

    def fake_audit(modules: list[str], out_dir: Path, **kwargs: Any) -> int:
        calls.append({"modules": modules, "out": out_dir, **kwargs})
        return 0

    monkeypatch.setattr(cli, "audit", fake_audit)
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 7)
    assert cli.main(["audit", "m1", "m2", "-o", "x", "--mode", "full", "--seed", "3", "-k", "not a",
                     "-n", "2"]) == 0
    assert cli.main(["audit", "m1", "-n", "auto"]) == 0
    assert cli.main(["audit", "-n", "0", "--no-study"]) == 0
    first, second, third = calls
    assert first["modules"] == ["m1", "m2"] and first["out"] == Path("x")
    assert first["options"] == {"mode": "full", "seed": 3} and first["select"] == "not a"
    assert first["workers"] == 2 and first["study"] is None
    assert second["options"] == {} and second["select"] is None and second["workers"] == 7
    assert third["modules"] == ["reference.cases"] and third["workers"] == 0 and third["study"] is None


@pytest.mark.parametrize(("argv", "message"), [
    (["--mode", "fast"], "argument --mode: invalid choice: 'fast' (choose from 'auto', 'full', 'directional')"),
    (["--seed", "-1"], "argument --seed: '-1' is not a seed: give a non-negative integer"),
    (["--seed", "1.5"], "argument --seed: '1.5' is not a seed"),
    (["-n", "-2"], "argument -n: '-2' is not a number of worker processes"),
    (["-n", "many"], "argument -n: 'many' is not a number of worker processes: give 0 or 1"),
    (["-k", "dense and"], "argument -k: 'dense and': expected a substring or '(' after 'and'"),
    (["-k", "(rnn or lstm"], "argument -k: '(rnn or lstm': '(' is not closed"),
])
def test_bad_flags_are_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "audit", lambda *a, **k: pytest.fail("the audit must not run"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["audit", *argv])
    assert exit_info.value.code == 2
    assert message.replace("'", "") in capsys.readouterr().err.replace("'", "")


# ----------------------------------------------------------------------------- -k


@pytest.mark.parametrize(("expression", "selected"), [
    ("", "DdRLS"),
    ("dense", "Dd"),
    ("DENSE", "Dd"),
    ("not dense", "RLS"),
    ("dense and float32", "d"),
    ("rnn or lstm", "RL"),
    ("(dense or rnn) and not float32", "DR"),
    ("not not rnn", "R"),
    ("tanh and not dense or lstm", "RL"),  # and binds tighter than or
    ("'relu/float32' or \"lstm/\"", "dL"),
    ("'sizes=(4, 5, 3)'", "S"),
    ("float", "DdRLS"),
    ("gru", ""),
])
def test_k_selects_by_substring_expressions(expression: str, selected: str) -> None:
    names = {"D": "Dense/tanh/float64", "d": "dense/relu/float32", "R": "rnn/tanh/float64",
             "L": "lstm/float32", "S": "mlp[sizes=(4, 5, 3)]/float64"}
    keep = cli.case_filter(expression)
    assert "".join(key for key, name in names.items() if keep(name)) == selected


@pytest.mark.parametrize(("expression", "message"), [
    ("and", "expected a substring or '(' where 'and' is"),
    ("dense rnn", "unexpected 'rnn' after a complete expression"),
    ("not", "found the end"),
    ("(dense", "'(' is not closed"),
    ("dense)", "unexpected ')'"),
    ("'dense", "unclosed quote"),
])
def test_a_malformed_k_expression_says_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        cli.case_filter(expression)


def test_k_runs_only_the_selected_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, "names_k", NAMES)
    ran: list[str] = []

    def runner(case: Mapping[str, Any]) -> dict[str, Any]:
        ran.append(case["name"])
        return _row(case)

    out = io.StringIO()
    assert cli.audit([module], tmp_path / "o", stream=out, runner=runner, select="float32 and not lstm") == 0
    assert ran == ["dense/relu/float32"]
    assert [r["name"] for r in json.loads((tmp_path / "o" / "gradcheck.json").read_text())["results"]] == ran
    assert "gradcheck audit: 1 cases from names_k (3 deselected by -k 'float32 and not lstm')" in out.getvalue()


def test_no_selected_case_exits_5_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, "names_none", NAMES)
    out = io.StringIO()
    code = cli.audit([module], tmp_path / "o", stream=out, select="gru",
                     runner=lambda case: pytest.fail("nothing may run"))
    assert code == cli.NO_CASES == 5
    assert out.getvalue().startswith("gradcheck audit: -k 'gru' selects none of the 4 declared cases "
                                     "(such as 'Dense/tanh/float64'")
    assert not (tmp_path / "o").exists()
    empty = _module(tmp_path, monkeypatch, "names_empty", "GRADCHECK_CASES = []\n")
    out = io.StringIO()
    assert cli.audit([empty], tmp_path / "o", stream=out) == 5
    assert "declare no cases" in out.getvalue() and not (tmp_path / "o").exists()


def test_no_selected_case_exits_5_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    module = _module(tmp_path, monkeypatch, "names_none_cli", NAMES)
    monkeypatch.setattr(sys, "path", list(sys.path))  # main puts the current folder first
    assert cli.main(["audit", module, "-o", str(tmp_path / "o"), "-k", "not float"]) == 5
    assert "selects none of the 4 declared cases" in capsys.readouterr().out


# ----------------------------------------------------------------------------- error rows


def test_an_error_row_carries_the_traceback_of_the_user_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, "tiny_tb", TINY)
    out = io.StringIO()
    assert cli.audit([module], tmp_path / "o", stream=out, select="raises") == 1
    row = json.loads((tmp_path / "o" / "gradcheck.json").read_text())["results"][0]
    tb = row["traceback"]
    source = str(tmp_path / "tiny_tb.py")
    # the user's exception first, with its frames, then the gradcheck error it caused
    assert tb.startswith("Traceback (most recent call last):\n")
    assert f'File "{source}", line 17, in broken_grad' in tb
    assert f'File "{source}", line 20, in helper_that_divides' in tb
    assert "ZeroDivisionError: division by zero\n" in tb
    assert "The above exception was the direct cause of the following exception:" in tb
    assert tb.index("ZeroDivisionError: division") < tb.index("gradcheck.errors.UserCodeError: broken_grad")
    assert "/gradcheck/" not in tb.replace(source, "")  # no frame of gradcheck's own
    assert row["error"].startswith("UserCodeError: broken_grad(params, *args) raised ZeroDivisionError")
    # printed under the case's line in the failures section, indented
    text = out.getvalue()
    failures = text[text.index("\nsum/raises: error\n"):]
    assert failures.startswith("\nsum/raises: error\n  Traceback (most recent call last):\n")
    assert f'\n    File "{source}", line 20, in helper_that_divides\n' in failures
    assert "\n  ZeroDivisionError: division by zero\n" in failures
    assert "\n  gradcheck.errors.UserCodeError: broken_grad(params, *args) raised" in failures
    assert "its traceback is chained to this error as __cause__" in failures  # printed just above


def test_an_exception_outside_gradcheck_errors_is_an_error_row_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, "names_raise", NAMES)

    def runner(case: Mapping[str, Any]) -> dict[str, Any]:
        if "rnn" in case["name"]:
            raise KeyError("no such thing")
        return _row(case)

    out = io.StringIO()
    assert cli.audit([module], tmp_path / "o", stream=out, runner=runner) == 1
    rows = json.loads((tmp_path / "o" / "gradcheck.json").read_text())["results"]
    assert [r["verdict"] for r in rows] == ["pass", "pass", "error", "pass"]
    assert rows[2]["error"] == "KeyError: 'no such thing'" and "in runner" in rows[2]["traceback"]
    # run_case itself turns a non-gradcheck exception into a row
    row = cli.run_case({"name": "odd", "layer": object(), "params": 3, "x": None, "options": 5})
    assert row["verdict"] == "error" and row["error"].startswith("TypeError:") and row["traceback"]


INTERNAL = """
def internal():
    raise ValueError("bug")

def catching():
    try:
        internal()
    except ValueError as exc:
        return exc

def wrapping(fn):
    try:
        fn()
    except ValueError as exc:
        try:
            raise UserCodeError("fn raised") from exc
        except UserCodeError as err:
            return err
"""


def test_a_traceback_drops_the_gradcheck_frames_leading_to_user_code_only(tmp_path: Path) -> None:
    import gradcheck

    fake = Path(gradcheck.__file__).parent / "internal_module.py"  # frames that look like gradcheck's
    user = tmp_path / "user_module.py"
    internal: dict[str, Any] = {"UserCodeError": gradcheck.UserCodeError}
    exec(compile(INTERNAL, str(fake), "exec"), internal)
    mine: dict[str, Any] = {"internal": internal["internal"]}
    exec(compile("def users_fn():\n    internal()\n", str(user), "exec"), mine)

    # a bug in gradcheck (no user frame at all): every frame is kept
    tb = cli.format_traceback(internal["catching"]())
    assert f'File "{fake}", line 7, in catching' in tb and f'File "{fake}", line 3, in internal' in tb
    # user code that raised inside what it called: from the user's frame on, gradcheck's included
    err = internal["wrapping"](mine["users_fn"])
    tb = cli.format_traceback(err)
    cause, effect = tb.split("The above exception was the direct cause of the following exception:")
    assert f'File "{fake}", line 13, in wrapping' not in cause  # the frame leading to user code
    assert f'File "{user}", line 2, in users_fn' in cause and f'File "{fake}", line 3, in internal' in cause
    # the gradcheck error itself: only its message
    assert effect.strip() == "gradcheck.errors.UserCodeError: fn raised"


def test_the_current_folder_goes_first_on_the_import_path(tmp_path: Path) -> None:
    path = ["/usr/lib/python3", str(tmp_path)]
    cli._cwd_first(path, str(tmp_path))
    assert path == [str(tmp_path), "/usr/lib/python3", str(tmp_path)]
    for already in ([str(tmp_path), "/x"], ["", "/x"]):
        before = list(already)
        cli._cwd_first(already, str(tmp_path) if already[0] else str(Path.cwd()))
        assert already == before


# ----------------------------------------------------------------------------- other kinds of case

KINDS = textwrap.dedent('''
    import numpy as np

    rng = np.random.default_rng(0)
    P, X = {"W": rng.normal(size=(3, 2))}, rng.normal(size=(4, 3))

    def f(p, x):
        return np.tanh(x @ p["W"])

    def f_jvp(p, t, x):
        return (1 - f(p, x) ** 2) * (x @ t["W"])

    def quartic(p):
        return np.sum(p["W"] ** 4) / 4

    def quartic_grad(p):
        return {"W": p["W"] ** 3}

    def quartic_hvp(p, v):
        return {"W": 3 * p["W"] ** 2 * v["W"]}

    def losses(p, x):
        return np.sum(f(p, x), axis=1)

    def per_example(p, x):
        return {"W": x[:, :, None] * (1 - f(p, x) ** 2)[:, None, :]}

    GRADCHECK_CASES = [
        {"name": "dense/jvp", "fun": f, "jvp": f_jvp, "params": P, "args": (X,)},
        {"name": "dense/jvp-sign", "fun": f, "jvp": lambda p, t, x: -f_jvp(p, t, x), "params": P,
         "args": (X,)},
        {"name": "quartic/hvp", "fun": quartic, "hvp": quartic_hvp, "grad": quartic_grad, "params": P},
        {"name": "dense/per-example", "loss": losses, "per_example_grad": per_example, "params": P,
         "batch": X},
        {"name": "dense/per-example-T", "loss": losses, "batch": X.T, "axis": 1,
         "per_example_grad": per_example, "params": P},
    ]
''')


def test_jvp_hvp_and_batched_cases_are_audited_as_their_kind(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, "kinds_cases", KINDS)
    code = cli.audit([module], tmp_path / "o", stream=io.StringIO())
    assert code == 1
    results = json.loads((tmp_path / "o" / "gradcheck.json").read_text())["results"]
    got = [(r["name"], r.get("kind"), r["verdict"]) for r in results]
    assert got[:4] == [("dense/jvp", "check_jvp", "pass"), ("dense/jvp-sign", "check_jvp", "fail"),
                       ("quartic/hvp", "check_hvp", "pass"), ("dense/per-example", "check_batched", "pass")]
    # a batch on axis 1 is passed on (the per-example gradient takes the batch as given: here the
    # transposed batch is wrong for it, so the check errors or fails; it never crashes the audit)
    assert got[4][0] == "dense/per-example-T" and got[4][2] in ("fail", "error")


def test_a_case_of_no_known_kind_is_refused_with_the_kinds(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, "bad_kind", "GRADCHECK_CASES = [{'name': 'x', 'jvp': 1}]\n")
    with pytest.raises(SystemExit, match=r"'fun', 'jvp' / 'hvp', 'params'.*missing \['fun', 'params'\]"):
        cli.load_cases(module)
