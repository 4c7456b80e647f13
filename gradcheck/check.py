"""``check_grad`` and ``check_layer``: the stages of a gradient check, wired one way.

    problem → references → measure (full | screen) → judge → power → record → message

:mod:`~gradcheck.problem` turns the user's code into a frozen problem (leaves, hand gradient,
loss); :mod:`~gradcheck.references` settles the references once (noise floor, precision, the
complex step, JAX's gradient, the exploding regime); each leaf's evidence is gathered at every
entry (:mod:`~gradcheck.full`) or by directional screening (:mod:`~gradcheck.screen`, which also
localises what it finds), judged (:mod:`~gradcheck.judge`), given its detection power and
negative control (:mod:`~gradcheck.power`) and recorded (:mod:`~gradcheck.record`); the
precision ladder (:mod:`~gradcheck.ladder`) then clears failures that are lost precision, not
wrong formulas.  The message (:mod:`~gradcheck.message`) is rendered from the records.  No stage
changes what an earlier one produced, and no leaf's check depends on another's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from gradcheck import full, judge, ladder, power, problem, record, references, screen
from gradcheck.full import FULL_NUMERIC_MAX
from gradcheck.measure import LONG_SECONDS, Evidence, Leaf, Run, leaf, log
from gradcheck.options import CheckOptions, Mode, validate
from gradcheck.references import EXPLODING_GROWTH
from gradcheck.result import CheckResult, LeafResult

__all__ = ["EXPLODING_GROWTH", "FULL_NUMERIC_MAX", "CheckOptions", "Mode", "check_grad", "check_layer", "run"]


def check_grad(
    fun: Callable[..., Any], grad: Callable[..., Any], params: Any, *args: Any, **options: Any
) -> CheckResult:
    """Check a hand-derived gradient of a scalar loss against finite differences and JAX.

    Args:
        fun: ``fun(params, *args) -> scalar loss``.
        grad: ``grad(params, *args) -> pytree`` shaped like ``params`` (or a flat tuple/list with
            one gradient per leaf, in order).
        params: a dict/list/tuple pytree of float arrays; every leaf is checked.
        *args: passed through to ``fun`` and ``grad`` unchanged (data, labels, configuration).
        **options: see :class:`CheckOptions`.

    Returns:
        A :class:`~gradcheck.CheckResult`; call ``.raise_for_failure()`` in a test.

    Raises:
        InvalidArgument: bad options or parameters (integer leaves, non-arrays).
        NonFiniteError, GradientStructureError, UserCodeError, InputMutated, NonDeterministic:
            problems with the user's code, each naming the tensor involved.

    Examples:
        >>> import numpy as np, gradcheck as gc
        >>> W = np.arange(6.0).reshape(2, 3) / 10
        >>> res = gc.check_grad(lambda p: np.sum(p["W"] ** 3), lambda p: {"W": 3 * p["W"] ** 2},
        ...                     {"W": W}, references=("numeric",))
        >>> res.verdict
        'pass'
    """
    opts = validate(options)
    return run(problem.grad_problem(fun, grad, params, args, opts), opts)


def check_layer(layer: Any, params: Any, x: Any, **options: Any) -> CheckResult:
    """Check a layer's hand-derived backward, for its parameters and its input.

    The layer has no scalar loss, so it is checked through ``L = ⟨dy, forward(params, x)⟩`` with
    a random ``dy`` (seeded by ``seed``): ``backward(params, x, dy)`` must return
    ``(dparams, dx)`` = ``(∂L/∂params, ∂L/∂x)``.  ``dx`` may be ``None`` (not checked).

    Args:
        layer: an object with ``forward(params, x) -> y`` and
            ``backward(params, x, dy) -> (dparams, dx)``; see :mod:`gradcheck.adapters` for
            CS231n-style functions and stateful layer objects.
        params: pytree of float arrays (may be empty ``{}`` for parameter-free layers).
        x: the input, a float array (or pytree of them); checked as the leaf ``x``.
        **options: see :class:`CheckOptions`; ``jax_fun`` is a JAX twin of ``forward``.

    Returns:
        A :class:`~gradcheck.CheckResult`.

    Examples:
        >>> import numpy as np, gradcheck as gc
        >>> class Scale:
        ...     def forward(self, p, x): return p["a"] * x
        ...     def backward(self, p, x, dy): return {"a": np.sum(dy * x)}, p["a"] * dy
        >>> gc.check_layer(Scale(), {"a": np.array(2.0)}, np.ones(3)).passed
        True
    """
    opts = validate(options)
    return run(problem.layer_problem(layer, params, x, opts), opts)


def run(prob: problem.Problem, opts: CheckOptions) -> CheckResult:
    """The references of ``prob``, then every checked leaf through the per-leaf stages (the
    checks of :mod:`gradcheck.jvp`, :mod:`gradcheck.hvp` and :mod:`gradcheck.batched` build
    their problems on :func:`gradcheck.problem.grad_problem` and run them here)."""
    run = Run(prob, references.build(prob, opts), opts)
    total = prob.total
    _announce(run, total)
    checked = {k: _check_leaf(run, leaf(run, k, hand), total)
               for k, hand in enumerate(prob.hand) if hand is not None}

    def recheck(k: int, hand: np.ndarray) -> LeafResult:
        return _check_leaf(run, leaf(run, k, hand, own_dtype=True), total)[0]

    def rejudge(k: int, hand: np.ndarray) -> LeafResult | None:
        lf, ev = checked[k][1]
        if ev.mode == "localised":
            return None
        wide = lf.recomputed(hand)
        found = (judge.full if ev.mode == "full" else judge.screen)(run, wide, ev)
        return record.leaf_result(run, wide, ev, found) if found.verdict == "fail" else None

    results = ladder.climb(prob, run.refs.precision, [r for r, _ in checked.values()], recheck)
    results = ladder.confirm(prob, results, rejudge)
    guessed = [r.shape for r in results if r.verdict != "pass" and len(r.shape) >= 3]
    notes = (prob.time_axis.note(guessed[0]),) if prob.time_axis.guessed and guessed else ()
    return record.check_result(prob.name, prob.kind, run.refs, opts, results, notes)


def _announce(run: Run, total: int) -> None:
    """Log what a long check will cost before it starts (the ``gradcheck`` logger)."""
    sizes = [run.problem.values[k].size for k in run.problem.checked]
    full_calls = sum(4 * n for n in sizes if _mode(run, n, total) == "full"
                     and not full.led(run, run.refs.ad is not None, n, total))
    seconds = full_calls * run.refs.seconds_per_call
    if seconds > LONG_SECONDS or (run.opts.budget is not None and seconds > run.opts.budget):
        log.info("%s: about %d forward calls, %.0f s at %.3g ms a call%s", run.problem.name,
                 full_calls, seconds, 1e3 * run.refs.seconds_per_call,
                 "" if run.opts.budget is None else f" (budget {run.opts.budget:g} s)")


def _mode(run: Run, size: int, total: int) -> str:
    """How a leaf of ``size`` entries is checked.  ``auto``: small tensors at every entry;
    larger ones autodiff-led (a full check) when there is autodiff, directional screening when
    there is not — the cost of either does not grow with the size.  Autodiff alone compares
    every entry at no extra cost."""
    opts = run.opts
    if not run.refs.numeric:
        return "full"
    if opts.mode == "auto":
        return "full" if (size <= opts.full_max or run.refs.ad is not None) else "directional"
    return opts.mode


def _check_leaf(run: Run, lf: Leaf, total: int) -> tuple[LeafResult, tuple[Leaf, Evidence]]:
    """One leaf: evidence → judgement → power → record (and the leaf and evidence the record
    came from); a leaf that fails screening without autodiff (in ``auto`` mode) is localised
    and recorded from that evidence instead."""
    mode = _mode(run, lf.size, total)
    if mode == "full":
        whole = full.gather(run, lf, total)
        if whole is not None:
            found = judge.full(run, lf, whole)
            return (record.leaf_result(run, lf, whole, found, power.measure(run, lf, whole, found)),
                    (lf, whole))
    ev = screen.gather(run, lf)
    if mode == "full":  # autodiff-led, but the probes did not confirm it
        ev = replace(ev, notes=(*ev.notes, "finite differences along the probes do not confirm "
                                "autodiff on this tensor, so it was screened (hand against both "
                                "references along each probe) instead of compared entry by entry"))
    found = judge.screen(run, lf, ev)
    screened = record.leaf_result(run, lf, ev, found, power.measure(run, lf, ev, found))
    if run.opts.mode != "auto" or screened.verdict == "pass" or run.refs.ad is not None:
        return screened, (lf, ev)
    where = screen.localise_leaf(run, lf, found.tol, (screened.verdict, screened.numeric_method,
                                                     screened.notes))
    found = judge.localised(run, lf, where, found.tol, found.probes)
    return record.leaf_result(run, lf, where, found), (lf, where)
