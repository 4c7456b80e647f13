"""The engine in the exploding regime: a correct hand BPTT is never blamed.

Finite differences lose accuracy as gradients grow (the step's truncation error grows with the
curvature); the error bars must grow with them, so a correct BPTT through a recurrent matrix with
σ_max = 3 over 50 steps passes — with the complex step, with real central differences only, and
with finite differences as the only reference.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcheck as gc
from reference import rnn

VARIANTS = [
    pytest.param({}, id="all-references"),
    pytest.param({"complex_step": False}, id="central-differences"),
    pytest.param({"complex_step": False, "references": "numeric", "mode": "full"}, id="numeric-only"),
]


def _identity_relu(T: int = 30, gain: float = 1.5) -> tuple:
    """Identity-initialised ReLU RNN (Le et al. 2015) scaled by ``gain``, positive states: every
    unit is active, so ∂h_t/∂h_{t-1} = gain·I and gradients grow by gain per step."""
    layer, params, x = rnn.make_case(np.random.default_rng(0), T=T, B=2, D=3, H=8, K=2,
                                     activation="relu")
    params = {**params, "U": gain * np.eye(8), "b": np.abs(params["b"]) + 0.5,
              "h0": np.abs(params["h0"]) + 0.1}
    return layer, params, 0.01 * x


def _tanh_sigma3() -> tuple:
    return rnn.make_case(np.random.default_rng(0), T=50, B=2, D=3, H=8, K=2, activation="tanh",
                         spectral_scale=3.0)


@pytest.mark.parametrize("options", VARIANTS)
@pytest.mark.parametrize("case", [_tanh_sigma3, _identity_relu], ids=["tanh-sigma3-T50", "identity-relu-1.5"])
def test_correct_bptt_in_an_exploding_configuration_is_not_blamed(options: dict, case) -> None:
    layer, params, x = case()
    res = gc.check_layer(layer, params, x, **options)
    assert not [leaf.name for leaf in res.leaves if leaf.blame == "hand"], res.message()
    assert res.verdict == "pass", res.message()


def test_the_relu_configuration_really_explodes() -> None:
    """Guard for the test above: the identity ReLU case grows by 1.5 per step (1.5^29 ≈ 1.3e5)."""
    layer, params, x = _identity_relu()
    flow = gc.gradient_flow(layer, params, x)
    assert flow.regime == "exploding" and flow.slope == pytest.approx(np.log(1.5), rel=1e-6)
    assert flow.hand_norms[0] / flow.hand_norms[-1] > 1e5


def test_the_exploding_regime_is_measured_and_labelled() -> None:
    layer, params, x = _identity_relu()
    res = gc.check_layer(layer, params, x, complex_step=False)
    assert res.regime == "exploding" and res.growth > 1e3
    note = next(n for n in res.notes if n.startswith("exploding regime: numeric reference unreliable"))
    assert "grows ×" in note and "autodiff is the reference" in note
    assert res.to_dict()["regime"] == "exploding"
    numeric_only = gc.check_layer(layer, params, x, complex_step=False, references="numeric")
    assert numeric_only.regime == "exploding"
    assert any("finite differences alone" in n for n in numeric_only.notes)


def test_a_vanishing_configuration_is_not_labelled_exploding() -> None:
    layer, params, x = rnn.make_case(np.random.default_rng(0), T=30, B=2, D=3, H=8, K=2,
                                     activation="tanh", spectral_scale=0.5)
    res = gc.check_layer(layer, params, x)
    assert res.passed and res.regime is None and res.growth < 10


@pytest.mark.parametrize("references", ["numeric", ("numeric", "autodiff")])
def test_wrong_bptt_in_the_exploding_regime_is_still_caught(references: object) -> None:
    """The widened error bars do not hide a real bug: a recurrent-matrix gradient 0.1 % too
    large (a scale slip in a BPTT) still fails, blamed on the hand."""
    layer, params, x = _identity_relu()

    class Wrong:
        def forward(self, p, x):
            return layer.forward(p, x)

        def backward(self, p, x, dy):
            dp, dx = layer.backward(p, x, dy)
            dp = dict(dp)
            dp["U"] = dp["U"] * (1 + 1e-3)
            return dp, dx

    res = gc.check_layer(Wrong(), params, x, complex_step=False, references=references)
    assert res.regime == "exploding"
    assert res.leaf("U").verdict == "fail" and res.leaf("U").blame == "hand", res.message()
    assert res.leaf("W").passed
