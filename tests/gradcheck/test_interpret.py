"""interpret.py: a traced JAX program run with numpy gives JAX's own values and gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import interpret
from tests._profile import examples, sizes

jax = pytest.importorskip("jax")
jnp = jax.numpy
lax = jax.lax


def _same(got: Any, want: Any, rtol: float = 1e-12) -> None:
    got_leaves = jax.tree_util.tree_leaves(got)
    want_leaves = jax.tree_util.tree_leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves, strict=True):
        assert isinstance(g, np.ndarray)
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype
        scale = float(np.max(np.abs(w))) if w.size and np.issubdtype(w.dtype, np.inexact) else 0.0
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale + 1e-300)


def _compare(fun: Callable[..., Any], *args: Any, rtol: float = 1e-12) -> interpret.Program:
    """``fun`` traced and run with numpy against ``fun`` run by JAX, in float64."""
    with jax.enable_x64(True):
        program = interpret.trace(fun, *args)
        _same(program(*args), fun(*args), rtol)
    return program


# Functions of one array ``x`` (any shape with at least 2 rows) whose value and gradient cover
# the primitives with numpy rules: arithmetic, math, comparisons and selects, reductions,
# contractions, and the structural ones (slices, pads, reshapes, concatenation, cumulative sums).
FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "tanh-sigmoid": lambda x: jnp.sum(jnp.tanh(x) * jax.nn.sigmoid(2.0 * x - 1.0)),
    "exp-log": lambda x: jnp.sum(jnp.log1p(jnp.exp(x)) + jnp.expm1(x / 3) - jnp.log(x * x + 1.0)),
    "powers": lambda x: jnp.sum(x ** 2 + x ** 3 - jnp.sqrt(x * x + 0.5) + 1.0 / (x * x + 2.0)
                                + jnp.abs(x) ** 1.5 + lax.rsqrt(x * x + 1.0)),
    "trig": lambda x: jnp.sum(jnp.sin(x) * jnp.cos(2 * x) + jnp.arctan(x) + jnp.arctan2(x, 2.0)
                              + jnp.sinh(x / 4) + jnp.cosh(x / 5)),
    "relu-max-where": lambda x: jnp.sum(jax.nn.relu(x) + jnp.maximum(x, 0.3) * jnp.minimum(x, -0.2)
                                        + jnp.where(x > 0.1, x ** 2, -x) + jnp.clip(x, -0.5, 0.7)),
    "reductions": lambda x: (jnp.max(x) + jnp.min(x, axis=0).sum() + jnp.prod(jnp.tanh(x[:2]))
                             + jnp.mean(x, axis=-1).sum() + jax.nn.logsumexp(x)),
    "softmax": lambda x: jnp.sum(jax.nn.softmax(x, axis=-1) * jnp.arange(x.shape[-1])),
    "matmul": lambda x: jnp.sum(jnp.tanh(x @ x.T) + jnp.einsum("ij,kj->ik", x, x * 2.0)),
    "slices-pads": lambda x: (jnp.sum(x[1:, ::2] ** 2) + jnp.sum(jnp.pad(x, ((1, 2), (0, 1))) * 3.0)
                              + jnp.sum(x[::-1] * jnp.flip(x, 1))),
    "reshape-transpose": lambda x: jnp.sum(jnp.tanh(x.reshape(-1)) * x.T.reshape(-1)),
    "concat-stack-split": lambda x: (jnp.sum(jnp.concatenate([x, 2 * x], axis=0) ** 2)
                                     + jnp.sum(jnp.stack([x[0], x[1]]) ** 3)
                                     + sum(jnp.sum(p * (i + 1)) for i, p in
                                           enumerate(jnp.split(x, x.shape[0], axis=0)))),
    "cumsum": lambda x: jnp.sum(jnp.cumsum(x, axis=0) ** 2 + jnp.cumsum(x[:, ::-1], axis=1)),
    "dynamic-slice": lambda x: jnp.sum(lax.dynamic_slice(x, (1, 0), (1, x.shape[1])) ** 2
                                       + lax.dynamic_update_slice(x, x[:1] * 3.0, (1, 0))[1:2]),
    "norm": lambda x: jnp.linalg.norm(x) + jnp.sum(jnp.sign(x) * x),
    "recurrence": lambda x: _recurrence(x),
}


def _recurrence(x: Any) -> Any:
    h = jnp.zeros(x.shape[1])
    for t in range(x.shape[0]):
        h = jnp.tanh(x[t] + 0.5 * h)
    return jnp.sum(h ** 2)


@settings(max_examples=examples(60), deadline=None)
@given(name=st.sampled_from(sorted(FUNCTIONS)), rows=sizes(2, 4), cols=sizes(1, 5),
       seed=st.integers(0, 2**16))
def test_a_gradient_program_run_with_numpy_gives_jax_values(name: str, rows: int, cols: int,
                                                            seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=(rows, cols))
    with mock.patch.object(interpret, "_bind", side_effect=AssertionError("bound to JAX")):
        _compare(jax.value_and_grad(FUNCTIONS[name]), x)  # every equation by a numpy rule


@settings(max_examples=examples(30), deadline=None)
@given(seeds=st.lists(st.integers(0, 2**16), min_size=2, max_size=4))
def test_a_program_is_traced_once_and_called_with_new_values(seeds: list[int]) -> None:
    traces = []

    def loss(w: Any, data: Any) -> Any:
        traces.append(1)
        return jnp.sum(jnp.tanh(data @ w) ** 2)

    with jax.enable_x64(True):
        program = interpret.trace(jax.value_and_grad(loss), np.ones((3, 2)), np.ones((4, 3)))
        for seed in seeds:
            rng = np.random.default_rng(seed)
            w, data = rng.normal(size=(3, 2)), rng.normal(size=(4, 3))
            value, grad = program(w, data)
            t = np.tanh(data @ w)
            np.testing.assert_allclose(value, np.sum(t ** 2), rtol=1e-13)
            np.testing.assert_allclose(grad, data.T @ (2 * t * (1 - t ** 2)), rtol=1e-12)
    assert len(traces) == 1 and program.equations > 5


def test_pytrees_in_and_out_keep_their_structure() -> None:
    def fun(p: dict[str, Any], xs: list[Any]) -> Any:
        return {"y": jnp.tanh(p["w"] * xs[0]), "z": (p["b"] + xs[1], jnp.sum(xs[0]))}

    p = {"w": np.array([1.0, 2.0]), "b": np.array(0.5)}
    program = _compare(fun, p, [np.array([0.1, 0.2]), np.array(3.0)])
    with jax.enable_x64(True), pytest.raises(TypeError, match="traced for arguments"):
        program(p, [np.array([0.1, 0.2])])


@pytest.mark.parametrize("config", [((1, 2, 0),), ((0, 0, 2),), ((-1, 1, 1),), ((2, -2, 0),),
                                    ((1, 0, 1), (-1, 2, 2))])
def test_pad_covers_negative_and_interior_padding(config: tuple[tuple[int, int, int], ...]) -> None:
    x = np.arange(1.0, 1.0 + 4 ** len(config)).reshape((4,) * len(config))
    _compare(jax.value_and_grad(lambda v: jnp.sum(lax.pad(v, 0.5, config) ** 2)), x)


def test_dot_general_with_batch_and_several_contracting_dimensions() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 5, 4, 6))

    def fun(a: Any, b: Any) -> Any:
        return jnp.sum(jnp.tanh(lax.dot_general(a, b, (((2, 3), (2, 1)), ((0,), (0,))))))

    _compare(jax.value_and_grad(fun, argnums=(0, 1)), a, b)


def test_operations_without_a_numpy_rule_are_run_by_jax() -> None:
    """gather and scatter-add (integer indexing), a convolution, erf and a while loop."""
    rng = np.random.default_rng(1)
    idx = np.array([2, 0, 2, 1])
    x, k = rng.normal(size=(1, 2, 6, 6)), rng.normal(size=(3, 2, 3, 3))

    def fun(x: Any, k: Any) -> Any:
        y = lax.conv_general_dilated(x, k, (1, 1), "SAME")
        e = jax.scipy.special.erf(y[0, :, idx, :])
        s = lax.fori_loop(0, 3, lambda i, c: c * 0.5 + jnp.sum(e) * 0.1, 0.0)
        return jnp.sum(e ** 2) + s

    program = _compare(jax.value_and_grad(fun, argnums=(0, 1)), x, k)
    names = {step.name for step in program.flat.steps}
    assert {"gather", "conv_general_dilated"} <= names
    assert not names <= set(interpret.NUMPY_RULES)


def test_integer_division_and_float_to_int_conversion_keep_xla_semantics() -> None:
    """XLA truncates integer division (numpy floors) and owns out-of-range float-to-int casts:
    those operands are handed to JAX."""
    n = np.array([-7, -5, 5, 7])
    x = np.array([-2.7, -0.5, 0.5, 2.7])

    def fun(x: Any, n: Any) -> Any:
        return jnp.sum(x * lax.div(n, 3) + x * lax.rem(n, 3)) + jnp.sum(x.astype(jnp.int32))

    with jax.enable_x64(True):
        program = interpret.trace(fun, x, n)
        np.testing.assert_array_equal(program(x, n), np.asarray(fun(x, n)))


def test_the_reference_zoo_layers_gradient_programs_agree_with_jax() -> None:
    from reference import conv, dense, gru, lstm, rnn

    cases = [dense.make_case(np.random.default_rng(0), batch=3, d_in=4, d_out=2),
             conv.make_case(np.random.default_rng(0)),
             rnn.make_case(np.random.default_rng(0), T=3),
             lstm.make_case(np.random.default_rng(0), T=3),
             gru.make_case(np.random.default_rng(0), T=3)]
    for layer, params, x in cases:
        dy = np.random.default_rng(1).normal(size=np.shape(layer.forward(params, x)))

        def loss(p: Any, x: Any, dy: Any = dy, layer: Any = layer) -> Any:
            return jnp.sum(layer.forward(p, x) * dy)

        _compare(jax.value_and_grad(loss, argnums=(0, 1)), params, x)


def test_rounding_away_from_zero_is_exact_at_the_halves() -> None:
    x = np.array([0.49999999999999994, 0.5, -0.5, 1.5, 2.5, -2.5, -0.49999999999999994, 3.0])
    for method in (lax.RoundingMethod.AWAY_FROM_ZERO, lax.RoundingMethod.TO_NEAREST_EVEN):
        with mock.patch.object(interpret, "_bind", side_effect=AssertionError("bound to JAX")):
            _compare(lambda v, m=method: lax.round(v, m), x, rtol=0.0)


def test_outputs_are_fresh_arrays_and_numpy_stays_silent(recwarn: pytest.WarningsRecorder) -> None:
    """A gradient that is the data itself comes back as a copy; a log of a negative number is
    NaN without a RuntimeWarning, as in XLA; an optimisation barrier passes its values."""
    c = np.array([1.0, -2.0, 3.0])

    def fun(x: Any, c: Any) -> Any:
        y, = lax.optimization_barrier((x,))
        return jnp.sum(y * c) + jnp.sum(jnp.log(c))

    with jax.enable_x64(True):
        program = interpret.trace(jax.value_and_grad(fun), np.zeros(3), c)
        value, grad = program(np.zeros(3), c)
    assert np.isnan(value) and not recwarn.list
    np.testing.assert_array_equal(grad, c)
    grad[0] = 99.0
    assert c[0] == 1.0


def test_a_function_traces_once_per_signature() -> None:
    """interpret.function: a stand-in for jax.jit that traces per shape, dtype, structure and
    64-bit mode, and compiles nothing."""
    traces = []

    def fun(a: Any, b: dict[str, Any]) -> Any:
        traces.append(1)
        return jnp.tanh(a) * b["s"]

    f = interpret.function(fun)
    with jax.enable_x64(True):
        for n in (3, 3, 4, 3):
            got = f(np.linspace(-1, 1, n), {"s": np.array(2.0)})
            np.testing.assert_allclose(got, np.tanh(np.linspace(-1, 1, n)) * 2.0, rtol=1e-15)
            assert got.dtype == np.float64
    assert len(traces) == 2
    got = f(np.ones(3, np.float32), {"s": np.array(2.0, np.float32)})
    assert got.dtype == np.float32 and len(traces) == 3


def test_a_function_that_branches_on_a_value_runs_eagerly() -> None:
    """Python control flow on a value cannot be traced: interpret.function runs it with JAX
    eagerly (and does not try to trace it again at that signature)."""
    calls = []

    def fun(a: Any) -> Any:
        calls.append(1)
        return jnp.tanh(a) if float(jnp.sum(a)) > 0 else -a

    f = interpret.function(fun)
    with jax.enable_x64(True):
        np.testing.assert_allclose(f(np.array([1.0, 2.0])), np.tanh([1.0, 2.0]), rtol=1e-15)
        np.testing.assert_array_equal(f(np.array([-1.0, -2.0])), [1.0, 2.0])
    assert len(calls) == 3  # the failed trace, then one eager call each
