"""jvp.py: check_jvp checks a hand Jacobian-vector product column by column."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc


def dense(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return np.tanh(x @ p["W"] + p["b"])


def dense_jvp(p: dict[str, np.ndarray], t: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    y = dense(p, x)
    return (1 - y ** 2) * (x @ t["W"] + t["b"])


def _case(seed: int, B: int, D: int, H: int, dtype: Any = np.float64) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    p = {"W": (0.5 * rng.standard_normal((D, H))).astype(dtype), "b": rng.standard_normal(H).astype(dtype)}
    return p, rng.standard_normal((B, D)).astype(dtype)


sizes = dict(seed=st.integers(0, 2**16), B=st.integers(1, 5), D=st.integers(1, 4), H=st.integers(1, 4))


@settings(max_examples=15, deadline=None)
@given(dtype=st.sampled_from([np.float64, np.float32]), **sizes)
def test_a_correct_jvp_passes(dtype: Any, seed: int, B: int, D: int, H: int) -> None:
    p, x = _case(seed, B, D, H, dtype)
    res = gc.check_jvp(dense, dense_jvp, p, x, seed=seed)
    assert res.passed, res.message()
    assert res.kind == "check_jvp" and res.to_dict()["kind"] == "check_jvp"
    assert [leaf.name for leaf in res.leaves] == ["W", "b"]


def _missing_bias(p: dict[str, np.ndarray], t: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return (1 - dense(p, x) ** 2) * (x @ t["W"])


def _sign(p: dict[str, np.ndarray], t: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    y = dense(p, x)
    return (1 - y ** 2) * (-(x @ t["W"]) + t["b"])


def _derivative(p: dict[str, np.ndarray], t: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return (1 - dense(p, x)) * (x @ t["W"] + t["b"])  # 1 − y for 1 − y²


def _one_column(p: dict[str, np.ndarray], t: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    w = t["W"].copy()
    w[1, 0] *= 2  # the column of entry W[1, 0] counted twice
    return (1 - dense(p, x) ** 2) * (x @ w + t["b"])


@settings(max_examples=10, deadline=None)
@given(bug=st.sampled_from([(_missing_bias, "b", "zero"), (_sign, "W", "sign_flip"),
                            (_derivative, None, None), (_one_column, "W", None)]),
       twin=st.booleans(), seed=st.integers(0, 2**16))
def test_planted_jvp_bugs_fail_on_the_right_leaf(bug: Any, twin: bool, seed: int) -> None:
    fn, leaf_name, kind = bug
    p, x = _case(seed, 4, 3, 2)
    res = gc.check_jvp(dense, fn, p, x, jax_twin="auto" if twin else False)
    assert res.verdict == "fail"
    assert all(leaf.blame in ("hand", None) for leaf in res.leaves)
    assert len(res.references) == (2 if twin else 1)
    if leaf_name is not None:
        leaf = res.leaf(leaf_name)
        assert leaf.verdict == "fail" and leaf.blame == "hand"
        if kind is not None:
            assert leaf.diagnosis is not None and leaf.diagnosis.kind == kind
    if fn is _one_column:
        W = res.leaf("W")
        assert [e.index for e in W.worst if e.status == "hand"] == [(1, 0)]
        assert res.leaf("b").passed
    assert "JVP" in res.message() and "backward" not in res.message()


def test_pytree_outputs_and_the_array_api_reference() -> None:
    def two(p: dict[str, Any], x: np.ndarray) -> tuple[Any, Any]:
        xp = p["W"].__array_namespace__()
        z = x @ p["W"]
        return xp.tanh(z), {"sq": z ** 2}

    def two_jvp(p: dict[str, Any], t: dict[str, Any], x: np.ndarray) -> tuple[Any, Any]:
        z = x @ p["W"]
        dz = x @ t["W"]
        return (1 - np.tanh(z) ** 2) * dz, {"sq": 2 * z * dz}

    p, x = _case(0, 3, 2, 2)
    res = gc.check_jvp(two, two_jvp, {"W": p["W"]}, x)
    assert res.passed and res.jax_source == "array-api"
    plain = gc.check_jvp(dense, dense_jvp, p, x)
    assert plain.jax_source == "twin"


def test_a_tangent_of_the_wrong_shape_is_a_structure_error() -> None:
    p, x = _case(0, 3, 2, 2)
    with pytest.raises(gc.GradientStructureError, match=r"shape \(2,\).*shape \(3, 2\)"):
        gc.check_jvp(dense, lambda p, t, x: t["b"], p, x)
