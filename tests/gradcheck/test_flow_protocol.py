"""gradcheck.dynamics protocols: models are analysed by what they can do, never by their class name."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import reference.gru
import reference.lstm
import reference.mlp
import reference.recursive
import reference.rnn
from gradcheck.dynamics import (
    DepthStack,
    FlowResult,
    LayerMaps,
    ObservedState,
    PascanuBound,
    RecurrentJacobian,
    RecurrentLayer,
    TruncatableBPTT,
    gradient_flow,
)
from gradcheck.errors import InvalidArgument

ARRAYS = ("hand_norms", "autodiff_norms", "rel_err", "local_sigma", "spans", "truncation_errors",
          "weight_norms", "bias_norms")
SCALARS = ("rtol", "slope", "slope_stderr", "sigma_max", "gamma", "eta", "saturation", "input_scale",
           "regime", "reasons", "min_truncation", "agree", "notes")


def _assert_same_flow(mine: FlowResult, ref: FlowResult) -> None:
    """Every measured quantity is bit-for-bit the same (the labels may differ); the truncation
    curve only to round-off when the two come from different sources (a layer's hand BPTT(τ),
    JAX's depth split of a wrapper that has none)."""
    assert mine.axis == ref.axis
    for key in ARRAYS:
        if key == "truncation_errors" and mine.truncation_source != ref.truncation_source:
            np.testing.assert_allclose(mine.truncation_errors, ref.truncation_errors, rtol=1e-9,
                                       atol=1e-15, err_msg=key)
            continue
        np.testing.assert_array_equal(getattr(mine, key), getattr(ref, key), err_msg=key)
    for key in SCALARS:
        a, b = getattr(mine, key), getattr(ref, key)
        assert a == b or (a != a and b != b), (key, a, b)  # NaN equals NaN here
    assert (mine.clip is None) == (ref.clip is None)
    if mine.clip is not None and ref.clip is not None:
        assert mine.clip.to_dict() == ref.clip.to_dict()


# ----------------------------------------------------------------------------- user classes


class Recurrence:
    """A user's recurrent layer: not a reference class, not a subclass, another name.  It
    implements the whole protocol (and every optional capability) by composition."""

    def __init__(self, activation: reference.rnn.Activation = "tanh", truncation: int | None = None) -> None:
        self._inner = reference.rnn.ElmanRNN(activation=activation, truncation=truncation)
        self.activation = activation
        self.recurrent_key = "U"

    def bptt(self, params: Any, x: Any, dy: Any) -> Any:
        return self._inner.bptt(params, x, dy)

    def initial_state(self, params: Any, batch: int) -> Any:
        h0 = params["h0"]
        return h0.__array_namespace__().broadcast_to(h0, (batch, h0.shape[0]))

    def state_step(self, params: Any, state: Any, x_t: Any) -> Any:
        return self._inner.cell_forward(params, state, x_t)

    def readout(self, params: Any, state: Any) -> Any:
        return state @ params["W"] + params["c"]

    def recurrent_jacobian(self, params: Any, state: Any, x_t: Any) -> Any:
        return self._inner.recurrent_jacobian(params, state, x_t)

    def with_truncation(self, truncation: int | None) -> Recurrence:
        return Recurrence(self.activation, truncation)


class Minimal:
    """Only the four required methods: JAX supplies the Jacobian and the truncation curve."""

    def __init__(self) -> None:
        self._inner = reference.rnn.ElmanRNN()

    def bptt(self, params: Any, x: Any, dy: Any) -> Any:
        return self._inner.bptt(params, x, dy)

    def initial_state(self, params: Any, batch: int) -> Any:
        return self._inner.initial_state(params, batch)

    def state_step(self, params: Any, state: Any, x_t: Any) -> Any:
        return self._inner.state_step(params, state, x_t)

    def readout(self, params: Any, state: Any) -> Any:
        return self._inner.readout(params, state)


class Tower:
    """A user's deep stack under another name."""

    def __init__(self, stack: reference.mlp.MLP) -> None:
        self._stack = stack

    def forward(self, params: Any, x: Any) -> Any:
        return self._stack.forward(params, x)

    def backward_with_deltas(self, params: Any, x: Any, dy: Any) -> Any:
        return self._stack.backward_with_deltas(params, x, dy)


def _elman(T: int = 5, H: int = 3, scale: float = 1.2) -> tuple[Any, dict[str, Any], Any]:
    return reference.rnn.make_case(np.random.default_rng(7), T=T, B=2, H=H, spectral_scale=scale)


# ----------------------------------------------------------------------------- capability checks


def test_the_reference_zoo_declares_its_capabilities_by_its_methods() -> None:
    elman, lstm, gru = reference.rnn.ElmanRNN(), reference.lstm.LSTM(), reference.gru.GRU()
    assert all(isinstance(m, RecurrentLayer) for m in (elman, lstm, gru))
    assert isinstance(elman, RecurrentJacobian) and isinstance(elman, TruncatableBPTT)
    assert isinstance(elman, PascanuBound) and not isinstance(elman, ObservedState)
    assert isinstance(lstm, ObservedState)
    for gated in (lstm, gru):  # hand BPTT(τ), but no per-step Jacobian and no Pascanu bound
        assert isinstance(gated, TruncatableBPTT)
        assert not isinstance(gated, RecurrentJacobian | PascanuBound)
    mlp = reference.mlp.MLP()
    assert isinstance(mlp, DepthStack) and not isinstance(mlp, RecurrentLayer)
    tree = reference.recursive.RecursiveNet(reference.recursive.balanced_tree(2))
    assert not isinstance(tree, RecurrentLayer | DepthStack)


def test_user_classes_follow_the_protocols_by_structure() -> None:
    assert isinstance(Recurrence(), RecurrentLayer)
    assert isinstance(Recurrence(), RecurrentJacobian | TruncatableBPTT | PascanuBound)
    assert isinstance(Minimal(), RecurrentLayer)
    assert not isinstance(Minimal(), RecurrentJacobian | TruncatableBPTT | PascanuBound | ObservedState)
    assert isinstance(Tower(reference.mlp.MLP()), DepthStack)


# ----------------------------------------------------------------------------- through time


def test_a_user_layer_under_another_name_is_analysed_like_the_reference() -> None:
    layer, params, x = _elman()
    ref = gradient_flow(layer, params, x, clip=0.5)
    mine = gradient_flow(Recurrence(), params, x, clip=0.5)
    _assert_same_flow(mine, ref)
    assert mine.name == "Recurrence" and ref.name == "ElmanRNN"  # the class name is only the label
    assert mine.jacobian_source == "Recurrence.recurrent_jacobian"
    assert mine.truncation_source == "Recurrence(truncation=τ).bptt"
    assert mine.agree and mine.eta == pytest.approx(1.2)


def test_a_minimal_user_layer_gets_jax_for_what_it_lacks() -> None:
    layer, params, x = _elman()
    ref = gradient_flow(layer, params, x)
    flow = gradient_flow(Minimal(), params, x, name="mine")
    assert flow.name == "mine" and flow.agree
    np.testing.assert_array_equal(flow.hand_norms, ref.hand_norms)  # the same hand BPTT
    assert flow.jacobian_source == "jax.jacfwd of the step"
    assert "VJP" in flow.truncation_source
    # JAX's Jacobian and depth split measure what the hand Jacobian and BPTT(τ) measure
    np.testing.assert_allclose(flow.local_sigma, ref.local_sigma, rtol=1e-10)
    np.testing.assert_allclose(flow.truncation_errors, ref.truncation_errors, rtol=1e-9, atol=1e-14)
    # without activation and recurrent_key there is no Pascanu bound
    assert np.isnan(flow.eta) and np.isnan(flow.sigma_max) and np.isnan(flow.saturation)


def test_the_pascanu_bound_needs_both_the_activation_and_the_matrix_key() -> None:
    _, params, x = _elman(scale=0.5)
    half = Recurrence()
    del half.recurrent_key
    assert isinstance(half, RecurrentLayer) and not isinstance(half, PascanuBound)
    assert np.isnan(gradient_flow(half, params, x).eta)
    full = gradient_flow(Recurrence(), params, x)
    assert full.eta == pytest.approx(0.5) and full.regime == "vanishing"


class PackedState:
    """A user's LSTM wrapper: the hand deltas cover ``h`` of the packed state ``[h | c]``."""

    def __init__(self, observed: bool) -> None:
        self._inner = reference.lstm.LSTM()
        if observed:
            self.observed_width = self._inner.observed_width

    def bptt(self, params: Any, x: Any, dy: Any) -> Any:
        return self._inner.bptt(params, x, dy)

    def initial_state(self, params: Any, batch: int) -> Any:
        return self._inner.initial_state(params, batch)

    def state_step(self, params: Any, state: Any, x_t: Any) -> Any:
        return self._inner.state_step(params, state, x_t)

    def readout(self, params: Any, state: Any) -> Any:
        return self._inner.readout(params, state)


def test_observed_width_limits_the_compared_state_columns() -> None:
    layer, params, x = reference.lstm.make_case(np.random.default_rng(0), T=4, H=3)
    flow = gradient_flow(PackedState(observed=True), params, x)
    _assert_same_flow(flow, gradient_flow(layer, params, x))
    assert flow.agree and flow.autodiff_norms.shape == (4,)
    with pytest.raises(InvalidArgument, match="observed_width"):  # hand (B, H), JAX (B, 2H)
        gradient_flow(PackedState(observed=False), params, x)


# ----------------------------------------------------------------------------- through depth


def test_a_user_stack_under_another_name_is_analysed_like_the_mlp() -> None:
    stack, params, x = reference.mlp.make_case(np.random.default_rng(2), sizes=(4, 5, 5, 2),
                                               hidden_activation="sigmoid", batch=3)
    ref = gradient_flow(stack, params, x, clip=0.1)
    mine = gradient_flow(Tower(stack), params, x, clip=0.1)
    _assert_same_flow(mine, ref)
    assert (mine.name, ref.name) == ("Tower", "MLP")
    assert mine.axis == "depth" and mine.agree
    # layers of unequal widths: one clipping contribution per layer, ‖[∂L/∂b_i, ∂L/∂W_i]‖
    dparams, _, _ = stack.backward_with_deltas(params, x, np.random.default_rng(0).standard_normal((3, 2)))
    expected = [np.linalg.norm(np.concatenate([dparams[f"b{i}"], dparams[f"W{i}"].ravel()])) for i in range(3)]
    assert mine.clip is not None
    np.testing.assert_allclose(mine.clip.step_norms, expected, rtol=1e-12)
    assert mine.clip.clipped_steps == tuple(i for i in range(3) if expected[i] > 0.1)


# ----------------------------------------------------------------------------- what does not qualify


class ElmanRNN:
    """Named like the reference layer and with its ``bptt``, but without the rest of the protocol."""

    def bptt(self, params: Any, x: Any, dy: Any) -> Any:
        return reference.rnn.ElmanRNN().bptt(params, x, dy)


def test_a_reference_class_name_alone_is_not_enough() -> None:
    _, params, x = _elman()
    with pytest.raises(InvalidArgument, match="lacks initial_state, state_step, readout"):
        gradient_flow(ElmanRNN(), params, x)


def test_an_unsupported_model_is_told_what_it_lacks() -> None:
    with pytest.raises(InvalidArgument, match=r"expected a Cell.*lacks bptt, initial_state, state_step, readout"):
        gradient_flow(object(), {}, np.zeros((2, 1, 1)))
    half = Minimal()
    half.readout = None  # type: ignore[assignment,method-assign]
    with pytest.raises(InvalidArgument, match=r"lacks readout\)"):
        gradient_flow(half, *_elman()[1:])


# ----------------------------------------------------------------------------- issue 16: what is new


NEW_ARRAYS = ("span_min", "weight_sigma", "layer_gamma", "layer_eta", "dead_per_step", "saturation_per_step")
NEW_SCALARS = ("cause", "parted_at", "model_regime", "model_slope", "model_slope_stderr")


def _assert_same_new_fields(mine: FlowResult, ref: FlowResult) -> None:
    """The spectra, per-step fractions and bug-or-model verdict follow the protocols too."""
    for key in NEW_ARRAYS:
        np.testing.assert_array_equal(getattr(mine, key), getattr(ref, key), err_msg=key)
    for key in NEW_SCALARS:
        a, b = getattr(mine, key), getattr(ref, key)
        assert a == b or (a != a and b != b), (key, a, b)
    assert (mine.spectrum is None) == (ref.spectrum is None)
    if mine.spectrum is not None and ref.spectrum is not None:
        assert mine.spectrum.to_dict() == ref.spectrum.to_dict()
    assert [s.to_dict() for s in mine.span_spectra] == [s.to_dict() for s in ref.span_spectra]


def test_spectra_and_verdicts_follow_the_protocols_by_structure() -> None:
    layer, params, x = _elman()
    _assert_same_new_fields(gradient_flow(Recurrence(), params, x), gradient_flow(layer, params, x))
    stack, p, xs = reference.mlp.make_case(np.random.default_rng(2), sizes=(4, 5, 5, 2),
                                           hidden_activation="sigmoid", batch=3)
    mine, ref = gradient_flow(Tower(stack), p, xs), gradient_flow(stack, p, xs)
    _assert_same_new_fields(mine, ref)
    assert ref.layer_gamma.tolist() == pytest.approx([0.25, 0.25, 1.0])  # measured, not looked up by name
    assert ref.eta == pytest.approx(max(np.linalg.norm(p[f"W{i}"], 2) for i in (1, 2)) / 4)


class Maps:
    """Only the two layer maps: a capability, not a stack."""

    def layer_forward(self, params: Any, i: int, a: Any) -> Any:
        return a @ params[f"W{i}"] + params[f"b{i}"]

    def layer_activation(self, params: Any, i: int, net: Any) -> Any:
        return net


def test_layer_maps_is_an_optional_capability_of_a_stack() -> None:
    assert isinstance(Maps(), LayerMaps) and not isinstance(Maps(), DepthStack)
    assert not isinstance(reference.mlp.MLP(), LayerMaps)  # read as a_i W_i + b_i instead
    assert not isinstance(Tower(reference.mlp.MLP()), LayerMaps)
