"""What a failing gradient check looks like in pytest: a traceback that ends at the test's own
line with the ``GradientMismatch`` message, and a one-line ``CheckResult`` repr in assertions.

Sample checks use ``references=("numeric",)`` so that no subprocess imports JAX.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import gradcheck as gc

pytest_plugins = ("pytester",)

FAILING = '''
import numpy as np
import pytest
import gradcheck as gc

pytestmark = pytest.mark.gradcheck(references=("numeric",))

def f(p, x):
    return float(np.sum(np.tanh(x @ p["W"]) ** 2))

def g_bad(p, x):
    t = np.tanh(x @ p["W"])
    return {"W": -(x.T @ (2 * t * (1 - t ** 2)))}

class Linear:
    def forward(self, p, x):
        return x @ p["W"]

    def backward(self, p, x, dy):
        return {"W": -(x.T @ dy)}, dy @ p["W"].T

def case():
    rng = np.random.default_rng(0)
    return {"W": rng.normal(size=(3, 2))}, rng.normal(size=(4, 3))

def test_grad(gradcheck):
    p, x = case()
    gradcheck.check_grad(f, g_bad, p, x, name="sign")  # the grad line

def test_layer(gradcheck):
    p, x = case()
    gradcheck.check_layer(Linear(), p, x, name="lin")  # the layer line

def test_raise_for_failure():
    p, x = case()
    gc.check_grad(f, g_bad, p, x, references=("numeric",)).raise_for_failure()  # the raise line

def test_assert_passed(gradcheck):
    p, x = case()
    res = gradcheck.record(gc.check_grad(f, g_bad, p, x, references=("numeric",), name="dense"))
    assert res.passed
'''

#: A frame of gradcheck's own code in a traceback: ``.../gradcheck/session/recorder.py:83: ...``.
_GRADCHECK_FRAME = re.compile(r"gradcheck[/\\][\w/\\]*\.py:\d+")


def _sections(text: str) -> dict[str, str]:
    """The failure section of each test in pytest's output, by test name."""
    failures = text.split("= FAILURES =", 1)[1]
    failures = re.split(r"\n-+ gradcheck -+\n|\n=+ short test summary", failures)[0]
    parts = re.split(r"\n_{3,} (\w+) _{3,}\n", failures)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.fixture
def failing(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_failing=FAILING)
    return pytester


def test_a_mismatch_traceback_ends_at_the_test_line_with_the_message(failing: pytest.Pytester) -> None:
    result = failing.runpytest_inprocess()
    result.assert_outcomes(failed=4)
    sections = _sections(result.stdout.str())
    for test, line in [("test_grad", "# the grad line"), ("test_layer", "# the layer line"),
                       ("test_raise_for_failure", "# the raise line")]:
        section = sections[test]
        assert not _GRADCHECK_FRAME.search(section), section  # no plugin, check or result frames
        # the only frame is the test's, its failing line marked, the mismatch right below it
        marked = rf"\n>\s+.*{line}\n(?:\s+\^+\n)?E\s+gradcheck\.errors\.GradientMismatch: "
        assert re.search(marked, section), section
        assert re.search(r"\ntest_failing\.py:\d+: GradientMismatch\s*$", section), section
        assert len(re.findall(r"(?m)^\S+\.py:\d+: ", section)) == 1, section  # one frame
        assert "dL/dW (float64, shape (3, 2))" in section  # the leaf
        assert re.search(r"E\s+worst at \[\d+, \d+\]: hand=", section)  # the worst index
        assert "diagnosis: sign flip" in section


def test_the_frame_check_sees_gradcheck_frames_when_they_are_not_hidden(failing: pytest.Pytester) -> None:
    # --full-trace shows hidden frames too: the pattern above would have caught them
    result = failing.runpytest_inprocess("--full-trace", "-k", "test_grad or test_raise")
    result.assert_outcomes(failed=2)
    sections = _sections(result.stdout.str())
    frames = {test: _GRADCHECK_FRAME.findall(sections[test]) for test in sections}
    assert any("recorder.py" in frame for frame in frames["test_grad"]), frames
    assert any("result.py" in frame for frame in frames["test_raise_for_failure"]), frames


def test_assert_passed_shows_the_short_repr(failing: pytest.Pytester) -> None:
    result = failing.runpytest_inprocess("-k", "test_assert_passed")
    result.assert_outcomes(failed=1)
    section = _sections(result.stdout.str())["test_assert_passed"]
    assert "+  where False = <CheckResult 'dense': fail — W: fail (hand: sign flip)>.passed" in section
    assert "CheckResult(" not in section and "LeafResult(" not in section


# ----------------------------------------------------------------------------- the repr itself


def _f(p: dict[str, np.ndarray], x: np.ndarray) -> float:
    return float(np.sum(np.tanh(x @ p["W"]) ** 2) + np.sum(p["b"] ** 2))


def _g(p: dict[str, np.ndarray], x: np.ndarray, *, flip: float = 1.0) -> dict[str, np.ndarray]:
    t = np.tanh(x @ p["W"])
    return {"W": flip * (x.T @ (2 * t * (1 - t**2))), "b": 2 * p["b"]}


def _case(**more: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    return {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2), **more}, rng.normal(size=(4, 3))


def test_repr_is_one_short_line_naming_each_tensor() -> None:
    p, x = _case()
    bad = gc.check_grad(_f, lambda p, x: _g(p, x, flip=-1.0), p, x, references=("numeric",), name="dense")
    assert repr(bad) == "<CheckResult 'dense': fail — W: fail (hand: sign flip), b: pass>"
    good = gc.check_grad(_f, _g, p, x, references=("numeric",), name="dense")
    assert repr(good) == "<CheckResult 'dense': pass — W: pass, b: pass>"
    assert str(bad).startswith("check_grad 'dense': fail (2 tensors")  # str is still the message


def test_repr_of_many_tensors_names_the_failures_first_and_counts_the_rest() -> None:
    extra = {f"u{i}": np.full(2, 0.5 + i) for i in range(4)}
    p, x = _case(**extra)

    def f(p: dict[str, np.ndarray], x: np.ndarray) -> float:
        return _f(p, x) + sum(float(np.sum(p[k] ** 2)) for k in extra)

    def g(p: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
        return {**_g(p, x), **{k: 2 * p[k] for k in extra}, "b": -2 * p["b"]}

    res = gc.check_grad(f, g, p, x, references=("numeric",), name="many")
    text = repr(res)
    assert text.startswith("<CheckResult 'many': fail — b: fail (hand: sign flip), ")
    assert text.endswith(", +2 more>") and text.count(": pass") == 3
    assert len(text) < 240  # pytest's saferepr would cut a longer one
