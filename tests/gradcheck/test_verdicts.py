"""Verdicts on inputs that used to get the wrong one: any array layout, abstention at kinks, a
domain boundary inside the step, a JAX loss one ulp off, structurally zero gradients.

Each class here gave a wrong verdict before (a correct gradient failed or was inconclusive, or a
wrong one passed); the tests say which, and check both sides: the correct gradient passes and a
planted bug fails, blamed on the hand, at the right entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc
from reference import rnn


def _xp(a: Any) -> Any:
    return a.__array_namespace__() if hasattr(a, "__array_namespace__") else np


def tanh_loss(p: dict[str, Any], x: np.ndarray) -> Any:
    xp = _xp(p["W"])
    return xp.sum(xp.tanh(x @ p["W"].T) ** 2)


def numpy_tanh_loss(p: dict[str, Any], x: np.ndarray) -> Any:
    return np.sum(np.tanh(x @ np.asarray(p["W"]).T) ** 2)  # converts: no JAX path


def tanh_grad(p: dict[str, Any], x: np.ndarray) -> dict[str, np.ndarray]:
    y = np.tanh(x @ p["W"].T)
    return {"W": (2 * y * (1 - y**2)).T @ x}


# --------------------------------------------------------------------------- any array layout

def _layouts(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The same (4, 3) values in every layout a user may pass."""
    a = rng.normal(size=(4, 3))
    readonly = a.copy()
    readonly.flags.writeable = False
    wide = np.zeros((4, 6))
    wide[:, ::2] = a
    return {
        "transpose": np.ascontiguousarray(a.T).T,        # W = A.T, Fortran order
        "fortran": np.asfortranarray(a),
        "slice": wide[:, ::2],                            # strided view
        "readonly": readonly,
        "broadcast": np.broadcast_to(a[:1], (4, 3)),      # zero strides, read-only
        "negative-strides": a[::-1, ::-1][::-1, ::-1],
    }


@pytest.mark.parametrize("layout", list(_layouts(np.random.default_rng(0))))
@pytest.mark.parametrize("forward", [tanh_loss, numpy_tanh_loss], ids=["array-api", "numpy"])
def test_every_layout_passes_a_correct_gradient_and_fails_a_wrong_one(
    layout: str, forward: Callable[..., Any]
) -> None:
    """Before: a Fortran-ordered, strided or broadcast parameter was perturbed in a temporary
    copy the forward never saw (numeric 0): inconclusive, or with JAX failed and blamed on the
    hand, and an all-zero hand gradient passed."""
    rng = np.random.default_rng(1)
    W = _layouts(rng)[layout]
    x = rng.normal(size=(5, 3))
    assert gc.check_grad(forward, tanh_grad, {"W": W}, x).verdict == "pass"
    zero = gc.check_grad(forward, lambda p, x: {"W": np.zeros_like(p["W"])}, {"W": W}, x)
    assert (zero.verdict, zero.leaf("W").blame) == ("fail", "hand")


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), entry=st.integers(0, 11), order=st.sampled_from(["C", "F"]))
def test_a_wrong_entry_of_a_transposed_parameter_is_named_at_its_own_index(
    seed: int, entry: int, order: str
) -> None:
    rng = np.random.default_rng(seed)
    W = np.array(rng.normal(size=(4, 3)), order=order)
    x = rng.normal(size=(5, 3))
    index = np.unravel_index(entry, W.shape)

    def bad(p: dict[str, Any], x: np.ndarray) -> dict[str, np.ndarray]:
        g = tanh_grad(p, x)["W"].copy()
        g[index] += 0.1 * max(1.0, abs(g[index]))
        return {"W": g}

    res = gc.check_grad(numpy_tanh_loss, bad, {"W": W}, x)
    leaf = res.leaf("W")
    assert (res.verdict, leaf.blame) == ("fail", "hand")
    assert leaf.worst[0].index == tuple(int(i) for i in index)


def test_a_transposed_layer_input_is_checked() -> None:
    class Linear:
        def forward(self, p: dict[str, Any], x: Any) -> Any:
            return x @ p["W"]

        def backward(self, p: dict[str, Any], x: Any, dy: Any) -> Any:
            return {"W": x.T @ dy}, dy @ p["W"].T

    class NoDx(Linear):
        def backward(self, p: dict[str, Any], x: Any, dy: Any) -> Any:
            return {"W": x.T @ dy}, np.zeros_like(x)

    rng = np.random.default_rng(2)
    params, x = {"W": rng.normal(size=(3, 2))}, rng.normal(size=(3, 5)).T  # x = X.T
    assert gc.check_layer(Linear(), params, x).verdict == "pass"
    res = gc.check_layer(NoDx(), params, x)
    assert (res.verdict, res.leaf("x").blame, res.leaf("W").verdict) == ("fail", "hand", "pass")


# --------------------------------------------------------------------------- abstention at kinks

def relu_sum(p: dict[str, Any]) -> Any:
    return _xp(p["W"]).sum(_xp(p["W"]).maximum(p["W"], 0.0))


def abs_sum(p: dict[str, Any]) -> Any:
    return _xp(p["W"]).sum(_xp(p["W"]).abs(p["W"]))


@pytest.mark.parametrize(("forward", "lo", "hi"), [(relu_sum, 0.0, 1.0), (abs_sum, -1.0, 1.0)],
                         ids=["relu", "abs"])
@pytest.mark.parametrize("references", [("numeric",), ("numeric", "autodiff")])
def test_at_a_kink_the_hand_value_must_lie_between_the_one_sided_slopes(
    forward: Callable[..., Any], lo: float, hi: float, references: tuple[str, ...]
) -> None:
    """Before: a tensor whose every entry sits at a kink passed with any hand gradient (5, −3)
    and the summary said "max rel err 0"."""
    W = np.zeros((2, 3))
    for outside in (hi + 4.0, lo - 4.0):
        res = gc.check_grad(forward, lambda p, g=outside: {"W": np.full_like(p["W"], g)}, {"W": W},
                            references=references)
        leaf = res.leaf("W")
        assert (res.verdict, leaf.blame) == ("fail", "hand")
        assert any("outside the interval of the one-sided" in n for n in leaf.notes)
        assert "one-sided slopes" in res.message()
    for inside in (lo, 0.5 * (lo + hi), hi):
        res = gc.check_grad(forward, lambda p, g=inside: {"W": np.full_like(p["W"], g)}, {"W": W},
                            references=references)
        leaf = res.leaf("W")
        # nothing could be verified: never a pass, and no error is claimed
        assert res.verdict == "inconclusive" and leaf.blame is None
        assert np.isnan(leaf.max_rel_err)
        assert any("no entry could be verified" in n for n in leaf.notes)


def test_kinks_beside_verified_entries_are_noted_not_blamed() -> None:
    """Beside verified entries a value outside the one-sided slopes is noted, not blamed: where
    several pieces meet (tied maxima of overlapping windows) such values are valid choices, and
    the slopes along one entry cannot tell that from a wrong value at a simple kink."""
    W = np.array([0.0, 0.0, 1.5, -2.0])
    right = gc.check_grad(relu_sum, lambda p: {"W": (p["W"] > 0).astype(float)}, {"W": W})
    assert right.verdict == "pass" and right.leaf("W").n_kinks == 2
    assert not any("outside the interval" in n for n in right.leaf("W").notes)
    odd = gc.check_grad(relu_sum, lambda p: {"W": np.where(p["W"] == 0, 3.0, p["W"] > 0) * 1.0},
                        {"W": W})
    assert odd.verdict == "pass"
    assert any("2 entries at points where the forward is not differentiable have a hand value "
               "outside the interval" in n for n in odd.leaf("W").notes)
    wrong = gc.check_grad(relu_sum, lambda p: {"W": np.where(p["W"] == 0, 0.0, -1.0)}, {"W": W})
    assert (wrong.verdict, wrong.leaf("W").blame) == ("fail", "hand")  # the smooth entries


# --------------------------------------------------------------------------- domain boundaries

def log_sum(p: dict[str, Any]) -> Any:
    return _xp(p["W"]).sum(_xp(p["W"]).log(p["W"]))


def numpy_log_sum(p: dict[str, Any]) -> Any:
    return np.sum(np.log(np.asarray(p["W"])))


def sqrt_sum(p: dict[str, Any]) -> Any:
    return np.sum(np.sqrt(np.asarray(p["W"])))


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("complex_step", [None, False], ids=["complex-step", "central"])
@pytest.mark.parametrize(("forward", "grad", "W"), [
    (log_sum, lambda p: {"W": 1 / p["W"]}, np.array([1e-6, 2e-6, 0.5])),
    (numpy_log_sum, lambda p: {"W": 1 / p["W"]}, np.array([1e-6, 2e-6, 0.5])),
    (sqrt_sum, lambda p: {"W": 0.5 / np.sqrt(p["W"])}, np.array([1e-9, 4.0])),
], ids=["log-array-api", "log-numpy", "sqrt-numpy"])
def test_a_domain_boundary_inside_the_step_is_no_kink(
    forward: Callable[..., Any], grad: Callable[..., Any], W: np.ndarray, complex_step: bool | None
) -> None:
    """Before: the central step crossed 0, the differences were NaN, the entries were called
    "not differentiable" and a sign-flipped hand gradient passed."""
    right = gc.check_grad(forward, grad, {"W": W}, complex_step=complex_step)
    assert right.verdict == "pass" and right.leaf("W").n_kinks == 0
    flipped = gc.check_grad(forward, lambda p: {"W": -grad(p)["W"]}, {"W": W}, complex_step=complex_step)
    leaf = flipped.leaf("W")
    assert (flipped.verdict, leaf.blame, leaf.n_kinks) == ("fail", "hand", 0)
    assert leaf.n_mismatched == W.size


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_the_jax_reference_is_kept_near_a_domain_boundary() -> None:
    """Before: the noise floor was NaN there, and the JAX path was refused with "gives the loss
    -55.262042231857095, not -55.262042231857095: not the same function"."""
    res = gc.check_grad(log_sum, lambda p: {"W": 1 / p["W"]}, {"W": np.array([1e-6, 3e-6, 2.0])})
    assert res.references == ("numeric", "autodiff")
    assert np.isfinite(res.forward_noise)
    assert not any("not the same function" in n for n in res.notes)


def test_a_jax_loss_that_differs_says_by_how_much() -> None:
    def off(p: dict[str, Any]) -> Any:
        xp = _xp(p["W"])
        return xp.sum(p["W"] ** 2) + (0.0 if xp is np else 1e-3)

    res = gc.check_grad(off, lambda p: {"W": 2 * p["W"]}, {"W": np.arange(1.0, 4.0)}, jax_twin=False)
    (note,) = [n for n in res.notes if "not the same function" in n]
    assert "apart, beyond the forward's noise floor allowance" in note
    # The automatic twin runs the numpy code itself (its `np` is the twin's numpy too), so it
    # computes the numpy forward's loss and is the reference.
    twin = gc.check_grad(off, lambda p: {"W": 2 * p["W"]}, {"W": np.arange(1.0, 4.0)})
    assert twin.passed and twin.jax_source == "twin"


# --------------------------------------------------------------------------- structurally zero

def test_an_unused_parameter_passes_as_unexercised_and_a_nonzero_gradient_for_it_fails() -> None:
    """Before: hand = 0, numeric = 0 ± 5e-10 and the leaf was inconclusive."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 3))
    params = {"W": rng.normal(size=(4, 3)), "unused": rng.normal(size=5)}

    def grad(p: dict[str, Any], x: np.ndarray) -> dict[str, np.ndarray]:
        return {**tanh_grad(p, x), "unused": np.zeros(5)}

    for forward in (numpy_tanh_loss, tanh_loss):
        res = gc.check_grad(forward, grad, params, x)
        unused = res.leaf("unused")
        assert res.verdict == "pass" and unused.n_unexercised == 5
        assert res.leaf("W").n_unexercised == 0
        assert any("unexercised" in n for n in unused.notes)
        assert res.to_dict()["leaves"][1]["n_unexercised"] == 5
        bad = gc.check_grad(forward, lambda p, x: {**grad(p, x), "unused": np.full(5, 0.1)}, params, x)
        assert (bad.verdict, bad.leaf("unused").blame) == ("fail", "hand")


@pytest.mark.parametrize("references", [("numeric",), ("numeric", "autodiff")])
def test_recurrent_weights_at_one_step_from_a_zero_state_are_unexercised(
    references: tuple[str, ...]
) -> None:
    layer, params, x = rnn.make_case(np.random.default_rng(4), T=1)
    params = {**params, "h0": np.zeros_like(params["h0"])}
    res = gc.check_layer(layer, params, x, references=references)
    assert res.verdict == "pass", res
    assert res.leaf("U").n_unexercised == params["U"].size


def test_dead_relu_units_are_unexercised() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 3))
    W = rng.normal(size=(3, 4))
    W[:, 1] = -np.abs(W[:, 1]) - 1.0  # unit 1 is dead for positive inputs
    x = np.abs(x)
    V = rng.normal(size=(4,))

    def loss(p: dict[str, Any]) -> Any:
        return np.sum(np.maximum(x @ p["W"], 0.0) @ p["V"])

    def grad(p: dict[str, Any]) -> dict[str, np.ndarray]:
        z = x @ p["W"]
        a = np.maximum(z, 0.0)
        return {"W": x.T @ ((z > 0) * p["V"]), "V": a.sum(axis=0)}

    dead = int(np.count_nonzero((x @ W <= 0).all(axis=0)))
    assert dead >= 1
    res = gc.check_grad(loss, grad, {"W": W, "V": V})
    assert res.verdict == "pass"
    assert res.leaf("W").n_unexercised == 3 * dead and res.leaf("V").n_unexercised == dead


# --------------------------------------------------------------------------- near a kink

def _near_kink_case(seed: int, near: float) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A ReLU layer with squared error, one pre-activation moved to within ``near`` of 0."""
    rng = np.random.default_rng(seed)
    x, W, d = rng.normal(size=(4, 3)), rng.normal(size=(3, 5)), rng.normal(size=(4, 5))
    z = x @ W
    b = np.zeros(5)
    i, j = rng.integers(4), rng.integers(5)
    b[j] = -z[i, j] + rng.choice([-1.0, 1.0]) * near * rng.random()
    return {"W": W, "b": b}, x, d


def relu_sse(p: dict[str, Any], x: np.ndarray, d: np.ndarray) -> Any:
    xp = _xp(p["W"])
    return 0.5 * xp.sum((xp.maximum(x @ p["W"] + p["b"], 0.0) - d) ** 2)


def numpy_relu_sse(p: dict[str, Any], x: np.ndarray, d: np.ndarray) -> Any:
    return 0.5 * np.sum((np.maximum(x @ np.asarray(p["W"]) + np.asarray(p["b"]), 0.0) - d) ** 2)


def relu_sse_grad(p: dict[str, Any], x: np.ndarray, d: np.ndarray) -> dict[str, np.ndarray]:
    z = x @ p["W"] + p["b"]
    dz = (np.maximum(z, 0.0) - d) * (z > 0)
    return {"W": x.T @ dz, "b": dz.sum(axis=0)}


@pytest.mark.parametrize("forward", [numpy_relu_sse, relu_sse], ids=["numpy", "array-api"])
@pytest.mark.parametrize("near", [1e-7, 1e-9, 1e-12])
def test_a_pre_activation_next_to_zero_is_no_false_alarm(near: float, forward: Callable[..., Any]) -> None:
    """Before: about a quarter of these correct cases failed, the hand value sitting on the edge
    of the interval of one-sided slopes that are only first-order accurate.  Measured over seeds
    0-59 × these three distances × both forwards: 359 of 360 pass (the one left is the xfail
    below); the first 25 seeds are checked here."""
    for seed in range(25):
        params, x, d = _near_kink_case(seed, near)
        res = gc.check_grad(forward, relu_sse_grad, params, x, d)
        assert res.verdict == "pass", (seed, res)


@pytest.mark.xfail(strict=True, reason="known limit without autodiff: a second natural "
                   "pre-activation 1e-3 from 0 besides the planted one bends the noise-floor and "
                   "precision probes, the forward is classed float32 and its 5e-4 step crosses a "
                   "kink it does not flag")
def test_two_nearby_kinks_still_confuse_the_precision_probe() -> None:
    params, x, d = _near_kink_case(28, 1e-7)
    assert gc.check_grad(numpy_relu_sse, relu_sse_grad, params, x, d, jax_twin=False).verdict == "pass"


def test_two_nearby_kinks_pass_with_the_automatic_twin() -> None:
    """The same numpy forward with its automatic JAX twin (the default): autodiff settles the
    entries the confused finite differences cannot."""
    params, x, d = _near_kink_case(28, 1e-7)
    res = gc.check_grad(numpy_relu_sse, relu_sse_grad, params, x, d)
    assert res.verdict == "pass" and res.jax_source == "twin", res


@pytest.mark.parametrize("forward", [numpy_relu_sse, relu_sse], ids=["numpy", "array-api"])
def test_a_bug_next_to_a_kink_is_still_caught(forward: Callable[..., Any]) -> None:
    params, x, d = _near_kink_case(11, 1e-9)

    def leaky(p: dict[str, Any], x: np.ndarray, d: np.ndarray) -> dict[str, np.ndarray]:
        z = x @ p["W"] + p["b"]
        dz = (np.maximum(z, 0.0) - d) * np.where(z > 0, 1.0, 0.1)  # the forward is not leaky
        return {"W": x.T @ dz, "b": dz.sum(axis=0)}

    res = gc.check_grad(forward, leaky, params, x, d)
    assert (res.verdict, res.leaf("b").blame) == ("fail", "hand")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("references", [("numeric",), ("numeric", "autodiff")])
def test_tied_maxima_of_overlapping_pooling_windows_are_no_false_alarm(
    seed: int, references: tuple[str, ...]
) -> None:
    """An entry tied in several overlapping windows may take any of their shares: its valid
    values reach beyond the interval of its one-sided slopes (mixed-sign dy), which must not
    blame the hand backward's first-argmax choice."""
    from reference import pooling

    x = np.random.default_rng(seed).integers(0, 3, size=(2, 2, 7, 7)).astype(float)
    res = gc.check_layer(pooling.MaxPool2D(size=3, stride=2), {}, x, references=references)
    assert res.verdict == "pass", res
    assert res.leaf("x").n_kinks > 0
