"""autodiff.py: the JAX reference, and its traced programs reused across checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import autodiff
from gradcheck.autodiff import Jittable


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    autodiff.clear_cache()
    yield
    autodiff.clear_cache()


class Traced:
    """A loss ``Σ c·leaf²`` that counts how often JAX traces it (each trace runs the Python)."""

    def __init__(self) -> None:
        self.traces = 0

    def __call__(self, ls: list[Any], data: Any) -> Any:
        import jax.numpy as jnp

        self.traces += 1
        return jnp.sum(data * ls[0] ** 2)


def _check(fn: Traced, key: Any, x: np.ndarray, c: np.ndarray) -> autodiff.AutodiffResult:
    spec = Jittable(key, fn, c)
    cands = [("the forward on JAX arrays", lambda ls: fn(ls, c), spec)]
    return autodiff.gradient(cands, [x], expected=float(np.sum(c * x**2)), tol=1e-9)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_a_shape_is_traced_once_and_its_program_reused_with_new_data(n: int, seed: int) -> None:
    autodiff.clear_cache()
    rng = np.random.default_rng(seed)
    fn = Traced()
    for _ in range(5):
        x, c = rng.normal(size=n), rng.normal(size=n)
        got = _check(fn, ("test", fn), x, c)
        assert got.grads is not None
        np.testing.assert_allclose(got.grads[0], 2 * c * x, rtol=1e-13)
    assert fn.traces == 1  # traced at the first sight of the shape; new data never retraces


def test_each_shape_is_traced_once() -> None:
    fn = Traced()
    for n in (3, 3, 4, 3, 4, 4, 3, 4):
        got = _check(fn, ("test", fn), np.ones(n), np.arange(n, dtype=float))
        assert got.grads is not None
    assert fn.traces == 2 and len(autodiff._PROGRAMS) == 2


def test_the_reference_compiles_nothing_at_a_new_shape() -> None:
    """The gradient program runs with numpy: no XLA compile, whatever the shape (before, each
    new shape compiled a program or, eagerly, every operation of it)."""
    import jax

    compiles: list[str] = []

    def listen(event: str, duration: float, **_: Any) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        fn = Traced()
        for n in (7, 8, 9):  # shapes no other test uses
            got = _check(fn, ("compiles", fn), np.linspace(-1, 1, n), np.ones(n))
            assert got.grads is not None
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiles == []


def test_a_stale_compiled_trace_is_dropped_and_the_gradient_recomputed_eagerly() -> None:
    """A key that wrongly claims two computations equal: the compiled value is not the forward's,
    so the eager gradient is used, and right."""
    scale = {"s": 1.0}

    def fn(ls: list[Any], data: Any) -> Any:
        import jax.numpy as jnp
        return scale["s"] * jnp.sum(data * ls[0] ** 2)

    x, c = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    for s in (1.0, 1.0, 1.0, 3.0):
        scale["s"] = s
        spec = Jittable(("stale",), fn, c)
        got = autodiff.gradient([("f", lambda ls: fn(ls, c), spec)], [x],
                                expected=s * float(np.sum(c * x**2)), tol=1e-12)
        assert got.grads is not None
        np.testing.assert_allclose(got.grads[0], s * 2 * c * x, rtol=1e-13)


def test_an_unhashable_key_is_traced_each_time_and_a_large_program_once() -> None:
    fn = Traced()
    for _ in range(3):
        assert _check(fn, ("unhashable", [1]), np.ones(2), np.ones(2)).grads is not None
    assert fn.traces == 3

    class Unrolled(Traced):  # a long recurrence: thousands of equations, no size limit
        def __call__(self, ls: list[Any], data: Any) -> Any:
            import jax.numpy as jnp

            self.traces += 1
            h = ls[0]
            for _ in range(400):
                h = jnp.tanh(h * data + 0.1)
            return jnp.sum(h ** 2)

    fn = Unrolled()
    x, c = np.array([0.3, -0.2]), np.array([0.9, 1.1])
    h = x
    for _ in range(400):
        h = np.tanh(h * c + 0.1)
    want = None
    for _ in range(3):
        spec = Jittable(("big", fn), fn, c)
        got = autodiff.gradient([("f", lambda ls: fn(ls, c), spec)], [x],
                                expected=float(np.sum(h ** 2)), tol=1e-9)
        assert got.grads is not None
        want = got.grads[0] if want is None else want
        np.testing.assert_array_equal(got.grads[0], want)
    assert fn.traces == 1
    (program,) = autodiff._PROGRAMS.values()
    assert program.equations > 2000


def test_a_function_that_does_not_trace_is_differentiated_eagerly() -> None:
    """A data-dependent shape (``nonzero`` without ``size=``) is fine eagerly, not traced."""
    def fn(ls: list[Any], data: Any) -> Any:
        import jax.numpy as jnp
        x = ls[0]
        return jnp.sum(data[jnp.nonzero(x > 0)[0]] * x[jnp.nonzero(x > 0)[0]] ** 2)

    x, c = np.array([1.0, -2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    for _ in range(3):
        got = autodiff.gradient([("f", lambda ls: fn(ls, c), Jittable(("shape",), fn, c))], [x],
                                expected=float(np.sum((c * x**2)[x > 0])), tol=1e-12)
        assert got.grads is not None
        np.testing.assert_allclose(got.grads[0], np.where(x > 0, 2 * c * x, 0.0), rtol=1e-13)
    assert all(v is False for v in autodiff._PROGRAMS.values())


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autodiff, "PROGRAM_CACHE_SIZE", 3)
    fns = [Traced() for _ in range(5)]
    for fn in fns:
        for _ in range(2):
            _check(fn, ("bounded", fn), np.ones(2), np.ones(2))
    assert len(autodiff._PROGRAMS) == 3


def test_checks_of_a_frozen_dataclass_layer_reuse_one_compiled_function() -> None:
    """Equal (frozen dataclass) layers are one computation: new instances hit the cache."""
    import gradcheck as gc
    from reference import dense

    layer, params, x = dense.make_case(np.random.default_rng(0), batch=3, d_in=3, d_out=2)
    for seed in range(4):
        again = type(layer)(**{f: getattr(layer, f) for f in layer.__dataclass_fields__})
        assert gc.check_layer(again, params, x, seed=seed).passed
    assert len(autodiff._PROGRAMS) == 1


class PlainLayer:
    """A plain class layer (equal only to itself), built anew for every check as a hypothesis
    test would; ``traces`` counts the runs of its forward on JAX values across all instances."""

    traces = 0

    def __init__(self, scale: float, w: np.ndarray, tags: Any = ()) -> None:
        self.scale, self.w, self.tags = scale, w, tags

    def forward(self, p: dict[str, Any], x: Any) -> Any:
        if not isinstance(x, np.ndarray):
            type(self).traces += 1
        xp = x.__array_namespace__()
        return xp.tanh(self.scale * (x @ p["W"]) + self.w)

    def backward(self, p: dict[str, Any], x: np.ndarray, dy: np.ndarray) -> Any:
        y = np.tanh(self.scale * (x @ p["W"]) + self.w)
        dz = dy * (1 - y ** 2) * self.scale
        return {"W": x.T @ dz}, dz @ p["W"].T


def _plain_check(layer: PlainLayer, seed: int) -> Any:
    import gradcheck as gc

    rng = np.random.default_rng(seed)
    res = gc.check_layer(layer, {"W": rng.normal(size=(3, 2))}, rng.normal(size=(4, 3)), seed=seed)
    assert res.passed and res.jax_source == "array-api", res.message()
    return res


def test_new_layer_objects_with_the_same_content_share_one_program() -> None:
    PlainLayer.traces = 0
    w = np.array([0.1, -0.2])
    for seed in range(3):
        _plain_check(PlainLayer(0.5, w.copy(), tags=("a", 1)), seed)
    assert PlainLayer.traces == 1 and len(autodiff._PROGRAMS) == 1
    _plain_check(PlainLayer(0.7, w.copy(), tags=("a", 1)), 3)  # another scale: another program
    _plain_check(PlainLayer(0.5, w + 1.0, tags=("a", 1)), 4)  # other array content: another
    assert PlainLayer.traces == 3 and len(autodiff._PROGRAMS) == 3


def test_a_layer_whose_content_cannot_be_keyed_is_keyed_by_itself() -> None:
    PlainLayer.traces = 0
    w = np.array([0.1, -0.2])
    for seed in range(2):
        _plain_check(PlainLayer(0.5, w, tags={"a set"}), seed)  # a set: unhashable, no content key
    assert PlainLayer.traces == 2
    layer = PlainLayer(0.5, w, tags={"a set"})
    key = autodiff.program_key(layer.forward)
    assert key == (PlainLayer.forward, layer)
    assert autodiff.program_key(PlainLayer(0.5, w).forward) == autodiff.program_key(
        PlainLayer(0.5, w.copy()).forward)
