"""Low-precision hand gradients: a wrong formula hides under float32's and float16's rounding
tolerance no longer.

Before, a 5e-4 relative error in one entry of a float32 MLP, RNN, LSTM, GRU or dense gradient
passed (rtol 2e-3), and a 1 % (often 5 %) error in float16 did too.  Now a passing float16/32
hand gradient is recomputed by the same backward on float64 inputs and that recomputation judged
on the same evidence at the confirmation tolerance: a wrong formula is wrong in float64 too.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest

import gradcheck as gc
from reference import dense, gru, lstm, mlp, rnn

FAMILIES = [(mlp, "W0"), (rnn, "U"), (lstm, "Wh"), (gru, "Un"), (dense, "W")]


class Planted:
    """A zoo layer whose backward is off by ``rel`` (relative) at the largest entry of ``key``."""

    def __init__(self, layer: Any, key: str, rel: float) -> None:
        self.layer, self.key, self.rel = layer, key, rel

    def forward(self, p: Any, x: Any) -> Any:
        return self.layer.forward(p, x)

    def backward(self, p: Any, x: Any, dy: Any) -> Any:
        dp, dx = self.layer.backward(p, x, dy)
        g = np.array(dp[self.key], copy=True)
        i = np.unravel_index(np.argmax(np.abs(g)), g.shape)
        g[i] *= 1 + self.rel
        return {**dp, self.key: g}, dx


@pytest.mark.parametrize(("dtype", "rel"), [(np.float32, 5e-4), (np.float32, 1e-4),
                                             (np.float16, 5e-2), (np.float16, 1e-2)])
@pytest.mark.parametrize(("family", "key"), FAMILIES, ids=[m.__name__.split(".")[-1] for m, _ in FAMILIES])
def test_a_small_error_in_a_low_precision_gradient_is_caught(
    family: ModuleType, key: str, dtype: Any, rel: float
) -> None:
    layer, params, x = family.make_case(np.random.default_rng(0), dtype=dtype)
    assert gc.check_layer(layer, params, x).verdict == "pass"
    res = gc.check_layer(Planted(layer, key, rel), params, x)
    leaf = res.leaf(key)
    assert (res.verdict, leaf.blame) == ("fail", "hand"), res
    if rel < gc.tolerance(dtype):  # under the dtype's own rtol: only the float64 run shows it
        assert any("the same backward run in float64 is wrong" in n for n in leaf.notes)
    assert [leaf.name for leaf in res.failures] == [key]


class Float32Inside:
    """A correct dense backward that keeps float32 buffers whatever its inputs (a char-RNN with
    ``np.zeros(..., dtype=np.float32)`` state): its float64 run is only float32-accurate."""

    def forward(self, p: Any, x: Any) -> Any:
        return x @ p["W"]

    def backward(self, p: Any, x: Any, dy: Any) -> Any:
        buf = np.zeros(p["W"].shape, dtype=np.float32)
        buf += np.asarray(x, np.float32).T @ np.asarray(dy, np.float32)
        return {"W": buf * np.ones_like(p["W"])}, (np.asarray(dy, np.float32) @ np.asarray(p["W"], np.float32).T) * np.ones_like(x)


class OwnDtypeOnly:
    """A correct backward that refuses any dtype but float32 (the ladder cannot recompute it)."""

    def forward(self, p: Any, x: Any) -> Any:
        return x @ p["W"]

    def backward(self, p: Any, x: Any, dy: Any) -> Any:
        if p["W"].dtype != np.float32:
            raise TypeError("float32 only")
        return {"W": x.T @ dy}, dy @ p["W"].T


@pytest.mark.parametrize("layer", [Float32Inside(), OwnDtypeOnly()], ids=["float32-buffers", "own-dtype"])
@pytest.mark.parametrize("seed", range(5))
def test_correct_float32_backwards_that_cannot_be_recomputed_exactly_still_pass(layer: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    params = {"W": rng.normal(size=(12, 7)).astype(np.float32)}
    x = rng.normal(size=(9, 12)).astype(np.float32)
    res = gc.check_layer(layer, params, x)
    assert res.verdict == "pass", res


def test_an_rtol_override_keeps_the_users_tolerance() -> None:
    layer, params, x = dense.make_case(np.random.default_rng(0), dtype=np.float32)
    res = gc.check_layer(Planted(layer, "W", 5e-4), params, x, rtol=1e-2)
    assert res.verdict == "pass"
