"""check_grad / check_layer: no false alarms on correct gradients, the right diagnosis and blame
on planted bugs, kinks reported not blamed, hygiene errors for bad forwards."""

from __future__ import annotations

import json

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gradcheck as gc
from tests._profile import sizes
from tests.gradcheck import _functions as F

DTYPES = [np.float64, np.float32]


def values(shape: tuple[int, ...], dtype: type, lo: float = -2.0, hi: float = 2.0) -> st.SearchStrategy:
    return hnp.arrays(dtype, shape, elements=st.floats(lo, hi, width=32))


dims = sizes(1, 5)


# --------------------------------------------------------------------------- no false alarms


@given(dtype=st.sampled_from(DTYPES), m=dims, n=dims, data=st.data())
def test_polynomial_passes(dtype: type, m: int, n: int, data: st.DataObject) -> None:
    W = data.draw(values((m, n), dtype), label="W")
    c = data.draw(hnp.arrays(np.float64, 3, elements=st.floats(-3, 3)), label="c").astype(dtype)
    res = gc.check_grad(F.poly, F.poly_grad, {"W": W}, c)
    assert res.verdict == "pass", res.message()
    assert "numeric" in res.references
    assert res.leaf("W").dtype == np.dtype(dtype).name


@given(dtype=st.sampled_from(DTYPES), b=dims, m=dims, n=dims, data=st.data())
def test_tanh_layer_passes(dtype: type, b: int, m: int, n: int, data: st.DataObject) -> None:
    W = data.draw(values((m, n), dtype), label="W")
    x = data.draw(values((b, m), dtype), label="x")
    v = data.draw(values((b, n), dtype), label="v")
    res = gc.check_grad(F.tanh_layer, F.tanh_layer_grad, {"W": W}, x, v)
    assert res.verdict == "pass", res.message()


@given(dtype=st.sampled_from(DTYPES), b=dims, m=dims, k=st.integers(2, 5), data=st.data())
def test_softmax_cross_entropy_passes(dtype: type, b: int, m: int, k: int, data: st.DataObject) -> None:
    params = {"W": data.draw(values((m, k), dtype), label="W"),
              "b": data.draw(values((k,), dtype), label="b")}
    x = data.draw(values((b, m), dtype, -3, 3), label="x")
    y = data.draw(hnp.arrays(np.int64, b, elements=st.integers(0, k - 1)), label="y")
    res = gc.check_grad(F.softmax_ce, F.softmax_ce_grad, params, x, y)
    assert res.verdict == "pass", res.message()


@given(dtype=st.sampled_from(DTYPES), n=dims, depth=st.integers(0, 3), data=st.data())
def test_pytree_product_passes(dtype: type, n: int, depth: int, data: st.DataObject) -> None:
    params = {"a": data.draw(values((n,), dtype), label="a"),
              "layers": [{"w": data.draw(values((n,), dtype), label=f"w{i}")} for i in range(depth)]}
    res = gc.check_grad(F.tree_product, F.tree_product_grad, params)
    assert res.verdict == "pass", res.message()
    assert [leaf.name for leaf in res.leaves] == ["a"] + [f"layers[{i}].w" for i in range(depth)]


@given(T=sizes(1, 6), B=sizes(1, 3), data=st.data())
def test_rnn_bptt_passes(T: int, B: int, data: st.DataObject) -> None:
    p = {"U": data.draw(values((2, 3), np.float64, -1, 1)),
         "Wh": data.draw(values((3, 3), np.float64, -1, 1)),
         "v": data.draw(values((3,), np.float64)),
         "x": data.draw(values((T, B, 2), np.float64))}
    res = gc.check_grad(F.rnn_loss, F.rnn_grad, p)
    assert res.verdict == "pass", res.message()


def test_numpy_only_forward_uses_two_sources_and_says_so() -> None:
    rng = np.random.default_rng(0)
    W, x, v = rng.normal(size=(3, 2)), rng.normal(size=(4, 3)), rng.normal(size=(4, 2))

    def np_only(p: dict, x: np.ndarray, v: np.ndarray) -> float:
        return float(np.sum(v * np.tanh(np.dot(x, p["W"]))))

    res = gc.check_grad(np_only, F.tanh_layer_grad, {"W": W}, x, v, jax_twin=False)
    assert res.passed and res.references == ("numeric",)
    assert any("no JAX reference: the forward is not JAX-traceable" in n for n in res.notes)
    twin = gc.check_grad(np_only, F.tanh_layer_grad, {"W": W}, x, v)
    assert twin.passed and twin.references == ("numeric", "autodiff")
    assert twin.jax_source == "twin" and twin.to_dict()["jax_source"] == "twin"


# --------------------------------------------------------------------------- planted bugs


def _rng_case(seed: int = 0, m: int = 4, n: int = 4) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(size=(m, n))}, rng.normal(size=(6, m)), rng.normal(size=(6, n))


@pytest.mark.parametrize("references", [("numeric", "autodiff"), ("numeric",)])
@given(seed=st.integers(0, 2**16), m=st.integers(2, 5), n=st.integers(2, 5))
def test_sign_flip_is_diagnosed(references: tuple[str, ...], seed: int, m: int, n: int) -> None:
    params, x, v = _rng_case(seed, m, n)
    res = gc.check_grad(F.tanh_layer, lambda p, x, v: {"W": -F.tanh_layer_grad(p, x, v)["W"]},
                        params, x, v, references=references)
    leaf = res.leaf("W")
    assert (res.verdict, leaf.blame, leaf.diagnosis.kind) == ("fail", "hand", "sign_flip")


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_missing_half_reports_the_factor(factor: float) -> None:
    rng = np.random.default_rng(3)
    W, x, d = rng.normal(size=(3, 2)), rng.normal(size=(5, 3)), rng.normal(size=(5, 2))

    def sse(p: dict, x: np.ndarray, d: np.ndarray) -> float:  # C = ½ Σ (d − y)²
        xp = F.xp_of(p["W"])
        return 0.5 * xp.sum((d - x @ p["W"]) ** 2)

    def sse_grad(p: dict, x: np.ndarray, d: np.ndarray) -> dict:
        return {"W": factor * x.T @ (x @ p["W"] - d)}

    res = gc.check_grad(sse, sse_grad, {"W": W}, x, d)
    leaf = res.leaf("W")
    assert leaf.blame == "hand" and leaf.diagnosis.kind == "scale"
    assert leaf.diagnosis.factor == factor
    assert f"{factor:g} ×" in res.message()


def test_transpose_is_diagnosed() -> None:
    params, x, v = _rng_case(1, 4, 4)
    res = gc.check_grad(F.tanh_layer, lambda p, x, v: {"W": F.tanh_layer_grad(p, x, v)["W"].T},
                        params, x, v)
    leaf = res.leaf("W")
    assert (leaf.verdict, leaf.blame, leaf.diagnosis.kind) == ("fail", "hand", "transpose")


@pytest.mark.parametrize("references", [("numeric", "autodiff"), ("numeric",)])
@given(seed=st.integers(0, 2**16), i=st.integers(0, 3), j=st.integers(0, 2))
def test_one_entry_off_by_1e_4_is_named_by_index(references: tuple, seed: int, i: int, j: int) -> None:
    params, x, v = _rng_case(seed, 4, 3)

    def bad(p: dict, x: np.ndarray, v: np.ndarray) -> dict:
        g = F.tanh_layer_grad(p, x, v)["W"]
        g[i, j] *= 1 + 1e-4
        return {"W": g}

    res = gc.check_grad(F.tanh_layer, bad, params, x, v, mode="full", references=references)
    leaf = res.leaf("W")
    assert (res.verdict, leaf.blame, leaf.n_mismatched) == ("fail", "hand", 1)
    assert leaf.worst[0].index == (i, j) and leaf.worst[0].status == "hand"
    assert leaf.diagnosis.kind == "entries" and leaf.diagnosis.indices == ((i, j),)
    assert f"worst at [{i}, {j}]" in res.message()


def test_zeroed_entry_is_named_with_a_dropped_term_hint() -> None:
    params, x, v = _rng_case(5)

    def bad(p: dict, x: np.ndarray, v: np.ndarray) -> dict:
        g = F.tanh_layer_grad(p, x, v)["W"]
        g[2, 1] = 0.0
        return {"W": g}

    leaf = gc.check_grad(F.tanh_layer, bad, params, x, v).leaf("W")
    assert leaf.blame == "hand" and leaf.diagnosis.indices == ((2, 1),)
    assert "0 there" in leaf.diagnosis.summary


def test_all_zero_gradient_is_diagnosed() -> None:
    params, x, v = _rng_case(6)
    leaf = gc.check_grad(F.tanh_layer, lambda p, x, v: {"W": np.zeros((4, 4))}, params, x, v).leaf("W")
    assert (leaf.blame, leaf.diagnosis.kind) == ("hand", "zero")


def _rnn_params(seed: int, T: int = 5) -> dict:
    rng = np.random.default_rng(seed)
    return {"U": rng.normal(size=(3, 4)) * 0.5, "Wh": rng.normal(size=(4, 4)) * 0.5,
            "v": rng.normal(size=4), "x": rng.normal(size=(T, 2, 3))}


@pytest.mark.parametrize("references", [("numeric", "autodiff"), ("numeric",)])
def test_error_only_at_time_step_zero(references: tuple) -> None:
    res = gc.check_grad(F.rnn_loss, lambda p: F.rnn_grad(p, bug="step0"), _rnn_params(0),
                        references=references)
    assert [leaf.name for leaf in res.failures] == ["x"]
    leaf = res.leaf("x")
    assert leaf.blame == "hand"
    assert (leaf.diagnosis.kind, leaf.diagnosis.indices) == ("time_steps", (0,))


def test_shift_by_one_time_step() -> None:
    res = gc.check_grad(F.rnn_loss, lambda p: F.rnn_grad(p, bug="shift"), _rnn_params(1))
    leaf = res.leaf("x")
    assert (leaf.blame, leaf.diagnosis.kind, leaf.diagnosis.factor) == ("hand", "shift", 1.0)


def test_value_clipping_is_diagnosed() -> None:
    params, x, v = _rng_case(2)
    true = F.tanh_layer_grad(params, x, v)["W"]
    c = float(np.quantile(np.abs(true), 0.7))
    res = gc.check_grad(F.tanh_layer, lambda p, x, v: {"W": np.clip(F.tanh_layer_grad(p, x, v)["W"], -c, c)},
                        params, x, v)
    leaf = res.leaf("W")
    assert leaf.diagnosis.kind == "clipped" and leaf.diagnosis.factor == pytest.approx(c)


# --------------------------------------------------------------------------- triangulation


def test_wrong_jax_twin_is_blamed_not_the_hand_gradient() -> None:
    params, x, v = _rng_case(7)

    def twin(p: dict, x: np.ndarray, v: np.ndarray) -> object:
        import jax.numpy as jnp

        return jnp.sum(v * jnp.tanh(1.01 * (x @ p["W"])))  # a slightly different function

    res = gc.check_grad(F.tanh_layer, F.tanh_layer_grad, params, x, v, jax_fun=twin)
    leaf = res.leaf("W")
    assert (res.verdict, leaf.blame) == ("fail", "autodiff")
    assert any("twin" in n for n in res.notes)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix is the point here
def test_numpy_matrix_semantics_do_not_fake_an_autodiff_reference() -> None:
    """``np.matrix`` makes ``*`` a matmul; on JAX arrays it broadcasts instead, so the traced
    forward computes another function. That trace is rejected, not trusted."""
    rng = np.random.default_rng(0)
    W = np.asmatrix(rng.normal(size=(3, 3)))
    x = np.asmatrix(rng.normal(size=(3, 1)))

    def f(p: dict, x: np.matrix) -> float:
        return float((x.T * p["W"] * x)[0, 0])

    def g(p: dict, x: np.matrix) -> dict:
        return {"W": x * x.T}

    res = gc.check_grad(f, g, {"W": W}, x)
    assert res.passed, res.message()
    assert res.references == ("numeric",)


def test_float32_gradient_for_float64_param_is_judged_in_float32() -> None:
    params, x, v = _rng_case(8)
    res = gc.check_grad(F.tanh_layer,
                        lambda p, x, v: {"W": F.tanh_layer_grad(p, x, v)["W"].astype(np.float32)},
                        params, x, v)
    leaf = res.leaf("W")
    assert res.passed and leaf.tolerance_dtype == "float32" and leaf.rtol == gc.tolerance("float32")


def test_forward_computing_in_float32_is_detected_and_not_blamed() -> None:
    rng = np.random.default_rng(9)
    W, x, v = rng.normal(size=(4, 3)), rng.normal(size=(6, 4)), rng.normal(size=(6, 3))

    def f(p: dict, x: np.ndarray, v: np.ndarray) -> float:
        y = np.tanh(x.astype(np.float32) @ p["W"].astype(np.float32))
        return float(np.sum(v.astype(np.float32) * y))

    res = gc.check_grad(f, F.tanh_layer_grad, {"W": W}, x, v)
    assert res.passed, res.message()
    assert any("lower precision" in n for n in res.notes)


# --------------------------------------------------------------------------- kinks


def _relu_case(x: np.ndarray) -> tuple:
    rng = np.random.default_rng(11)
    V = rng.normal(size=(4,))

    def f(p: dict, x: np.ndarray) -> object:
        xp = F.xp_of(p["W"])
        return xp.sum(xp.maximum(x @ p["W"] + p["b"], 0) @ V)

    def g(p: dict, x: np.ndarray) -> dict:
        a = x @ p["W"] + p["b"]
        da = (a > 0) * V  # subgradient 0 at a = 0
        return {"W": x.T @ da, "b": da.sum(0)}

    return f, g, {"W": rng.normal(size=(3, 4)), "b": np.zeros(4)}, x


@pytest.mark.parametrize("references", [("numeric", "autodiff"), ("numeric",)])
def test_relu_exactly_at_zero_is_a_kink_not_a_failure(references: tuple) -> None:
    """A valid subgradient at a kink is never blamed.  Every entry of ``b`` sits at the kink, so
    none can be verified: the leaf is inconclusive, not a pass (DESIGN.md: abstention is never a
    pass; issue 13 item 2 changed this test's expected verdict from "pass")."""
    f, g, params, x = _relu_case(np.zeros((2, 3)))
    res = gc.check_grad(f, g, params, x, references=references)
    assert res.verdict == "inconclusive", res.message()
    assert res.leaf("W").verdict == "pass"
    assert res.leaf("b").n_kinks == 4 and res.leaf("b").blame is None
    kink = res.leaf("b").kinks[0]
    assert {kink.left, kink.right} != {None} and kink.left != pytest.approx(kink.right)
    assert any("not differentiable" in n for n in res.notes)


def test_a_wrong_gradient_next_to_a_kink_still_fails() -> None:
    f, g, params, x = _relu_case(np.random.default_rng(1).normal(size=(2, 3)))
    res = gc.check_grad(f, lambda p, x: {"W": -g(p, x)["W"], "b": g(p, x)["b"]}, params, x)
    assert res.leaf("W").verdict == "fail" and res.leaf("W").blame == "hand"


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize("references", [("numeric", "autodiff"), ("numeric",)])
def test_directional_mode_passes_correct_and_records_probes(references: tuple) -> None:
    params, x, v = _rng_case(12, 6, 5)
    res = gc.check_grad(F.tanh_layer, F.tanh_layer_grad, params, x, v, mode="directional",
                        probes=4, seed=42, references=references)
    leaf = res.leaf("W")
    assert res.passed and len(leaf.probes) == 4 and leaf.mode == "directional"
    again = gc.check_grad(F.tanh_layer, F.tanh_layer_grad, params, x, v, mode="directional",
                          probes=4, seed=42, references=references)
    assert [p.seed for p in again.leaf("W").probes] == [p.seed for p in leaf.probes]


def test_directional_mode_with_autodiff_localises_a_single_entry() -> None:
    params, x, v = _rng_case(13, 6, 5)

    def bad(p: dict, x: np.ndarray, v: np.ndarray) -> dict:
        g = F.tanh_layer_grad(p, x, v)["W"]
        g[4, 1] += 0.5 * abs(g).max()
        return {"W": g}

    res = gc.check_grad(F.tanh_layer, bad, params, x, v, mode="directional")
    leaf = res.leaf("W")
    assert leaf.blame == "hand" and leaf.worst[0].index == (4, 1)


def test_auto_mode_screens_large_leaves_and_localises_by_group_testing() -> None:
    rng = np.random.default_rng(14)
    params = {"W": rng.normal(size=(40, 30)) * 0.2}
    x, v = rng.normal(size=(3, 40)), rng.normal(size=(3, 30))

    def np_only(p: dict, x: np.ndarray, v: np.ndarray) -> float:
        return float(np.sum(v * np.tanh(np.dot(x, p["W"]))))

    ok = gc.check_grad(np_only, F.tanh_layer_grad, params, x, v, full_max=100, jax_twin=False)
    assert ok.passed and ok.leaf("W").mode == "directional"

    def bad(p: dict, x: np.ndarray, v: np.ndarray) -> dict:
        g = F.tanh_layer_grad(p, x, v)["W"]
        g[7, 3] *= 1.5
        return {"W": g}

    res = gc.check_grad(np_only, bad, params, x, v, full_max=100, jax_twin=False)
    leaf = res.leaf("W")
    assert res.mode == "auto:localised" and leaf.mode == "localised"
    assert leaf.verdict == "fail" and leaf.blame == "hand" and leaf.n_mismatched == 1
    assert leaf.worst[0].index == (7, 3) and leaf.worst[0].status == "hand"
    assert leaf.localisation is not None and leaf.localisation.blocks == ()
    # Far fewer forward calls than the 2 per entry of an element-by-element check.
    assert res.forward_calls < 1200 // 2


# --------------------------------------------------------------------------- layers


class _Dense:
    def forward(self, p: dict, x: np.ndarray) -> object:
        xp = F.xp_of(x)
        return xp.tanh(x @ p["W"] + p["b"])

    def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
        y = np.tanh(x @ p["W"] + p["b"])
        da = dy * (1 - y**2)
        return {"W": x.T @ da, "b": da.sum(0)}, da @ p["W"].T


@given(dtype=st.sampled_from(DTYPES), b=dims, m=dims, n=dims, data=st.data())
def test_check_layer_passes_params_and_input(dtype: type, b: int, m: int, n: int, data: st.DataObject) -> None:
    params = {"W": data.draw(values((m, n), dtype)), "b": data.draw(values((n,), dtype))}
    x = data.draw(values((b, m), dtype))
    res = gc.check_layer(_Dense(), params, x)
    assert res.verdict == "pass", res.message()
    assert [leaf.name for leaf in res.leaves] == ["W", "b", "x"]


def test_check_layer_blames_input_gradient() -> None:
    class Bad(_Dense):
        def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
            grads, dx = super().backward(p, x, dy)
            return grads, 2 * dx

    rng = np.random.default_rng(0)
    res = gc.check_layer(Bad(), {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)},
                         rng.normal(size=(4, 3)))
    assert [leaf.name for leaf in res.failures] == ["x"]
    assert res.leaf("x").diagnosis.factor == 2.0


def test_check_layer_accepts_dx_none_with_a_note() -> None:
    class FirstLayer(_Dense):
        def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
            return super().backward(p, x, dy)[0], None

    rng = np.random.default_rng(0)
    res = gc.check_layer(FirstLayer(), {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)},
                         rng.normal(size=(4, 3)))
    assert res.passed and [leaf.name for leaf in res.leaves] == ["W", "b"]
    assert any("not checked" in n for n in res.notes)


def test_squeezable_gradient_shape_is_accepted_with_a_note() -> None:
    class RowBias(_Dense):
        def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
            grads, dx = super().backward(p, x, dy)
            return {"W": grads["W"], "b": grads["b"].reshape(1, -1)}, dx

    rng = np.random.default_rng(0)
    res = gc.check_layer(RowBias(), {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)},
                         rng.normal(size=(4, 3)))
    assert res.passed and any("squeezable" in n for n in res.notes)


def test_backward_that_modifies_its_inputs_is_noted_not_blamed() -> None:
    class InPlace(_Dense):
        def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
            y = np.tanh(x @ p["W"] + p["b"])
            dy *= 1 - y**2  # in place on the caller's dy (CS231n relu_backward style)
            return {"W": x.T @ dy, "b": dy.sum(0)}, dy @ p["W"].T

    rng = np.random.default_rng(0)
    res = gc.check_layer(InPlace(), {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)},
                         rng.normal(size=(4, 3)))
    assert res.passed, res.message()


# --------------------------------------------------------------------------- results


def test_result_round_trips_through_json_and_message_names_everything() -> None:
    params, x, v = _rng_case(15)
    res = gc.check_grad(F.tanh_layer, lambda p, x, v: {"W": -F.tanh_layer_grad(p, x, v)["W"]},
                        params, x, v, seed=7, name="dense tanh")
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert doc["schema"] == gc.SCHEMA_VERSION and doc["verdict"] == "fail" and doc["seed"] == 7
    leaf = doc["leaves"][0]
    assert leaf["tolerance"]["rtol"] == gc.tolerance("float64")
    assert leaf["diagnosis"]["kind"] == "sign_flip" and leaf["blame"] == "hand"
    with pytest.raises(gc.GradientMismatch) as info:
        res.raise_for_failure()
    text = str(info.value)
    for part in ("dL/dW", "float64", "(4, 4)", "16 of 16", "hand=", "numeric=", "autodiff=",
                 "sign flip", "hand-derived backward", "seed=7"):
        assert part in text
    assert isinstance(info.value, AssertionError)
    assert len(text.splitlines()) < 20  # never a dumped Jacobian


def test_passing_result_does_not_raise() -> None:
    params, x, v = _rng_case(16)
    res = gc.check_grad(F.tanh_layer, F.tanh_layer_grad, params, x, v)
    assert res.raise_for_failure() is res and str(res).startswith("check_grad")


def test_float64_cancellation_at_a_saturated_unit_is_not_blamed() -> None:
    """tanh(13): 1 − y² keeps ~6 digits in float64 (the hand is 1.8e-6 off) and JAX's own tanh'
    is 9e-6 off; the complex step is exact.  Hypothesis found this case in CI."""
    res = gc.check_layer(_Dense(), {"W": np.array([[2.0], [2.0], [2.0]]), "b": np.array([1.0])},
                         np.array([[2.0, 2.0, 2.0]]))
    assert res.passed, res.message()


def test_a_deeply_saturated_unit_is_judged_at_the_rounding_floor() -> None:
    """tanh(17): the gradient is 1.3e-14 of the loss's scale; float64 hand and JAX differ by
    4e-3 relative there, both rounding.  Below 16 ulps of the loss's terms nothing is judged."""
    res = gc.check_layer(_Dense(), {"W": np.full((4, 1), 2.0), "b": np.array([1.0])},
                         np.full((1, 4), 2.0))
    assert res.passed, res.message()


def test_the_rounding_floor_does_not_hide_a_real_bug_at_a_saturated_unit() -> None:
    class Half(_Dense):
        def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
            grads, dx = super().backward(p, x, dy)
            return {"W": grads["W"], "b": 0.5 * grads["b"]}, dx

    rng = np.random.default_rng(3)
    params = {"W": rng.normal(size=(3, 4)), "b": np.array([0.1, 9.0, -0.2, 0.3])}  # unit 1 saturated
    res = gc.check_layer(Half(), params, rng.normal(size=(5, 3)))
    assert [leaf.name for leaf in res.failures] == ["b"]


@pytest.mark.skipif(np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps,
                    reason="the float64 rung of the precision ladder needs a wider long double (x86)")
def test_precision_ladder_separates_lost_digits_from_a_wrong_formula() -> None:
    """A backward whose float64 arithmetic cancels (a + 1e9) − 1e9 is 1e-7-ish off; in long double
    it is right, so it passes with a note; the same cancellation around a sign flip still fails."""
    rng = np.random.default_rng(4)
    W, x, v = rng.normal(size=(3, 2)), rng.normal(size=(4, 3)), rng.normal(size=(4, 2))

    def cancelling(p: dict, x: np.ndarray, v: np.ndarray, sign: float = 1.0) -> dict:
        g = F.tanh_layer_grad(p, x, v)["W"]
        big = np.asarray(1e9, dtype=g.dtype)
        return {"W": sign * ((g + big) - big)}

    res = gc.check_grad(F.tanh_layer, cancelling, {"W": W}, x, v)
    assert res.passed, res.message()
    assert any("loses the precision" in n for n in res.leaf("W").notes)
    bad = gc.check_grad(F.tanh_layer, lambda p, x, v: cancelling(p, x, v, -1.0), {"W": W}, x, v)
    assert bad.leaf("W").blame == "hand"


# --------------------------------------------------------------------------- autodiff-led full mode
# A full check of a problem larger than FULL_NUMERIC_MAX with a JAX reference compares every entry
# with autodiff and measures finite differences only where they can change the verdict; these
# tests pin that it stays exact about *which* entry is wrong and whom to blame.

LED = "every entry compared with autodiff"


def _big(seed: int = 0, m: int = 80, n: int = 60) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return ({"W": rng.normal(size=(m, n)) / np.sqrt(m)}, rng.normal(size=(5, m)), rng.normal(size=(5, n)))


def test_large_correct_full_check_is_autodiff_led_and_cheap() -> None:
    params, x, v = _big()
    assert params["W"].size > gc.check.FULL_NUMERIC_MAX
    res = gc.check_grad(F.tanh_layer, F.tanh_layer_grad, params, x, v, mode="full")
    leaf = res.leaf("W")
    assert res.verdict == "pass" and leaf.mode == "full" and leaf.n_checked == params["W"].size
    assert any(n.startswith(LED) for n in leaf.notes)
    assert res.forward_calls < params["W"].size // 10  # finite differences at a sample, not everywhere
    assert leaf.hand_vs_numeric is not None and leaf.numeric_vs_autodiff is not None
    assert leaf.control is not None and leaf.control.caught  # the negative control still runs
    # every entry by finite differences on request
    only = gc.check_grad(F.tanh_layer, F.tanh_layer_grad, params, x, v, mode="full", references=("numeric",))
    assert only.verdict == "pass" and only.forward_calls >= params["W"].size


@given(seed=st.integers(0, 2**16), rel=st.sampled_from([1e-2, 1e-4, 1e-5]), data=st.data())
def test_large_full_check_names_a_single_wrong_entry(seed: int, rel: float, data: st.DataObject) -> None:
    params, x, v = _big(seed % 7)
    i = data.draw(st.integers(0, params["W"].shape[0] - 1), label="i")
    j = data.draw(st.integers(0, params["W"].shape[1] - 1), label="j")
    good = F.tanh_layer_grad(params, x, v)["W"]
    assume(abs(good[i, j]) > 1e-3 * np.max(np.abs(good)))  # a relative error of a sizeable entry

    def grad(p: dict, x: np.ndarray, v: np.ndarray) -> dict:
        g = F.tanh_layer_grad(p, x, v)["W"].copy()
        g[i, j] *= 1 + rel
        return {"W": g}

    res = gc.check_grad(F.tanh_layer, grad, params, x, v, mode="full", seed=seed)
    leaf = res.leaf("W")
    assert (res.verdict, leaf.blame, leaf.n_mismatched) == ("fail", "hand", 1), res.message()
    assert leaf.worst[0].index == (i, j)
    assert leaf.worst[0].numeric is not None  # the wrong entry was measured by finite differences


def test_large_full_check_blames_a_wrong_twin_at_one_entry() -> None:
    params, x, v = _big(3)

    def twin(p: dict, x: np.ndarray, v: np.ndarray) -> object:
        import jax.numpy as jnp

        W = p["W"].at[2, 5].multiply(1.5)  # a different function of one weight
        return jnp.sum(v * jnp.tanh(x @ W))

    res = gc.check_grad(F.tanh_layer, F.tanh_layer_grad, params, x, v, jax_fun=twin, mode="full")
    leaf = res.leaf("W")
    assert (res.verdict, leaf.blame) == ("fail", "autodiff"), res.message()
    bad = [e.index for e in leaf.worst if e.status == "autodiff"]
    assert bad and bad[0] == (2, 5)


def test_large_full_check_fails_a_gradient_that_shares_the_twins_dropped_term() -> None:
    """hand and a stop_gradient twin agree everywhere; the probes see that autodiff is not the
    gradient of the forward, so every entry is measured and the hand gradient fails."""
    params, x, v = _big(4)

    def grad(p: dict, x: np.ndarray, v: np.ndarray) -> dict:
        return {"W": x.T @ v}  # drops tanh' everywhere

    def twin(p: dict, x: np.ndarray, v: np.ndarray) -> object:
        import jax
        import jax.numpy as jnp

        z = x @ p["W"]
        return jnp.sum(v * (z + jax.lax.stop_gradient(jnp.tanh(z) - z)))

    res = gc.check_grad(F.tanh_layer, grad, params, x, v, jax_fun=twin, mode="full")
    leaf = res.leaf("W")
    assert (res.verdict, leaf.blame) == ("fail", "hand"), res.message()
    assert not any(n.startswith(LED) for n in leaf.notes)
    assert res.forward_calls >= params["W"].size


def _tied_pool(seed: int) -> tuple[object, np.ndarray]:
    from reference import pooling

    x = np.random.default_rng(seed).integers(0, 3, size=(2, 4, 24, 24)).astype(np.float64)  # 4608 > full_max
    return pooling.MaxPool2D(size=2, stride=2), x


@pytest.mark.parametrize("mode", ["auto", "directional"])
def test_max_pool_ties_in_a_screened_tensor_are_kinks_not_failures(mode: str) -> None:
    """Integer images tie inside most windows; the hand backward and JAX break ties differently.
    Screening names those entries by autodiff, and a finite difference at each finds the kink."""
    layer, x = _tied_pool(0)
    res = gc.check_layer(layer, {}, x, mode=mode)
    leaf = res.leaf("x")
    assert leaf.mode == "directional" and res.verdict == "pass", res.message()
    assert leaf.n_kinks > 0 and any("not differentiable" in n for n in res.notes)


def test_max_pool_routed_to_the_wrong_entry_still_fails_when_screened() -> None:
    layer, x = _tied_pool(1)
    x = x + np.random.default_rng(2).uniform(0, 0.5, size=x.shape)  # no ties: a smooth point

    class Wrong:
        def forward(self, p: dict, x: np.ndarray) -> object:
            return layer.forward(p, x)

        def backward(self, p: dict, x: np.ndarray, dy: np.ndarray) -> tuple:
            dp, dx = layer.backward(p, x, dy)
            return dp, np.roll(dx, 1, axis=-1)  # the gradient lands next to the maximum

    res = gc.check_layer(Wrong(), {}, x, mode="auto")
    leaf = res.leaf("x")
    assert (res.verdict, leaf.blame) == ("fail", "hand"), res.message()
    assert leaf.n_kinks == 0


@given(dtype=st.sampled_from(DTYPES), scale=st.sampled_from([0.3, 1.0, 4.0]), seed=st.integers(0, 2**16),
       m=sizes(12, 40), k=sizes(8, 30))
def test_large_correct_gradients_pass_the_autodiff_led_full_check(dtype: type, scale: float, seed: int,
                                                                   m: int, k: int) -> None:
    """No false alarm on the autodiff-led path: float32 storage, saturated tanh units (scale 4).
    ``auto`` leads every tensor of more than 64 entries by autodiff (``full`` mode only in
    problems of more than 4,096 entries: see tests/gradcheck/test_full.py)."""
    mode = "auto"
    rng = np.random.default_rng(seed)
    params = {"W": (scale * rng.normal(size=(m, k)) / np.sqrt(m)).astype(dtype),
              "b": rng.normal(size=k).astype(dtype)}
    x = rng.normal(size=(6, m)).astype(dtype)
    y = rng.integers(0, k, size=6)
    res = gc.check_grad(F.softmax_ce, F.softmax_ce_grad, params, x, y, mode=mode, seed=seed)
    assert res.verdict == "pass", res.message()
    assert any(n.startswith(LED) for n in res.leaf("W").notes)
    v = rng.normal(size=(6, k)).astype(dtype)
    res = gc.check_grad(F.tanh_layer, F.tanh_layer_grad, {"W": params["W"]}, x, v, mode=mode, seed=seed)
    assert res.verdict == "pass", res.message()


@pytest.mark.parametrize("mode", ["full", "auto"])
def test_a_systematic_bug_in_a_large_tensor_is_confirmed_on_a_sample(mode: str) -> None:
    """A sign flip makes every entry a suspect; finite differences at a seeded sample confirm
    autodiff, so the check stays cheap (its cost does not grow with the tensor) and still names
    the bug's shape."""
    params, x, v = _big(5, m=160, n=120)

    def grad(p: dict, x: np.ndarray, v: np.ndarray) -> dict:
        return {"W": -F.tanh_layer_grad(p, x, v)["W"]}

    res = gc.check_grad(F.tanh_layer, grad, params, x, v, mode=mode)
    leaf = res.leaf("W")
    assert (res.verdict, leaf.blame, leaf.diagnosis.kind) == ("fail", "hand", "sign_flip"), res.message()
    assert leaf.n_mismatched == params["W"].size
    assert res.forward_calls < params["W"].size // 4


@pytest.mark.parametrize("mode", ["auto", "directional"])
def test_screening_fails_a_hand_gradient_whose_twin_shares_its_bug(mode: str) -> None:
    """A 70×70 problem is screened in auto mode.  The hand gradient W (not 2W) of Σ W² agrees with
    a twin that stops the gradient of one factor; every probe's finite difference sits far outside
    its error bar from both, which is full mode's numeric outvote: the hand is wrong."""
    import jax
    import jax.numpy as jnp

    W = np.random.default_rng(3).normal(size=(70, 70))
    res = gc.check_grad(lambda p: np.sum(p["W"] ** 2), lambda p: {"W": p["W"].copy()}, {"W": W},
                        jax_fun=lambda p: jnp.sum(p["W"] * jax.lax.stop_gradient(p["W"])), mode=mode)
    leaf = res.leaf("W")
    assert leaf.mode == "directional"
    assert (res.verdict, leaf.blame) == ("fail", "hand")
    assert any("drops the same term" in n for n in leaf.notes)


# The auto policy: a finite difference at every entry only for small tensors; larger ones are
# autodiff-led with a JAX path and screened without one, so the cost does not grow with N.


def _np_tanh(p: dict, x: np.ndarray, v: np.ndarray) -> float:
    return float(np.sum(v * np.tanh(np.dot(x, p["W"]))))  # float(): no JAX path


@settings(max_examples=6, deadline=None)
@given(m=st.integers(9, 70), n=st.integers(8, 60), seed=st.integers(0, 2**16), data=st.data())
def test_auto_cost_does_not_grow_with_the_tensor_and_one_wrong_entry_is_named(
        m: int, n: int, seed: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    params, x, v = {"W": rng.normal(size=(m, n)) * 0.3}, rng.normal(size=(3, m)), rng.normal(size=(3, n))
    i, j = data.draw(st.integers(0, m - 1)), data.draw(st.integers(0, n - 1))
    for fun, mode in ((_np_tanh, "directional"), (F.tanh_layer, "full")):
        ok = gc.check_grad(fun, F.tanh_layer_grad, params, x, v, seed=seed, jax_twin=False)
        assert ok.passed and ok.leaf("W").mode == mode, ok.message()
        assert ok.forward_calls <= 160  # against 2·m·n + 2 for a difference at every entry
        assert 0 < ok.leaf("W").detection_power < 1e-3

        def bad(p: dict, x: np.ndarray, v: np.ndarray) -> dict:
            g = F.tanh_layer_grad(p, x, v)["W"]
            g[i, j] += 1e-2 * float(np.max(np.abs(g)))
            return {"W": g}

        res = gc.check_grad(fun, bad, params, x, v, seed=seed, jax_twin=False)
        leaf = res.leaf("W")
        assert (res.verdict, leaf.blame, leaf.n_mismatched) == ("fail", "hand", 1), res.message()
        assert leaf.worst[0].index == (i, j)
        assert res.forward_calls <= 160 + 40 * int(np.log2(m * n)) + 8 * 16


def test_full_max_sets_the_tensors_measured_at_every_entry() -> None:
    rng = np.random.default_rng(2)
    params = {"W": rng.normal(size=(10, 9)) * 0.3, "b": rng.normal(size=9)}
    x, v = rng.normal(size=(3, 10)), rng.normal(size=(3, 9))

    def fun(p: dict, x: np.ndarray, v: np.ndarray) -> float:
        return float(np.sum(v * np.tanh(np.dot(x, p["W"]) + p["b"])))

    def grad(p: dict, x: np.ndarray, v: np.ndarray) -> dict:
        d = v * (1 - np.tanh(np.dot(x, p["W"]) + p["b"]) ** 2)
        return {"W": np.dot(x.T, d), "b": d.sum(0)}

    res = gc.check_grad(fun, grad, params, x, v, jax_twin=False)
    assert [(lf.name, lf.mode) for lf in res.leaves] == [("W", "directional"), ("b", "full")]
    res = gc.check_grad(fun, grad, params, x, v, full_max=90, jax_twin=False)
    assert [lf.mode for lf in res.leaves] == ["full", "full"]
