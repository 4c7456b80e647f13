"""The zoo's gradient-flow methods: initial_state, state_step and readout unroll to the forward.

``gradcheck.gradient_flow`` builds its cell from these methods (reference never imports gradcheck),
so they must describe exactly the layer the hand BPTT differentiates.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference.gru
import reference.lstm
import reference.rnn

LAYERS = {
    "rnn-tanh": lambda rng: reference.rnn.make_case(rng, T=5, H=4),
    "rnn-relu": lambda rng: reference.rnn.make_case(rng, T=5, H=4, activation="relu"),
    "lstm": lambda rng: reference.lstm.make_case(rng, T=5, H=4),
    "gru": lambda rng: reference.gru.make_case(rng, T=5, H=4),
}


def _unroll(layer: Any, params: Any, x: Any) -> Any:
    """``y_t = readout(state_step(... initial_state ...))``, in the namespace of the arrays."""
    xp = x.__array_namespace__()
    s, ys = layer.initial_state(params, x.shape[1]), []
    for t in range(x.shape[0]):
        s = layer.state_step(params, s, x[t])
        ys.append(layer.readout(params, s))
    return xp.stack(ys)


@pytest.mark.parametrize("make", LAYERS.values(), ids=LAYERS.keys())
def test_the_flow_methods_unroll_to_the_forward_in_numpy(make: Any) -> None:
    layer, params, x = make(np.random.default_rng(0))
    np.testing.assert_array_equal(_unroll(layer, params, x), layer.forward(params, x))


@pytest.mark.parametrize("make", LAYERS.values(), ids=LAYERS.keys())
def test_the_flow_methods_trace_under_jax(make: Any) -> None:
    layer, params, x = make(np.random.default_rng(1))
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v) for k, v in params.items()}
        y = _unroll(layer, p, jnp.asarray(x))
        assert isinstance(y, jax.Array)
        np.testing.assert_allclose(np.asarray(y), layer.forward(params, x), rtol=1e-12, atol=1e-14)
        # and differentiate: the hand BPTT is the gradient of Σ ⟨dy, y⟩ through these methods
        dy = np.random.default_rng(2).standard_normal(np.shape(y))
        g = jax.grad(lambda q: jnp.sum(_unroll(layer, q, jnp.asarray(x)) * dy))(p)
    hand = layer.bptt(params, x, dy)[0]
    for key in params:
        np.testing.assert_allclose(np.asarray(g[key]), hand[key], rtol=1e-9, atol=1e-12, err_msg=key)


def test_the_lstm_state_is_h_then_c_and_the_deltas_cover_h() -> None:
    layer, params, x = reference.lstm.make_case(np.random.default_rng(3), T=3, H=4)
    H = layer.observed_width(params)
    assert H == 4
    s = layer.initial_state(params, 2)
    assert s.shape == (2, 2 * H)
    np.testing.assert_array_equal(s[:, :H], np.broadcast_to(params["h0"], (2, H)))
    np.testing.assert_array_equal(s[:, H:], np.broadcast_to(params["c0"], (2, H)))
    h, c = layer.cell_forward(params, s[:, :H], s[:, H:], x[0, :2])
    np.testing.assert_array_equal(layer.state_step(params, s, x[0, :2]), np.concatenate([h, c], axis=1))
    deltas = layer.bptt(params, x, np.ones((3, x.shape[1], params["Wy"].shape[1])))[2]
    assert deltas.shape[-1] == H


def test_with_truncation_is_a_copy_with_truncated_bptt() -> None:
    layer, params, x = reference.rnn.make_case(np.random.default_rng(4), T=6, activation="sigmoid")
    dy = np.random.default_rng(5).standard_normal((6, x.shape[1], 2))
    short = layer.with_truncation(2)
    assert short == reference.rnn.ElmanRNN("sigmoid", truncation=2) and layer.truncation is None
    assert short.with_truncation(None) == layer
    full, cut = layer.bptt(params, x, dy)[0], short.bptt(params, x, dy)[0]
    np.testing.assert_allclose(layer.with_truncation(6).bptt(params, x, dy)[0]["U"], full["U"], rtol=1e-12)
    assert not np.allclose(cut["U"], full["U"])
    with pytest.raises(ValueError, match="truncation"):
        layer.with_truncation(0)


def test_the_elman_rnn_names_its_recurrent_matrix() -> None:
    layer = reference.rnn.ElmanRNN("relu")
    assert (layer.activation, layer.recurrent_key) == ("relu", "U")
    assert "recurrent_key" not in {f.name for f in dataclasses.fields(layer)}
