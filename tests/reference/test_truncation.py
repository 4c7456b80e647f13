"""Truncated BPTT: what gradcheck says about a gradient that is deliberately not the true one.

``ElmanRNN(truncation=τ)`` back-propagates the error of each output through at most τ cell steps
(Williams & Peng's BPTT(τ); see the class Notes in ``reference/rnn.py``).  When τ ≥ T nothing is
cut and the result is full BPTT.  When τ < T the hand gradient is, on purpose, not the gradient
of the forward — and gradcheck must say so: a failed check that blames the hand backward on the
leaves the truncation changes, and passes the leaves it leaves alone.  It is not a crash and not
a silent pass; the tool cannot know the truncation is intended, so the message reads like the
report of any wrong formula.

Which leaves (reference/rnn.py): ``W`` and ``c`` have only one-step terms and are exact;
``V``, ``U``, ``b`` are truncated sums; ``h0`` only collects the outputs ``y_0 … y_{τ-1}``;
``dx_k`` only collects the outputs ``y_k … y_{k+τ-1}``, so its last τ time steps are exact and
the error sits in time steps ``0 … T-τ-1``.

Example (observed; ``reference.rnn.make_case(np.random.default_rng(0), T=4, truncation=2)``,
B=3, D=3, H=5, K=2, float64, ``gc.check_layer(layer, params, x, seed=0)``;
``str(result)``, abridged to two of the five failing leaves)::

    check_layer 'ElmanRNN': fail (7 tensors, mode=auto:full)
    check_layer 'ElmanRNN': fail
    dL/dU (float64, shape (5, 5)): 25 of 25 elements outside rtol=5e-07, atol=1.9e-09
      worst at [2, 0]: hand=0.28588  numeric=0.0871481±1.30512e-10  autodiff=0.0871481  [hand]
      worst at [4, 3]: hand=-1.75502  numeric=-0.697649±1.31109e-10  autodiff=-0.697649  [hand]
      ...
      diagnosis: every entry is wrong, with no simple pattern (a wrong formula rather than a slip)
      verdict: fail; blame: the hand-derived backward (the references agree with each other)
      Re-derive U's backward term by term against the forward.
      reproduce with seed=0
    ...
    dL/dx (float64, shape (4, 3, 3)): 18 of 36 elements outside rtol=5e-07, atol=9.2e-10
      worst at [0, 0, 1]: hand=0.659293  numeric=-0.128727±1.35174e-10  autodiff=-0.128727  [hand]
      ...
      diagnosis: errors confined to time steps [0–1] along axis 0
      verdict: fail; blame: the hand-derived backward (the references agree with each other)
      Check the first/last step of the BPTT loop for x: the other steps agree.
      reproduce with seed=0

``V``, ``b`` and ``h0`` fail the same way (all "widespread"); ``W`` and ``c`` pass.  Finite
differences and JAX agree with each other to about 1e-10 and both disagree with the hand
gradient, so the blame is the hand backward; for ``x`` the diagnosis finds that only the first
T-τ = 2 time steps are wrong, exactly the steps whose later outputs the window cuts off.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc
import gradcheck.strategies as gs
from reference import rnn
from reference.rnn import ElmanRNN
from tests._profile import examples

#: max|truncated - full| / max|full| above which a leaf must be reported wrong: well above the
#: check's tolerance (rtol 5e-7 for float64, 2e-3 for float32).  Below it (vanishing
#: gradients make the cut-off terms tiny) the tool may rightly call the difference noise.
CLEARLY_WRONG = {np.dtype(np.float64): 1e-4, np.dtype(np.float32): 2e-2}
UNTOUCHED = ("W", "c")


@st.composite
def truncated_cases(draw: st.DrawFn, *, cut: bool) -> tuple[Any, int]:
    """An Elman RNN case and a truncation τ: ``τ < T`` (T ≥ 2) when ``cut``, else ``τ ≥ T``."""
    length = st.integers(2, 12) if cut else st.integers(1, 12)
    config = draw(gs.recurrent_configs(length=length))
    case = config.case(
        batch=draw(st.integers(1, 4)),
        inputs=draw(st.integers(1, 4)),
        outputs=draw(st.integers(1, 4)),
        dtype=draw(st.sampled_from((np.float64, np.float32))),
    )
    T = config.length
    tau = draw(st.integers(1, T - 1) if cut else st.integers(T, T + 3))
    return case, tau


def _truncated(layer: ElmanRNN, tau: int) -> ElmanRNN:
    return ElmanRNN(activation=layer.activation, truncation=tau)


def _float64_gradients(layer: ElmanRNN, params: dict[str, Any], x: Any, dy: Any) -> dict[str, Any]:
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    dparams, dx = layer.backward(p64, np.asarray(x, np.float64), dy)
    return {**dparams, "x": dx}


def _gradients_both_ways(case: Any, tau: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(full BPTT, BPTT(τ)) gradients in float64 for one random upstream gradient."""
    layer, params, x = case
    y = layer.forward(params, x)
    dy = np.random.default_rng(case.seed).standard_normal(y.shape)
    full = _float64_gradients(layer, params, x, dy)
    cut = _float64_gradients(_truncated(layer, tau), params, x, dy)
    return full, cut


def _relative_difference(a: Any, b: Any) -> float:
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else np.inf)


@settings(max_examples=examples(4))
@given(drawn=truncated_cases(cut=False))
def test_truncation_at_least_the_length_is_full_bptt(drawn: tuple[Any, int]) -> None:
    case, tau = drawn
    full, cut = _gradients_both_ways(case, tau)
    assert full.keys() == cut.keys() == {*case.params, "x"}
    for name in full:
        scale = float(np.max(np.abs(full[name]), initial=0.0))
        np.testing.assert_allclose(cut[name], full[name], rtol=1e-12, atol=1e-12 * scale,
                                   err_msg=f"{case!r}, truncation={tau}: d{name}")
    layer, params, x = case
    res = gc.check_layer(_truncated(layer, tau), params, x, seed=case.seed)
    assert {leaf.name for leaf in res.leaves} == {*params, "x"}
    assert res.passed, f"{case!r}, truncation={tau}\n{res.message()}"


@settings(max_examples=examples(5))
@given(drawn=truncated_cases(cut=True))
def test_truncation_shorter_than_the_length_is_reported(drawn: tuple[Any, int]) -> None:
    case, tau = drawn
    layer, params, x = case
    T = x.shape[0]
    res = gc.check_layer(_truncated(layer, tau), params, x, seed=case.seed)  # never raises
    full, cut = _gradients_both_ways(case, tau)
    where = f"{case!r}, truncation={tau}\n{res.message()}"
    assert {leaf.name for leaf in res.leaves} == {*params, "x"}

    for name in UNTOUCHED:  # one-step terms only: computed exactly as in full BPTT
        np.testing.assert_array_equal(cut[name], full[name])
    # dx at the last τ steps sees every later output inside its window: exact too
    np.testing.assert_allclose(cut["x"][T - tau:], full["x"][T - tau:], rtol=1e-12,
                               atol=1e-12 * float(np.max(np.abs(full["x"]))))

    threshold = CLEARLY_WRONG[np.dtype(case.dtype)]
    differs = {n: _relative_difference(cut[n], full[n]) for n in full}
    for leaf in res.leaves:
        if differs[leaf.name] > threshold:
            assert leaf.verdict == "fail" and leaf.blame == "hand", where
        elif differs[leaf.name] == 0:
            assert leaf.verdict == "pass", where
    if max(differs.values()) > threshold:
        assert res.verdict == "fail", where
    x_leaf = res.leaf("x")
    if x_leaf.verdict == "fail":  # the error sits in time steps 0 .. T-τ-1 only
        assert x_leaf.n_mismatched <= (T - tau) * x.shape[1] * x.shape[2], where
        assert all(e.index[0] < T - tau for e in x_leaf.worst if e.status == "hand"), where


def test_documented_example() -> None:
    """The example of the module docstring, with the parts of the message that matter."""
    layer, params, x = rnn.make_case(np.random.default_rng(0), T=4, truncation=2)
    res = gc.check_layer(layer, params, x, seed=0)
    assert res.verdict == "fail"
    assert {leaf.name for leaf in res.failures} == {"V", "U", "b", "h0", "x"}
    assert res.leaf("W").passed and res.leaf("c").passed
    assert all(leaf.blame == "hand" for leaf in res.failures)
    for name in ("V", "U", "b", "h0"):
        leaf = res.leaf(name)
        assert leaf.n_mismatched == leaf.n_elements
        assert leaf.diagnosis is not None and leaf.diagnosis.kind == "widespread"
    x_leaf = res.leaf("x")
    assert x_leaf.n_mismatched == 18  # time steps 0 and 1 of (4, 3, 3)
    assert x_leaf.diagnosis is not None
    assert (x_leaf.diagnosis.kind, x_leaf.diagnosis.axis) == ("time_steps", 0)
    assert tuple(x_leaf.diagnosis.indices) == (0, 1)

    message = res.message()
    assert str(res).startswith("check_layer 'ElmanRNN': fail (7 tensors")
    assert "dL/dU (float64, shape (5, 5)): 25 of 25 elements outside rtol=5e-07" in message
    assert "dL/dx (float64, shape (4, 3, 3)): 18 of 36 elements outside" in message
    assert "errors confined to time steps [0–1] along axis 0" in message
    assert message.count("blame: the hand-derived backward (the references agree with each other)") == 5
    assert "dL/dW " not in message and "dL/dc " not in message
    assert "reproduce with seed=0" in message


def test_full_bptt_example_passes() -> None:
    """The same case without truncation (and with τ = T) passes: the cut is what is reported."""
    for tau in (None, 4):
        layer, params, x = rnn.make_case(np.random.default_rng(0), T=4, truncation=tau)
        res = gc.check_layer(layer, params, x, seed=0)
        assert res.passed, res.message()


def _stop_gradient_twin(layer: ElmanRNN, tau: int) -> Any:
    """A JAX twin whose autodiff IS BPTT(τ): output t differentiated through the window that
    starts from ``stop_gradient(s_{t-τ})`` (from the leaf ``h0`` when the window reaches back
    past step 0).  Its value is the forward's; only its gradient is truncated."""
    import jax
    import jax.numpy as jnp

    def twin(params: dict[str, Any], x: Any) -> Any:
        T, B = x.shape[0], x.shape[1]
        h0 = jnp.broadcast_to(params["h0"], (B, params["h0"].shape[0]))
        states, s = [h0], h0
        for t in range(T):
            s = layer.cell_forward(params, s, x[t])
            states.append(s)
        ys = []
        for t in range(T):
            start = max(t - tau + 1, 0)
            s = h0 if start == 0 else jax.lax.stop_gradient(states[start])
            for k in range(start, t + 1):
                s = layer.cell_forward(params, s, x[k])
            ys.append(s @ params["W"] + params["c"])
        return jnp.stack(ys)

    return twin


def test_truncated_gradient_does_not_pass_by_agreeing_with_a_truncated_twin() -> None:
    layer, params, x = rnn.make_case(np.random.default_rng(0), T=4, truncation=2)
    res = gc.check_layer(layer, params, x, seed=0, jax_fun=_stop_gradient_twin(layer, 2))
    hand_vs_numeric = res.leaf("U").hand_vs_numeric
    assert hand_vs_numeric is not None and hand_vs_numeric.max_rel_err > 0.1  # really different
    assert res.leaf("U").fd_error_estimate < 1e-6  # and the finite differences are sure of it
    assert not res.passed, "a truncated gradient passed because a truncated twin agreed with it"
    assert res.leaf("U").blame == "hand"
    assert any("drops the same term" in n for n in res.leaf("U").notes)


def test_a_bug_the_twin_shares_is_diagnosed_against_the_finite_differences() -> None:
    """Autodiff agrees with the truncated hand gradient, so against autodiff the hand would be
    "1 × the reference"; read against finite differences, the truncation shows: the input's
    error is confined to the early time steps, the weights' spread over them."""
    layer, params, x = rnn.make_case(np.random.default_rng(0), T=4, truncation=2)
    res = gc.check_layer(layer, params, x, seed=0, jax_fun=_stop_gradient_twin(layer, 2))
    failing = {leaf.name: leaf.diagnosis for leaf in res.leaves if leaf.verdict == "fail"}
    assert failing and all(d is not None and d.kind != "scale" for d in failing.values())
    x_diagnosis = failing["x"]
    assert x_diagnosis is not None and x_diagnosis.kind == "time_steps" and x_diagnosis.indices == (0, 1)
