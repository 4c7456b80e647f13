"""Truncated BPTT(τ) for the gated recurrent layers: ``LSTM(truncation=τ)`` and ``GRU(truncation=τ)``.

As for the Elman RNN (tests/reference/test_truncation.py), the error of each output goes back
through at most τ cell steps — for the LSTM along the hidden *and* the cell-state carry: the
window is unrolled from ``stop_gradient([h | c])`` (the module docstrings of reference/lstm.py
and reference/gru.py).  When τ ≥ T nothing is cut and the result is full BPTT, bit for bit up to
summation order.  When τ < T the hand gradient is, on purpose, not the gradient of the forward:

* ``Wy`` and ``by`` have only one-step terms and are exact (identical to full BPTT);
* ``dx_k`` collects the outputs ``y_k … y_{k+τ-1}`` only: its last τ time steps are exact;
* the gate parameters, ``h0`` (and the LSTM's ``c0``) are truncated sums, different from JAX's
  gradient of the forward — and equal to an independent computation of the kept terms: JAX's
  gradient of ``Σ_t ⟨dy_t, y_t⟩`` with output t differentiated through its stop-gradient window,
  written with the layers' own ``initial_state`` / ``state_step`` / ``readout``.

A gradient check reports the truncation like any wrong backward (``test_documented_examples``):
a failure blamed on the hand backward, on the truncated leaves only, with ``x``'s errors confined
to the time steps ``0 … T-τ-1``.  ``gradcheck.gradient_flow`` finds the layers' own BPTT(τ)
(``with_truncation``) and draws the same truncation curve as its JAX depth split.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import gru, lstm
from tests._profile import examples

FAMILIES: dict[str, Any] = {"lstm": lstm, "gru": gru}
UNTOUCHED = ("Wy", "by")
#: The leaves a truncation τ < T changes (all but the read-out), and the input.
TRUNCATED = {"lstm": ("Wx", "Wh", "b", "h0", "c0"), "gru": ("Wz", "Wr", "Wn", "Uz", "Ur", "Un", "bz", "br", "bn", "h0")}
EXAMPLES = 10

# JAX compiles its eager primitives once per shape (seconds for a gated cell; the length T is
# free), so the cases checked against JAX keep make_case's default widths (shared with the fixed
# examples below); the numpy-only ones draw from a few more.
SHAPES = st.sampled_from(((3, 3, 4, 2), (1, 2, 3, 1), (2, 1, 1, 3)))  # (B, D, H, K)


@st.composite
def truncated_cases(draw: st.DrawFn, *, cut: bool) -> tuple[str, Any, dict[str, Any], Any, int, int]:
    """``(family, layer, params, x, τ, seed)``: ``τ < T`` (T ≥ 2) when ``cut``, else ``τ ≥ T``.

    The cut cases (checked against JAX) keep ``make_case``'s default widths; the others (numpy
    only) draw them from :data:`SHAPES`."""
    family = draw(st.sampled_from(sorted(FAMILIES)))
    T = draw(st.integers(2, 5) if cut else st.integers(1, 7))
    tau = draw(st.integers(1, T - 1) if cut else st.integers(T, T + 3))
    B, D, H, K = (3, 3, 4, 2) if cut else draw(SHAPES)
    seed = draw(st.integers(0, 2**32 - 1))
    dtype = draw(st.sampled_from((np.float64, np.float32)))
    layer, params, x = FAMILIES[family].make_case(np.random.default_rng(seed), dtype=dtype, T=T,
                                                  B=B, D=D, H=H, K=K)
    return family, layer, params, x, tau, seed


def _float64(params: dict[str, Any], x: Any) -> tuple[dict[str, Any], Any]:
    return {k: np.asarray(v, np.float64) for k, v in params.items()}, np.asarray(x, np.float64)


def _bptt(layer: Any, params: dict[str, Any], x: Any, dy: Any) -> tuple[dict[str, Any], Any]:
    """``({**dparams, "x": dx}, deltas)`` of the layer's (possibly truncated) BPTT."""
    dparams, dx, deltas = layer.bptt(params, x, dy)
    return {**dparams, "x": dx}, deltas


def window_gradients(layer: Any, params: dict[str, Any], x: Any, dy: Any, tau: int
                     ) -> tuple[dict[str, Any], Any]:
    """The kept terms, independently: JAX's gradient of ``Σ_t ⟨dy_t, y_t⟩`` with ``y_t``
    differentiated through the window unrolled from ``stop_gradient(state_{t-τ})`` (from the
    initial state when ``t-τ < 0``).  Returns
    ``({**dparams, "x": dx}, deltas)`` where ``deltas[k]`` is the derivative with respect to a
    perturbation added to ``h_k`` in every window that computes it."""
    T, B = x.shape[0], x.shape[1]
    H = params["h0"].shape[0]

    def loss(q: dict[str, Any], xx: Any, eps: Any) -> Any:
        s0 = layer.initial_state(q, B)
        states, s = [s0], s0
        for t in range(T):
            s = layer.state_step(q, s, xx[t])
            states.append(s)
        total: Any = 0.0
        for t in range(T):
            start = max(t - tau + 1, 0)
            w = s0 if start == 0 else jax.lax.stop_gradient(states[start])
            for k in range(start, t + 1):
                w = layer.state_step(q, w, xx[k])
                w = w.at[:, :H].add(eps[k])  # the observed h_k (the LSTM's [h | c]: h only)
            total = total + jnp.sum(layer.readout(q, w) * dy[t])
        return total

    with jax.enable_x64(True):
        p = {k: jnp.asarray(v) for k, v in params.items()}
        g, gx, geps = jax.grad(loss, argnums=(0, 1, 2))(p, jnp.asarray(x), jnp.zeros((T, B, H)))
        return {**{k: np.asarray(v) for k, v in g.items()}, "x": np.asarray(gx)}, np.asarray(geps)


def jax_gradients(layer: Any, params: dict[str, Any], x: Any, dy: Any) -> dict[str, Any]:
    """JAX's gradient of ``Σ_t ⟨dy_t, y_t⟩`` through the layer's forward (in float64)."""
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v) for k, v in params.items()}
        g, gx = jax.grad(lambda q, xx: jnp.sum(layer.forward(q, xx) * dy), argnums=(0, 1))(p, jnp.asarray(x))
        return {**{k: np.asarray(v) for k, v in g.items()}, "x": np.asarray(gx)}


def _relative(a: Any, b: Any) -> float:
    scale = float(np.max(np.abs(b), initial=0.0))
    diff = float(np.max(np.abs(a - b), initial=0.0))
    return diff / scale if scale > 0 else (0.0 if diff == 0 else np.inf)


def _assert_close(got: dict[str, Any], want: dict[str, Any], rtol: float, what: str) -> None:
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol,
                                   atol=rtol * float(np.max(np.abs(want[name]), initial=0.0)),
                                   err_msg=f"{what}: d{name}")


@settings(max_examples=examples(EXAMPLES))
@given(drawn=truncated_cases(cut=False))
def test_truncation_at_least_the_length_is_full_bptt(drawn: tuple[Any, ...]) -> None:
    family, layer, params, x, tau, seed = drawn
    dy = np.random.default_rng(seed).standard_normal((x.shape[0], x.shape[1], params["by"].shape[0]))
    what = f"{family} T={x.shape[0]} tau={tau} {x.dtype} seed={seed}"
    full, full_deltas = _bptt(layer, params, x, dy.astype(x.dtype))
    cut, cut_deltas = _bptt(layer.with_truncation(tau), params, x, dy.astype(x.dtype))
    assert full.keys() == cut.keys() == {*params, "x"}
    assert all(cut[k].dtype == full[k].dtype for k in full), what
    rtol = 1e-12 if x.dtype == np.float64 else 1e-5
    _assert_close(cut, full, rtol, what)
    np.testing.assert_allclose(cut_deltas, full_deltas, rtol=rtol,
                               atol=rtol * float(np.max(np.abs(full_deltas))), err_msg=what)


@settings(max_examples=examples(EXAMPLES))
@given(drawn=truncated_cases(cut=True))
def test_truncation_shorter_than_the_length_keeps_exactly_the_window_terms(drawn: tuple[Any, ...]) -> None:
    family, layer, params, x, tau, seed = drawn
    T = x.shape[0]
    p64, x64 = _float64(params, x)
    dy = np.random.default_rng(seed).standard_normal((T, x.shape[1], params["by"].shape[0]))
    what = f"{family} T={T} tau={tau} {x.dtype} seed={seed}"
    full, _ = _bptt(layer, p64, x64, dy)
    cut, cut_deltas = _bptt(layer.with_truncation(tau), p64, x64, dy)

    for name in UNTOUCHED:  # one-step terms only: computed exactly as in full BPTT
        np.testing.assert_array_equal(cut[name], full[name], err_msg=what)
    # dx at the last τ steps sees every later output inside its window: exact too
    np.testing.assert_allclose(cut["x"][T - tau:], full["x"][T - tau:], rtol=1e-12,
                               atol=1e-12 * float(np.max(np.abs(full["x"]))), err_msg=what)

    # the kept terms, computed independently by JAX through stop-gradient windows
    kept, kept_deltas = window_gradients(layer, p64, x64, dy, tau)
    _assert_close(cut, kept, 1e-9, f"{what} (window)")
    np.testing.assert_allclose(cut_deltas, kept_deltas, rtol=1e-9,
                               atol=1e-9 * float(np.max(np.abs(kept_deltas))), err_msg=f"{what}: deltas")

    # ... which differ from JAX's gradient of the forward where the documentation says
    exact = jax_gradients(layer, p64, x64, dy)
    _assert_close(full, exact, 1e-9, f"{what} (full BPTT is JAX's gradient)")
    for name in UNTOUCHED:
        assert _relative(cut[name], exact[name]) < 1e-9, what
    assert _relative(cut["x"][T - tau:], exact["x"][T - tau:]) < 1e-9, what
    assert _relative(cut["h0"], exact["h0"]) > 1e-8, f"{what}: h0 should miss y_tau .. y_T-1"
    assert max(_relative(cut[n], exact[n]) for n in TRUNCATED[family]) > 1e-6, what
    if x.dtype == np.float32:  # the float32 layer computes the same truncated gradient
        cut32, _ = _bptt(layer.with_truncation(tau), params, x, dy.astype(np.float32))
        assert all(cut32[k].dtype == np.float32 for k in cut32)
        _assert_close(cut32, cut, 1e-3, f"{what} (float32)")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_truncation_field_is_validated_and_copied_like_the_rnn(family: str) -> None:
    module = FAMILIES[family]
    cls: Any = {"lstm": lstm.LSTM, "gru": gru.GRU}[family]
    layer, params, x = module.make_case(np.random.default_rng(0), T=5, truncation=2)
    assert layer == cls(truncation=2) and layer.truncation == 2
    assert cls().truncation is None and layer.with_truncation(None) == cls()
    assert layer.with_truncation(np.int64(3)).truncation == 3
    bad: Any
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="must be None \\(full BPTT\\) or an int >= 1"):
            cls(truncation=bad)
        with pytest.raises(ValueError, match="truncation"):
            layer.with_truncation(bad)
    dy = np.random.default_rng(1).standard_normal((5, x.shape[1], params["by"].shape[0]))
    cut, full = layer.bptt(params, x, dy)[0], cls().bptt(params, x, dy)[0]
    assert not np.allclose(cut["h0"], full["h0"])
    np.testing.assert_allclose(layer.with_truncation(5).bptt(params, x, dy)[0]["h0"], full["h0"], rtol=1e-12)
    np.testing.assert_array_equal(layer.forward(params, x), cls().forward(params, x))  # forward unchanged


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tau_one_keeps_only_the_one_step_terms(family: str) -> None:
    """τ = 1: each output's error enters its own cell step and stops (no carry at all)."""
    layer, params, x = FAMILIES[family].make_case(np.random.default_rng(2), T=4, truncation=1)
    dy = np.random.default_rng(3).standard_normal((4, x.shape[1], params["by"].shape[0]))
    _, _, deltas = layer.bptt(params, x, dy)
    np.testing.assert_allclose(deltas, dy @ params["Wy"].T, rtol=1e-14)  # deltas[t] = dy_t Wyᵀ
    one = {k: np.zeros_like(v) for k, v in params.items()}
    for t in range(4):  # the same gradient, one output at a time
        dy_t = np.zeros_like(dy)
        dy_t[t] = dy[t]
        g = layer.bptt(params, x, dy_t)[0]
        for k in one:
            one[k] += g[k]
    _assert_close(layer.bptt(params, x, dy)[0], one, 1e-12, family)


# ----------------------------------------------------------------------- what gradcheck says


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_documentedexamples(family: str) -> None:
    """``make_case(default_rng(0), T=4, truncation=2)`` checked like any layer: a failure blamed
    on the hand backward, on the truncated leaves; ``Wy``, ``by`` pass; ``x`` wrong only in time
    steps 0 and 1 (T - τ = 2)."""
    import gradcheck as gc

    layer, params, x = FAMILIES[family].make_case(np.random.default_rng(0), T=4, truncation=2)
    res = gc.check_layer(layer, params, x, seed=0)
    assert res.verdict == "fail"
    assert {leaf.name for leaf in res.failures} == {*TRUNCATED[family], "x"}, res.message()
    assert all(res.leaf(name).passed for name in UNTOUCHED)
    assert all(leaf.blame == "hand" for leaf in res.failures)
    x_leaf = res.leaf("x")
    assert 0 < x_leaf.n_mismatched <= 2 * x.shape[1] * x.shape[2]
    assert all(e.index[0] < 2 for e in x_leaf.worst if e.status == "hand")
    assert gc.check_layer(layer.with_truncation(4), params, x, seed=0).passed


@pytest.mark.parametrize("family", ["lstm"])  # the packed state [h | c]; the GRU's is h alone
def test_gradient_flow_uses_the_hand_truncation_and_agrees_with_the_jax_depth_split(family: str) -> None:
    from gradcheck.dynamics import TruncatableBPTT, gradient_flow

    class Untruncatable:  # the same layer without with_truncation: gradient_flow's JAX route
        def __init__(self, inner: Any) -> None:
            self._inner = inner
            for name in ("bptt", "initial_state", "state_step", "readout"):
                setattr(self, name, getattr(inner, name))
            if hasattr(inner, "observed_width"):
                self.observed_width = inner.observed_width

    layer, params, x = FAMILIES[family].make_case(np.random.default_rng(4), T=4)
    assert isinstance(layer, TruncatableBPTT) and not isinstance(Untruncatable(layer), TruncatableBPTT)
    by_hand = gradient_flow(layer, params, x)
    by_jax = gradient_flow(Untruncatable(layer), params, x)
    assert "truncation=τ" in by_hand.truncation_source and "VJP" in by_jax.truncation_source
    np.testing.assert_allclose(by_hand.truncation_errors, by_jax.truncation_errors, rtol=1e-9, atol=1e-14)
    assert by_hand.truncation_errors[-1] < 1e-12
