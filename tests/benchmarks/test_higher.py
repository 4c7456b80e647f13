"""Smoke test of the forward-mode and second-order benchmark (``benchmarks/higher.py``).

The hand rules are verified against JAX first (the JVP against ``jax.jvp`` of the layer, the
R-operator HVP against ``jax.jvp(jax.grad(L))``, and every planted bug really wrong); then the
quick run (the small point, one warm repeat): every checker has a row for every rule, gradcheck
catches every planted bug on the leaves it touches and passes the correct rules, names the
doubled column's entry, diagnoses the factor 2, the sign flip and the missing bias tangent, and
gives the symmetry and Gauss–Newton notes; reverse-mode ``check_grads`` of a hand rule is
reported as not applicable, and the markdown and JSON render.  No wall-clock time is asserted.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import higher

GC_JVP = "gc check_jvp"
GC_HVP = ("gc check_hvp, grad=", "gc check_hvp, no grad")


@pytest.fixture(scope="module")
def point() -> higher.Point:
    return higher.make_point(5, 4, 5, seed=3)


@pytest.fixture(scope="module")
def result() -> higher.HigherResult:
    return higher.run_higher(quick=True, repeats=1, log=lambda s: None)


def _rel(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    num = sum(float(np.sum((x - y) ** 2)) for x, y in zip(a, b, strict=True))
    return float(np.sqrt(num / sum(float(np.sum(y ** 2)) for y in b)))


def test_the_hand_jvp_is_jax_jvp(point: higher.Point) -> None:
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        for _ in range(3):
            tan = [rng.standard_normal(a.shape) for a in (point.x, point.W, point.b)]
            _, ref = jax.jvp(lambda x, W, b: jnp.tanh(x @ W + b), (point.x, point.W, point.b),
                             tuple(tan))
            ref = np.asarray(ref)
            np.testing.assert_allclose(higher.dense_jvp(point.x, point.W, point.b, *tan), ref,
                                       rtol=1e-12, atol=1e-13)
            for bug in higher.JVP_BUGS:
                assert _rel([bug.fn(point.x, point.W, point.b, *tan)], [ref]) > 1e-3, bug.name


def test_the_r_operator_hvp_is_jvp_of_grad(point: higher.Point) -> None:
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        def L(W: jax.Array, b: jax.Array) -> jax.Array:
            return 0.5 * jnp.sum((jnp.tanh(point.x @ W + b) - point.t) ** 2)

        gW, gb = jax.grad(L, argnums=(0, 1))(point.W, point.b)
        hand_g = higher.sse_grad(point.W, point.b, point.x, point.t)
        np.testing.assert_allclose(hand_g[0], np.asarray(gW), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(hand_g[1], np.asarray(gb), rtol=1e-12, atol=1e-13)
        assert higher.sse_loss(point.W, point.b, point.x, point.t) == pytest.approx(
            float(L(point.W, point.b)), rel=1e-13)
        for _ in range(3):
            V, c = rng.standard_normal(point.W.shape), rng.standard_normal(point.b.shape)
            _, (hW, hb) = jax.jvp(jax.grad(L, argnums=(0, 1)), (point.W, point.b), (V, c))
            ref = [np.asarray(hW), np.asarray(hb)]
            got = higher.sse_hvp(point.W, point.b, V, c, point.x, point.t)
            np.testing.assert_allclose(got[0], ref[0], rtol=1e-11, atol=1e-12)
            np.testing.assert_allclose(got[1], ref[1], rtol=1e-11, atol=1e-12)
            for bug in higher.HVP_BUGS:
                assert _rel(list(bug.fn(point.W, point.b, V, c, point.x, point.t)), ref) > 1e-3, bug.name


def test_every_checker_has_every_rule(result: higher.HigherResult) -> None:
    for problem, checkers, rules in (
            ("JVP", higher.JVP_CHECKERS, (higher.JVP_CORRECT, *higher.JVP_BUGS)),
            ("HVP", higher.HVP_CHECKERS, (higher.HVP_CORRECT, *higher.HVP_BUGS))):
        assert result.checkers(problem) == [c[0] for c in checkers]
        assert result.point_names(problem) == ["16×8→6"]
        for label, _, _ in checkers:
            timing = result.timing(problem, "16×8→6", label)
            assert timing is not None and timing.repeats in (0, 1)
            for rule in rules:
                run = result.get(problem, "16×8→6", label, rule.name)
                assert run is not None, (label, rule.name)
                assert run.status in ("pass", "fail", "inconclusive", "not applicable", "error",
                                      "not installed"), run
    grad = result.timing("HVP", "16×8→6", higher.GRAD_CHECKER)
    assert grad is not None and grad.status == "pass" and grad.warm_s > 0


def test_gradcheck_catches_every_bug_and_passes_the_correct_rules(result: higher.HigherResult) -> None:
    for problem, checker in (("JVP", GC_JVP), ("HVP", GC_HVP[0]), ("HVP", GC_HVP[1])):
        k, n = result.recall(problem, checker)
        assert (k, n) == (n, len(higher.JVP_BUGS if problem == "JVP" else higher.HVP_BUGS)), checker
        assert result.false_alarms(problem, checker) == (0, 1), checker
        bugs = higher.JVP_BUGS if problem == "JVP" else higher.HVP_BUGS
        for bug in bugs:
            run = result.get(problem, "16×8→6", checker, bug.name)
            assert run is not None and set(run.failing) == set(bug.wrong_leaves), (checker, bug.name)


def test_gradcheck_names_and_diagnoses(result: higher.HigherResult) -> None:
    def run(problem: str, checker: str, name: str) -> higher.Run:
        got = result.get(problem, "16×8→6", checker, name)
        assert got is not None
        return got

    doubled = run("JVP", GC_JVP, higher.JVP_BUGS[3].name)
    assert doubled.named is True
    assert run("JVP", GC_JVP, "bias tangent missing").diagnosis["b"].startswith("zero")
    assert run("JVP", GC_JVP, "W term sign flipped").diagnosis["W"].startswith("sign_flip")
    for checker in GC_HVP:
        factor = run("HVP", checker, "factor 2 (½ forgotten)")
        assert all(d.startswith("scale") and "2 ×" in d for d in factor.diagnosis.values())
        cross = run("HVP", checker, higher.HVP_BUGS[3].name)
        assert any("not symmetric" in n for n in cross.notes)
    (gn,) = result.gauss_newton
    assert gn.caught and any("Gauss–Newton" in n for n in gn.notes)


def test_reverse_mode_check_grads_cannot_check_a_hand_rule(result: higher.HigherResult) -> None:
    run = result.get("HVP", "16×8→6", "jax check_grads order 2 fwd+rev (loss)", "correct")
    assert run is not None and run.status == "not applicable" and "transpose" in run.detail
    fwd = result.get("HVP", "16×8→6", "jax check_grads order 2 fwd (loss)", "correct")
    assert fwd is not None and fwd.status == "pass"


def test_render_and_json(result: higher.HigherResult) -> None:
    md = higher.render(result)
    assert "**JVP, 16×8→6**" in md and "**HVP, 16×8→6**" in md
    assert "an HVP check costs ≤ 3×" in md and ("**met**" in md or "**not met**" in md)
    assert "| gc check_jvp | pass | caught | caught | caught | caught | caught | 5/5 | 0/1 |" in md
    assert "not applicable" in md and "transpose" in md
    text, ok = result.target()
    assert "check_hvp" in text and ok in (True, False)
    payload = json.loads(json.dumps(result.to_dict(), default=str))
    assert payload["target"]["met"] == ok
    assert len(payload["runs"]) == len(result.runs)
