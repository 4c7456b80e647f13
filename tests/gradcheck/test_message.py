"""message.py: the mismatch message, rendered from the result records."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradcheck as gc
from gradcheck.message import advice, blame_text, mismatch_text

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


# --------------------------------------------------------------------------- hints hold for the data


def _quad(p: dict[str, np.ndarray]) -> float:
    return float(np.sum(np.sin(p["W"])) + np.sum(p["b"] ** 2))


def _quad_grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"W": np.cos(p["W"]), "b": 2 * p["b"]}


def _planted(W_shape: tuple[int, ...], b_size: int, plant: Any, **options: Any) -> gc.CheckResult:
    rng = np.random.default_rng(4)
    params = {"W": rng.standard_normal(W_shape), "b": rng.standard_normal(b_size)}

    def grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = _quad_grad(p)
        plant(g)
        return g

    return gc.check_grad(_quad, grad, params, references=("numeric",), jax_twin=False, seed=2,
                         **options)


def _scatter(g: dict[str, np.ndarray]) -> None:
    """36 of 48 entries of W wrong, every row and column touched."""
    flat = g["W"].reshape(-1)
    flat[np.random.default_rng(0).permutation(48)[:36]] += 1.0


def test_many_wrong_entries_are_not_called_a_few() -> None:
    res = _planted((6, 8), 3, _scatter, mode="full")  # every entry measured: no early stop
    W = res.leaf("W").to_dict()
    assert W["n_mismatched"] == 36 and W["diagnosis"]["kind"] == "scattered"
    text = advice(W)
    assert "36 of 48 entries of W are wrong" in text and "few" not in text
    assert "Only a few" not in res.message()


def test_a_few_wrong_entries_say_how_many_and_where() -> None:
    def two(g: dict[str, np.ndarray]) -> None:
        g["W"][1, 2] += 1.0
        g["W"][4, 0] -= 1.0

    res = _planted((6, 8), 3, two)
    text = advice(res.leaf("W").to_dict())
    assert text.startswith("Only 2 of 48 entries of W are wrong ([1, 2], [4, 0])")


def test_a_one_entry_tensor_is_not_a_constant_factor() -> None:
    def half(g: dict[str, np.ndarray]) -> None:
        g["b"] *= 0.5

    res = _planted((2, 2), 1, half)
    b = res.leaf("b").to_dict()
    assert b["verdict"] == "fail" and b["diagnosis"]["kind"] == "single"
    msg = res.message()
    assert "constant factor" not in msg
    assert "0.5 × the reference" in msg and "b has one entry and it is wrong" in msg


def test_a_time_step_hint_names_the_steps_it_found() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 2, 3))

    def loss(p: dict[str, np.ndarray]) -> float:
        return float(np.sum(np.tanh(p["x"])))

    def grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = 1 - np.tanh(p["x"]) ** 2
        g[4] *= 3.0  # step 4 only
        return {"x": g}

    res = gc.check_grad(loss, grad, {"x": x}, references=("numeric",), jax_twin=False, time_axis=0)
    leaf = res.leaf("x").to_dict()
    assert leaf["diagnosis"]["kind"] == "time_steps"
    assert "Check time step 4 of the BPTT loop for x (axis 0)" in advice(leaf)
    assert "first/last" not in res.message()


def test_blame_text_and_advice_for_a_passing_leaf() -> None:
    res = _planted((2, 2), 2, lambda g: None)
    assert res.passed
    assert advice(res.leaf("W").to_dict()) == ""
    assert blame_text(None) == "none"
    assert blame_text("hand").startswith("the hand-derived backward")


def test_an_autodiff_led_diagnosis_counts_every_wrong_entry() -> None:
    """With autodiff every entry is compared, though finite differences measured only a sample:
    the diagnosis counts the same wrong entries as the leaf (512 of 512, not the sampled 148)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32))

    def f(p: dict[str, np.ndarray]) -> Any:
        return np.tanh(x @ p["W"])

    def wrong(p: dict[str, np.ndarray], t: dict[str, np.ndarray]) -> Any:
        return (1 - f(p)) * (x @ t["W"])  # 1 − y for 1 − y²: every column wrong

    W = gc.check_jvp(f, wrong, {"W": 0.17 * rng.standard_normal((32, 16))}).leaf("W")
    assert W.n_mismatched == 512 and W.diagnosis is not None
    assert W.diagnosis.kind == "widespread" and "148" not in W.diagnosis.summary
