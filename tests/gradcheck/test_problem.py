"""problem.py: user code → a frozen Problem.  Leaves are flattened once with readable names, hand
gradients are validated, f0 and loss_scale are the loss and the size of its terms, dy is seeded
and exact in y's dtype, and user code is always called on copies."""

from __future__ import annotations

import dataclasses
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc
from gradcheck import problem
from gradcheck.options import CheckOptions, validate


def square(p: dict[str, Any]) -> Any:
    return np.sum(p["W"] ** 2)


def square_grad(p: dict[str, Any]) -> dict[str, Any]:
    return {"W": 2 * p["W"]}


class Linear:
    """y = x W + b, recording the dy its backward is given."""

    def __init__(self) -> None:
        self.dys: list[np.ndarray] = []

    def forward(self, p: dict[str, Any], x: np.ndarray) -> np.ndarray:
        return x @ p["W"] + p["b"]

    def backward(self, p: dict[str, Any], x: np.ndarray, dy: np.ndarray) -> tuple[Any, Any]:
        self.dys.append(dy.copy())
        return {"W": x.T @ dy, "b": dy.sum(axis=0)}, dy @ p["W"].T


def linear_case(dtype: Any = np.float64, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    return ({"W": rng.normal(size=(3, 2)).astype(dtype), "b": rng.normal(size=2).astype(dtype)},
            rng.normal(size=(4, 3)).astype(dtype))


# --------------------------------------------------------------------------- leaves and names


def test_grad_problem_names_the_leaves_of_a_nested_tree() -> None:
    params = {"W": np.ones((2, 2)), "layers": [{"b": np.ones(2)}, {"b": np.ones(3)}]}

    def fun(p: dict[str, Any]) -> Any:
        return np.sum(p["W"]) + sum(np.sum(layer["b"] ** 2) for layer in p["layers"])

    def grad(p: dict[str, Any]) -> dict[str, Any]:
        return {"W": np.ones((2, 2)), "layers": [{"b": 2 * layer["b"]} for layer in p["layers"]]}

    prob = problem.grad_problem(fun, grad, params, (), CheckOptions())
    assert prob.names == ("W", "layers[0].b", "layers[1].b")
    assert [v.shape for v in prob.values] == [(2, 2), (2,), (3,)]
    assert prob.kind == "check_grad" and prob.name == "fun"
    # The tree is flattened once: rebuild gives the user's structure back.
    rebuilt = prob.rebuild(list(prob.values))
    assert set(rebuilt) == {"W", "layers"} and len(rebuilt["layers"]) == 2
    assert fun(rebuilt) == pytest.approx(prob.f0)


def test_a_bare_array_parameter_is_named_params() -> None:
    prob = problem.grad_problem(lambda W: np.sum(W**2), lambda W: 2 * W, np.ones(3), (), CheckOptions())
    assert prob.names == ("params",)


def test_layer_problem_names_params_then_x() -> None:
    params, x = linear_case()
    prob = problem.layer_problem(Linear(), params, x, CheckOptions())
    assert prob.names == ("W", "b", "x")
    assert prob.kind == "check_layer" and prob.name == "Linear"


def test_layer_problem_names_a_tree_of_inputs() -> None:
    class Two:
        def forward(self, p: dict[str, Any], x: list[np.ndarray]) -> np.ndarray:
            return x[0] @ p["layers"][1]["b"] + x[1]

        def backward(self, p: dict[str, Any], x: list[np.ndarray], dy: np.ndarray) -> tuple[Any, Any]:
            return ({"layers": [{"b": np.zeros((3, 2))}, {"b": x[0].T @ dy}]},
                    [dy @ p["layers"][1]["b"].T, dy])

    params = {"layers": [{"b": np.ones((3, 2))}, {"b": np.ones((3, 2))}]}
    prob = problem.layer_problem(Two(), params, [np.ones((4, 3)), np.ones((4, 2))],
                                 validate({"name": "two"}))
    assert prob.names == ("layers[0].b", "layers[1].b", "x[0]", "x[1]")
    assert prob.name == "two"


def test_a_parameter_free_layer_checks_only_x() -> None:
    class Tanh:
        def forward(self, p: dict[str, Any], x: np.ndarray) -> np.ndarray:
            return np.tanh(x)

        def backward(self, p: dict[str, Any], x: np.ndarray, dy: np.ndarray) -> tuple[Any, Any]:
            return {}, dy * (1 - np.tanh(x) ** 2)

    prob = problem.layer_problem(Tanh(), {}, np.linspace(-1, 1, 5), CheckOptions())
    assert prob.names == ("x",) and prob.checked == (0,) and prob.total == 5


def test_empty_params_are_rejected() -> None:
    with pytest.raises(gc.InvalidArgument, match="params is empty"):
        problem.grad_problem(lambda p: 0.0, lambda p: {}, {}, (), CheckOptions())


def test_integer_parameters_are_rejected_by_name() -> None:
    with pytest.raises(gc.InvalidArgument, match=r"layers\[0\]\.b has integer dtype"):
        problem.grad_problem(lambda p: 0.0, lambda p: p, {"layers": [{"b": np.arange(3)}]}, (),
                             CheckOptions())


# --------------------------------------------------------------------------- hand gradients


def test_a_mis_shaped_hand_gradient_is_rejected() -> None:
    with pytest.raises(gc.GradientStructureError, match=r"shape \(3, 2\) for W.*transposed"):
        problem.grad_problem(square, lambda p: {"W": 2 * p["W"].T}, {"W": np.ones((2, 3))}, (),
                             CheckOptions())


def test_a_missing_hand_gradient_is_rejected() -> None:
    with pytest.raises(gc.GradientStructureError, match=r"missing \['b'\]"):
        problem.grad_problem(square, square_grad, {"W": np.ones(2), "b": np.ones(2)}, (),
                             CheckOptions())


def test_a_non_finite_hand_gradient_is_rejected() -> None:
    with pytest.raises(gc.NonFiniteError, match="gradient of W"):
        problem.grad_problem(square, lambda p: {"W": np.full(2, np.inf)}, {"W": np.ones(2)}, (),
                             CheckOptions())


def test_a_squeezable_hand_gradient_is_reshaped_with_a_note() -> None:
    prob = problem.grad_problem(square, lambda p: {"W": 2 * p["W"][None, :]}, {"W": np.ones(3)},
                                (), CheckOptions())
    assert prob.hand[0] is not None and prob.hand[0].shape == (3,)
    assert any("squeezable" in n for n in prob.notes)


def test_a_flat_hand_gradient_is_matched_by_position_with_a_note() -> None:
    params = {"W": np.ones(2), "b": np.full(3, 2.0)}
    prob = problem.grad_problem(lambda p: np.sum(p["W"] ** 2) + np.sum(p["b"] ** 2),
                                lambda p: [2 * p["W"], 2 * p["b"]], params, (), CheckOptions())
    assert prob.hand[1] is not None
    np.testing.assert_array_equal(prob.hand[1], np.full(3, 4.0))
    assert any("by position" in n for n in prob.notes)


def test_the_hand_gradient_keeps_its_dtype() -> None:
    prob = problem.grad_problem(square, lambda p: {"W": (2 * p["W"]).astype(np.float32)},
                                {"W": np.ones(3)}, (), CheckOptions())
    assert prob.hand[0] is not None and prob.hand[0].dtype == np.float32


def test_a_layer_must_return_dparams_and_dx() -> None:
    class Three(Linear):
        def backward(self, p: dict[str, Any], x: np.ndarray, dy: np.ndarray) -> Any:
            return x, p["W"], p["b"]

    params, x = linear_case()
    with pytest.raises(gc.InvalidArgument, match=r"must return \(dparams, dx\).*3 value"):
        problem.layer_problem(Three(), params, x, CheckOptions())


def test_a_layer_without_backward_is_rejected() -> None:
    class Forward:
        def forward(self, p: Any, x: np.ndarray) -> np.ndarray:
            return x

    with pytest.raises(gc.InvalidArgument, match=r"no backward\(\) method"):
        problem.layer_problem(Forward(), {}, np.ones(2), CheckOptions())


def test_a_layer_returning_out_and_cache_is_rejected() -> None:
    class Cached(Linear):
        def forward(self, p: dict[str, Any], x: np.ndarray) -> Any:
            return super().forward(p, x), None

    params, x = linear_case()
    with pytest.raises(gc.InvalidArgument, match="cs231n_layer"):
        problem.layer_problem(Cached(), params, x, CheckOptions())


# --------------------------------------------------------------------------- the record


def test_problem_is_frozen() -> None:
    prob = problem.grad_problem(square, square_grad, {"W": np.ones(3)}, (), CheckOptions())
    with pytest.raises(dataclasses.FrozenInstanceError):
        prob.f0 = 0.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        prob.hand = ()  # type: ignore[misc]
    assert isinstance(prob.values, tuple) and isinstance(prob.hand, tuple)
    assert isinstance(prob.names, tuple) and isinstance(prob.notes, tuple)


def test_dx_none_leaves_x_unchecked() -> None:
    class NoDx(Linear):
        def backward(self, p: dict[str, Any], x: np.ndarray, dy: np.ndarray) -> tuple[Any, Any]:
            dp, _ = super().backward(p, x, dy)
            return dp, None

    params, x = linear_case()
    prob = problem.layer_problem(NoDx(), params, x, CheckOptions())
    assert prob.hand[2] is None
    assert prob.checked == (0, 1)
    assert prob.total == params["W"].size + params["b"].size
    assert any("no gradient for x: it is not checked" in n for n in prob.notes)


def test_checked_and_total_with_every_leaf() -> None:
    params, x = linear_case()
    prob = problem.layer_problem(Linear(), params, x, CheckOptions())
    assert prob.checked == (0, 1, 2)
    assert prob.total == 6 + 2 + 12


def test_a_missing_gradient_for_a_parameter_is_an_error() -> None:
    class NoDb(Linear):
        def backward(self, p: dict[str, Any], x: np.ndarray, dy: np.ndarray) -> tuple[Any, Any]:
            dp, dx = super().backward(p, x, dy)
            return {"W": dp["W"], "b": None}, dx

    params, x = linear_case()
    with pytest.raises(gc.GradientStructureError, match="returned None for b"):
        problem.layer_problem(NoDb(), params, x, CheckOptions())


@given(W=hnp.arrays(np.float64, st.integers(1, 6), elements=st.floats(-10, 10)),
       shift=st.floats(-100, 100))
def test_check_grad_f0_is_the_loss_and_loss_scale_its_magnitude(W: np.ndarray, shift: float) -> None:
    def fun(p: dict[str, Any]) -> Any:
        return np.sum(p["W"] ** 2) + shift

    prob = problem.grad_problem(fun, square_grad, {"W": W}, (), CheckOptions())
    expected = float(np.sum(W**2) + shift)
    assert prob.f0 == expected
    assert prob.loss_scale == abs(expected)


def test_f0_is_in_the_users_dtype() -> None:
    W = np.full(3, 0.1, dtype=np.float32)
    prob = problem.grad_problem(square, square_grad, {"W": W}, (), CheckOptions())
    assert prob.f0 == float(np.sum(W**2))
    assert prob.f0 != float(np.sum(W.astype(np.float64) ** 2))


@settings(max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float64, np.float32, np.float16]))
def test_layer_dy_is_seeded_exact_in_y_dtype_and_defines_f0(seed: int, dtype: type) -> None:
    params, x = linear_case(dtype)
    layer = Linear()
    prob = problem.layer_problem(layer, params, x, validate({"seed": seed}))
    (dy,) = layer.dys
    y = layer.forward(params, x)
    assert dy.dtype == y.dtype == np.dtype(dtype)
    expected_dy = np.random.default_rng(seed).standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(dy, expected_dy)
    terms = dy.astype(np.float64) * y.astype(np.float64)
    assert prob.f0 == float(np.sum(terms))
    assert prob.loss_scale == float(np.sum(np.abs(terms)))
    # The loss the references differentiate uses the same dy: at the given point it is f0.
    assert float(prob.loss(prob.rebuild(list(prob.values)))) == pytest.approx(prob.f0, rel=1e-12)


def test_another_seed_gives_another_dy() -> None:
    params, x = linear_case()
    a, b = Linear(), Linear()
    problem.layer_problem(a, params, x, validate({"seed": 0}))
    problem.layer_problem(b, params, x, validate({"seed": 1}))
    assert not np.array_equal(a.dys[0], b.dys[0])


# --------------------------------------------------------------------------- hygiene


def test_a_backward_that_mutates_its_inputs_gets_a_note_and_the_users_arrays_are_unchanged() -> None:
    params, x = linear_case()
    before = {k: v.copy() for k, v in params.items()}, x.copy()

    def grad(p: dict[str, Any]) -> dict[str, Any]:
        g = {"W": 2 * p["W"]}
        p["W"] *= 3.0
        return g

    prob = problem.grad_problem(square, grad, {"W": params["W"]}, (), CheckOptions())
    assert any("grad modifies its inputs" in n and "gradcheck passes copies" in n for n in prob.notes)
    np.testing.assert_array_equal(params["W"], before[0]["W"])
    assert prob.hand[0] is not None
    np.testing.assert_array_equal(prob.hand[0], 2 * before[0]["W"])

    class Writes(Linear):
        def backward(self, p: dict[str, Any], x: np.ndarray, dy: np.ndarray) -> tuple[Any, Any]:
            out = super().backward(p, x, dy)
            x[...] = 0.0
            p["b"] += 1.0
            return out

    prob = problem.layer_problem(Writes(), params, x, CheckOptions())
    assert any("Writes.backward(params, x, dy) modifies its inputs" in n for n in prob.notes)
    np.testing.assert_array_equal(x, before[1])
    for k, v in before[0].items():
        np.testing.assert_array_equal(params[k], v)


def test_a_pure_backward_gets_no_mutation_note() -> None:
    params, x = linear_case()
    prob = problem.layer_problem(Linear(), params, x, CheckOptions())
    assert not any("modifies" in n for n in prob.notes)


def test_a_forward_that_mutates_its_inputs_raises() -> None:
    def fun(p: dict[str, Any], c: np.ndarray) -> Any:
        c[0] = 99.0
        return np.sum(p["W"] ** 2)

    c = np.zeros(2)
    with pytest.raises(gc.InputMutated, match="the loss function fun"):
        problem.grad_problem(fun, lambda p, c: square_grad(p), {"W": np.ones(2)}, (c,),
                             CheckOptions())
    assert c[0] == 0.0

    class Writes(Linear):
        def forward(self, p: dict[str, Any], x: np.ndarray) -> np.ndarray:
            p["W"][0, 0] = 5.0
            return super().forward(p, x)

    params, x = linear_case()
    w = params["W"].copy()
    with pytest.raises(gc.InputMutated, match=r"Writes\.forward\(params, x\) modified its input"):
        problem.layer_problem(Writes(), params, x, CheckOptions())
    np.testing.assert_array_equal(params["W"], w)


def test_an_exception_in_user_code_names_it() -> None:
    def broken(p: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("nope")

    with pytest.raises(gc.UserCodeError, match=r"broken\(params, \*args\) raised KeyError") as info:
        problem.grad_problem(square, broken, {"W": np.ones(2)}, (), CheckOptions())
    assert isinstance(info.value.__cause__, KeyError)


def test_a_non_finite_loss_is_rejected() -> None:
    with pytest.raises(gc.NonFiniteError, match="non-finite loss"):
        problem.grad_problem(lambda p: np.inf * np.sum(p["W"]), square_grad, {"W": np.ones(2)},
                             (), CheckOptions())


# --------------------------------------------------------------------------- rebuild, hand_at


class Tagged(np.ndarray):
    """An ndarray subclass the user's forward insists on."""


def test_rebuild_restores_array_subclasses() -> None:
    W = np.arange(6.0).reshape(2, 3).view(Tagged)
    seen: list[type] = []

    def fun(p: dict[str, Any]) -> float:
        seen.append(type(p["W"]))
        return float(np.sum(np.asarray(p["W"]) ** 2))

    prob = problem.grad_problem(fun, lambda p: {"W": 2 * np.asarray(p["W"]), "b": np.zeros(2)},
                                {"W": W, "b": np.ones(2)}, (), CheckOptions())
    assert prob.subclasses == (Tagged, np.ndarray)
    rebuilt = prob.rebuild([np.zeros((2, 3)), np.zeros(2)])
    assert type(rebuilt["W"]) is Tagged and type(rebuilt["b"]) is np.ndarray
    np.testing.assert_array_equal(np.asarray(rebuilt["W"]), np.zeros((2, 3)))
    assert seen == [Tagged]
    prob.loss(prob.rebuild(list(prob.values)))
    assert seen == [Tagged, Tagged]


def test_rebuild_leaves_non_numpy_leaves_alone() -> None:
    prob = problem.grad_problem(square, square_grad, {"W": np.ones(2).view(Tagged)}, (),
                                CheckOptions())
    marker = object()
    assert prob.rebuild([marker])["W"] is marker


def test_grad_hand_at_recomputes_in_an_upcast_dtype() -> None:
    W = np.linspace(-1, 1, 4).astype(np.float32)
    c = np.full(4, 1.5, dtype=np.float32)

    def fun(p: dict[str, Any], c: np.ndarray) -> Any:
        return np.sum(c * p["W"] ** 2)

    def grad(p: dict[str, Any], c: np.ndarray) -> dict[str, Any]:
        return {"W": 2 * c * p["W"]}

    prob = problem.grad_problem(fun, grad, {"W": W}, (c,), CheckOptions())
    assert prob.hand[0] is not None and prob.hand[0].dtype == np.float32
    assert prob.hand_at is not None
    (wide,) = prob.hand_at([W.astype(np.float64)], np.float64)
    assert wide is not None and wide.dtype == np.float64
    np.testing.assert_array_equal(wide, 2 * c.astype(np.float64) * W.astype(np.float64))
    (native,) = prob.hand_at([W], None)
    assert native is not None and native.dtype == np.float32
    # At another point: the backward is evaluated there.
    (moved,) = prob.hand_at([np.ones(4)], np.float64)
    assert moved is not None
    np.testing.assert_array_equal(moved, np.full(4, 3.0))
    assert c.dtype == np.float32  # the user's args are not cast in place


def test_layer_hand_at_recomputes_in_an_upcast_dtype() -> None:
    params, x = linear_case(np.float32)
    layer = Linear()
    prob = problem.layer_problem(layer, params, x, CheckOptions())
    assert prob.hand_at is not None
    wide = prob.hand_at([v.astype(np.float64) for v in prob.values], np.float64)
    assert layer.dys[-1].dtype == np.float64
    np.testing.assert_array_equal(layer.dys[-1], layer.dys[0].astype(np.float64))
    assert all(h is not None and h.dtype == np.float64 for h in wide)
    again = prob.hand_at(list(prob.values), None)
    assert layer.dys[-1].dtype == np.float32
    for h, h0 in zip(again, prob.hand, strict=True):
        assert h is not None and h0 is not None
        np.testing.assert_array_equal(h, h0)


# --------------------------------------------------------------------------- JAX candidates


def test_grad_candidates_without_and_with_a_twin() -> None:
    opts = CheckOptions()
    prob = problem.grad_problem(square, square_grad, {"W": np.ones(2)}, (), opts)
    assert not prob.twin
    assert [c[0] for c in prob.jax_candidates()] == [
        "the forward on JAX arrays", "the forward on JAX parameters and numpy args",
        "the automatic JAX twin"]
    off = problem.grad_problem(square, square_grad, {"W": np.ones(2)}, (),
                               validate({"jax_twin": False}))
    assert [c[0] for c in off.jax_candidates()] == [
        "the forward on JAX arrays", "the forward on JAX parameters and numpy args"]
    twin = problem.grad_problem(square, square_grad, {"W": np.ones(2)}, (),
                                validate({"jax_fun": square}))
    assert twin.twin
    assert [c[0] for c in twin.jax_candidates()] == ["the jax_fun twin"]


def test_layer_candidate_contracts_with_the_same_dy() -> None:
    params, x = linear_case()
    prob = problem.layer_problem(Linear(), params, x, CheckOptions())
    (desc, jloss, _), (twin_desc, _, _) = prob.jax_candidates()
    assert desc == "the forward on JAX arrays" and twin_desc == "the automatic JAX twin"
    # The candidate is callable on numpy leaves too: the same L = <dy, y>.
    assert float(jloss(list(prob.values))) == pytest.approx(prob.f0, rel=1e-12)
