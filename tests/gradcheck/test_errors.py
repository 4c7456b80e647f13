"""One table of bad calls and bad user code: each raises its own error class, naming the tensor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradcheck as gc
from tests.gradcheck._stages import assert_clear_error

rng = np.random.default_rng(0)
W = rng.normal(size=(3, 2))
X = rng.normal(size=(4, 3))
P = {"W": W, "b": np.zeros(2)}


def loss(p: dict, x: np.ndarray) -> float:
    return float(np.sum(np.tanh(x @ p["W"] + p["b"])))


def grad(p: dict, x: np.ndarray) -> dict:
    da = 1 - np.tanh(x @ p["W"] + p["b"]) ** 2
    return {"W": x.T @ da, "b": da.sum(0)}


def with_grad(change: Callable[[dict], Any]) -> Callable[[dict, np.ndarray], Any]:
    return lambda p, x: change(grad(p, x))


def nan_at(i: int, j: int) -> np.ndarray:
    w = W.copy()
    w[i, j] = np.nan
    return w


class NoBackward:
    def forward(self, p: dict, x: np.ndarray) -> np.ndarray:
        return x @ p["W"]


class ThreeValues:
    def forward(self, p: dict, x: np.ndarray) -> np.ndarray:
        return x @ p["W"]

    def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
        return dy @ p["W"].T, x.T @ dy, None


class MutatingForward:
    def forward(self, p: dict, x: np.ndarray) -> np.ndarray:
        x -= x.mean()  # normalises the caller's array in place
        return x @ p["W"]

    def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
        return {"W": x.T @ dy}, dy @ p["W"].T


class Dropout:
    def __init__(self) -> None:
        self.rng = np.random.default_rng()

    def forward(self, p: dict, x: np.ndarray) -> np.ndarray:
        return (x @ p["W"]) * (self.rng.random((x.shape[0], 2)) > 0.5)

    def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
        return {"W": x.T @ dy}, dy @ p["W"].T


def fails_when_moved(p: dict, x: np.ndarray) -> float:
    if p["W"][0, 0] == W[0, 0] and p["W"][1, 1] > W[1, 1]:
        raise ValueError("refusing to move")
    return loss(p, x)


CASES: list[tuple[str, Callable[[], Any], type[Exception], list[str]]] = [
    ("integer param", lambda: gc.check_grad(loss, grad, {"W": W.astype(int), "b": P["b"]}, X),
     gc.InvalidArgument, ["W", "integer", "*args"]),
    ("string param", lambda: gc.check_grad(loss, grad, {"W": "abc", "b": P["b"]}, X),
     gc.InvalidArgument, ["W='abc'", "type=str"]),
    ("None param", lambda: gc.check_grad(loss, grad, {"W": W, "b": None}, X),
     gc.InvalidArgument, ["b=None"]),
    ("complex param", lambda: gc.check_grad(loss, grad, {"W": W + 0j, "b": P["b"]}, X),
     gc.InvalidArgument, ["W", "complex128"]),
    ("NaN param", lambda: gc.check_grad(loss, grad, {"W": nan_at(1, 0), "b": P["b"]}, X),
     gc.NonFiniteError, ["W", "nan", "[1, 0]"]),
    ("empty params", lambda: gc.check_grad(loss, grad, {}, X), gc.InvalidArgument, ["empty"]),
    ("missing key", lambda: gc.check_grad(loss, with_grad(lambda g: {"W": g["W"]}), P, X),
     gc.GradientStructureError, ["missing ['b']"]),
    ("extra key", lambda: gc.check_grad(loss, with_grad(lambda g: {**g, "c": g["b"]}), P, X),
     gc.GradientStructureError, ["unexpected ['c']"]),
    ("renamed key", lambda: gc.check_grad(loss, with_grad(lambda g: {"W": g["W"], "db": g["b"]}), P, X),
     gc.GradientStructureError, ["missing ['b']", "unexpected ['db']"]),
    ("wrong shape", lambda: gc.check_grad(loss, with_grad(lambda g: {**g, "W": g["W"][:2]}), P, X),
     gc.GradientStructureError, ["shape (2, 2) for W", "(3, 2)"]),
    ("transposed shape", lambda: gc.check_grad(loss, with_grad(lambda g: {**g, "W": g["W"].T}), P, X),
     gc.GradientStructureError, ["W", "transposed?"]),
    ("integer gradient", lambda: gc.check_grad(loss, with_grad(lambda g: {**g, "b": np.zeros(2, int)}), P, X),
     gc.GradientStructureError, ["integer", "for b"]),
    ("None gradient", lambda: gc.check_grad(loss, with_grad(lambda g: {**g, "b": None}), P, X),
     gc.GradientStructureError, ["None for b"]),
    ("NaN gradient", lambda: gc.check_grad(loss, with_grad(lambda g: {**g, "W": g["W"] / 0 * 0}), P, X),
     gc.NonFiniteError, ["gradient of W", "[0, 0]"]),
    ("Inf gradient", lambda: gc.check_grad(loss, with_grad(lambda g: {**g, "b": g["b"] / 0}), P, X),
     gc.NonFiniteError, ["gradient of b", "inf"]),
    ("loss raises", lambda: gc.check_grad(lambda p, x: 1 / 0, grad, P, X),
     gc.UserCodeError, ["ZeroDivisionError", "computing the loss"]),
    ("grad raises", lambda: gc.check_grad(loss, lambda p, x: p["missing"], P, X),
     gc.UserCodeError, ["KeyError", "hand gradient"]),
    ("loss raises when perturbed", lambda: gc.check_grad(fails_when_moved, grad, P, X),
     gc.UserCodeError, ["refusing to move", "W[1, 1] moved by"]),
    ("vector loss", lambda: gc.check_grad(lambda p, x: x @ p["W"], grad, P, X),
     gc.InvalidArgument, ["scalar loss", "(4, 2)", "check_layer"]),
    ("tuple loss", lambda: gc.check_grad(lambda p, x: (loss(p, x), grad(p, x)), grad, P, X),
     gc.InvalidArgument, ["loss_and_grads"]),
    ("NaN loss", lambda: gc.check_grad(lambda p, x: np.log(-1.0 + 0 * p["b"].sum()), grad, P, X),
     gc.NonFiniteError, ["non-finite loss"]),
    ("unknown option", lambda: gc.check_grad(loss, grad, P, X, rtoll=1e-3),
     gc.InvalidArgument, ["'rtoll'", "did you mean 'rtol'"]),
    ("bad mode", lambda: gc.check_grad(loss, grad, P, X, mode="fast"), gc.InvalidArgument, ["mode='fast'"]),
    ("bad references", lambda: gc.check_grad(loss, grad, P, X, references=("torch",)),
     gc.InvalidArgument, ["references"]),
    ("negative rtol", lambda: gc.check_grad(loss, grad, P, X, rtol=-1.0), gc.InvalidArgument, ["rtol=-1.0"]),
    ("bad seed", lambda: gc.check_grad(loss, grad, P, X, seed="one"), gc.InvalidArgument, ["seed"]),
    ("zero probes", lambda: gc.check_grad(loss, grad, P, X, probes=0), gc.InvalidArgument, ["probes=0"]),
    ("jax_fun not callable", lambda: gc.check_grad(loss, grad, P, X, jax_fun=3), gc.InvalidArgument, ["jax_fun"]),
    ("layer without backward", lambda: gc.check_layer(NoBackward(), {"W": W}, X),
     gc.InvalidArgument, ["NoBackward", "backward", "cs231n_layer"]),
    ("backward returning three values", lambda: gc.check_layer(ThreeValues(), {"W": W}, X),
     gc.InvalidArgument, ["(dparams, dx)", "cs231n_layer"]),
    ("NaN input", lambda: gc.check_layer(ThreeValues(), {"W": W}, X * np.nan),
     gc.NonFiniteError, ["x holds nan", "[0, 0]"]),
    ("mutating forward", lambda: gc.check_layer(MutatingForward(), {"W": W}, X.copy()),
     gc.InputMutated, ["modified its input", "x[0, 0]", "copy"]),
    ("random forward", lambda: gc.check_layer(Dropout(), {"W": W}, X),
     gc.NonDeterministic, ["same input", "Seed"]),
    ("mutating loss", lambda: gc.check_grad(lambda p, x: np.sum(np.multiply(p["W"], 2, out=p["W"])), grad, P, X),
     gc.InputMutated, ["params.W[0, 0]"]),
]


@pytest.mark.parametrize(("call", "error", "parts"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the bad user code divides by zero on purpose
def test_bad_input_gets_a_specific_readable_error(
    call: Callable[[], Any], error: type[Exception], parts: list[str]
) -> None:
    assert_clear_error(call, error, parts)


def test_every_error_class_is_covered_and_each_is_also_a_builtin() -> None:
    covered = {c[2] for c in CASES}
    public = {gc.InvalidArgument, gc.GradientStructureError, gc.NonFiniteError, gc.UserCodeError,
              gc.InputMutated, gc.NonDeterministic}
    assert public <= covered
    assert issubclass(gc.InvalidArgument, TypeError)
    assert issubclass(gc.GradientMismatch, AssertionError)
    assert issubclass(gc.GradientStructureError, ValueError)


def test_user_exception_is_chained() -> None:
    with pytest.raises(gc.UserCodeError) as info:
        gc.check_grad(lambda p, x: 1 / 0, grad, P, X)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_gradients_matched_by_position_with_a_note() -> None:
    res = gc.check_grad(loss, lambda p, x: tuple(grad(p, x).values()), P, X)
    assert res.passed and any("by position" in n for n in res.notes)
