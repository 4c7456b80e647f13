"""Bad inputs, continued from test_errors.py: complex losses, size-0 tensors, arguments that cannot
be deep-copied, misspelt tolerance keys; then one table of every bad-input class (DESIGN.md's list
and these), each raising its own error class with a message naming the tensor or the option."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import pytest

import gradcheck as gc
from gradcheck.options import normalise
from tests.gradcheck import test_errors as TE
from tests.gradcheck._stages import assert_clear_error

rng = np.random.default_rng(1)
W = rng.normal(size=(3, 2))
X = rng.normal(size=(4, 3))
P = {"W": W, "b": np.zeros(2)}
loss, grad = TE.loss, TE.grad


def square(p: dict) -> float:
    return float(np.sum(p["W"] ** 2))


def d_square(p: dict) -> dict:
    return {"W": 2 * p["W"]}


def complex_loss(p: dict) -> complex:
    return complex(np.sum(p["W"] ** 2) + 1j * np.sum(p["W"]))


class Linear:
    def forward(self, p: dict, x: np.ndarray) -> np.ndarray:
        return x @ p["W"]

    def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
        return {"W": x.T @ dy}, dy @ p["W"].T


class ComplexOut(Linear):
    def forward(self, p: dict, x: np.ndarray) -> np.ndarray:
        return (x @ p["W"]) * (1 + 1j)


# --------------------------------------------------------------------- 8. complex loss, size 0


def test_a_complex_loss_is_rejected_naming_the_function_the_value_and_the_fix() -> None:
    with pytest.raises(gc.InvalidArgument) as info:
        gc.check_grad(complex_loss, d_square, {"W": W})
    msg = str(info.value)
    for part in ("complex_loss(params, *args)", "complex loss", repr(complex_loss({"W": W})),
                 "real scalar", ".real", "abs("):
        assert part in msg, f"{part!r} not in: {msg}"


def test_a_complex_loss_with_zero_imaginary_part_is_still_a_complex_loss() -> None:
    with pytest.raises(gc.InvalidArgument, match="complex loss"):
        gc.check_grad(lambda p: complex(square(p)), d_square, {"W": W})


def test_a_real_loss_is_still_checked_with_the_complex_step() -> None:
    # The engine evaluates the forward at complex points itself: that must stay allowed.
    res = gc.check_grad(lambda p: np.sum(np.sin(p["W"])), lambda p: {"W": np.cos(p["W"])}, {"W": W},
                        references=("numeric",))
    assert res.passed
    assert res.leaves[0].numeric_method is not None and "complex" in res.leaves[0].numeric_method


def test_a_complex_layer_output_is_rejected_with_what_to_return() -> None:
    with pytest.raises(gc.InvalidArgument) as info:
        gc.check_layer(ComplexOut(), {"W": W}, X)
    msg = str(info.value)
    for part in ("ComplexOut.forward(params, x)", "complex", "(4, 2)", "y.real", "abs(y)"):
        assert part in msg, f"{part!r} not in: {msg}"


@pytest.mark.parametrize(("params", "parts"), [
    ({"W": np.zeros((0, 3))}, ["W (shape (0, 3))", "has no entries", "nothing to check"]),
    (np.zeros(0), ["params (shape (0,))", "nothing to check"]),
    ({"W": np.zeros((0, 3)), "b": np.zeros(0)}, ["W (shape (0, 3))", "b (shape (0,))", "have no entries"]),
], ids=["the only leaf", "a bare array", "every leaf"])
def test_a_problem_of_empty_tensors_only_has_nothing_to_check(params: Any, parts: list[str]) -> None:
    with pytest.raises(gc.InvalidArgument) as info:
        gc.check_grad(lambda p: 0.0, lambda p: p, params)
    for part in parts:
        assert part in str(info.value), f"{part!r} not in: {info.value}"


def test_an_empty_layer_input_without_parameters_has_nothing_to_check() -> None:
    with pytest.raises(gc.InvalidArgument, match=r"x \(shape \(0, 3\)\) has no entries"):
        gc.check_layer(Linear(), {}, np.zeros((0, 3)))


def test_a_layer_with_no_gradient_to_check_is_an_error_not_a_pass() -> None:
    class NoGrads:
        def forward(self, p: dict, x: np.ndarray) -> np.ndarray:
            return 2 * x

        def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
            return {}, None

    with pytest.raises(gc.InvalidArgument, match=r"nothing to check.*no gradient for x"):
        gc.check_layer(NoGrads(), {}, X)


@pytest.mark.parametrize("mode", ["auto", "full", "directional"])
@pytest.mark.parametrize("references", [("numeric",), ("autodiff",), ("numeric", "autodiff")],
                         ids=["numeric", "autodiff", "both"])
def test_an_empty_leaf_beside_others_is_skipped_with_a_note(mode: str, references: tuple) -> None:
    res = gc.check_grad(lambda p: np.sum(p["W"] ** 2) + np.sum(p["E"]),
                        lambda p: {"W": 2 * p["W"], "E": np.ones_like(p["E"])},
                        {"W": W, "E": np.zeros((0, 3))}, mode=mode, references=references)
    assert res.passed and [leaf.name for leaf in res.leaves] == ["W"]
    assert any("E has no entries (shape (0, 3))" in n for n in res.notes), res.notes


def test_an_empty_leaf_still_needs_a_gradient_of_its_shape() -> None:
    with pytest.raises(gc.GradientStructureError, match="for E"):
        gc.check_grad(lambda p: np.sum(p["W"] ** 2), lambda p: {"W": 2 * p["W"], "E": np.ones(2)},
                      {"W": W, "E": np.zeros((0, 3))})


# ------------------------------------------------------------- 9. arguments that cannot be copied


def _generator() -> Generator[int, None, None]:
    yield 1


UNCOPYABLE: list[tuple[str, Callable[[], Any]]] = [
    ("lock", threading.Lock),
    ("generator", _generator),
    ("open file", lambda: open(os.devnull)),  # noqa: SIM115 - closed by the test
    ("module", lambda: os),
    ("object holding a lock", lambda: type("Holder", (), {})()),
]


def _make(kind: str, make: Callable[[], Any]) -> Any:
    obj = make()
    if kind == "object holding a lock":
        obj.lock = threading.Lock()
    return obj


@pytest.mark.parametrize(("kind", "make"), UNCOPYABLE, ids=[u[0] for u in UNCOPYABLE])
def test_an_argument_that_cannot_be_copied_is_passed_as_itself_with_a_note(
    kind: str, make: Callable[[], Any]
) -> None:
    obj = _make(kind, make)
    seen: list[bool] = []

    def fun(p: dict, x: np.ndarray, extra: Any) -> float:
        seen.append(extra is obj)
        return loss(p, x)

    def dfun(p: dict, x: np.ndarray, extra: Any) -> dict:
        seen.append(extra is obj)
        return grad(p, x)

    try:
        res = gc.check_grad(fun, dfun, P, X, obj)
    finally:
        if isinstance(obj, io.IOBase):
            obj.close()
    assert res.passed and seen and all(seen)
    note = next(n for n in res.notes if "cannot be copied" in n)
    assert "args[1]" in note and "uncopied" in note and "cannot be detected" in note


def test_arrays_beside_an_uncopyable_argument_are_still_copied_and_mutation_is_detected() -> None:
    def mutating(p: dict, data: dict) -> float:
        with data["lock"]:
            data["X"] *= 2
        return loss(p, data["X"])

    given = {"X": X.copy(), "lock": threading.Lock()}
    with pytest.raises(gc.InputMutated, match=r"args\[0\]\.X\[0, 0\]"):
        gc.check_grad(mutating, lambda p, d: grad(p, d["X"]), P, given)
    np.testing.assert_array_equal(given["X"], X)  # the user's array was copied, not written


def test_a_backward_mutating_an_array_beside_a_lock_is_noted() -> None:
    def dmutating(p: dict, x: np.ndarray, lock: Any) -> dict:
        g = grad(p, x)
        x[0, 0] = 0.0
        return g

    res = gc.check_grad(lambda p, x, lock: loss(p, x), dmutating, P, X, threading.Lock())
    assert res.passed
    assert any("modifies its inputs" in n and "args[0][0, 0]" in n for n in res.notes), res.notes


def test_loss_and_grads_works_with_an_uncopyable_argument() -> None:
    lock = threading.Lock()

    def both(p: dict, x: np.ndarray, lk: Any) -> tuple:
        assert lk is lock
        with lk:
            return loss(p, x), grad(p, x)

    res = gc.check_grad(*gc.loss_and_grads(both), P, X, lock)
    assert res.passed and any("args[1] cannot be copied" in n for n in res.notes)


def test_cs231n_layer_with_an_uncopyable_static_argument() -> None:
    lock = threading.Lock()

    def affine_forward(x: np.ndarray, w: np.ndarray, guard: Any) -> tuple:
        with guard["lock"]:
            return x @ w, (x, w)

    def affine_backward(dout: np.ndarray, cache: tuple) -> tuple:
        x, w = cache
        return dout @ w.T, x.T @ dout

    layer = gc.cs231n_layer(affine_forward, affine_backward, static={"guard": {"lock": lock, "n": [1]}})
    res = gc.check_layer(layer, {"w": W}, X)
    assert res.passed
    assert any("guard.lock cannot be copied" in n and "affine_forward" in n for n in res.notes), res.notes


def test_stateful_layer_holding_a_lock() -> None:
    class Locked:
        def __init__(self) -> None:
            self.W, self.lock = W.copy(), threading.Lock()

        def forward(self, x: np.ndarray) -> np.ndarray:
            with self.lock:
                self.x = x
                return x @ self.W

        def backward(self, dout: np.ndarray) -> np.ndarray:
            self.dW = self.x.T @ dout
            return dout @ self.W.T

    obj = Locked()
    assert gc.check_layer(gc.stateful_layer(obj, params=["W"]), {"W": obj.W}, X).passed


def test_copyable_arguments_are_still_deep_copied_with_aliasing_kept() -> None:
    shared = X.copy()
    seen: list[Any] = []

    def fun(p: dict, a: np.ndarray, b: np.ndarray) -> float:
        if isinstance(a, np.ndarray):  # the numpy calls (JAX's get JAX arrays)
            seen.append((a is shared, a is b))
        return loss(p, a)

    res = gc.check_grad(fun, lambda p, a, b: grad(p, a), P, shared, shared)
    assert res.passed and not any("cannot be copied" in n for n in res.notes)
    assert seen and all(s == (False, True) for s in seen)


# ------------------------------------------------------------------------------- 10. options


@pytest.mark.parametrize(("key", "value", "parts"), [
    ("seed", -1, ["seed=-1", "non-negative int"]),
    ("rtol", {"flaot64": 1e-3}, ["rtol=", "'flaot64'", "not a float dtype", "did you mean 'float64'?"]),
    ("atol", {"flot32": 1e-6}, ["atol=", "'flot32'", "did you mean 'float32'?"]),
    ("rtol", {"int32": 1e-3}, ["rtol=", "'int32'", "not a float dtype"]),
    ("atol", {"float64": -1}, ["atol=", "atol['float64']=-1", "non-negative"]),
    ("rtol", {np.float32: 1e-3, "float64": float("nan")}, ["rtol=", "rtol['float64']=nan"]),
], ids=["negative seed", "misspelt rtol dtype", "misspelt atol dtype", "integer dtype key",
        "negative atol entry", "NaN rtol entry"])
def test_a_bad_option_names_the_option_the_key_and_the_value(key: str, value: Any, parts: list[str]) -> None:
    for call in (lambda: gc.check_grad(square, d_square, {"W": W}, **{key: value}),
                 lambda: normalise(key, value)):
        with pytest.raises(gc.InvalidArgument) as info:
            call()
        assert str(info.value).startswith(f"{key}={value!r}")
        for part in parts:
            assert part in str(info.value), f"{part!r} not in: {info.value}"


def test_valid_tolerance_mappings_are_unchanged() -> None:
    given_ = {np.float32: 1e-2, "float64": 0, np.dtype("float16"): 1}
    assert normalise("rtol", given_) == given_


# ------------------------------------------------------------------- every bad-input class, one table


class BackwardRaises(Linear):
    def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
        raise IndexError("dy has the wrong axis")


class ForwardRaises(Linear):
    def forward(self, p: dict, x: np.ndarray) -> np.ndarray:
        raise ValueError("shapes not aligned")


class ForwardRaisesWhenMoved(Linear):
    def forward(self, p: dict, x: np.ndarray) -> np.ndarray:
        if p["W"][0, 0] == W[0, 0] and p["W"][2, 1] > W[2, 1]:
            raise FloatingPointError("moved too far")
        return x @ p["W"]


class NaNOut(Linear):
    def forward(self, p: dict, x: np.ndarray) -> np.ndarray:
        return np.log(x @ p["W"] - 100.0)


class TupleOut(Linear):
    def forward(self, p: dict, x: np.ndarray) -> Any:
        return x @ p["W"], x


class WrongShapeGrad(Linear):
    def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
        return {"W": (x.T @ dy).T}, dy @ p["W"].T


class MissingGrad(Linear):
    def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
        return {}, dy @ p["W"].T


class NaNInputGrad(Linear):
    def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
        return {"W": x.T @ dy}, dy @ p["W"].T / 0


def inf_at(i: int, j: int) -> np.ndarray:
    w = W.copy()
    w[i, j] = np.inf
    return w


def random_loss() -> Callable[[dict, np.ndarray], float]:
    r = np.random.default_rng()
    return lambda p, x: loss(p, x) * (1 + 1e-3 * r.random())


def mutates_args(p: dict, x: np.ndarray) -> float:
    x[1, 2] = 0.0
    return loss(p, x)


#: (id, bad-input class, call, error, message parts).
TABLE: list[tuple[str, str, Callable[[], Any], type[Exception], list[str]]] = [
    ("layer dW transposed", "mismatched gradient shape",
     lambda: gc.check_layer(WrongShapeGrad(), {"W": W}, X), gc.GradientStructureError, ["for W", "transposed?"]),
    ("layer dW missing", "missing key",
     lambda: gc.check_layer(MissingGrad(), {"W": W}, X), gc.GradientStructureError, ["missing ['W']"]),
    ("nested extra key", "extra key",
     lambda: gc.check_grad(lambda p, x: loss(p["layer"], x),
                           lambda p, x: {"layer": {**grad(p["layer"], x), "c": np.zeros(1)}}, {"layer": P}, X),
     gc.GradientStructureError, ["unexpected ['layer.c']"]),
    ("Inf param", "NaN/Inf in params",
     lambda: gc.check_grad(loss, grad, {"W": inf_at(2, 1), "b": P["b"]}, X), gc.NonFiniteError, ["W holds inf", "[2, 1]"]),
    ("Inf loss", "NaN/Inf in the loss",
     lambda: gc.check_grad(lambda p, x: loss(p, x) + np.inf, grad, P, X),
     gc.NonFiniteError, ["<lambda>(params, *args)", "non-finite loss (inf)"]),
    ("NaN layer output", "NaN/Inf in the loss",
     lambda: gc.check_layer(NaNOut(), {"W": W}, X), gc.NonFiniteError, ["NaNOut.forward", "nan at [0, 0]"]),
    ("NaN dx", "NaN/Inf in the hand gradient",
     lambda: gc.check_layer(NaNInputGrad(), {"W": W}, X), gc.NonFiniteError, ["gradient of x"]),
    ("integer layer input", "integer arrays",
     lambda: gc.check_layer(Linear(), {"W": W}, np.ones((4, 3), int)), gc.InvalidArgument, ["x has integer dtype"]),
    ("bool param", "integer arrays",
     lambda: gc.check_grad(loss, grad, {"W": W > 0, "b": P["b"]}, X), gc.InvalidArgument, ["W", "bool"]),
    ("object param", "non-arrays",
     lambda: gc.check_grad(loss, grad, {"W": W, "b": object()}, X), gc.InvalidArgument, ["b=<object", "type=object"]),
    ("layer forward raises", "exception in forward",
     lambda: gc.check_layer(ForwardRaises(), {"W": W}, X), gc.UserCodeError, ["ForwardRaises.forward", "shapes not aligned"]),
    ("layer backward raises", "exception in backward",
     lambda: gc.check_layer(BackwardRaises(), {"W": W}, X), gc.UserCodeError, ["BackwardRaises.backward", "IndexError"]),
    ("layer forward raises when perturbed", "exception when perturbed",
     lambda: gc.check_layer(ForwardRaisesWhenMoved(), {"W": W}, X), gc.UserCodeError, ["moved too far", "W[2, 1]"]),
    ("loss mutates args", "forward mutates its inputs",
     lambda: gc.check_grad(mutates_args, grad, P, X.copy()), gc.InputMutated, ["args[0][1, 2]", "copy"]),
    ("random loss", "non-deterministic forward",
     lambda: gc.check_grad(random_loss(), grad, P, X), gc.NonDeterministic, ["<lambda>", "same input"]),
    ("vector loss (1-d)", "vector loss",
     lambda: gc.check_grad(lambda p, x: np.tanh(x @ p["W"]).sum(0), grad, P, X), gc.InvalidArgument, ["scalar loss", "(2,)"]),
    ("list loss", "tuple loss",
     lambda: gc.check_grad(lambda p, x: [loss(p, x)], grad, P, X), gc.InvalidArgument, ["list of 1 values"]),
    ("layer returns (out, cache)", "tuple loss",
     lambda: gc.check_layer(TupleOut(), {"W": W}, X), gc.InvalidArgument, ["TupleOut.forward", "cs231n_layer"]),
    ("unknown layer option", "unknown option",
     lambda: gc.check_layer(Linear(), {"W": W}, X, sed=1), gc.InvalidArgument, ["'sed'", "did you mean 'seed'"]),
    ("bad complex_step", "bad option", lambda: gc.check_grad(loss, grad, P, X, complex_step="yes"),
     gc.InvalidArgument, ["complex_step='yes'"]),
    ("negative seed", "bad option", lambda: gc.check_grad(loss, grad, P, X, seed=-1),
     gc.InvalidArgument, ["seed=-1"]),
    ("misspelt rtol dtype", "bad option", lambda: gc.check_grad(loss, grad, P, X, rtol={"flaot64": 1e-3}),
     gc.InvalidArgument, ["rtol=", "'flaot64'", "did you mean 'float64'?"]),
    ("negative atol entry", "bad option", lambda: gc.check_grad(loss, grad, P, X, atol={"float64": -1}),
     gc.InvalidArgument, ["atol['float64']=-1"]),
    ("complex loss", "complex loss", lambda: gc.check_grad(lambda p, x: loss(p, x) + 1j, grad, P, X),
     gc.InvalidArgument, ["<lambda>(params, *args)", "complex loss", ".real"]),
    ("complex layer output", "complex loss", lambda: gc.check_layer(ComplexOut(), {"W": W}, X),
     gc.InvalidArgument, ["ComplexOut.forward", "complex output", "y.real"]),
    ("only leaf empty", "size-0 tensors only", lambda: gc.check_grad(square, d_square, {"W": np.zeros((2, 0))}),
     gc.InvalidArgument, ["W (shape (2, 0))", "nothing to check"]),
    ("every leaf empty", "size-0 tensors only",
     lambda: gc.check_grad(loss, grad, {"W": np.zeros((3, 0)), "b": np.zeros(0)}, X),
     gc.InvalidArgument, ["W (shape (3, 0))", "b (shape (0,))", "nothing to check"]),
    ("empty layer, dx=None", "size-0 tensors only",
     lambda: gc.check_layer(TE.ThreeValues(), {"W": np.zeros((3, 0))}, np.zeros((0, 3))),
     gc.InvalidArgument, ["W (shape (3, 0))", "x (shape (0, 3))", "nothing to check"]),
]

#: The classes of test_errors.CASES, by id.
KNOWN_CLASSES: dict[str, str] = {
    "integer param": "integer arrays", "string param": "non-arrays", "None param": "non-arrays",
    "complex param": "non-arrays", "NaN param": "NaN/Inf in params", "empty params": "size-0 tensors only",
    "missing key": "missing key", "extra key": "extra key", "renamed key": "missing key",
    "wrong shape": "mismatched gradient shape", "transposed shape": "mismatched gradient shape",
    "integer gradient": "integer arrays", "None gradient": "missing key",
    "NaN gradient": "NaN/Inf in the hand gradient", "Inf gradient": "NaN/Inf in the hand gradient",
    "loss raises": "exception in forward", "grad raises": "exception in backward",
    "loss raises when perturbed": "exception when perturbed", "vector loss": "vector loss",
    "tuple loss": "tuple loss", "NaN loss": "NaN/Inf in the loss", "unknown option": "unknown option",
    "bad mode": "bad option", "bad references": "bad option", "negative rtol": "bad option",
    "bad seed": "bad option", "zero probes": "bad option", "jax_fun not callable": "bad option",
    "layer without backward": "bad layer", "backward returning three values": "bad layer",
    "NaN input": "NaN/Inf in params", "mutating forward": "forward mutates its inputs",
    "random forward": "non-deterministic forward", "mutating loss": "forward mutates its inputs",
}

#: DESIGN.md's list of bad inputs and the classes of this issue: each needs at least one case.
REQUIRED = (
    "mismatched gradient shape", "missing key", "extra key", "NaN/Inf in params", "NaN/Inf in the loss",
    "NaN/Inf in the hand gradient", "integer arrays", "non-arrays", "exception in forward",
    "exception in backward", "exception when perturbed", "forward mutates its inputs",
    "non-deterministic forward", "vector loss", "tuple loss", "unknown option", "bad option",
    "complex loss", "size-0 tensors only",
)


@pytest.mark.parametrize(("call", "error", "parts"), [t[2:] for t in TABLE], ids=[t[0] for t in TABLE])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the bad user code divides by zero on purpose
def test_each_bad_input_class_gets_its_error_naming_the_tensor_or_option(
    call: Callable[[], Any], error: type[Exception], parts: list[str]
) -> None:
    assert_clear_error(call, error, parts)


def class_counts() -> dict[str, int]:
    """How many cases of this table and test_errors.CASES cover each bad-input class."""
    counts: dict[str, int] = {}
    for cls in [KNOWN_CLASSES[c[0]] for c in TE.CASES] + [t[1] for t in TABLE]:
        counts[cls] = counts.get(cls, 0) + 1
    return counts


def test_every_bad_input_class_is_covered() -> None:
    assert set(KNOWN_CLASSES) == {c[0] for c in TE.CASES}, "classify each new case of test_errors.py"
    counts = class_counts()
    assert [c for c in REQUIRED if not counts.get(c)] == []
    assert len({t[0] for t in TABLE}) == len(TABLE)
