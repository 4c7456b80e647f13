"""Detection power, the negative control, and localisation of wrong entries in large leaves.

Every passing leaf says the smallest single-entry error (relative to its largest reference
entry) the run would have caught, and proves it on itself: the negative control plants that
error at a seeded entry and judges again.  These tests check the claim against fresh runs of
the checker, not only against the control's own bookkeeping.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc


def _np_only_case(seed: int, n_in: int, n_out: int) -> tuple[Any, Any, dict[str, np.ndarray]]:
    """A tanh layer written with numpy calls JAX cannot trace: finite differences only."""
    rng = np.random.default_rng(seed)
    x, dy = rng.normal(size=(4, n_in)), rng.normal(size=(4, n_out))
    params = {"W": rng.normal(size=(n_in, n_out)) / np.sqrt(n_in), "b": 0.1 * rng.normal(size=n_out)}

    def loss(p: dict[str, np.ndarray]) -> float:
        return float(np.sum(dy * np.tanh(np.dot(x, p["W"]) + p["b"])))

    def grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        y = np.tanh(np.dot(x, p["W"]) + p["b"])
        d = dy * (1 - y ** 2)
        return {"W": x.T @ d, "b": d.sum(axis=0)}

    return loss, grad, params


def _planted(grad: Any, leaf: str, index: tuple[int, ...], size: float) -> Any:
    def bad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = grad(p)
        g[leaf] = g[leaf].copy()
        g[leaf][index] += size
        return g
    return bad


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_every_passing_leaf_claims_a_power_and_its_control_is_caught(mode: str) -> None:
    loss, grad, params = _np_only_case(0, 12, 9)
    res = gc.check_grad(loss, grad, params, mode=mode)
    assert res.passed
    for leaf in res.leaves:
        assert leaf.control is not None and leaf.control.caught, leaf
        assert 0 < leaf.detection_power < 1e-2
        d = leaf.to_dict()
        assert d["detection_power"] == leaf.detection_power and d["control"]["caught"] is True
        assert d["n_probes"] == (3 if mode == "directional" else 0)
    # Full mode compares every entry: its power is close to rtol; screening's is coarser.
    if mode == "full":
        assert res.leaf("W").detection_power < 1e-5


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), mode=st.sampled_from(["full", "directional"]),
       where=st.integers(0, 10**6))
def test_the_claimed_power_holds_on_a_fresh_run(seed: int, mode: str, where: int) -> None:
    """A single-entry error of the claimed size (full: at any entry; directional: at the
    control's entry) planted in the user's gradient fails a fresh check, blamed on the hand."""
    loss, grad, params = _np_only_case(seed, 10, 7)
    ok = gc.check_grad(loss, grad, params, mode=mode, seed=seed)
    assert ok.passed, ok.message()
    leaf = ok.leaf("W")
    assert leaf.control is not None
    scale = float(np.max(np.abs(grad(params)["W"])))
    if mode == "full":
        index = tuple(int(i) for i in np.unravel_index(where % leaf.n_elements, leaf.shape))
        size = 1.01 * leaf.detection_power * scale
    else:
        index, size = leaf.control.index, 1.01 * leaf.control.size
    res = gc.check_grad(loss, _planted(grad, "W", index, size), params, mode=mode, seed=seed,
                        localise_max=1)
    bad = res.leaf("W")
    assert bad.verdict == "fail" and bad.blame == "hand", (index, size, res.message())


def test_with_autodiff_screening_compares_every_entry() -> None:
    rng = np.random.default_rng(3)
    x, dy = rng.normal(size=(4, 30)), rng.normal(size=(4, 20))
    params = {"W": rng.normal(size=(30, 20)) / 6}

    def loss(p: Any) -> Any:
        xp = p["W"].__array_namespace__() if hasattr(p["W"], "__array_namespace__") else np
        return xp.sum(dy * xp.tanh(x @ p["W"]))

    def grad(p: Any) -> dict[str, np.ndarray]:
        y = np.tanh(x @ p["W"])
        return {"W": x.T @ (dy * (1 - y ** 2))}

    res = gc.check_grad(loss, grad, params, mode="directional")
    assert res.passed and "autodiff" in res.references
    leaf = res.leaf("W")
    assert leaf.detection_power < 1e-5 and leaf.control is not None and leaf.control.caught


def test_one_wrong_entry_of_a_large_leaf_is_named_with_few_forward_calls() -> None:
    loss, grad, params = _np_only_case(1, 128, 128)
    n = params["W"].size
    res = gc.check_grad(loss, _planted(grad, "W", (37, 101), 1e-3), params, jax_twin=False)
    leaf = res.leaf("W")
    assert leaf.verdict == "fail" and leaf.blame == "hand" and leaf.mode == "localised"
    assert [e.index for e in leaf.worst if e.status == "hand"] == [(37, 101)]
    assert leaf.localisation is not None and leaf.localisation.tests <= 2 * 14 + 2
    assert res.forward_calls < n / 20  # an element-by-element check needs 2 per entry
    assert res.leaf("b").passed


def test_several_wrong_entries_and_a_wrong_row_are_all_named() -> None:
    loss, grad, params = _np_only_case(2, 64, 64)

    def several(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = grad(p)
        for i, j in ((3, 4), (40, 9), (63, 63)):
            g["W"][i, j] += 0.01
        return g

    res = gc.check_grad(loss, several, params, worst=10)
    leaf = res.leaf("W")
    assert leaf.n_mismatched == 3
    assert {e.index for e in leaf.worst if e.status == "hand"} == {(3, 4), (40, 9), (63, 63)}

    def row(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = grad(p)
        g["W"][17] *= 1.1  # a whole row off by 10 %
        return g

    res = gc.check_grad(loss, row, params)
    leaf = res.leaf("W")
    assert leaf.verdict == "fail" and leaf.diagnosis is not None
    assert leaf.diagnosis.kind in ("rows", "scale"), leaf.diagnosis
    assert "17" in leaf.diagnosis.summary
    assert res.forward_calls < params["W"].size


def test_a_sequence_leaf_names_the_first_diverging_time_step() -> None:
    rng = np.random.default_rng(5)
    xs = rng.normal(size=(40, 3, 30))  # (T, B, D): 3600 entries, screened then localised

    def loss(p: dict[str, np.ndarray]) -> float:
        return float(np.sum(np.sin(p["xs"]).cumsum(axis=0)))

    def grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = np.cos(p["xs"]) * (40 - np.arange(40))[:, None, None]
        g[23:, 1, 5] *= 1.01  # wrong from step 23 on
        return {"xs": g}

    res = gc.check_grad(loss, grad, {"xs": xs}, full_max=100, jax_twin=False)
    leaf = res.leaf("xs")
    assert leaf.verdict == "fail" and leaf.mode == "localised"
    assert any("first diverge at time step 23 of 40" in note for note in leaf.notes), leaf.notes
