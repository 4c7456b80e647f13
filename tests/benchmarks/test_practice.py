"""The practice-tools comparison (``benchmarks/practice.py``): the ported rules and the quick run.

The AUTOTRAINER and DeepDiagnosis rules on hand-made gradients on both sides of each threshold
(and as properties: AUTOTRAINER's ratio rules are scale-free, its vanishing rule and
DeepDiagnosis' are not); the planted bugs are real bugs and nothing else; the ground truth's
Jacobian product; then the quick run: gradcheck never flips under rescaling, a practice rule
does, every planted bug is put on the backward by gradcheck, the markdown names both tools, and
Nielsen's speeds of learning grow towards the output.  No wall-clock time is asserted.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from benchmarks import practice as P
from reference.mlp import MLP
from reference.rnn import ElmanRNN

AT = P.autotrainer_gradient_issue
DD = P.deepdiagnosis_gradient


def _pairs(first: float, last: float, *, size: int = 4) -> list[np.ndarray]:
    """Two layers whose kernels have norms ``first`` and ``last`` (biases of norm 1)."""
    k = np.ones(size) / np.sqrt(size)
    return [first * k, np.ones(2), last * k, np.ones(2)]


# ----------------------------------------------------------------------------- AUTOTRAINER


@pytest.mark.parametrize(("first", "last", "vanish"), [
    (0.99e-4, 1.0, True),        # ratio 1e-4 < 1e-3 and ‖g_first‖ < 1e-4
    (1.01e-4, 1.0, False),       # ‖g_first‖ just above 1e-4: the ratio alone is not enough
    (0.5e-4, 0.0501, True),      # ratio 0.998e-3 < 1e-3
    (0.5e-4, 0.0499, False),     # ratio 1.002e-3 > 1e-3: ‖g_first‖ alone is not enough
], ids=["both-below", "first-above", "ratio-just-below", "ratio-just-above"])
def test_autotrainer_vanishing_needs_both_conditions(first: float, last: float, vanish: bool) -> None:
    v = AT(_pairs(first, last))
    assert v.vanish is vanish
    assert v.issue == ("vanish" if vanish else "")
    assert v.regime == ("vanishing" if vanish else "stable")


@pytest.mark.parametrize(("ratio", "explode"), [(70.07, True), (70.0, False), (69.9, False)])
def test_autotrainer_exploding_is_a_ratio_above_70(ratio: float, explode: bool) -> None:
    v = AT(_pairs(ratio, 1.0))
    assert v.explode is explode and v.ratio == pytest.approx(ratio)
    assert v.regime == ("exploding" if explode else "stable")


@pytest.mark.parametrize(("zeros", "dying"), [(70, True), (69, False), (100, True)])
def test_autotrainer_dying_relu_is_70_percent_exact_zeros(zeros: int, dying: bool) -> None:
    flat = np.r_[np.ones(100 - zeros), np.zeros(zeros)]  # kernels and biases together: 100 entries
    v = AT([flat[:40], flat[40:50], flat[50:90], flat[90:]])
    assert v.zero_fraction == pytest.approx(zeros / 100)
    assert v.dying_relu is dying
    assert (v.issue == "relu") is dying


def test_autotrainer_priority_and_nan() -> None:
    both = AT([np.full(4, 100.0), np.zeros(400), np.ones(4), np.zeros(400)])  # ratio 100, 99 % zeros
    assert both.explode and both.dying_relu and both.issue == "relu" and both.regime == "exploding"
    nan = AT([np.array([np.nan, 1.0]), np.ones(1), np.ones(2), np.ones(1)])
    assert nan.nan and nan.issue == "explode" and nan.regime == "exploding"
    with pytest.raises(ValueError, match="kernel/bias pairs"):
        AT([np.ones(2)])


@given(st.floats(1e-6, 1e6), st.floats(1e-3, 1e3), st.floats(1e-3, 1e3))
def test_autotrainer_ratio_rules_are_scale_free_and_the_vanishing_rule_is_not(c: float, first: float,
                                                                              last: float) -> None:
    g = _pairs(first, last)
    base, scaled = AT(g), AT([c * a for a in g])
    assert scaled.ratio == pytest.approx(base.ratio, rel=1e-9)
    ratio = first / last
    assume(abs(ratio / P.AT_EXPLODE_RATIO - 1) > 1e-9 and abs(ratio / P.AT_VANISH_RATIO - 1) > 1e-9)
    assume(abs(c * first / P.AT_VANISH_FIRST - 1) > 1e-9)
    assert scaled.explode == base.explode == (ratio > P.AT_EXPLODE_RATIO)
    assert scaled.vanish == (ratio < P.AT_VANISH_RATIO and c * first < P.AT_VANISH_FIRST)


# ----------------------------------------------------------------------------- DeepDiagnosis


@pytest.mark.parametrize(("mean_abs", "symptom"), [(0.99e-7, "vanishing gradient"), (1.01e-7, "")])
def test_deepdiagnosis_vanishing_is_mean_abs_below_1e7(mean_abs: float, symptom: str) -> None:
    g = mean_abs * np.array([1.0, -1.0, 1.0])  # mean|g| = mean_abs, mean(g) ≠ 0
    v = DD([g, np.ones(3)])
    assert v.symptom == symptom and v.mean_abs[0] == pytest.approx(mean_abs)
    assert v.layer == (0 if symptom else None)
    assert v.regime == ("vanishing" if symptom else "stable")


def test_deepdiagnosis_walks_from_the_last_layer_and_stops_at_the_first_symptom() -> None:
    tiny, zero_mean = np.full(3, 1e-9), np.array([1.0, -1.0])
    v = DD([tiny, zero_mean, np.ones(2)])
    assert (v.symptom, v.layer, v.non_finite) == ("numerical error", 1, False)  # layer 1 before layer 0
    assert v.regime == "vanishing"
    inf = DD([np.ones(2), np.array([np.inf, 1.0])])
    assert (inf.symptom, inf.layer, inf.non_finite, inf.regime) == ("numerical error", 1, True, "exploding")
    assert DD([np.ones(2), tiny]).layer == 1


@given(st.floats(1e-12, 1e-2), st.floats(1e-4, 1e4))
def test_deepdiagnosis_verdict_follows_the_loss_scale(mean_abs: float, c: float) -> None:
    g = [mean_abs * np.ones(4), np.ones(4)]
    v = DD([c * a for a in g])
    assume(abs(c * mean_abs / P.DD_VANISH_MEAN - 1) > 1e-9)
    assert (v.symptom == "vanishing gradient") == (c * mean_abs < P.DD_VANISH_MEAN)


# ----------------------------------------------------------------------------- bugs and truth


def test_the_bug_classes_are_the_reference_at_their_neutral_setting() -> None:
    spec = P.ModelSpec("rnn", "tanh", "gaussian", 1.5)
    layer, params, x, target = P.build(spec)
    dy = P._dy(spec, layer, params, x, target, P.Variant(1.0, "sum"))
    ref = ElmanRNN("tanh").bptt(params, x, dy)
    same = P.CarryBugRNN("tanh", carry=1.0).bptt(params, x, dy)
    for key in params:
        np.testing.assert_allclose(same[0][key], ref[0][key], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(same[2], ref[2], rtol=1e-12, atol=1e-15)
    missing = P.CarryBugRNN("tanh", carry=0.0).bptt(params, x, dy)[2]
    assert np.all(missing[:-1] == 0) and np.any(missing[-1] != 0)  # only the last output's own term

    mspec = P.ModelSpec("mlp", "sigmoid", "gaussian", 1.0, depth=3)
    stack, mparams, mx, mt = P.build(mspec)
    mdy = P._dy(mspec, stack, mparams, mx, mt, P.Variant(1.0, "sum"))
    want = MLP("sigmoid", "identity").backward_with_deltas(mparams, mx, mdy)[0]
    got = P.DerivativeBugMLP(MLP("sigmoid", "identity"), (0, 1, 2), 1).backward_with_deltas(mparams, mx, mdy)[0]
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-15)
    bug = P.DerivativeBugMLP(MLP("sigmoid", "identity"), (0,), 0).backward_with_deltas(mparams, mx, mdy)[0]
    assert not np.allclose(bug["W0"], want["W0"]) and np.allclose(bug["W3"], want["W3"])


@given(st.integers(1, 6), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_log_product_norm_is_the_log_spectral_norm_of_the_product(steps: int, batch: int, seed: int) -> None:
    jac = np.random.default_rng(seed).standard_normal((steps, batch, 3, 3))
    want = []
    for b in range(batch):
        P_ = np.eye(3)
        for t in range(steps):
            P_ = jac[t, b] @ P_
        want.append(np.log(np.linalg.norm(P_, 2)))
    np.testing.assert_allclose(P._log_product_norm(jac), want, rtol=1e-10, atol=1e-10)


def test_the_truth_uses_pascanus_bound_then_the_measured_rate() -> None:
    layer, params, _, _ = P.build(P.ModelSpec("rnn", "tanh", "gaussian", 0.5))
    t = P.rnn_truth(layer, params, np.random.default_rng(0))
    assert t.regime == "vanishing" and t.eta == pytest.approx(0.5) and "Pascanu" in t.reason
    relu, rparams, _, _ = P.build(P.ModelSpec("rnn", "relu", "orthogonal", 3.0))
    t = P.rnn_truth(relu, rparams, np.random.default_rng(1), horizon=40, batch=4)
    assert t.regime == "exploding" and t.rate > P.TRUTH_BAND and t.eta == pytest.approx(3.0)
    stack, mparams, _, _ = P.build(P.ModelSpec("mlp", "relu", "orthogonal", 4.0, depth=2))
    assert P.mlp_truth(stack, mparams, np.random.default_rng(0)).regime == "exploding"


# ----------------------------------------------------------------------------- the quick run


@pytest.fixture(scope="module")
def result() -> P.PracticeResult:
    return P.run_practice(quick=True, log=lambda s: None)


def test_gradcheck_never_flips_and_a_practice_rule_does(result: P.PracticeResult) -> None:
    flipped, n, _, models = result.flips("gradcheck")
    assert n > 0 and models > 0 and flipped == 0
    assert result.flips("AUTOTRAINER")[0] + result.flips("DeepDiagnosis")[0] >= 1
    assert all(r.agree and r.cause == "model" for r in result.correct())


def test_every_planted_bug_is_put_on_the_backward_by_gradcheck(result: P.PracticeResult) -> None:
    bugs = result.bugged()
    assert {r.spec.bug for r in bugs} == set(list(P.BUGS)[:3])
    assert all(r.cause == "backward" and not r.agree for r in bugs)
    assert result.blames("gradcheck") == {"backward": len(bugs)}
    for rule in ("AUTOTRAINER", "DeepDiagnosis"):  # never the backward: they see no reference
        assert result.blames(rule)["backward"] == 0
    (carry,) = [r for r in bugs if r.spec.bug == "no recurrent carry"]
    assert carry.autotrainer.issue and carry.deepdiagnosis.symptom  # both blame the model


def test_render_names_both_tools_and_the_rules(result: P.PracticeResult) -> None:
    md = P.render(result)
    for needle in ("AUTOTRAINER", "DeepDiagnosis", "ICSE 2021", "ICSE 2022", "< 0.001", "> 70",
                   "1e-07", "| verdict flips under rescaling (all) | 0/", "Nielsen", "0.2851"):
        assert needle in md, needle
    json.dumps(result.to_dict(), allow_nan=False)


def test_nielsens_speeds_of_learning_grow_towards_the_output(result: P.PracticeResult) -> None:
    n = result.nielsen
    assert n.agree and n.norms.shape == (3, 4)
    assert np.all(np.diff(n.mean) > 0) and np.all(n.ratios > 2)
    assert np.all(np.abs(np.log(n.mean / np.asarray(P.NIELSEN_FIGURES))) < np.log(2))
