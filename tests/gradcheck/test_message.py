"""message.py: the mismatch message, rendered from the result records."""

from __future__ import annotations

import numpy as np
import pytest

import gradcheck as gc
from gradcheck.message import mismatch_text

# --------------------------------------------------------------------------- format_mismatch


def _loss(p: dict[str, np.ndarray]) -> float:
    return float(0.5 * np.sum(p["W"] ** 2) + np.sum(np.sin(p["W"])) + np.sum(p["b"] ** 3))


def _buggy_grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    gb = 3 * p["b"] ** 2
    gb[2] += 1.0  # one wrong entry
    return {"W": -(p["W"] + np.cos(p["W"])), "b": gb}  # W: a sign flip


@pytest.fixture(scope="module")
def failing() -> gc.CheckResult:
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((50, 50)), "b": rng.standard_normal(5)}
    return gc.check_grad(_loss, _buggy_grad, params, references=("numeric",), seed=7, name="planted")


def test_format_mismatch_names_what_where_and_who(failing: gc.CheckResult) -> None:
    assert failing.verdict == "fail"
    msg = mismatch_text(failing.to_dict())
    assert msg == failing.message()
    assert msg.startswith("check_grad 'planted': fail")
    # W is wrong almost everywhere: the check stops at its seeded sample of 16 entries
    assert "dL/dW (float64, shape (50, 50)): 16 of 16 measured elements (of 2500) outside rtol=5e-07" in msg
    assert "dL/db (float64, shape (5,)): 1 of 5 elements outside rtol=5e-07" in msg
    assert "worst at [" in msg
    assert "worst at [2]: hand=" in msg
    assert "diagnosis: sign flip" in msg
    assert "diagnosis: 1 wrong entry at [2]" in msg
    assert msg.count("blame: the hand-derived backward") == 2
    assert "Check the sign of the W term" in msg
    assert msg.count("reproduce with seed=7") == 2
    assert "two sources only: hand against numeric" in msg


def test_format_mismatch_never_dumps_the_array(failing: gc.CheckResult) -> None:
    msg = failing.message()
    blocks = msg.split("\ndL/d")[1:]
    assert len(blocks) == 2
    for block in blocks:
        assert len(block.splitlines()) < 20
        assert block.count("worst at") <= 5
    assert len(msg.splitlines()) < 40
    assert "[[" not in msg  # no numpy array repr


def test_format_mismatch_skips_passing_leaves() -> None:
    rng = np.random.default_rng(1)
    params = {"W": rng.standard_normal((3, 3)), "b": rng.standard_normal(4)}

    def grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"W": p["W"] + np.cos(p["W"]), "b": -3 * p["b"] ** 2}

    res = gc.check_grad(_loss, grad, params, references=("numeric",), seed=3)
    msg = mismatch_text(res.to_dict())
    assert "dL/db" in msg and "dL/dW" not in msg
    assert "diagnosis: sign flip" in msg
    assert "reproduce with seed=3" in msg
