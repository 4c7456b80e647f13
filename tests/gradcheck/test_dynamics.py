"""gradcheck.dynamics: gradient flow through time and depth, Pascanu's bound, truncation, clipping."""

from __future__ import annotations

import json
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import reference.clipping
import reference.gru
import reference.lstm
import reference.mlp
import reference.rnn
from gradcheck.dynamics import (
    FLOW_SCHEMA_VERSION,
    Cell,
    FlowResult,
    gradient_flow,
    log_slope,
    pascanu_eta,
)
from gradcheck.errors import InvalidArgument
from gradcheck.strategies import RecurrentConfig, recurrent_configs

SLACK = 1e-9  # relative rounding slack on the η^(t−k) bound (float64 products of ≤ 12 matrices)


def _flow(cfg: RecurrentConfig) -> tuple[FlowResult, Any, Any, Any]:
    layer, params, x = cfg.case(batch=2)
    return gradient_flow(layer, params, x), layer, params, x


# ----------------------------------------------------------------------------- properties


@settings(max_examples=15, deadline=None)
@given(cfg=recurrent_configs())
def test_recurrent_flow_properties(cfg: RecurrentConfig) -> None:
    """One flow per example (JAX compiles per shape, so each example is costly); four properties."""
    flow, *_ = _flow(cfg)
    T = cfg.length
    k, t = np.triu_indices(T)
    measured = flow.spans[k, t]
    bound = flow.eta ** (t - k).astype(float)
    # 1. ‖∂h_t/∂h_k‖ ≤ η^(t−k), in particular whenever η < 1 (the sufficient condition for vanishing)
    assert np.all(measured <= bound * (1 + SLACK) + 1e-300), (flow.eta, measured - bound)
    assert np.all(flow.local_sigma <= flow.eta * (1 + SLACK))
    if flow.eta < 1:
        assert flow.regime == "vanishing"
    # 2. measured growth of some span only ever occurs with η > 1 (the necessary condition)
    if np.any(measured[t > k] > 1 + SLACK):
        assert flow.eta > 1
    # 3. hand BPTT and JAX per-step norms agree in float64
    assert flow.hand_norms.shape == flow.autodiff_norms.shape == (T,)
    np.testing.assert_allclose(flow.hand_norms, flow.autodiff_norms, rtol=1e-8, atol=0)
    assert float(np.max(flow.rel_err)) <= 1e-8 and flow.agree
    # 4. τ ≥ T truncation is full BPTT
    assert flow.truncation_errors.shape == (T,)
    assert flow.truncation_errors[-1] <= 1e-12
    assert flow.min_truncation is not None and 1 <= flow.min_truncation <= T


# ----------------------------------------------------------------------------- classification


def test_tanh_with_small_spectral_scale_is_vanishing() -> None:
    layer, params, x = reference.rnn.make_case(np.random.default_rng(1), T=12, B=2, H=6, spectral_scale=0.5)
    flow = gradient_flow(layer, params, x)
    assert flow.regime == "vanishing"
    assert math.isclose(flow.eta, 0.5) and flow.gamma == 1.0
    assert flow.slope < -0.5  # decays by more than e^-0.5 per step back
    assert "sufficient" in flow.reasons[0]


def _identity_relu(scale: float, T: int = 10, H: int = 4) -> tuple[Any, dict[str, Any], Any]:
    """An identity-initialised ReLU RNN with positive drive: every unit stays active."""
    layer, params, x = reference.rnn.make_case(np.random.default_rng(0), T=T, B=2, H=H, activation="relu")
    params = {**params, "U": scale * np.eye(H), "V": np.abs(params["V"]),
              "b": np.abs(params["b"]) + 0.1, "h0": np.abs(params["h0"])}
    return layer, params, np.abs(x)


def test_identity_relu_with_scale_above_one_is_exploding() -> None:
    layer, params, x = _identity_relu(1.5)
    flow = gradient_flow(layer, params, x)
    assert flow.regime == "exploding"
    assert flow.slope == pytest.approx(math.log(1.5), rel=1e-9)  # ∂L/∂h_t grows ×1.5 per step back
    np.testing.assert_allclose(flow.local_sigma, 1.5)
    assert flow.saturation == 0.0


def test_eta_above_one_alone_is_not_exploding_when_units_saturate() -> None:
    layer, params, x = reference.rnn.make_case(np.random.default_rng(1), T=12, B=2, H=6, spectral_scale=3.0)
    flow = gradient_flow(layer, params, 3.0 * x)  # large inputs drive tanh into saturation
    assert flow.eta == pytest.approx(3.0)
    assert flow.regime != "exploding"
    assert any("only necessary" in r for r in flow.reasons)


def test_sigmoid_mlp_learns_slower_toward_the_input() -> None:
    stack, params, x = reference.mlp.make_case(
        np.random.default_rng(0), sizes=(30, 30, 30, 30, 10), hidden_activation="sigmoid", batch=10
    )
    flow = gradient_flow(stack, params, x)
    assert flow.axis == "depth" and flow.bias_norms.shape == (4,)
    assert np.all(np.diff(flow.bias_norms) > 0)  # ‖∂L/∂b_i‖ shrinks layer by layer toward the input
    assert flow.regime == "vanishing" and flow.slope < 0
    assert flow.agree and float(np.max(flow.rel_err)) < 1e-12
    dparams, _, _ = stack.backward_with_deltas(params, x, np.random.default_rng(0).standard_normal((10, 10)))
    np.testing.assert_allclose(flow.weight_norms, [np.linalg.norm(dparams[f"W{i}"]) for i in range(4)])
    # JAX's per-sample ∂L/∂net_i beside the hand deltas, layer by layer
    assert flow.autodiff_norms.shape == (4,)
    np.testing.assert_allclose(flow.autodiff_norms, flow.hand_norms, rtol=1e-12)


def test_wrong_hand_deltas_of_a_deep_stack_disagree_with_jax() -> None:
    """A stack whose reported delta of one layer is off (the parameter gradients are right):
    the per-layer norms disagree with JAX's at that layer, and the flow says so."""
    stack, params, x = reference.mlp.make_case(
        np.random.default_rng(1), sizes=(6, 8, 8, 3), hidden_activation="tanh", batch=5)

    class Misreported:
        def forward(self, p: Any, x: Any) -> Any:
            return stack.forward(p, x)

        def backward_with_deltas(self, p: Any, x: Any, dy: Any) -> Any:
            dparams, dx, deltas = stack.backward_with_deltas(p, x, dy)
            return dparams, dx, [deltas[0], 2.0 * deltas[1], deltas[2]]

    flow = gradient_flow(Misreported(), params, x)
    assert not flow.agree
    assert int(np.argmax(flow.rel_err)) == 1 and flow.rel_err[1] == pytest.approx(0.5)
    assert flow.hand_norms[1] == pytest.approx(2 * flow.autodiff_norms[1])


# ----------------------------------------------------------------------------- truncation and clipping


def _elman_cell(layer: Any, H: int) -> Cell:
    return Cell(layer.cell_forward, lambda p, B: jnp.broadcast_to(p["h0"], (B, H)),
                readout=lambda p, h: h @ p["W"] + p["c"], activation="tanh", recurrent="U")


def _window_gradient(cell: Cell, params: dict[str, Any], x: Any, dy: Any, tau: int) -> np.ndarray:
    """BPTT(τ) by brute force: every output through its own stop_gradient window."""
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v) for k, v in params.items()}

        def loss(q: dict[str, Any]) -> Any:
            h, states, total = cell.init(q, x.shape[1]), [], 0.0
            for t in range(x.shape[0]):
                h = cell.step(q, h, x[t])
                states.append(h)
            for t in range(x.shape[0]):
                start = t - tau
                w = cell.init(q, x.shape[1]) if start < 0 else jax.lax.stop_gradient(states[start])
                for k in range(max(start + 1, 0), t + 1):
                    w = cell.step(q, w, x[k])
                total = total + jnp.sum(cell.readout(q, w) * dy[t])  # type: ignore[misc]
            return total

        g = jax.grad(loss)(p)
        return np.concatenate([np.ravel(g[k]) for k in sorted(g)])


def test_truncation_matches_elman_bptt_and_stop_gradient_windows() -> None:
    T, H = 6, 4
    layer, params, x = reference.rnn.make_case(np.random.default_rng(3), T=T, H=H, spectral_scale=1.2)
    dy = np.random.default_rng(4).standard_normal((T, 3, 2))
    by_layer = gradient_flow(layer, params, x, dy=dy)
    cell = _elman_cell(layer, H)
    by_jax = gradient_flow(cell, params, x, dy=dy)
    assert "truncation=τ" in by_layer.truncation_source and "VJP" in by_jax.truncation_source
    np.testing.assert_allclose(by_jax.truncation_errors, by_layer.truncation_errors, rtol=1e-9, atol=1e-14)
    full = _window_gradient(cell, params, x, dy, T)
    for tau in (1, 2, 4):
        g_tau = _window_gradient(cell, params, x, dy, tau)
        rel = np.linalg.norm(g_tau - full) / np.linalg.norm(full)
        assert by_jax.truncation_errors[tau - 1] == pytest.approx(rel, rel=1e-9)
    assert np.all(np.diff(by_layer.truncation_errors) <= 1e-12) or by_layer.truncation_errors[-1] < 1e-12
    below = np.flatnonzero(by_layer.truncation_errors <= 0.01)
    assert by_layer.min_truncation == below[0] + 1


def test_clipping_reports_norms_and_the_steps_it_would_clip() -> None:
    layer, params, x = _identity_relu(1.5, T=8)
    dy = np.random.default_rng(0).standard_normal((8, 2, 2))
    dparams, _, _ = layer.bptt(params, x, dy)
    norm = reference.clipping.global_norm(dparams)
    flow = gradient_flow(layer, params, x, dy=dy, clip=norm / 4)
    clip = flow.clip
    assert clip is not None and clip.clipped
    assert clip.norm_before == pytest.approx(norm, rel=1e-12)
    assert clip.norm_after == pytest.approx(norm / 4)
    assert clip.step_norms.shape == (8,)
    assert clip.clipped_steps == tuple(int(i) for i in np.flatnonzero(clip.step_norms > norm / 4))
    assert clip.clipped_steps  # in the exploding regime some step alone exceeds a quarter of the norm
    loose = gradient_flow(layer, params, x, dy=dy, clip=10 * norm).clip
    assert loose is not None and not loose.clipped and loose.clipped_steps == ()


# ----------------------------------------------------------------------------- protocol and layers


def _user_cell_deltas(shift: int) -> Cell:
    """A user's own Elman-like cell with a hand BPTT (optionally off by ``shift`` steps)."""

    def step(p: dict[str, Any], h: Any, x_t: Any) -> Any:
        a = x_t @ p["V"] + h @ p["U"]
        return a.__array_namespace__().tanh(a)

    def deltas(p: dict[str, Any], x: Any, dy: Any) -> Any:
        T, B = x.shape[:2]
        hs, h = [], np.zeros((B, p["U"].shape[0]))
        for t in range(T):
            h = step(p, h, x[t])
            hs.append(h)
        out, carry = np.zeros((T, *h.shape)), np.zeros_like(h)
        for t in reversed(range(T)):
            out[t] = dy[t] + carry  # readout is the identity: ∂L/∂h_t = dy_t + carried error
            carry = (out[t] * (1 - hs[t] ** 2)) @ p["U"].T
        return np.roll(out, shift, axis=0)

    return Cell(step, init=np.zeros(3), activation="tanh", recurrent="U", deltas=deltas)


@pytest.mark.parametrize(("shift", "agree"), [(0, True), (1, False)], ids=["correct", "time-shift"])
def test_user_cell_protocol(shift: int, agree: bool) -> None:
    rng = np.random.default_rng(0)
    params = {"V": rng.standard_normal((2, 3)), "U": 0.8 * np.linalg.qr(rng.standard_normal((3, 3)))[0]}
    x = rng.standard_normal((7, 2, 2))
    flow = gradient_flow(_user_cell_deltas(shift), params, x, dy=rng.standard_normal((7, 2, 3)), name="mine")
    assert flow.name == "mine" and flow.agree is agree
    assert flow.eta == pytest.approx(0.8) and flow.regime == "vanishing"
    assert flow.jacobian_source == "jax.jacfwd of the step"


def test_cell_with_a_loss_and_no_hand_bptt() -> None:
    layer, params, x = reference.rnn.make_case(np.random.default_rng(2), T=5, H=3)
    cell = _elman_cell(layer, 3)
    flow = gradient_flow(cell, params, x, loss=lambda y: 0.5 * (y**2).sum())
    ys = layer.forward(params, x)
    ref = gradient_flow(layer, params, x, dy=ys)  # ∂(½‖y‖²)/∂y = y
    np.testing.assert_allclose(flow.autodiff_norms, ref.hand_norms, rtol=1e-10)
    assert flow.hand_norms.size == 0 and not flow.agree and flow.notes


@pytest.mark.parametrize("module", [reference.lstm, reference.gru], ids=["lstm", "gru"])
def test_gated_layers_hand_deltas_agree_with_jax(module: Any) -> None:
    layer, params, x = module.make_case(np.random.default_rng(0), T=6)
    flow = gradient_flow(layer, params, x, clip=0.5)
    assert flow.agree and float(np.max(flow.rel_err)) < 1e-10
    assert math.isnan(flow.eta)  # no Pascanu bound for gated cells
    assert flow.truncation_errors[-1] < 1e-12 and flow.clip is not None


def test_to_dict_is_strict_json() -> None:
    layer, params, x = reference.rnn.make_case(np.random.default_rng(0), T=4)
    d = gradient_flow(layer, params, x, clip=1.0).to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["schema"] == FLOW_SCHEMA_VERSION == "gradcheck.flow/1"
    assert d["spans"][1][0] == "nan" and d["spans"][0][0] == 1.0


def test_log_slope_and_eta_helpers() -> None:
    slope, se, n = log_slope(2.0 ** np.arange(6.0)[::-1])  # doubling per step back
    assert slope == pytest.approx(math.log(2)) and se == pytest.approx(0, abs=1e-12) and n == 6
    assert math.isnan(log_slope([1.0])[0]) and math.isnan(log_slope([1.0, 2.0])[1])
    assert log_slope([0.0, 1.0, 2.0, 4.0])[2] == 3  # zero norms are left out of the fit
    assert pascanu_eta(np.diag([3.0, 1.0]), "relu") == (3.0, 1.0, 3.0)


def _np_only_cell() -> Cell:
    return Cell(lambda p, h, x: np.tanh(x @ p["U"] + h @ p["U"]), init=np.zeros(2))


BAD = [
    ("not-a-model", lambda: gradient_flow(object(), {}, np.zeros((2, 1, 1))), "expected a Cell"),
    ("x-rank", lambda: gradient_flow(*reference.rnn.make_case(np.random.default_rng(0))[:2], np.zeros((4, 3))),
     r"\(T, B, D\)"),
    ("dy-shape", lambda: gradient_flow(*reference.rnn.make_case(np.random.default_rng(0)), dy=np.zeros((1, 2))),
     "dy has shape"),
    ("clip", lambda: gradient_flow(*reference.rnn.make_case(np.random.default_rng(0)), clip=-1.0), "clip=-1.0"),
    ("numpy-cell", lambda: gradient_flow(_np_only_cell(), {"U": np.eye(2)}, np.ones((2, 1, 2))),
     "__array_namespace__"),
    ("eta-activation", lambda: pascanu_eta(np.eye(2), "softplus"), "softplus"),
]


@pytest.mark.parametrize(("call", "match"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_arguments(call: Any, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        call()
