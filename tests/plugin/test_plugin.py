"""The pytest plugin end to end: sample projects run by ``pytester`` (in this process, see conftest.py).

Sample checks use ``references=("numeric",)`` through the marker so that no run compiles a JAX
reference (except the gradient-flow and twin tests), keeping these runs at a tenth of a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ("pytester",)

COMMON = '''
import numpy as np
import pytest
import gradcheck as gc
from hypothesis import given, settings, strategies as st

def f(p, x):
    return float(np.sum(np.tanh(x @ p["W"]) ** 2))

def g(p, x):
    t = np.tanh(x @ p["W"])
    return {"W": x.T @ (2 * t * (1 - t ** 2))}

def g_bad(p, x):
    return {"W": -g(p, x)["W"]}

def case(seed=0):
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(size=(3, 2))}, rng.normal(size=(4, 3))
'''

SAMPLE = COMMON + '''
pytestmark = pytest.mark.gradcheck(references=("numeric",))
HYP = settings(max_examples=8, deadline=None, database=None, derandomize=True)

def test_pass(gradcheck):
    p, x = case()
    gradcheck.check_grad(f, g, p, x)

def test_fail(gradcheck):
    p, x = case()
    gradcheck.check_grad(f, g_bad, p, x, name="sign")

def test_error(gradcheck):
    def boom(p, x):
        raise ValueError("forward exploded")
    p, x = case()
    gradcheck.check_grad(boom, g, p, x)

def test_recorded_expected_failure(gradcheck):
    p, x = case()
    res = gradcheck.record(gc.check_grad(f, g_bad, p, x, references=("numeric",), name="planted"))
    assert not res.passed

def test_not_a_gradcheck_test():
    assert sum([1, 2]) == 3  # a plain test in the sample project: it must not produce a row

@HYP
@given(scale=st.floats(0.1, 2.0))
def test_hyp_pass(gradcheck, scale):
    p, x = case()
    gradcheck.check_grad(f, g, {"W": p["W"] * scale}, x, name="scaled")

@HYP
@given(scale=st.floats(0.1, 2.0))
def test_hyp_fail(gradcheck, scale):
    p, x = case()
    grad = g_bad if scale > 1.0 else g
    gradcheck.check_grad(f, grad, {"W": p["W"] * scale}, x, name="scaled")

@pytest.mark.gradcheck(rtl=1e-3)
def test_bad_marker(gradcheck):
    pass
'''


def _rows(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text())
    assert doc["schema"] == "gradcheck.session/1"
    return doc["rows"]


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [{k: v for k, v in row.items() if k != "seconds"} for row in rows]
    return sorted(out, key=lambda r: (r["test"], r["name"]))


def _by_test(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["test"].rpartition("::")[2]: row for row in rows}


@pytest.fixture
def sample(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_sample=SAMPLE)
    return pytester


# ----------------------------------------------------------------------------- import, entry point


def test_plugin_module_is_import_light() -> None:
    code = ("import sys, gradcheck.plugin; heavy = {'jax', 'matplotlib', 'jinja2'} & set(sys.modules);"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registered_as_pytest11_entry_point() -> None:
    found = [ep for ep in entry_points(group="pytest11") if ep.name == "gradcheck"]
    assert [ep.value for ep in found] == ["gradcheck.plugin"]


# ----------------------------------------------------------------------------- the sample project


def test_sample_project_exit_code_summary_and_rows(sample: pytest.Pytester) -> None:
    result = sample.runpytest_inprocess("--gradcheck-json=out/run.json", "--gradcheck-html",
                                         "--junitxml=junit.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=4, failed=3, errors=1)
    result.stdout.fnmatch_lines([
        "*- gradcheck -*",
        "7 checks in 7 tests: 2 pass, 3 fail, 2 error",
        "worst leaves:",
        "  FAIL  test_sample.py::test_*fail* * W  max rel err 2.00e+00  blame hand (sign_flip)",
        "  ERROR test_sample.py::test_bad_marker: *unknown key 'rtl' (did you mean 'rtol'?)*",
        "  ERROR test_sample.py::test_error: UserCodeError: boom(params, *args) raised ValueError*",
        "gradcheck JSON report: *run.json",
        "gradcheck HTML report: *gradcheck.html",
    ])
    rows = _rows(sample.path / "out" / "run.json")
    assert len(rows) == 7
    by_test = _by_test(rows)
    assert "test_not_a_gradcheck_test" not in by_test
    assert {k: r["verdict"] for k, r in by_test.items()} == {
        "test_pass": "pass", "test_fail": "fail", "test_error": "error",
        "test_recorded_expected_failure": "fail", "test_hyp_pass": "pass", "test_hyp_fail": "fail",
        "test_bad_marker": "error",
    }
    assert by_test["test_pass"]["references"] == ["numeric"]  # from the module marker
    assert by_test["test_fail"]["leaves"][0]["diagnosis"]["kind"] == "sign_flip"
    assert "forward exploded" in by_test["test_error"]["error"]
    assert "unknown key 'rtl'" in by_test["test_bad_marker"]["error"]
    # hypothesis: one aggregated row per test, never one per example
    hyp_pass, hyp_fail = by_test["test_hyp_pass"], by_test["test_hyp_fail"]
    assert hyp_pass["examples"] == 8 and hyp_pass["examples_failed"] == 0
    assert "falsifying" not in hyp_pass
    assert hyp_fail["examples"] > hyp_fail["examples_failed"] >= 1
    assert hyp_fail["leaves"][0]["diagnosis"]["kind"] == "sign_flip"
    falsifying = hyp_fail["falsifying"]
    assert "scale=" in falsifying and "@example(" in falsifying
    assert "python -m pytest 'test_sample.py::test_hyp_fail'" in falsifying
    assert "gradcheck=" not in falsifying  # the fixture is not part of the example
    # no health check and no deadline trouble from the fixture
    assert "HealthCheck" not in result.stdout.str() + result.stderr.str()
    html = (sample.path / "reports" / "gradcheck.html").read_text()
    assert "test_hyp_fail" in html
    junit = (sample.path / "junit.xml").read_text()
    assert '<property name="gradcheck[sign].verdict" value="fail" />' in junit
    assert '<property name="gradcheck[sign].max_rel_err" value="2.000e+00" />' in junit


def test_default_run_writes_no_files(sample: pytest.Pytester) -> None:
    result = sample.runpytest_inprocess("-k", "test_pass or test_fail or hyp")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["4 checks in 4 tests: 2 pass, 2 fail"])
    assert not (sample.path / "reports").exists()


def test_no_summary_without_gradcheck_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=1)
    assert "- gradcheck -" not in result.stdout.str()
    assert "checks in" not in result.stdout.str()


# ----------------------------------------------------------------------------- xdist


def test_xdist_gives_the_same_rows_as_a_serial_run(sample: pytest.Pytester) -> None:
    serial = sample.runpytest_subprocess("--gradcheck-json=serial.json")
    parallel = sample.runpytest_subprocess("--gradcheck-json=parallel.json", "-n", "2")
    assert serial.ret == parallel.ret == pytest.ExitCode.TESTS_FAILED
    parallel.assert_outcomes(passed=4, failed=3, errors=1)
    parallel.stdout.fnmatch_lines(["7 checks in 7 tests: 2 pass, 3 fail, 2 error"])
    rows = _comparable(_rows(sample.path / "serial.json"))
    assert len(rows) == 7
    assert _comparable(_rows(sample.path / "parallel.json")) == rows


def test_xdist_crashed_worker_is_a_no_result_row(sample: pytest.Pytester) -> None:
    sample.makepyfile(test_crash="import os\n\ndef test_crash(gradcheck):\n    os._exit(3)\n")
    result = sample.runpytest_inprocess("--gradcheck-json=out.json", "-n", "2")
    result.stdout.fnmatch_lines([
        "8 checks in 8 tests: 2 pass, 3 fail, 2 error, 1 no result",
        "  NO RESULT test_crash.py::test_crash: *crashed*",
    ])
    rows = _by_test(_rows(sample.path / "out.json"))
    assert rows["test_crash"]["verdict"] == "no result"
    assert len(rows) == 8  # every other row arrived


# ----------------------------------------------------------------------------- the marker


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("rtl=1e-3", "unknown key 'rtl' (did you mean 'rtol'?); keys are atol, jax_twin, mode, references, rtol, seed"),
        ("mode='fast'", "mode='fast': expected one of auto, full, directional"),
        ("references=('numeric', 'torch')", "references=('numeric', 'torch'): expected one or both of *"),
        ("references=()", "references=(): expected one or both of *"),
        ("rtol=-1.0", "rtol=-1.0: expected a non-negative float or {dtype: float}"),
        ("atol='small'", "atol='small': expected a non-negative float or {dtype: float}"),
        ("seed=True", "seed=True: expected a non-negative int"),
        ("seed=-3", "seed=-3: expected a non-negative int"),
        ("'full'", "takes keyword options only, got positional ('full',)*"),
    ],
    ids=["unknown-key", "mode", "references", "no-references", "rtol", "atol", "bool-seed",
         "negative-seed", "positional"],
)
def test_bad_marker_errors_the_test_with_a_readable_message(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(f"import pytest\n\n@pytest.mark.gradcheck({marker})\n"
                        "def test_it(gradcheck):\n    pass\n")
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*@pytest.mark.gradcheck on test_*.py::test_it: {message}"])
    assert "Traceback" not in result.stdout.str()


# ----------------------------------------------------------------------------- options


PRECEDENCE = COMMON + '''
def test_plain(gradcheck):
    p, x = case()
    gradcheck.check_grad(f, g, p, x, references=("numeric",))

@pytest.mark.gradcheck(seed=3, mode="full", references=("numeric",))
def test_marker(gradcheck):
    p, x = case()
    gradcheck.check_grad(f, g, p, x)

@pytest.mark.gradcheck(seed=3, mode="full", references=("numeric",))
def test_call(gradcheck):
    p, x = case()
    gradcheck.check_grad(f, g, p, x, seed=4, mode="directional")

@pytest.mark.gradcheck(seed=5)
class TestClass:
    @pytest.mark.gradcheck(seed=6, references=("numeric",))
    def test_closest_marker_wins(self, gradcheck):
        p, x = case()
        gradcheck.check_grad(f, g, p, x)
'''


@pytest.mark.parametrize(
    ("ini", "args", "plain"),
    [
        (None, (), (0, "auto")),
        ("gradcheck_seed = 1\ngradcheck_mode = full", (), (1, "full")),
        ("gradcheck_seed = 1\ngradcheck_mode = full", ("--gradcheck-seed=2", "--gradcheck-mode=directional"),
         (2, "directional")),
    ],
    ids=["default", "ini", "cli-over-ini"],
)
def test_precedence_call_marker_cli_ini_default(
    pytester: pytest.Pytester, ini: str | None, args: tuple[str, ...], plain: tuple[int, str]
) -> None:
    pytester.makepyfile(test_prec=PRECEDENCE)
    if ini is not None:
        pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest_inprocess("--gradcheck-json=out.json", *args)
    result.assert_outcomes(passed=4)
    rows = _by_test(_rows(pytester.path / "out.json"))
    got = {k: (r["seed"], r["options"]["mode"]) for k, r in rows.items()}
    assert got == {
        "test_plain": plain,
        "test_marker": (3, "full"),
        "test_call": (4, "directional"),
        "test_closest_marker_wins": (6, plain[1]),
    }


TOLERANCES = COMMON + '''
pytestmark = pytest.mark.gradcheck(references=("numeric",))

def test_plain(gradcheck):
    gradcheck.check_grad(f, g, *case())

@pytest.mark.gradcheck(rtol=1e-3, atol=1e-8)
def test_marker(gradcheck):
    gradcheck.check_grad(f, g, *case())

@pytest.mark.gradcheck(rtol=1e-3, atol=1e-8)
def test_call(gradcheck):
    gradcheck.check_grad(f, g, *case(), rtol=1e-2, atol=1e-7)

@pytest.mark.gradcheck(rtol={"float32": 1e-2})
def test_dtype_table(gradcheck):
    gradcheck.check_grad(f, g, *case())
'''


@pytest.mark.parametrize(
    ("ini", "args", "plain"),
    [
        (None, (), None),
        ("gradcheck_rtol = 1e-4\ngradcheck_atol = 1e-9", (), (1e-4, 1e-9)),
        ("gradcheck_rtol = 1e-4\ngradcheck_atol = 1e-9", ("--gradcheck-rtol=1e-5", "--gradcheck-atol=1e-10"),
         (1e-5, 1e-10)),
        (None, ("--gradcheck-rtol", "2e-6"), (2e-6, None)),
    ],
    ids=["default", "ini", "cli-over-ini", "cli-rtol-only"],
)
def test_tolerances_call_over_marker_over_cli_over_ini(
    pytester: pytest.Pytester, ini: str | None, args: tuple[str, ...], plain: tuple[float, float | None] | None
) -> None:
    pytester.makepyfile(test_tols=TOLERANCES)
    if ini is not None:
        pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest_inprocess("--gradcheck-json=out.json", *args)
    result.assert_outcomes(passed=4)
    rows = _by_test(_rows(pytester.path / "out.json"))
    # the tolerance each leaf was judged with, as the session JSON records it
    got = {k: (r["leaves"][0]["tolerance"]["rtol"], r["leaves"][0]["tolerance"]["atol"])
           for k, r in rows.items()}
    assert got["test_marker"] == (1e-3, 1e-8)
    assert got["test_call"] == (1e-2, 1e-7)
    # a marker's dtype table replaces the run-wide rtol: float64 falls back to gradcheck's table
    assert got["test_dtype_table"][0] == 5e-7
    if plain is None:  # gradcheck's own: float64's table rtol, an atol from the gradient's scale
        assert got["test_plain"][0] == 5e-7 and got["test_plain"][1] not in (1e-9, 1e-10)
    else:
        assert got["test_plain"][0] == plain[0]
        if plain[1] is not None:
            assert got["test_plain"][1] == plain[1]
        assert rows["test_plain"]["options"]["rtol"] == plain[0]
    assert rows["test_call"]["options"]["rtol"] == 1e-2


NUMPY_ONLY = '''
import numpy as np
import pytest


def f(p, x):
    return float(np.sum(np.tanh(np.dot(x, p["W"]))))


def g(p, x):
    y = np.tanh(x @ p["W"])
    return {"W": x.T @ (1 - y ** 2)}


def case():
    rng = np.random.default_rng(0)
    return {"W": rng.normal(size=(3, 2))}, rng.normal(size=(4, 3))


def test_plain(gradcheck):
    gradcheck.check_grad(f, g, *case())


@pytest.mark.gradcheck(jax_twin="auto")
def test_marker(gradcheck):
    gradcheck.check_grad(f, g, *case())
'''


@pytest.mark.parametrize(("ini", "args", "plain"), [
    (None, (), "twin"),
    ("gradcheck_jax_twin = off", (), "none"),
    ("gradcheck_jax_twin = off", ("--gradcheck-jax-twin=auto",), "twin"),
], ids=["default", "ini-off", "cli-over-ini"])
def test_the_jax_twin_is_set_once_for_a_project(
    pytester: pytest.Pytester, ini: str | None, args: tuple[str, ...], plain: str
) -> None:
    pytester.makepyfile(test_twin_setting=NUMPY_ONLY)
    if ini is not None:
        pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest_inprocess("--gradcheck-json=out.json", *args)
    result.assert_outcomes(passed=2)
    rows = _by_test(_rows(pytester.path / "out.json"))
    assert {k: r["jax_source"] for k, r in rows.items()} == {"test_plain": plain, "test_marker": "twin"}


def test_ini_report_paths_are_relative_to_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_prec=PRECEDENCE)
    pytester.makeini("[pytest]\ngradcheck_json = build/\n")
    result = pytester.runpytest_inprocess("-k", "plain")
    result.stdout.fnmatch_lines(["gradcheck JSON report: *build*gradcheck.json"])
    assert len(_rows(pytester.path / "build" / "gradcheck.json")) == 1


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (("--gradcheck-mode=fast",), "", "*--gradcheck-mode='fast' is not a gradcheck mode: choose one of auto, full, directional."),
        (("--gradcheck-mode=ful",), "", "*--gradcheck-mode='ful' is not a gradcheck mode (did you mean 'full'?)*"),
        ((), "gradcheck_mode = fast", "*gradcheck_mode (ini option in tox.ini)='fast' is not a gradcheck mode*"),
        (("--gradcheck-seed=-1",), "", "*--gradcheck-seed='-1': expected a non-negative integer seed."),
        (("--gradcheck-jax-twin=maybe",), "", "*--gradcheck-jax-twin='maybe': expected auto or off*"),
        (("--gradcheck-seed=abc",), "", "*--gradcheck-seed='abc': expected a non-negative integer seed."),
        (("--gradcheck-rtol=0",), "", "*--gradcheck-rtol='0': expected a positive float (the relative "
         "tolerance of every check, e.g. 1e-6)*"),
        (("--gradcheck-atol=small",), "", "*--gradcheck-atol='small': expected a positive float (the "
         "absolute tolerance of every check, e.g. 1e-12)*"),
        ((), "gradcheck_rtol = -1e-3", "*gradcheck_rtol (ini option in tox.ini)='-1e-3': expected a positive float*"),
        ((), "gradcheck_atol = nan", "*gradcheck_atol (ini option in tox.ini)='nan': expected a positive float*"),
        (("--gradcheck-json=r/x", "--gradcheck-html=r/x"), "",
         "*--gradcheck-json and --gradcheck-html both write to *x: give the JSON and the HTML report different paths."),
        (("--gradcheck-html=r.json",), "", "*--gradcheck-html='r.json' names a .json file for the HTML report*swapped?"),
    ],
    ids=["mode", "mode-typo", "ini-mode", "negative-seed", "jax-twin", "seed-not-int", "zero-rtol",
         "atol-word", "ini-negative-rtol", "ini-nan-atol", "same-path", "swapped"],
)
def test_bad_options_are_usage_errors(
    pytester: pytest.Pytester, args: tuple[str, ...], ini: str, message: str
) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


# ----------------------------------------------------------------------------- gradient flow


def test_gradient_flow_through_the_fixture_is_recorded(pytester: pytest.Pytester) -> None:
    pytester.makepyfile('''
import numpy as np
import reference.rnn

def test_flow(gradcheck):
    layer, params, x = reference.rnn.make_case(np.random.default_rng(0), T=4, spectral_scale=0.5)
    flow = gradcheck.gradient_flow(layer, params, x)
    assert flow.regime == "vanishing"
''')
    result = pytester.runpytest_inprocess("--gradcheck-json=out.json", "--gradcheck-seed=7")
    result.assert_outcomes(passed=1)
    (row,) = _rows(pytester.path / "out.json")
    assert row["kind"] == "gradient_flow" and row["verdict"] == "pass"
    assert row["flows"][0]["schema"] == "gradcheck.flow/1"
    assert row["flows"][0]["regime"] == "vanishing"


# ----------------------------------------------------------------------------- the other kinds

KINDS = '''
import numpy as np

rng = np.random.default_rng(0)
X = rng.normal(size=(5, 3))
P = {"W": rng.normal(size=(3, 2))}


def f(p):
    return np.tanh(X @ p["W"])


def f_jvp(p, t):
    return (1 - f(p) ** 2) * (X @ t["W"])


def loss(p):
    return 0.5 * np.sum(f(p) ** 2)


def loss_grad(p):
    y = f(p)
    return {"W": X.T @ (y * (1 - y ** 2))}


def loss_hvp(p, v):
    y = f(p)
    ry = (1 - y ** 2) * (X @ v["W"])
    return {"W": X.T @ (ry * (1 - y ** 2) - 2 * y * y * ry * 1)}


def losses(p, x):
    return 0.5 * np.sum(np.tanh(x @ p["W"]) ** 2, axis=1)


def per_example(p, x):
    y = np.tanh(x @ p["W"])
    return {"W": x[:, :, None] * (y * (1 - y ** 2))[:, None, :]}


def test_jvp(gradcheck):
    gradcheck.check_jvp(f, f_jvp, P)


def test_jvp_bug(gradcheck):
    gradcheck.check_jvp(f, lambda p, t: -f_jvp(p, t), P)


def test_hvp(gradcheck):
    gradcheck.check_hvp(loss, loss_hvp, P, grad=loss_grad)


def test_batched(gradcheck):
    gradcheck.check_batched(losses, per_example, P, X)


def test_batched_mean(gradcheck):
    gradcheck.check_batched(losses, lambda p, x: {"W": per_example(p, x)["W"] / 5}, P, X)


class Tanh:
    def forward(self, p, x):
        return np.tanh(x @ p["W"])

    def jvp(self, p, x, dp, dx):
        y = np.tanh(x @ p["W"])
        return (1 - y ** 2) * (x @ dp["W"] + dx @ p["W"].T)   # W for Wᵀ in the input term


def test_layer_jvp_bug(gradcheck):
    gradcheck.check_layer_jvp(Tanh(), {"W": np.eye(3) + 0.1 * np.arange(9.0).reshape(3, 3)}, X[:, :3])
'''


def test_jvp_hvp_and_batched_checks_are_rows_of_their_kind(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kinds=KINDS)
    result = pytester.runpytest_inprocess("--gradcheck-json=run.json", "-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=3)
    rows = _by_test(_rows(pytester.path / "run.json"))
    assert {t: (r["kind"], r["verdict"]) for t, r in rows.items()} == {
        "test_jvp": ("check_jvp", "pass"), "test_jvp_bug": ("check_jvp", "fail"),
        "test_hvp": ("check_hvp", "pass"), "test_batched": ("check_batched", "pass"),
        "test_batched_mean": ("check_batched", "fail"), "test_layer_jvp_bug": ("check_jvp", "fail"),
    }
    layer = rows["test_layer_jvp_bug"]
    assert layer["name"] == "Tanh" and [(lf["name"], lf["verdict"]) for lf in layer["leaves"]] == [
        ("W", "pass"), ("x", "fail")]
    assert rows["test_jvp_bug"]["leaves"][0]["diagnosis"]["kind"] == "sign_flip"
    assert any("mean/sum confusion" in n for n in rows["test_batched_mean"]["notes"])
    out = result.stdout.str()
    assert "blame: the hand-derived JVP" in out and "per-example dℓ_b/dW" in out
