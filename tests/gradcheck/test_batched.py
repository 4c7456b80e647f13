"""batched.py: check_batched checks per-example gradients and names the per-example bugs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc

Batch = tuple[np.ndarray, np.ndarray]


def losses(p: dict[str, np.ndarray], batch: Batch) -> np.ndarray:
    x, y = batch
    return 0.5 * (np.tanh(x @ p["W"]) @ p["v"] - y) ** 2


def per_example(p: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
    x, y = batch
    h = np.tanh(x @ p["W"])
    r = h @ p["v"] - y
    dh = r[:, None] * p["v"][None, :] * (1 - h ** 2)
    return {"W": x[:, :, None] * dh[:, None, :], "v": r[:, None] * h}


def _case(seed: int, B: int, dtype: Any = np.float64) -> tuple[dict[str, np.ndarray], Batch]:
    rng = np.random.default_rng(seed)
    p = {"W": rng.standard_normal((3, 4)).astype(dtype), "v": rng.standard_normal(4).astype(dtype)}
    return p, (rng.standard_normal((B, 3)).astype(dtype), rng.standard_normal(B).astype(dtype))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), B=st.integers(1, 6), dtype=st.sampled_from([np.float64, np.float32]))
def test_correct_per_example_gradients_pass(seed: int, B: int, dtype: Any) -> None:
    p, batch = _case(seed, B, dtype)
    res = gc.check_batched(losses, per_example, p, batch)
    assert res.passed, res.message()
    assert res.kind == "check_batched"
    assert [(leaf.name, leaf.shape) for leaf in res.leaves] == [("W", (B, 3, 4)), ("v", (B, 4))]
    assert not any("leak" in n or "disagrees" in n for n in res.notes)


@pytest.mark.parametrize("example", [0, 3])
def test_one_wrong_example_is_named_by_its_index(example: int) -> None:
    p, batch = _case(1, 5)

    def wrong(p: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
        g = per_example(p, batch)
        g["v"][example] *= -1
        return g

    res = gc.check_batched(losses, wrong, p, batch)
    v = res.leaf("v")
    assert (res.verdict, v.blame) == ("fail", "hand") and res.leaf("W").passed
    assert {e.index[0] for e in v.worst if e.status == "hand"} == {example}
    assert any("the sum over examples disagrees with the batch gradient" in n for n in res.notes)


def test_a_mean_over_the_batch_is_named_a_mean_sum_confusion() -> None:
    p, batch = _case(2, 4)
    res = gc.check_batched(losses, lambda p, b: {k: g / 4 for k, g in per_example(p, b).items()}, p, batch)
    assert res.verdict == "fail"
    assert any("mean/sum confusion" in n and "1/B = 1/4" in n for n in res.notes)


def test_the_batch_gradient_copied_to_every_example_is_named() -> None:
    p, batch = _case(3, 4)

    def copied(p: dict[str, np.ndarray], b: Batch) -> dict[str, np.ndarray]:
        return {k: np.repeat(g.sum(0, keepdims=True), 4, axis=0) for k, g in per_example(p, b).items()}

    res = gc.check_batched(losses, copied, p, batch)
    assert res.verdict == "fail" and any("every example has the same gradient" in n for n in res.notes)


def test_a_wrong_batch_axis_is_named() -> None:
    p, batch = _case(4, 5)

    def moved(p: dict[str, np.ndarray], b: Batch) -> dict[str, np.ndarray]:
        g = per_example(p, b)
        return {"W": np.moveaxis(g["W"], 0, 2), "v": g["v"]}

    with pytest.raises(gc.GradientStructureError, match=r"batch axis \(5 examples\) is axis 2"):
        gc.check_batched(losses, moved, p, batch)


def test_examples_leaking_through_a_batch_statistic_are_named() -> None:
    def normalised(p: dict[str, np.ndarray], batch: Batch) -> np.ndarray:
        x, y = batch
        z = x @ p["W"]
        z = (z - z.mean(0)) / (z.std(0) + 1e-3)  # a batch norm: each loss depends on every example
        return 0.5 * (np.tanh(z) @ p["v"] - y) ** 2

    p, batch = _case(5, 6)
    res = gc.check_batched(normalised, per_example, p, batch)
    assert any(n.startswith("examples leak into each other") for n in res.notes)
    assert res.verdict == "fail"  # these per-example gradients ignore the batch norm


def test_targets_beside_the_batch_are_pointed_at() -> None:
    p, (x, y) = _case(6, 5)

    def split(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return losses(p, (x, y))

    res = gc.check_batched(split, lambda p, x, y: per_example(p, (x, y)), p, x, y)
    leak = [n for n in res.notes if "leak" in n]
    assert leak and "args[0] holds per-example values" in leak[0] and "batch=(x, y)" in leak[0]


def test_a_scalar_loss_is_refused() -> None:
    p, batch = _case(7, 3)
    with pytest.raises(gc.InvalidArgument, match="per-example losses"):
        gc.check_batched(lambda p, b: np.mean(losses(p, b)), per_example, p, batch)
