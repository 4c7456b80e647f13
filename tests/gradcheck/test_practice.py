"""The practice tools' gradient rules as gradcheck ports them (gradcheck/practice.py): their verdicts
follow the thresholds as published, the ratio rules are scale-free and the absolute ones are not,
and the flip count is what re-judging every rescaled loss gives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradcheck.practice import (
    AT_VANISH_FIRST,
    DD_VANISH_MEAN,
    LOSS_SCALES,
    autotrainer_gradient_issue,
    deepdiagnosis_gradient,
    practice_verdicts,
)

SCALE = st.floats(1e-6, 1e6)


@st.composite
def layer_gradients(draw: st.DrawFn) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-layer kernel and bias gradients with per-layer magnitudes from 1e-9 to 1e3."""
    n = draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    sizes = [draw(st.sampled_from([1e-9, 1e-6, 1e-3, 1.0, 1e3])) for _ in range(n)]
    return ([s * rng.standard_normal((3, 2)) for s in sizes], [s * rng.standard_normal(2) for s in sizes])


@given(grads=layer_gradients(), c=SCALE)
def test_autotrainers_ratio_rule_is_scale_free_and_its_first_norm_rule_is_not(
        grads: tuple[list[np.ndarray], list[np.ndarray]], c: float) -> None:
    kernels, biases = grads
    pairs = [a for kb in zip(kernels, biases, strict=True) for a in kb]
    one, scaled = autotrainer_gradient_issue(pairs), autotrainer_gradient_issue([c * a for a in pairs])
    assert scaled.ratio == pytest.approx(one.ratio, rel=1e-9)
    assert scaled.explode == one.explode  # a ratio only
    assert scaled.first_norm == pytest.approx(c * one.first_norm, rel=1e-9)
    # vanishing also needs an absolute ‖g_first‖: enough shrinking always reaches it
    tiny = autotrainer_gradient_issue([a * (0.5 * AT_VANISH_FIRST / one.first_norm) for a in pairs])
    assert tiny.vanish == (one.ratio < 1e-3)


@given(grads=layer_gradients())
def test_deepdiagnosis_calls_any_gradient_vanishing_once_the_loss_is_small_enough(
        grads: tuple[list[np.ndarray], list[np.ndarray]]) -> None:
    kernels, _ = grads
    top = max(float(np.mean(np.abs(k))) for k in kernels)
    shrunk = deepdiagnosis_gradient([k * (0.5 * DD_VANISH_MEAN / top) for k in kernels])
    assert shrunk.symptom == "vanishing gradient" and shrunk.layer == len(kernels) - 1
    assert deepdiagnosis_gradient(kernels).regime in ("vanishing", "stable")


@given(grads=layer_gradients(), terms=st.integers(1, 1000))
def test_flips_count_the_rescaled_losses_that_change_a_verdict(
        grads: tuple[list[np.ndarray], list[np.ndarray]], terms: int) -> None:
    kernels, biases = grads
    got = practice_verdicts(kernels, biases, terms=terms)

    def issue(c: float) -> str:
        return autotrainer_gradient_issue([c * a for kb in zip(kernels, biases, strict=True) for a in kb]).issue

    def symptom(c: float) -> str:
        return deepdiagnosis_gradient([c * k for k in kernels]).symptom

    factors = (*LOSS_SCALES, 1.0 / terms)
    assert got.variants == len(factors) == 5
    assert got.autotrainer.issue == issue(1.0) and got.deepdiagnosis.symptom == symptom(1.0)
    assert got.autotrainer_flips == sum(issue(c) != issue(1.0) for c in factors)
    assert got.deepdiagnosis_flips == sum(symptom(c) != symptom(1.0) for c in factors)
    assert set(got.to_dict()) == {"autotrainer", "deepdiagnosis", "autotrainer_flips",
                                  "deepdiagnosis_flips", "variants"}


def test_a_gradient_near_a_threshold_flips_and_one_far_from_all_does_not() -> None:
    near = [np.full((2, 2), 1e-6), np.ones((2, 2))]  # DeepDiagnosis: mean|g| = 1e-6, 10x its threshold
    v = practice_verdicts(near, [np.ones(2), np.ones(2)], terms=100)
    assert v.deepdiagnosis.symptom == "" and v.deepdiagnosis_flips == 2  # c = 1e-3 and the mean (1/100)
    far = [np.ones((2, 2)), np.ones((2, 2))]
    w = practice_verdicts(far, [np.ones(2), np.ones(2)], terms=1)
    assert (w.autotrainer.issue, w.autotrainer_flips, w.deepdiagnosis_flips) == ("", 0, 0)


@pytest.mark.parametrize(("kernels", "biases", "terms", "message"), [
    ([], [], 1, "0 kernels"), ([np.ones(2)], [], 1, "1 kernels and 0 biases"),
    ([np.ones(2)], [np.ones(2)], 0, "terms=0"),
])
def test_bad_inputs_are_explained(kernels: list[np.ndarray], biases: list[np.ndarray], terms: int,
                                  message: str) -> None:
    with pytest.raises(ValueError, match=message):
        practice_verdicts(kernels, biases, terms=terms)


@given(seed=st.integers(0, 2**16), T=st.sampled_from([1, 3, 6]))
def test_an_rnns_layers_are_its_time_steps_and_their_shares_sum_to_its_gradient(seed: int, T: int) -> None:
    from gradcheck.practice import hand_layer_gradients
    from reference import rnn

    layer, params, x = rnn.make_case(np.random.default_rng(seed), T=T, B=2, H=3)
    dy = np.random.default_rng(seed + 1).standard_normal(np.shape(layer.forward(params, x)))
    kernels, biases = hand_layer_gradients(layer, params, x, dy)
    full = layer.bptt(params, x, dy)[0]
    assert len(kernels) == len(biases) == T
    np.testing.assert_allclose(np.sum(kernels, axis=0), full["V"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.sum(biases, axis=0), full["b"], rtol=1e-12, atol=1e-14)


def test_an_mlps_layers_are_its_layers() -> None:
    from gradcheck.practice import hand_layer_gradients
    from reference import mlp

    layer, params, x = mlp.make_case(np.random.default_rng(0), sizes=(3, 4, 4, 2), batch=5)
    dy = np.ones((5, 2))
    kernels, biases = hand_layer_gradients(layer, params, x, dy)
    grads = layer.backward_with_deltas(params, x, dy)[0]
    assert [k.shape for k in kernels] == [(3, 4), (4, 4), (4, 2)]
    for i, (k, b) in enumerate(zip(kernels, biases, strict=True)):
        np.testing.assert_array_equal(k, grads[f"W{i}"])
        np.testing.assert_array_equal(b, grads[f"b{i}"])
