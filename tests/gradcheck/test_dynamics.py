"""gradcheck.dynamics: gradient flow through time and depth, Pascanu's bound, truncation, clipping."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck.dynamics
import reference.clipping
import reference.conv
import reference.gru
import reference.lstm
import reference.mlp
import reference.rnn
from gradcheck.dynamics import (
    FLOW_SCHEMA_VERSION,
    GAMMA,
    Cell,
    DepthStack,
    FlowResult,
    LayerMaps,
    gradient_flow,
    log_slope,
    pascanu_eta,
)
from gradcheck.errors import InvalidArgument
from gradcheck.strategies import RecurrentConfig, recurrent_configs
from tests._profile import examples, sizes

SLACK = 1e-9  # relative rounding slack on the η^(t−k) bound (float64 products of ≤ 12 matrices)


def _flow(cfg: RecurrentConfig) -> tuple[FlowResult, Any, Any, Any]:
    layer, params, x = cfg.case(batch=2)
    return gradient_flow(layer, params, x), layer, params, x


# ----------------------------------------------------------------------------- properties


@settings(max_examples=examples(15), deadline=None)
@given(cfg=recurrent_configs(hidden=sizes(1, 8), length=sizes(1, 12)))
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
    # 5. spectra: σ_min ≤ σ_max per span, the span spectra are the spans', the end-to-end map obeys η^T
    assert np.all(flow.span_min[k, t] <= measured * (1 + SLACK))
    assert len(flow.span_spectra) == T
    np.testing.assert_allclose([sp.sigma_max for sp in flow.span_spectra], flow.spans[:, -1], rtol=1e-12)
    assert flow.spectrum is not None and flow.spectrum.sigma_max <= flow.eta**T * (1 + SLACK) + 1e-300
    # 6. a correct hand BPTT: the regime is the model's
    assert (flow.cause, flow.parted_at, flow.model_regime) == ("model", None, flow.regime)
    assert flow.dead_per_step.shape == flow.saturation_per_step.shape == (T,)


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
    # bug or model: the backward, from layer 1 (the first layer back from the output to part)
    assert flow.cause == "backward" and flow.parted_at == 1
    assert any("the hand backward is wrong, not the model" in r and "layer i=1" in r for r in flow.reasons)
    assert flow.model_regime == flow.regime  # the bias gradients are right: same regime as JAX's


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


# ----------------------------------------------------------------------------- bug or model (issue 16)


@dataclass(frozen=True)
class PlantedCarry(reference.rnn.ElmanRNN):
    """A planted BPTT bug: the recurrent carry ``e_{t+1} Uᵀ`` of ``∂L/∂s_t`` enters ``carry`` times
    (0: dropped, the classic forgotten recurrent term; 2: counted twice); the forward is right."""

    carry: float = 0.0

    def bptt(self, params: Any, x: Any, dy: Any) -> Any:
        p = {k: np.asarray(v) for k, v in params.items()}
        x, dy = np.asarray(x), np.asarray(dy)
        S = self.states(p, x)
        g = {k: np.zeros_like(v) for k, v in p.items()}
        dx, deltas = np.zeros_like(x), np.zeros_like(S[1:])
        ds_prev = np.zeros_like(S[0])
        for t in reversed(range(x.shape[0])):
            g["W"] += S[t + 1].T @ dy[t]
            g["c"] += dy[t].sum(axis=0)
            deltas[t] = dy[t] @ p["W"].T + self.carry * ds_prev  # the bug: carry ≠ 1
            cell, ds_prev, dx[t] = self.cell_backward(p, S[t], x[t], S[t + 1], deltas[t])
            for k, v in cell.items():
                g[k] += v
        g["h0"] += ds_prev.sum(axis=0)
        return g, dx, deltas


def test_a_bptt_that_drops_the_carry_is_blamed_not_the_model() -> None:
    """U = I, every ReLU active: JAX's norms are flat (stable); the hand's stop one step back
    from the end (vanishing): the hand backward is wrong, and from t = T−2."""
    layer, params, x = _identity_relu(1.0)
    flow = gradient_flow(PlantedCarry("relu", carry=0.0), params, x)
    T = x.shape[0]
    assert flow.regime == "vanishing" and flow.model_regime == "stable"
    assert flow.cause == "backward" and flow.parted_at == T - 2 and not flow.agree
    said = next(r for r in flow.reasons if r.startswith("the hand backward is wrong, not the model"))
    assert f"part from JAX's at step t={T - 2}" in said and "the model's regime is stable" in said
    assert said in flow.notes
    assert flow.model_slope == pytest.approx(0.0, abs=1e-12)
    correct = gradient_flow(layer, params, x)
    assert (correct.regime, correct.cause, correct.parted_at) == ("stable", "model", None)
    assert any("the regime is the model's" in r for r in correct.reasons)


def test_a_bptt_that_doubles_the_carry_grows_where_the_model_does_not() -> None:
    _, params, x = _identity_relu(1.0)
    flow = gradient_flow(PlantedCarry("relu", carry=2.0), params, x)
    assert flow.regime == "exploding" and flow.slope == pytest.approx(math.log(2), rel=1e-9)
    assert flow.model_regime == "stable" and flow.cause == "backward" and flow.parted_at == x.shape[0] - 2
    assert any("look exploding" in r and "JAX's are stable" in r for r in flow.reasons)


def test_a_wrong_bptt_on_an_exploding_model_names_the_model_regime() -> None:
    _, params, x = _identity_relu(1.5)
    flow = gradient_flow(PlantedCarry("relu", carry=0.0), params, x,
                         dy=np.random.default_rng(1).standard_normal((x.shape[0], 2, 2)))
    assert flow.model_regime == "exploding" and flow.model_slope > 0.3  # sums of terms growing ×1.5
    assert flow.cause == "backward" and flow.parted_at == x.shape[0] - 2
    assert flow.slope < flow.model_slope  # the hand norms do not grow: it is the bug that hides it


def test_without_a_hand_bptt_the_regime_is_the_models() -> None:
    layer, params, x = reference.rnn.make_case(np.random.default_rng(2), T=5, H=3)
    flow = gradient_flow(_elman_cell(layer, 3), params, x)
    assert (flow.cause, flow.parted_at, flow.model_regime) == ("model", None, flow.regime)


# ----------------------------------------------------------------------------- scale-free verdicts


SCALES = st.sampled_from([1e-3, 1e-1, 10.0, 1e3])


def _same_verdict(a: FlowResult, b: FlowResult) -> None:
    assert (a.regime, a.model_regime, a.cause, a.parted_at) == (b.regime, b.model_regime, b.cause, b.parted_at)
    for s, t in ((a.slope, b.slope), (a.model_slope, b.model_slope), (a.slope_stderr, b.slope_stderr)):
        assert s == pytest.approx(t, abs=1e-9) or (math.isnan(s) and math.isnan(t))


@settings(max_examples=examples(6), deadline=None)
@given(cfg=recurrent_configs(hidden=st.integers(2, 4), length=st.integers(3, 7)), c=SCALES,
       how=st.sampled_from(["scale dy", "scale loss", "mean"]), carry=st.sampled_from([1.0, 0.0, 2.0]))
def test_a_regime_is_unchanged_under_loss_rescaling_and_sum_or_mean(
        cfg: RecurrentConfig, c: float, how: str, carry: float) -> None:
    """Verdicts use log-slopes, their stderr, η and fractions only: ``dy → c·dy`` (a rescaled
    loss) and a mean over the batch instead of a sum leave regime, slope, cause and parted_at."""
    layer, params, x = cfg.case(batch=2)
    model = layer if carry == 1.0 else PlantedCarry(layer.activation, carry=carry)
    w = np.random.default_rng(cfg.seed % 2**32).standard_normal(2)

    def summed(y: Any) -> Any:
        return jnp.sum(jnp.tanh(y) * w)

    if how == "scale dy":
        dy = np.zeros((cfg.length, 2, 2))
        dy[-1] = np.random.default_rng(1).standard_normal((2, 2))
        base, other = gradient_flow(model, params, x, dy=dy), gradient_flow(model, params, x, dy=c * dy)
    elif how == "scale loss":
        base = gradient_flow(model, params, x, loss=summed)
        other = gradient_flow(model, params, x, loss=lambda y: c * summed(y))
    else:
        base = gradient_flow(model, params, x, loss=summed)
        other = gradient_flow(model, params, x, loss=lambda y: summed(y) / y.shape[1])
    _same_verdict(base, other)


@settings(max_examples=examples(5), deadline=None)
@given(depth=st.integers(1, 3), act=st.sampled_from(["tanh", "sigmoid", "relu"]), c=SCALES,
       mean=st.booleans(), seed=st.integers(0, 2**16))
def test_a_depth_regime_is_unchanged_under_loss_rescaling_and_sum_or_mean(
        depth: int, act: str, c: float, mean: bool, seed: int) -> None:
    stack, params, x = reference.mlp.make_case(np.random.default_rng(seed), sizes=(4, *(5,) * depth, 3),
                                               hidden_activation=act, batch=4)
    dy = np.random.default_rng(seed + 1).standard_normal((4, 3))
    base = gradient_flow(stack, params, x, dy=dy)
    _same_verdict(base, gradient_flow(stack, params, x, dy=dy / 4 if mean else c * dy))


# ----------------------------------------------------------------------------- through depth (issue 16)


@settings(max_examples=examples(6), deadline=None)
@given(sizes=st.lists(st.integers(2, 6), min_size=2, max_size=5), act=st.sampled_from(["tanh", "sigmoid", "relu"]),
       gain=st.floats(0.2, 2.5), seed=st.integers(0, 2**16))
def test_deep_stack_jacobians_obey_their_bound(sizes: list[int], act: str, gain: float, seed: int) -> None:
    """‖∂net_j/∂net_i‖ ≤ Π_{l=i+1..j} σ_max(W_l)·γ_{l−1} ≤ η^(j−i): η < 1 ⇒ every span ≤ η^(j−i)."""
    stack, params, x = reference.mlp.make_case(np.random.default_rng(seed), sizes=sizes,
                                               hidden_activation=act, batch=3)
    params = {k: gain * v if k.startswith("W") else v for k, v in params.items()}
    flow = gradient_flow(stack, params, x)
    L = len(sizes) - 1
    assert flow.local_sigma.shape == flow.weight_sigma.shape == flow.layer_gamma.shape == (L,)
    assert flow.spans.shape == flow.span_min.shape == (L, L) and len(flow.span_spectra) == L
    np.testing.assert_allclose(flow.layer_gamma, [GAMMA[act]] * (L - 1) + [1.0], rtol=1e-12)
    np.testing.assert_allclose(flow.weight_sigma, [np.linalg.norm(params[f"W{i}"], 2) for i in range(L)])
    assert flow.local_sigma[0] <= flow.weight_sigma[0] * (1 + SLACK)
    assert np.all(flow.local_sigma[1:] <= flow.layer_eta[1:] * (1 + SLACK))
    k, t = np.triu_indices(L)
    product = np.asarray([np.prod(flow.layer_eta[a + 1:b + 1]) for a, b in zip(k, t, strict=True)])
    assert np.all(flow.spans[k, t] <= product * (1 + SLACK))
    if L > 1:
        assert flow.eta == pytest.approx(np.max(flow.layer_eta[1:]))
        assert flow.eta == pytest.approx(flow.sigma_max * flow.gamma)
        assert np.all(flow.spans[k, t] <= flow.eta ** (t - k).astype(float) * (1 + SLACK))
        if flow.eta < 1:
            assert flow.regime == "vanishing"
    assert np.all(flow.span_min[k, t] <= flow.spans[k, t] * (1 + SLACK))
    # the end-to-end ∂y/∂x: σ_max ≤ σ_max(W_0)·Π η_i·γ_out
    assert flow.spectrum is not None
    assert flow.spectrum.sigma_max <= flow.weight_sigma[0] * np.prod(flow.layer_eta[1:]) * (1 + SLACK)


def test_mlp_local_jacobians_are_diag_f_prime_times_w() -> None:
    stack, params, x = reference.mlp.make_case(np.random.default_rng(4), sizes=(3, 5, 4, 2),
                                               hidden_activation="tanh", batch=3)
    flow = gradient_flow(stack, params, x)
    a, _ = stack.forward_cache(params, x)
    for i in (1, 2):  # J_i = W_iᵀ diag(1 − a_i²) per sample
        J = [params[f"W{i}"].T * (1 - a[i][b] ** 2) for b in range(3)]
        assert flow.local_sigma[i] == pytest.approx(max(np.linalg.norm(j, 2) for j in J), rel=1e-12)
    spans = [params["W2"].T * (1 - a[2][b] ** 2) @ (params["W1"].T * (1 - a[1][b] ** 2)) for b in range(3)]
    assert flow.spans[0, 2] == pytest.approx(max(np.linalg.norm(m, 2) for m in spans), rel=1e-12)
    assert flow.span_min[0, 2] == pytest.approx(min(np.linalg.svd(m)[1][-1] for m in spans), rel=1e-9)
    with jax.enable_x64(True):  # ∂y/∂x per sample, densely
        dense = [np.asarray(jax.jacfwd(lambda r: stack.forward(params, r[None])[0])(jnp.asarray(row))) for row in x]
    assert flow.spectrum is not None
    top = np.sort(np.concatenate([np.linalg.svd(m, compute_uv=False) for m in dense]))[::-1]
    np.testing.assert_allclose(flow.spectrum.top, top[:3], rtol=1e-12)
    assert flow.spectrum.mean_sq == pytest.approx(np.mean(top**2), rel=1e-12)


def test_dead_units_and_saturation_per_layer() -> None:
    stack, params, x = reference.mlp.make_case(np.random.default_rng(0), sizes=(4, 6, 6, 2),
                                               hidden_activation="relu", batch=5)
    params = {**params, "b0": params["b0"].copy()}
    params["b0"][0] = -50.0  # unit 0 of layer 0 is off on every sample: dead
    flow = gradient_flow(stack, params, x)
    assert flow.dead_per_step.shape == flow.saturation_per_step.shape == (3,)
    assert flow.dead_per_step[0] >= 1 / 6 and flow.dead_per_step[-1] == 0.0  # identity output
    assert flow.saturation_per_step[0] >= flow.dead_per_step[0]
    sig, p2, x2 = reference.mlp.make_case(np.random.default_rng(0), sizes=(4, 6, 2), hidden_activation="sigmoid",
                                          batch=5)
    hot = gradient_flow(sig, {**p2, "W0": 40 * p2["W0"]}, x2)  # huge pre-activations: f' ≈ 0
    assert hot.saturation_per_step[0] > 0.5 and hot.saturation > 0.5


def test_dead_units_and_saturation_per_step() -> None:
    layer, params, x = reference.rnn.make_case(np.random.default_rng(0), T=6, B=2, H=4, activation="relu")
    params = {**params, "b": params["b"].copy()}
    params["b"][1] = -100.0
    flow = gradient_flow(layer, params, x)
    assert flow.dead_per_step.shape == (6,) and np.all(flow.dead_per_step >= 0.25)
    tanh = gradient_flow(*reference.rnn.make_case(np.random.default_rng(1), T=6, H=4, spectral_scale=3.0)[:2],
                         30.0 * reference.rnn.make_case(np.random.default_rng(1), T=6, H=4)[2])
    assert np.mean(tanh.saturation_per_step) > 0.5


def test_the_end_to_end_spectrum_through_time_is_the_product_of_the_step_jacobians() -> None:
    layer, params, x = reference.rnn.make_case(np.random.default_rng(5), T=5, B=2, H=3, spectral_scale=1.3)
    flow = gradient_flow(layer, params, x)
    S = layer.states(params, x)
    prods = []
    for b in range(2):
        m = np.eye(3)
        for t in range(5):
            m = layer.recurrent_jacobian(params, S[t][b:b + 1], x[t][b:b + 1])[0] @ m
        prods.append(m)
    sv = np.sort(np.concatenate([np.linalg.svd(m, compute_uv=False) for m in prods]))
    assert flow.spectrum is not None and flow.spectrum.shape == (3, 3) and flow.spectrum.batch == 2
    np.testing.assert_allclose(flow.spectrum.top, sv[::-1][:3], rtol=1e-10)
    np.testing.assert_allclose(flow.spectrum.bottom, sv[:3], rtol=1e-8)
    assert flow.spectrum.spread == pytest.approx(sv[-1] / sv[0], rel=1e-8)


class ConvStack:
    """A user's conv stack (3×3 convolutions, tanh between, identity output) with :class:`LayerMaps`:
    params ``W{i}`` (F, C, 3, 3) and ``b{i}`` (F,); the hand backward from reference.conv."""

    def __init__(self, L: int = 2, maps: bool = True) -> None:
        self.conv, self.L = reference.conv.Conv2D(stride=1, pad=1), L
        if maps:
            self.layer_forward, self.layer_activation = self._forward, self._activation

    def _forward(self, p: Any, i: int, a: Any) -> Any:
        return self.conv.forward({"w": p[f"W{i}"], "b": p[f"b{i}"]}, a)

    def _activation(self, p: Any, i: int, net: Any) -> Any:
        return net.__array_namespace__().tanh(net) if i < self.L - 1 else net

    def forward(self, p: Any, x: Any) -> Any:
        a = x
        for i in range(self.L):
            a = self._activation(p, i, self._forward(p, i, a))
        return a

    def backward_with_deltas(self, p: Any, x: Any, dy: Any) -> Any:
        a, nets = [np.asarray(x)], []
        for i in range(self.L):
            nets.append(self._forward(p, i, a[-1]))
            a.append(self._activation(p, i, nets[-1]))
        deltas: list[Any] = [None] * self.L
        grads, g = {}, np.asarray(dy)
        for i in reversed(range(self.L)):
            deltas[i] = g * (1 - a[i + 1] ** 2) if i < self.L - 1 else g
            dp, g = self.conv.backward({"w": p[f"W{i}"], "b": p[f"b{i}"]}, a[i], deltas[i])
            grads[f"W{i}"], grads[f"b{i}"] = dp["w"], dp["b"]
        return grads, g, deltas


def _conv_case() -> tuple[dict[str, Any], Any]:
    rng = np.random.default_rng(0)
    params = {"W0": rng.normal(0, 0.5, (3, 2, 3, 3)), "b0": 0.1 * rng.normal(size=3),
              "W1": rng.normal(0, 0.3, (2, 3, 3, 3)), "b1": 0.1 * rng.normal(size=2)}
    return params, rng.normal(size=(2, 2, 4, 4))


def test_a_conv_stack_gets_its_jacobians_from_its_layer_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    params, x = _conv_case()
    stack = ConvStack()
    assert isinstance(stack, DepthStack) and isinstance(stack, LayerMaps)
    flow = gradient_flow(stack, params, x)
    assert flow.agree and flow.cause == "model"
    assert flow.autodiff_norms.shape == (2,)  # JAX's ∂L/∂net_i through the maps
    np.testing.assert_allclose(flow.autodiff_norms, flow.hand_norms, rtol=1e-12)
    assert flow.layer_gamma.tolist() == pytest.approx([1.0, 1.0])
    assert flow.local_sigma[1] <= flow.layer_eta[1] * (1 + SLACK)
    assert flow.spans[0, 1] == flow.local_sigma[1] and "layer_forward" in flow.jacobian_source
    with jax.enable_x64(True):  # σ_max(W_1) of the convolution, from its dense matrix
        conv = jax.jacfwd(lambda a: stack._forward(params, 1, a) - params["b1"][None, :, None, None])
        dense = np.asarray(conv(jnp.zeros((1, 3, 4, 4)))).reshape(2 * 16, 3 * 16)
    assert flow.weight_sigma[1] == pytest.approx(np.linalg.norm(dense, 2), rel=1e-10)
    # above DENSE_JACOBIAN_ENTRIES the spans are matrix-free: the same numbers
    monkeypatch.setattr(gradcheck.dynamics, "DENSE_JACOBIAN_ENTRIES", 0)
    free = gradient_flow(stack, params, x)
    assert free.jacobian_source.startswith("matrix-free")
    np.testing.assert_allclose(free.local_sigma, flow.local_sigma, rtol=1e-10)
    np.testing.assert_allclose(free.spans, flow.spans, rtol=1e-10)
    np.testing.assert_allclose(free.span_min, flow.span_min, rtol=1e-8)


def test_a_stack_that_cannot_be_read_layer_by_layer_says_so() -> None:
    params, x = _conv_case()
    flow = gradient_flow(ConvStack(maps=False), params, x)  # convolutions, but no LayerMaps
    assert flow.agree and flow.local_sigma.size == 0 and math.isnan(flow.eta)
    assert any("LayerMaps" in n for n in flow.notes)
    assert flow.spectrum is not None  # ∂y/∂x needs only a JAX-traceable forward


def test_new_fields_are_strict_json() -> None:
    layer, params, x = reference.rnn.make_case(np.random.default_rng(0), T=4)
    for flow in (gradient_flow(layer, params, x),
                 gradient_flow(*reference.mlp.make_case(np.random.default_rng(0), sizes=(3, 4, 2)))):
        d = json.loads(json.dumps(flow.to_dict(), allow_nan=False))
        for key in ("spectrum", "span_min", "span_spectra", "weight_sigma", "layer_gamma", "layer_eta",
                    "dead_per_step", "saturation_per_step", "cause", "parted_at", "model_regime",
                    "model_slope", "model_slope_stderr"):
            assert key in d, key
        assert d["spectrum"]["top"][0] == flow.spectrum.sigma_max  # type: ignore[union-attr]
        assert d["cause"] == "model" and d["parted_at"] is None
