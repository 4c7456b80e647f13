"""jvp.py: check_jvp checks a hand Jacobian-vector product column by column.

Correct JVPs of small dense / tanh / MLP functions pass in float64 and float32; planted bugs (a
missing bias tangent, a transposed weight tangent, one wrong column, a sign, a factor 2) fail
with blame ``hand`` on the right leaf and entry; pytree outputs, wrong tangent shapes, the
result's kind and the JAX source (automatic twin, array API, none) are covered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc

P = dict[str, np.ndarray]
DTYPES = [np.float64, np.float32]

# --------------------------------------------------------------------------- functions and JVPs


def linear(p: P, x: np.ndarray) -> np.ndarray:
    return x @ p["W"] + p["b"]


def linear_jvp(p: P, t: P, x: np.ndarray) -> np.ndarray:
    return x @ t["W"] + t["b"]


def dense(p: P, x: np.ndarray) -> np.ndarray:
    return np.tanh(x @ p["W"] + p["b"])


def dense_jvp(p: P, t: P, x: np.ndarray) -> np.ndarray:
    y = dense(p, x)
    return (1 - y ** 2) * (x @ t["W"] + t["b"])


def mlp(p: P, x: np.ndarray) -> np.ndarray:
    return np.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]


def mlp_jvp(p: P, t: P, x: np.ndarray) -> np.ndarray:
    h = np.tanh(x @ p["W1"] + p["b1"])
    dh = (1 - h ** 2) * (x @ t["W1"] + t["b1"])
    return dh @ p["W2"] + h @ t["W2"] + t["b2"]


def _dense_params(rng: np.random.Generator, D: int, H: int, dtype: Any) -> P:
    return {"W": (0.5 * rng.standard_normal((D, H))).astype(dtype),
            "b": rng.standard_normal(H).astype(dtype)}


def _mlp_params(rng: np.random.Generator, D: int, H: int, dtype: Any) -> P:
    return {"W1": (0.5 * rng.standard_normal((D, H))).astype(dtype),
            "b1": rng.standard_normal(H).astype(dtype),
            "W2": (0.5 * rng.standard_normal((H, H))).astype(dtype),  # square: a transpose fits
            "b2": rng.standard_normal(H).astype(dtype)}


FAMILIES: dict[str, tuple[Callable[..., Any], Callable[..., Any], Callable[..., P]]] = {
    "linear": (linear, linear_jvp, _dense_params),
    "dense": (dense, dense_jvp, _dense_params),
    "mlp": (mlp, mlp_jvp, _mlp_params),
}


def _case(family: str, seed: int, B: int, D: int, H: int, dtype: Any = np.float64) -> tuple[P, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = FAMILIES[family][2](rng, D, H, dtype)
    return p, rng.standard_normal((B, D)).astype(dtype)


sizes = dict(seed=st.integers(0, 2**16), B=st.integers(1, 5), D=st.integers(1, 4), H=st.integers(1, 4))

# --------------------------------------------------------------------------- no false alarms


@settings(max_examples=16, deadline=None)
@given(family=st.sampled_from(sorted(FAMILIES)), dtype=st.sampled_from(DTYPES), **sizes)
def test_a_correct_jvp_passes(family: str, dtype: Any, seed: int, B: int, D: int, H: int) -> None:
    fun, jvp, _ = FAMILIES[family]
    p, x = _case(family, seed, B, D, H, dtype)
    res = gc.check_jvp(fun, jvp, p, x, seed=seed)
    assert res.passed, res.message()
    assert res.kind == "check_jvp" and res.to_dict()["kind"] == "check_jvp"
    assert [leaf.name for leaf in res.leaves] == list(p)
    assert all(leaf.dtype == np.dtype(dtype).name and not leaf.notes for leaf in res.leaves)
    # x @ W + b runs on JAX arrays as it is; np.tanh needs the automatic twin
    assert res.references == ("numeric", "autodiff")
    assert res.jax_source == ("array-api" if family == "linear" else "twin")


def test_the_result_says_forward_mode_and_counts_the_columns() -> None:
    p, x = _case("dense", 0, 3, 2, 3)
    res = gc.check_jvp(dense, dense_jvp, p, x)
    assert res.passed
    assert any(n.startswith("forward mode") and "(9 in all)" in n and "(3, 3)" in n for n in res.notes)
    assert res.to_dict()["kind"] == "check_jvp" and res.to_dict()["verdict"] == "pass"


def test_a_fortran_ordered_parameter_gets_its_columns() -> None:
    """Every layout works: the unit tangents of an F-ordered leaf must not be written to a copy."""
    p, x = _case("dense", 3, 4, 3, 2)
    p["W"] = np.asfortranarray(p["W"])
    res = gc.check_jvp(dense, dense_jvp, p, x)
    assert res.passed, res.message()


# --------------------------------------------------------------------------- planted bugs


def _missing_bias(p: P, t: P, x: np.ndarray) -> np.ndarray:
    h = np.tanh(x @ p["W1"] + p["b1"])
    dh = (1 - h ** 2) * (x @ t["W1"])  # + t["b1"] forgotten
    return dh @ p["W2"] + h @ t["W2"] + t["b2"]


def _transposed(p: P, t: P, x: np.ndarray) -> np.ndarray:
    h = np.tanh(x @ p["W1"] + p["b1"])
    dh = (1 - h ** 2) * (x @ t["W1"] + t["b1"])
    return dh @ p["W2"] + h @ t["W2"].T + t["b2"]


def _sign(p: P, t: P, x: np.ndarray) -> np.ndarray:
    h = np.tanh(x @ p["W1"] + p["b1"])
    dh = (1 - h ** 2) * (x @ t["W1"] + t["b1"])
    return dh @ p["W2"] - h @ t["W2"] + t["b2"]


def _factor_two(p: P, t: P, x: np.ndarray) -> np.ndarray:
    h = np.tanh(x @ p["W1"] + p["b1"])
    dh = 2 * (1 - h ** 2) * (x @ t["W1"] + t["b1"])  # the derivative of tanh(z) taken as 2(1 − h²)
    return dh @ p["W2"] + h @ t["W2"] + t["b2"]


# bug, the leaf it breaks, the diagnosis it should get (None: any), leaves it leaves correct
BUGS = {
    "missing bias": (_missing_bias, "b1", "zero", ("W1", "W2", "b2")),
    "transposed W": (_transposed, "W2", "transpose", ("W1", "b1", "b2")),
    "sign flip": (_sign, "W2", "sign_flip", ("W1", "b1", "b2")),
    "factor 2": (_factor_two, "W1", "scale", ("W2", "b2")),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bug", sorted(BUGS))
@settings(max_examples=5, deadline=None)
@given(twin=st.booleans(), seed=st.integers(0, 2**16), B=st.integers(2, 4), H=st.integers(2, 3))
def test_planted_jvp_bugs_fail_on_the_right_leaf(bug: str, dtype: Any, twin: bool, seed: int, B: int,
                                                 H: int) -> None:
    fn, name, kind, fine = BUGS[bug]
    p, x = _case("mlp", seed, B, 3, H, dtype)
    res = gc.check_jvp(mlp, fn, p, x, jax_twin="auto" if twin else False)
    assert res.verdict == "fail", res.message()
    assert res.references == (("numeric", "autodiff") if twin else ("numeric",))
    leaf = res.leaf(name)
    assert (leaf.verdict, leaf.blame) == ("fail", "hand"), res.message()
    assert leaf.diagnosis is not None and leaf.diagnosis.kind == kind, leaf.diagnosis
    if kind == "scale":
        assert leaf.diagnosis.factor == 2.0
        assert res.leaf("b1").blame == "hand"  # the bias tangent goes through the same factor
    for other in fine:
        assert res.leaf(other).passed, (other, res.message())
    text = res.message()
    assert name in text and "JVP" in text and "backward" not in text


@settings(max_examples=12, deadline=None)
@given(dtype=st.sampled_from(DTYPES), twin=st.booleans(), data=st.data(), **sizes)
def test_one_wrong_column_is_named_by_its_entry(dtype: Any, twin: bool, data: st.DataObject, seed: int,
                                                B: int, D: int, H: int) -> None:
    i = data.draw(st.integers(0, D - 1), label="i")
    j = data.draw(st.integers(0, H - 1), label="j")

    def one_column(p: P, t: P, x: np.ndarray) -> np.ndarray:
        w = t["W"].copy()
        w[i, j] *= 2  # the Jacobian column of entry W[i, j] counted twice
        return (1 - dense(p, x) ** 2) * (x @ w + t["b"])

    p, x = _case("dense", seed, B, D, H, dtype)
    res = gc.check_jvp(dense, one_column, p, x, jax_twin="auto" if twin else False)
    W = res.leaf("W")
    assert (res.verdict, W.verdict, W.blame) == ("fail", "fail", "hand"), res.message()
    assert [e.index for e in W.worst if e.status == "hand"] == [(i, j)]
    assert W.n_mismatched == 1
    assert res.leaf("b").passed


def test_a_wrong_entry_of_the_output_tangent_is_caught() -> None:
    def extra(p: P, t: P, x: np.ndarray) -> np.ndarray:
        out = dense_jvp(p, t, x)
        out[1] += 0.5 * t["W"][2, 0]  # a spurious dependence of output row 1 on W[2, 0]
        return out

    p, x = _case("dense", 5, 3, 3, 2)
    res = gc.check_jvp(dense, extra, p, x)
    W = res.leaf("W")
    assert (W.blame, W.n_mismatched) == ("hand", 1)
    assert [e.index for e in W.worst if e.status == "hand"] == [(2, 0)]
    assert res.leaf("b").passed


# --------------------------------------------------------------------------- pytree outputs


def _two(p: P, x: np.ndarray) -> tuple[Any, Any]:
    z = x @ p["W"]
    return np.tanh(z), {"sq": z ** 2}


def _two_jvp(p: P, t: P, x: np.ndarray) -> tuple[Any, Any]:
    z, dz = x @ p["W"], x @ t["W"]
    return (1 - np.tanh(z) ** 2) * dz, {"sq": 2 * z * dz}


def test_pytree_outputs_pass() -> None:
    p, x = _case("dense", 0, 3, 2, 2)
    res = gc.check_jvp(_two, _two_jvp, {"W": p["W"]}, x)
    assert res.passed, res.message()
    assert any("(3, 2), (3, 2)" in n for n in res.notes)

    def as_dict(p: P, x: np.ndarray) -> dict[str, Any]:
        a, b = _two(p, x)
        return {"a": a, "b": b["sq"].sum(1)}

    def as_dict_jvp(p: P, t: P, x: np.ndarray) -> dict[str, Any]:
        a, b = _two_jvp(p, t, x)
        return {"a": a, "b": b["sq"].sum(1)}

    assert gc.check_jvp(as_dict, as_dict_jvp, {"W": p["W"]}, x).passed


def test_a_bug_in_one_output_of_a_pytree_is_caught() -> None:
    def half_wrong(p: P, t: P, x: np.ndarray) -> tuple[Any, Any]:
        a, b = _two_jvp(p, t, x)
        return a, {"sq": b["sq"] / 2}  # d(z²) = z dz: the 2 dropped

    p, x = _case("dense", 1, 3, 2, 2)
    res = gc.check_jvp(_two, half_wrong, {"W": p["W"]}, x)
    assert (res.verdict, res.leaf("W").blame) == ("fail", "hand")


def test_a_tangent_of_the_wrong_shape_is_a_structure_error() -> None:
    p, x = _case("dense", 0, 3, 2, 2)
    with pytest.raises(gc.GradientStructureError, match=r"shape \(2,\).*shape \(3, 2\)"):
        gc.check_jvp(dense, lambda p, t, x: t["b"], p, x)
    with pytest.raises(gc.GradientStructureError, match=r"shape \(2, 3\).*shape \(3, 2\)"):
        gc.check_jvp(dense, lambda p, t, x: dense_jvp(p, t, x).T, p, x)


def test_a_tangent_of_the_wrong_structure_is_a_structure_error() -> None:
    p, x = _case("dense", 0, 3, 2, 2)
    with pytest.raises(gc.GradientStructureError, match=r"returned 1 arrays for an output of 2"):
        gc.check_jvp(_two, lambda p, t, x: _two_jvp(p, t, x)[0], {"W": p["W"]}, x)
    with pytest.raises(gc.GradientStructureError, match=r"output array 1"):
        gc.check_jvp(_two, lambda p, t, x: (_two_jvp(p, t, x)[0], {"sq": np.zeros(3)}), {"W": p["W"]}, x)


# --------------------------------------------------------------------------- JAX sources


def test_array_api_code_is_differentiated_on_jax_arrays() -> None:
    def api(p: dict[str, Any], x: np.ndarray) -> Any:
        xp = p["W"].__array_namespace__()
        return xp.tanh(x @ p["W"] + p["b"])

    p, x = _case("dense", 2, 4, 3, 2)
    res = gc.check_jvp(api, dense_jvp, p, x)
    assert res.passed and res.jax_source == "array-api"
    assert gc.check_jvp(dense, dense_jvp, p, x).jax_source == "twin"
    bad = gc.check_jvp(api, lambda p, t, x: -dense_jvp(p, t, x), p, x)
    assert bad.jax_source == "array-api" and bad.verdict == "fail"
    assert all(leaf.diagnosis is not None and leaf.diagnosis.kind == "sign_flip" for leaf in bad.leaves)


def test_without_the_twin_two_sources_still_catch_a_bug() -> None:
    p, x = _case("mlp", 4, 3, 3, 3)
    ok = gc.check_jvp(mlp, mlp_jvp, p, x, jax_twin=False)
    assert ok.passed and ok.references == ("numeric",) and ok.jax_source == "none"
    bad = gc.check_jvp(mlp, _transposed, p, x, jax_twin=False)
    assert bad.verdict == "fail" and bad.references == ("numeric",)
    leaf = bad.leaf("W2")
    assert leaf.blame == "hand" and leaf.diagnosis is not None and leaf.diagnosis.kind == "transpose"


def test_a_jax_fun_twin_is_used() -> None:
    def jax_dense(p: dict[str, Any], x: Any) -> Any:
        import jax.numpy as jnp

        return jnp.tanh(x @ p["W"] + p["b"])

    p, x = _case("dense", 6, 3, 2, 2)
    res = gc.check_jvp(dense, dense_jvp, p, x, jax_fun=jax_dense)
    assert res.passed and res.jax_source == "jax_fun"


# --------------------------------------------------------------------------- check_layer_jvp


@pytest.mark.parametrize("module, kwargs", [("dense", {"activation": "tanh"}), ("mlp", {}), ("rnn", {"T": 3})])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_check_layer_jvp_passes_the_zoo_layers_in_their_parameters_and_input(
        module: str, kwargs: dict[str, Any], dtype: Any) -> None:
    from importlib import import_module

    layer, params, x = import_module(f"reference.{module}").make_case(np.random.default_rng(2), dtype=dtype,
                                                                      **kwargs)
    res = gc.check_layer_jvp(layer, params, x, seed=2)
    assert res.passed and res.kind == "check_jvp", res.message()
    assert [leaf.name for leaf in res.leaves] == [*params, "x"]
    assert res.name == type(layer).__name__


class _TanhLayer:
    def __init__(self, bug: str | None = None) -> None:
        self.bug = bug

    def forward(self, p: P, x: np.ndarray) -> np.ndarray:
        return np.tanh(x @ p["W"] + p["b"])

    def jvp(self, p: P, x: np.ndarray, dp: P, dx: np.ndarray) -> np.ndarray:
        y = self.forward(p, x)
        W = p["W"].T if self.bug == "transposed W in the input term" else p["W"]
        db = 0 * dp["b"] if self.bug == "bias tangent dropped" else dp["b"]
        return (1 - y ** 2) * (x @ dp["W"] + db + dx @ W)


@pytest.mark.parametrize("bug, broken", [("transposed W in the input term", {"x"}),
                                         ("bias tangent dropped", {"b"})])
def test_check_layer_jvp_blames_the_tensor_whose_columns_are_wrong(bug: str, broken: set[str]) -> None:
    rng = np.random.default_rng(5)
    params = {"W": rng.standard_normal((3, 3)), "b": rng.standard_normal(3)}
    x = rng.standard_normal((4, 3))
    assert gc.check_layer_jvp(_TanhLayer(), params, x).passed
    res = gc.check_layer_jvp(_TanhLayer(bug), params, x)
    assert res.verdict == "fail" and {leaf.name for leaf in res.failures} == broken, res.message()
    assert all(leaf.blame == "hand" for leaf in res.failures)
    assert "_TanhLayer.jvp" in res.message() or "_TanhLayer" in res.message()


def test_check_layer_jvp_without_an_input_tangent_checks_the_parameters_and_says_so() -> None:
    rng = np.random.default_rng(6)
    params, x = {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}, rng.standard_normal((4, 3))
    inner = _TanhLayer()

    class NoDx:
        def forward(self, p: P, x: np.ndarray) -> np.ndarray:
            return inner.forward(p, x)

        def jvp(self, p: P, x: np.ndarray, dp: P) -> np.ndarray:
            return inner.jvp(p, x, dp, np.zeros_like(x))

    res = gc.check_layer_jvp(NoDx(), params, x)
    assert res.passed and [leaf.name for leaf in res.leaves] == ["W", "b"]
    assert any("takes no input tangent" in n and "accept dx" in n for n in res.notes)


def test_check_layer_jvp_with_a_key_x_in_params_and_a_layer_without_jvp() -> None:
    rng = np.random.default_rng(7)

    class Keyed:
        def forward(self, p: P, x: np.ndarray) -> np.ndarray:
            return x * p["x"]

        def jvp(self, p: P, x: np.ndarray, dp: P, dx: np.ndarray) -> np.ndarray:
            return x * dp["x"] + dx * p["x"]

    res = gc.check_layer_jvp(Keyed(), {"x": rng.standard_normal(3)}, rng.standard_normal((2, 3)))
    assert res.passed and len(res.leaves) == 2, res.message()  # (params, x): both checked

    class NoJvp:
        def forward(self, p: P, x: np.ndarray) -> np.ndarray:
            return x

    with pytest.raises(gc.InvalidArgument, match="has no jvp\\(\\) method"):
        gc.check_layer_jvp(NoJvp(), {}, np.ones(2))
