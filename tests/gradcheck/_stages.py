"""Stage inputs for the stage modules' unit tests, built the way ``check._run`` builds them."""

from __future__ import annotations

from typing import Any

from gradcheck import problem, references
from gradcheck.measure import Leaf, Run, leaf
from gradcheck.options import validate


def make_run(fun: Any, grad: Any, params: Any, *args: Any, **options: Any) -> Run:
    """The run of ``check_grad(fun, grad, params, *args, **options)`` up to its references."""
    opts = validate(options)
    prob = problem.grad_problem(fun, grad, params, args, opts)
    return Run(prob, references.build(prob, opts), opts)


def first_leaf(run: Run) -> Leaf:
    """The run's first leaf with its hand gradient."""
    hand = run.problem.hand[0]
    assert hand is not None
    return leaf(run, 0, hand)
